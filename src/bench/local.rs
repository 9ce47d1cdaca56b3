//! Servers the benchmark starts itself (`--local redis`), so that it may also restart them
//! or fail them over under load for the recovery scenario: the benchmark stops, starts and
//! promotes only what it owns.
//!
//! Each runs from a fresh folder with the local platform's own launcher, on a free loopback
//! port, and is stopped, its folder removed, when the benchmark ends. For a failover the
//! server gets a replica of its own, which FAILOVER promotes and a second FAILOVER, once the
//! phase is measured, demotes again, so every phase starts on the same primary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::platform::local::server::{self, Access, Engine, Launch, ServerError};
use crate::resp::Conn;

/// What happens to the server under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SHUTDOWN NOSAVE and a start: the data is gone, as after a crash without persistence.
    Restart,
    /// SHUTDOWN SAVE and a start: the data is saved and loaded again.
    RestartSave,
    /// FAILOVER: the server's replica becomes the primary, the server its replica.
    Failover,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Restart => "restart",
            Event::RestartSave => "restart-save",
            Event::Failover => "failover",
        }
    }
}

/// How long a replica may take to be in sync, and a failover to finish.
const SETTLE: Duration = Duration::from_secs(30);

/// One server process of the benchmark's.
#[derive(Debug)]
struct Node {
    port: u16,
    dir: PathBuf,
    pid: AtomicU32,
}

impl Node {
    fn new(engine: Engine, port: u16) -> Node {
        let dir = std::env::temp_dir().join(format!(
            "runbook-bench-{}-{}-{port}",
            std::process::id(),
            engine.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Node {
            port,
            dir,
            pid: AtomicU32::new(0),
        }
    }

    async fn launch(&self, engine: Engine, replica_of: Option<&str>) -> Result<(), ServerError> {
        let pid = server::start(&Launch {
            engine,
            access: &Access::plain(self.port),
            dir: &self.dir,
            replica_of,
            cluster: false,
            certs: None,
        })
        .await?;
        self.pid.store(pid, Ordering::Relaxed);
        Ok(())
    }

    async fn stop(&self) {
        server::stop(self.pid.load(Ordering::Relaxed), self.port).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// `role`, `master_link_status` and `master_failover_state` of INFO replication.
    async fn replication(&self) -> Result<[String; 3], ServerError> {
        let info = server::info(&Access::plain(self.port), "replication").await?;
        let field = |k: &str| info.get(k).cloned().unwrap_or_default();
        Ok([
            field("role"),
            field("master_link_status"),
            field("master_failover_state"),
        ])
    }
}

/// A primary done with any failover.
fn promoted([role, _, state]: [String; 3]) -> bool {
    role == "master" && state == "no-failover"
}

/// A replica in sync with its primary.
fn following([role, link, _]: [String; 3]) -> bool {
    (role == "slave" || role == "replica") && link == "up"
}

/// A server the benchmark started, with its replica when it is to fail over.
#[derive(Debug)]
pub struct Owned {
    pub engine: Engine,
    pub port: u16,
    primary: Node,
    replica: Option<Node>,
}

/// Why an owned server could not be started, restarted, failed over or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start a {engine} server for the benchmark")]
    Start {
        engine: Engine,
        #[source]
        source: ServerError,
    },
    #[error("no free loopback port for a {engine} server")]
    Port {
        engine: Engine,
        #[source]
        source: std::io::Error,
    },
    #[error("the {engine} server on port {port} did not stop within 30 s of SHUTDOWN")]
    Stop { engine: Engine, port: u16 },
    #[error("cannot fail the {engine} server on port {port} over to its replica")]
    Failover {
        engine: Engine,
        port: u16,
        #[source]
        source: ServerError,
    },
    #[error("the {engine} server on port {port} {what} within 30 s")]
    Settle {
        engine: Engine,
        port: u16,
        what: &'static str,
    },
}

impl Owned {
    /// Starts a server of `engine` on a free port, from an empty folder, and a replica of it
    /// when `with_replica` (in sync when this returns).
    pub async fn start(engine: Engine, with_replica: bool) -> Result<Owned, LocalError> {
        let fail = |source| LocalError::Start { engine, source };
        let port = || server::free_port().map_err(|source| LocalError::Port { engine, source });
        let primary = Node::new(engine, port()?);
        primary.launch(engine, None).await.map_err(fail)?;
        let mut owned = Owned {
            engine,
            port: primary.port,
            primary,
            replica: None,
        };
        if with_replica {
            let replica = Node::new(engine, port()?);
            // Stopped with the rest from here on, whatever happens next.
            let started = replica
                .launch(engine, Some(&format!("127.0.0.1:{}", owned.port)))
                .await;
            owned.replica = Some(replica);
            if let Err(e) = started {
                owned.stop().await;
                return Err(fail(e));
            }
            if let Err(e) = owned.settle().await {
                owned.stop().await;
                return Err(e);
            }
        }
        Ok(owned)
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::local(self.port)
    }

    /// Takes the server down (SHUTDOWN SAVE when `save`, else NOSAVE) and starts it again on
    /// the same port and folder; returns when it went down and when it answered again.
    pub async fn restart(&self, save: bool) -> Result<(Instant, Instant), LocalError> {
        let engine = self.engine;
        let fail = |source| LocalError::Start { engine, source };
        let down = Instant::now();
        let command: &[&[u8]] = if save {
            &[b"SHUTDOWN", b"SAVE"]
        } else {
            &[b"SHUTDOWN", b"NOSAVE"]
        };
        // The server closes the connection as it exits: no reply is the expected answer.
        if let Ok(mut conn) = Conn::connect(
            &Default::default(),
            &self.endpoint(),
            Duration::from_secs(5),
        )
        .await
        {
            let _ = conn.call(command, |_| ()).await;
        }
        let pid = self.primary.pid.load(Ordering::Relaxed);
        let deadline = Instant::now() + SETTLE;
        while server::is_ours(pid, self.port) {
            if Instant::now() > deadline {
                return Err(LocalError::Stop {
                    engine,
                    port: self.port,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.primary.launch(engine, None).await.map_err(fail)?;
        Ok((down, Instant::now()))
    }

    /// FAILOVER to the replica: returns when it was asked and when the replica was the
    /// primary. [`Owned::fail_back`] makes the server the primary again.
    pub async fn failover(&self) -> Result<(Instant, Instant), LocalError> {
        let Some(replica) = &self.replica else {
            return Err(LocalError::Settle {
                engine: self.engine,
                port: self.port,
                what: "has no replica to fail over to",
            });
        };
        let asked = Instant::now();
        self.swap(&self.primary).await?;
        self.wait(replica, "was not the primary", promoted).await?;
        Ok((asked, Instant::now()))
    }

    /// After [`Owned::failover`]: once the server is in sync as the replica, FAILOVER back to
    /// it, so the next phase starts on the primary it knows.
    pub async fn fail_back(&self) -> Result<(), LocalError> {
        let Some(replica) = &self.replica else {
            return Ok(());
        };
        self.wait(&self.primary, "did not follow the primary", following)
            .await?;
        self.swap(replica).await?;
        self.settle().await
    }

    /// FAILOVER on `from`, the primary now.
    async fn swap(&self, from: &Node) -> Result<(), LocalError> {
        server::command::<()>(&Access::plain(from.port), &redis::cmd("FAILOVER"))
            .await
            .map_err(|source| LocalError::Failover {
                engine: self.engine,
                port: from.port,
                source,
            })
    }

    /// Waits until the server is the primary and its replica follows it.
    async fn settle(&self) -> Result<(), LocalError> {
        let Some(replica) = &self.replica else {
            return Ok(());
        };
        self.wait(&self.primary, "was not the primary", promoted)
            .await?;
        self.wait(replica, "did not follow the primary", following)
            .await
    }

    /// Polls `node`'s replication state until `done`.
    async fn wait(
        &self,
        node: &Node,
        what: &'static str,
        done: fn([String; 3]) -> bool,
    ) -> Result<(), LocalError> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if node.replication().await.is_ok_and(done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalError::Settle {
                    engine: self.engine,
                    port: node.port,
                    what,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the server and its replica and removes their folders.
    pub async fn stop(&self) {
        self.primary.stop().await;
        if let Some(replica) = &self.replica {
            replica.stop().await;
        }
    }
}

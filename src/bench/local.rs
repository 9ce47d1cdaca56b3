//! Servers the benchmark starts itself (`--local redis`), so that it may also restart them
//! under load for the recovery scenario: the benchmark stops and starts only what it owns.
//!
//! Each runs from a fresh folder with the local platform's own launcher, on a free loopback
//! port, and is stopped, its folder removed, when the benchmark ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::platform::local::server::{self, Access, Engine, Launch, ServerError};
use crate::resp::Conn;

/// How the server is taken down before it is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// SHUTDOWN NOSAVE: the data is gone, as after a crash without persistence.
    NoSave,
    /// SHUTDOWN SAVE: the data is saved and loaded again on start.
    Save,
}

impl Restart {
    pub fn name(self) -> &'static str {
        match self {
            Restart::NoSave => "restart",
            Restart::Save => "restart-save",
        }
    }
}

/// A server the benchmark started.
#[derive(Debug)]
pub struct Owned {
    pub engine: Engine,
    pub port: u16,
    dir: PathBuf,
    pid: AtomicU32,
}

/// Why an owned server could not be started, restarted or stopped.
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
}

impl Owned {
    /// Starts a server of `engine` on a free port, from an empty folder.
    pub async fn start(engine: Engine) -> Result<Owned, LocalError> {
        let fail = |source| LocalError::Start { engine, source };
        let port = server::free_port().map_err(|source| LocalError::Port { engine, source })?;
        let dir = std::env::temp_dir().join(format!(
            "runbook-bench-{}-{}-{port}",
            std::process::id(),
            engine.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let owned = Owned {
            engine,
            port,
            dir,
            pid: AtomicU32::new(0),
        };
        let pid = owned.launch().await.map_err(fail)?;
        owned.pid.store(pid, Ordering::Relaxed);
        Ok(owned)
    }

    async fn launch(&self) -> Result<u32, ServerError> {
        server::start(&Launch {
            engine: self.engine,
            access: &Access::plain(self.port),
            dir: &self.dir,
            replica_of: None,
            cluster: false,
            certs: None,
        })
        .await
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::local(self.port)
    }

    /// Takes the server down as `how` says and starts it again on the same port and
    /// folder; returns when it went down and when it answered again.
    pub async fn restart(&self, how: Restart) -> Result<(Instant, Instant), LocalError> {
        let engine = self.engine;
        let fail = |source| LocalError::Start { engine, source };
        let down = Instant::now();
        let command: &[&[u8]] = match how {
            Restart::NoSave => &[b"SHUTDOWN", b"NOSAVE"],
            Restart::Save => &[b"SHUTDOWN", b"SAVE"],
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
        let pid = self.pid.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while server::is_ours(pid, self.port) {
            if Instant::now() > deadline {
                return Err(LocalError::Stop {
                    engine,
                    port: self.port,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = self.launch().await.map_err(fail)?;
        self.pid.store(pid, Ordering::Relaxed);
        Ok((down, Instant::now()))
    }

    /// Stops the server and removes its folder.
    pub async fn stop(&self) {
        server::stop(self.pid.load(Ordering::Relaxed), self.port).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The local platform: real `redis-server` / `valkey-server` processes on loopback, so a
//! whole migration can be rehearsed without an AWS account.
//!
//! Each request of the contract becomes what ElastiCache would do, with real servers: a stack's
//! replication groups and self-hosted servers become processes ([`template`]), an online
//! migration is `REPLICAOF` from the source, completing it is a promotion, an engine change
//! restarts node after node with the other binary on its own data ([`server`]). What was
//! made is kept in the run directory ([`state`]), so a new `runbook` process resuming the
//! run finds it again, and every server started is journaled for `runbook destroy`.

mod changes;
mod cluster;
mod engine;
mod group;
mod metrics;
mod migration;
mod preflight;
mod s3;
mod secure;
pub mod server;
mod serverless;
mod snapshot;
mod stack;
mod state;
pub mod template;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::actions::{ActionError, StepCtx};
use crate::platform::{Platform, PlatformKind};
use secure::SecureError;
use server::ServerError;
use state::{State, StateError};
use template::TemplateError;

/// Why a local control-plane request failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Secure(#[from] SecureError),
    /// The request cannot be done as asked; the message says what to do instead.
    #[error("{0}")]
    Refused(String),
    /// A wait ran out of time; trying again may pass.
    #[error("{0}")]
    Timeout(String),
}

impl From<LocalError> for ActionError {
    fn from(e: LocalError) -> ActionError {
        match e {
            LocalError::Timeout(_) | LocalError::Server(ServerError::Command { .. }) => {
                ActionError::transient(crate::error::chain(&e))
            }
            _ => ActionError::fatal(crate::error::chain(&e)),
        }
    }
}

type Result<T, E = LocalError> = std::result::Result<T, E>;

/// How long a migration may take to link and catch up, an engine change to bring a node back.
const SYNC_DEADLINE: Duration = Duration::from_secs(600);

/// Rehearsal on real server processes. Holds no state of its own: everything lives in
/// the run directory each call is given.
pub struct Local {
    /// One control-plane change at a time within this process.
    busy: tokio::sync::Mutex<()>,
}

impl Local {
    pub fn new() -> Local {
        Local {
            busy: tokio::sync::Mutex::new(()),
        }
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

/// A server the journal says a run started.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordedServer {
    pub group: String,
    pub node: String,
    pub port: u16,
    pub pid: u32,
}

/// Every server a run's journal records (`journal.jsonl` in `run_dir`).
pub fn recorded_servers(
    run_dir: &Path,
) -> Result<Vec<RecordedServer>, crate::journal::JournalError> {
    let mut servers = Vec::new();
    for resource in crate::journal::replay(&run_dir.join("journal.jsonl"))?.resources() {
        if resource["kind"] == "server"
            && let (Some(port), Some(pid)) = (resource["port"].as_u64(), resource["pid"].as_u64())
        {
            servers.push(RecordedServer {
                group: resource["group"].as_str().unwrap_or_default().to_string(),
                node: resource["node"].as_str().unwrap_or_default().to_string(),
                port: u16::try_from(port).unwrap_or_default(),
                pid: u32::try_from(pid).unwrap_or_default(),
            });
        }
    }
    servers.sort();
    servers.dedup();
    Ok(servers)
}

/// Stops every server the run's journal records that still runs; returns those stopped.
pub async fn stop_recorded(
    run_dir: &Path,
) -> Result<Vec<RecordedServer>, crate::journal::JournalError> {
    let mut stopped = Vec::new();
    for s in recorded_servers(run_dir)? {
        if server::stop(s.pid, s.port).await {
            stopped.push(s);
        }
    }
    Ok(stopped)
}

impl Platform for Local {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Local
    }
}

impl Local {
    /// One request's view of the run: this process's lock on the control plane, and the
    /// state read from the run directory.
    async fn open<'a, 'c>(&'a self, ctx: &'a StepCtx<'c>) -> Result<Run<'a, 'c>, ActionError> {
        let busy = self.busy.lock().await;
        let dir = std::path::absolute(ctx.run_dir).map_err(|e| {
            ActionError::fatal(format!("the run directory {}: {e}", ctx.run_dir.display()))
        })?;
        let state = State::load(&dir).map_err(LocalError::from)?;
        Ok(Run {
            ctx,
            dir,
            state,
            _busy: busy,
        })
    }
}

/// One request being served: the step's context, the run directory and the state read
/// from it, while this process holds the control plane.
struct Run<'a, 'c> {
    ctx: &'a StepCtx<'c>,
    dir: PathBuf,
    state: State,
    _busy: tokio::sync::MutexGuard<'a, ()>,
}

impl Run<'_, '_> {
    fn save(&self) -> Result<()> {
        Ok(self.state.save(&self.dir)?)
    }
}

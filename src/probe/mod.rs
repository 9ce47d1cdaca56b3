//! The background probe: what the cache's clients feel while a runbook runs.
//!
//! (The measuring itself is being built; this is the contract the executor uses.)

use std::path::Path;
use std::time::Duration;

use crate::endpoint::{Endpoint, Resolver};

/// How the probe samples.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Time between ticks (open loop).
    pub interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Prefix of the probe's own keys (verify skips them).
    pub key_prefix: String,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(250),
            key_prefix: "runbook:probe:".into(),
        }
    }
}

/// The probe of one run: one task per endpoint, samples tagged with the running step,
/// data persisted under the run directory.
pub struct RunProbe {}

impl RunProbe {
    /// Starts a probe that writes its data under `run_dir` and tags samples with the
    /// step that `step` names at that moment.
    pub fn start(
        _run_dir: &Path,
        _config: ProbeConfig,
        _resolver: Resolver,
        _step: tokio::sync::watch::Receiver<Option<String>>,
    ) -> RunProbe {
        RunProbe {}
    }

    /// Starts probing `endpoint` (once; later calls for the same endpoint do nothing).
    pub fn watch(&self, _endpoint: Endpoint) {}

    /// Stops every probe task and flushes its data.
    pub async fn stop(self) {}
}

//! The background probe: what the cache's clients feel while a runbook runs.
//!
//! Per endpoint (per shard of a cluster), a write lane and a read lane each issue one
//! request a tick on a fixed open-loop schedule, on connections of their own; failures
//! are classified, runs of failures become outage events of a kind (disconnect, stall,
//! refusal, error), lost acknowledged writes are counted and every sample is tagged with
//! the step running at its scheduled time.
//! Everything goes to files under the run directory as it happens ([`record`]), so the
//! report survives a crash and memory stays bounded. The probe never blocks or fails
//! the run: its own problems are printed once and otherwise ignored.

pub mod classify;
pub mod record;
mod sampler;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoint::{Endpoint, Resolver};
pub use classify::{ErrorClass, OutageKind};
pub use record::{ClientsAt, Op, ProbeEvent, Recorder, Second, ShardAt};

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
pub struct RunProbe {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    flusher: Option<JoinHandle<()>>,
}

struct Shared {
    recorder: Option<Arc<Recorder>>,
    config: ProbeConfig,
    resolver: Resolver,
    step: watch::Receiver<Option<String>>,
    stop: watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
    /// A tag unique to this probe, so two probes never share a key.
    tag: String,
    tasks: Mutex<Vec<Task>>,
}

/// One endpoint's probing task.
struct Task {
    endpoint: Endpoint,
    name: Option<String>,
    /// Stops this task alone (when its endpoint is replaced).
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RunProbe {
    /// Starts a probe that writes its data under `run_dir` and tags samples with the
    /// step that `step` names at that moment. Must be called inside a tokio runtime.
    pub fn start(
        run_dir: &Path,
        config: ProbeConfig,
        resolver: Resolver,
        step: watch::Receiver<Option<String>>,
    ) -> RunProbe {
        let recorder = match Recorder::open(run_dir) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                eprintln!(
                    "warning: the probe cannot write under {}: {e}; the run goes on without it",
                    run_dir.display()
                );
                None
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Handle::current();
        let flusher = recorder
            .clone()
            .map(|rec| runtime.spawn(flush_every_second(rec, stop_rx.clone())));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        RunProbe {
            shared: Arc::new(Shared {
                recorder,
                config,
                resolver,
                step,
                stop: stop_rx,
                runtime,
                tag: format!("{}-{:x}", std::process::id(), nanos),
                tasks: Mutex::new(Vec::new()),
            }),
            stop,
            flusher,
        }
    }

    /// Records where the application's clients are, step by step (`probe.clients`).
    pub fn clients(&self, plan: Vec<ClientsAt>) {
        if let Some(recorder) = &self.shared.recorder {
            recorder.event(&ProbeEvent::Clients {
                ts: chrono::Utc::now(),
                plan,
            });
        }
    }

    /// Starts probing `endpoint` (once; later calls for the same endpoint do nothing).
    pub fn watch(&self, endpoint: Endpoint) {
        self.watch_named(endpoint, None);
    }

    /// Starts probing `endpoint`, which the runbook calls `name`. A named endpoint that
    /// gets another value (the platform named a new primary after a failover) moves: the
    /// old one is no longer probed, as the clients of the name no longer use it.
    pub fn watch_named(&self, endpoint: Endpoint, name: Option<String>) {
        let shared = &self.shared;
        let Some(recorder) = &shared.recorder else {
            return;
        };
        let mut tasks = shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.iter().any(|t| t.endpoint == endpoint) {
            return;
        }
        for old in tasks
            .iter()
            .filter(|t| name.is_some() && t.name == name && !*t.stop.borrow())
        {
            recorder.event(&ProbeEvent::Replaced {
                ts: chrono::Utc::now(),
                endpoint: old.endpoint.to_string(),
                by: endpoint.to_string(),
            });
            let _ = old.stop.send(true);
        }
        let sampler = sampler::Sampler {
            endpoint: endpoint.clone(),
            name: name.clone(),
            resolver: shared.resolver.clone(),
            config: shared.config.clone(),
            key: format!("{}{}:{}", shared.config.key_prefix, shared.tag, tasks.len()),
            recorder: recorder.clone(),
            step: shared.step.clone(),
            nodes: Mutex::new(Vec::new()),
        };
        let (stop, stopped) = watch::channel(*shared.stop.borrow());
        let handle = shared.runtime.spawn(sampler.run(stopped));
        tasks.push(Task {
            endpoint,
            name,
            stop,
            handle,
        });
    }

    /// The folder the probe writes to, unless it could not be created.
    pub fn dir(&self) -> Option<PathBuf> {
        self.shared.recorder.as_ref().map(|r| r.dir().to_path_buf())
    }

    /// Stops every probe task and flushes its data.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let tasks =
            std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in &tasks {
            let _ = task.stop.send(true);
        }
        for task in tasks {
            let _ = task.handle.await;
        }
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.await;
        }
        if let Some(rec) = &self.shared.recorder {
            rec.flush(None);
            if let Some(why) = rec.failure() {
                eprintln!("warning: some probe data could not be written: {why}");
            }
        }
    }
}

/// Writes out finished seconds and flushes the files once a second. Seconds are kept
/// open for two more seconds, for requests that answer late.
async fn flush_every_second(recorder: Arc<Recorder>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = every.tick() => {
                let rec = recorder.clone();
                let keep_after = chrono::Utc::now().timestamp() - 2;
                // File writes stay off the runtime's worker threads.
                let _ = tokio::task::spawn_blocking(move || rec.flush(Some(keep_after))).await;
            }
        }
    }
}

//! Runs a runbook's steps in order — and its rollback and finally blocks — journaling
//! every event before moving on, so that a run killed at any moment can be resumed.
//!
//! Each attempt of a step is bounded by its timeout; transient failures are retried with
//! a doubling backoff; Ctrl+C (or SIGTERM) cancels the running step at its next await
//! point and records the run as interrupted. The probe watches the runbook's endpoints as
//! soon as their values are known, and every sample is tagged with the running step.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::actions::{ActionError, Outputs, StepCtx};
use crate::endpoint::{Endpoint, Resolver};
use crate::journal::{Event, Journal, JournalError, Phase, RunStatus};
use crate::platform::Platform;
use crate::probe::{ClientsAt, ProbeConfig, RunProbe};
use crate::progress::Progress;
use crate::runbook::{OnFailure, Runbook, Step};
use crate::template::{self, Scope};

/// Everything a run needs besides the runbook.
pub struct Executor<'a> {
    pub runbook: &'a Runbook,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub journal: Arc<Journal>,
    pub platform: Box<dyn Platform>,
    pub resolver: Resolver,
    pub progress: Progress,
    pub assume_yes: bool,
    pub scope: Scope,
}

/// How one step ended.
enum StepEnd {
    Succeeded,
    Skipped,
    Failed,
    Interrupted,
    /// An approval could not be asked for: the run stops here.
    AwaitingApproval,
}

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The journal could not be written: the run stops, since it could no longer be resumed safely.
    #[error("the run stopped: without its journal it could not be resumed safely")]
    Journal(#[source] JournalError),
}

impl Executor<'_> {
    /// Runs the runbook. `done` holds the outputs of steps that already succeeded (resume);
    /// they are not run again.
    pub async fn execute(
        &mut self,
        done: &HashMap<String, Outputs>,
    ) -> Result<RunStatus, ExecError> {
        let (step_tx, step_rx) = watch::channel::<Option<String>>(None);
        let signals = interrupt_signal();
        let interrupt = Stop::from_now(&signals);
        let probe = self.runbook.probe.as_ref().map(|p| {
            let config = ProbeConfig {
                interval: p.interval,
                timeout: p.timeout,
                key_prefix: p.key_prefix.clone(),
            };
            let probe = RunProbe::start(&self.run_dir, config, self.resolver.clone(), step_rx);
            probe.clients(
                p.clients
                    .iter()
                    .map(|c| ClientsAt {
                        endpoint: c.endpoint.clone(),
                        from: c.from.clone(),
                    })
                    .collect(),
            );
            probe
        });
        let mut watched = HashSet::new();
        let total = self.runbook.steps.len();
        let mut failed: Option<String> = None;
        let mut interrupted = false;
        let mut awaiting = false;
        let mut any_failed = false;
        let rb = self.runbook;

        for (i, step) in rb.steps.iter().enumerate() {
            if let Some(outputs) = done.get(&step.id) {
                self.scope.set_outputs(&step.id, outputs);
                self.progress.line(&format!(
                    "[{}/{total}] {} (done in an earlier attempt: skipped)",
                    i + 1,
                    step.id
                ));
                continue;
            }
            self.watch_probe(probe.as_ref(), &mut watched);
            let _ = step_tx.send(Some(step.id.clone()));
            match self.run_step(step, i + 1, total, &interrupt).await? {
                StepEnd::Succeeded | StepEnd::Skipped => {}
                StepEnd::Failed if step.on_failure == OnFailure::Continue => any_failed = true,
                StepEnd::Failed => {
                    failed = Some(step.id.clone());
                    break;
                }
                StepEnd::Interrupted => {
                    interrupted = true;
                    break;
                }
                StepEnd::AwaitingApproval => {
                    awaiting = true;
                    break;
                }
            }
        }
        self.watch_probe(probe.as_ref(), &mut watched);

        let mut rollback_ok = true;
        let mut rolled_back = false;
        if let (Some(failed_step), false) = (&failed, interrupted)
            && !rb.rollback.is_empty()
        {
            self.append(Event::RollbackStarted {
                failed_step: failed_step.clone(),
            })?;
            self.progress
                .line(&format!("rolling back: step `{failed_step}` failed"));
            self.scope.failed_step = Some(failed_step.clone());
            rolled_back = true;
            // Roll back as much as possible: a failed rollback step does not stop the others.
            (rollback_ok, interrupted) = self.run_block(&rb.rollback, &step_tx, &interrupt).await?;
        }
        let mut finally_ok = true;
        // An interrupt in the main steps leaves the run to be resumed, with `finally` still
        // ahead; one during the rollback does not spare the clean-up of `finally`, which a
        // further interrupt stops.
        if (!interrupted || rolled_back) && !awaiting && !rb.finally.is_empty() {
            self.append(Event::FinallyStarted)?;
            let stop = Stop::from_now(&signals);
            let finally_interrupted;
            (finally_ok, finally_interrupted) =
                self.run_block(&rb.finally, &step_tx, &stop).await?;
            interrupted |= finally_interrupted;
        }
        let _ = step_tx.send(None);
        let status = if awaiting {
            RunStatus::AwaitingApproval
        } else if interrupted {
            RunStatus::Interrupted
        } else if failed.is_some() {
            if !rb.rollback.is_empty() && rollback_ok {
                RunStatus::RolledBack
            } else {
                RunStatus::Failed
            }
        } else if any_failed || !finally_ok {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        self.append(Event::RunFinished { status })?;
        if let Some(p) = probe {
            p.stop().await;
        }
        Ok(status)
    }

    /// Runs every step of a rollback or finally block, going on after failures.
    /// Returns whether all succeeded, and whether the run was interrupted.
    async fn run_block(
        &mut self,
        steps: &[Step],
        step_tx: &watch::Sender<Option<String>>,
        interrupt: &Stop,
    ) -> Result<(bool, bool), ExecError> {
        let mut all_ok = true;
        for (i, step) in steps.iter().enumerate() {
            let _ = step_tx.send(Some(step.id.clone()));
            match self.run_step(step, i + 1, steps.len(), interrupt).await? {
                StepEnd::Succeeded | StepEnd::Skipped => {}
                StepEnd::Failed | StepEnd::AwaitingApproval => all_ok = false,
                StepEnd::Interrupted => return Ok((all_ok, true)),
            }
        }
        Ok((all_ok, false))
    }

    fn append(&self, event: Event) -> Result<(), ExecError> {
        self.journal
            .append(event)
            .map(|_| ())
            .map_err(ExecError::Journal)
    }

    /// Starts probing every probe endpoint whose value is now known.
    fn watch_probe(&self, probe: Option<&RunProbe>, watched: &mut HashSet<String>) {
        let (Some(probe), Some(spec)) = (probe, &self.runbook.probe) else {
            return;
        };
        for e in &spec.endpoints {
            let Ok(Value::String(text)) = self.scope.render(&e.value.value) else {
                continue;
            };
            if text.is_empty() || watched.contains(&text) {
                continue;
            }
            match Endpoint::parse(&text) {
                Ok(endpoint) => {
                    self.progress.line(&format!("probe: watching {endpoint}"));
                    probe.watch_named(endpoint, e.name.clone());
                }
                Err(e) => self.progress.line(&format!("probe: {e}")),
            }
            watched.insert(text);
        }
    }

    async fn run_step(
        &mut self,
        step: &Step,
        index: usize,
        total: usize,
        interrupt: &Stop,
    ) -> Result<StepEnd, ExecError> {
        let action_name = step.action.name.to_string();
        self.progress.step(index, total, &step.id, &action_name);
        if let Some(when) = &step.when {
            let text = when.value.as_str().unwrap_or_default();
            match self.scope.condition(text) {
                Ok(true) => {}
                Ok(false) => {
                    self.append(Event::StepSkipped {
                        step: step.id.clone(),
                        action: action_name,
                        phase: step.phase,
                        reason: format!("`when` is false: {text}"),
                    })?;
                    self.progress.note(&step.id, "skipped: `when` is false");
                    return Ok(StepEnd::Skipped);
                }
                Err(e) => return self.fail_before_start(step, format!("`when`: {e}")),
            }
        }
        let rendered = match self.scope.render(&step.inputs()) {
            Ok(v) => match template::coerce(&(step.action.schema)(), v) {
                Ok(v) => v,
                Err(e) => {
                    return self.fail_before_start(
                        step,
                        format!("invalid input for `{}`: {e}", step.action.name),
                    );
                }
            },
            Err(e) => return self.fail_before_start(step, format!("inputs: {e}")),
        };
        let action = match (step.action.build)(rendered.clone()) {
            Ok(a) => a,
            Err(e) => {
                return self.fail_before_start(
                    step,
                    format!("invalid input for `{}`: {e}", step.action.name),
                );
            }
        };
        let attempts = step.retry.attempts.max(1);
        for attempt in 1..=attempts {
            self.append(Event::StepStarted {
                step: step.id.clone(),
                action: action_name.clone(),
                phase: step.phase,
                attempt,
                inputs: rendered.clone(),
            })?;
            let ctx = StepCtx {
                run_id: &self.run_id,
                run_dir: &self.run_dir,
                base_dir: base_dir(&self.runbook.source.path),
                step_id: &step.id,
                platform: self.platform.as_ref(),
                resolver: &self.resolver,
                journal: &self.journal,
                progress: &self.progress,
                assume_yes: self.assume_yes,
            };
            let run = action.run(&ctx);
            let timed = async {
                match step.timeout {
                    Some(t) => tokio::time::timeout(t, run).await.unwrap_or_else(|_| {
                        Err(ActionError::transient(format!(
                            "timed out after {} (the step's `timeout`)",
                            crate::duration::format(t)
                        )))
                    }),
                    None => run.await,
                }
            };
            let result = tokio::select! {
                r = timed => Some(r),
                () = interrupt.requested() => None,
            };
            match result {
                None => {
                    self.append(Event::StepInterrupted {
                        step: step.id.clone(),
                        phase: step.phase,
                        attempt,
                    })?;
                    self.progress.note(&step.id, "interrupted");
                    return Ok(StepEnd::Interrupted);
                }
                Some(Ok(outputs)) => {
                    self.append(Event::StepSucceeded {
                        step: step.id.clone(),
                        phase: step.phase,
                        attempt,
                        outputs: outputs.clone(),
                    })?;
                    self.scope.set_outputs(&step.id, &outputs);
                    return Ok(StepEnd::Succeeded);
                }
                Some(Err(e)) if e.awaits_approval && step.phase == Phase::Steps => {
                    let message = self.journal.redact(&e.message);
                    self.append(Event::StepAwaitingApproval {
                        step: step.id.clone(),
                        phase: step.phase,
                        attempt,
                        message: message.clone(),
                    })?;
                    self.progress.note(&step.id, &message);
                    return Ok(StepEnd::AwaitingApproval);
                }
                Some(Err(e)) => {
                    let will_retry = e.transient && attempt < attempts;
                    let message = self.journal.redact(&e.message);
                    self.append(Event::StepFailed {
                        step: step.id.clone(),
                        phase: step.phase,
                        attempt,
                        error: message.clone(),
                        transient: e.transient,
                        will_retry,
                    })?;
                    if !will_retry {
                        self.progress.note(&step.id, &format!("failed: {message}"));
                        return Ok(StepEnd::Failed);
                    }
                    let wait = step
                        .retry
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(16));
                    self.progress.note(
                        &step.id,
                        &format!(
                            "attempt {attempt}/{attempts} failed: {message}; retrying in {}",
                            crate::duration::format(wait)
                        ),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        () = interrupt.requested() => {
                            self.append(Event::StepInterrupted { step: step.id.clone(), phase: step.phase, attempt })?;
                            return Ok(StepEnd::Interrupted);
                        }
                    }
                }
            }
        }
        unreachable!("the last attempt always returns")
    }

    /// A step that fails before its action runs (a template or an input is wrong).
    fn fail_before_start(&self, step: &Step, error: String) -> Result<StepEnd, ExecError> {
        let error = self.journal.redact(&error);
        self.append(Event::StepStarted {
            step: step.id.clone(),
            action: step.action.name.to_string(),
            phase: step.phase,
            attempt: 1,
            inputs: Value::Null,
        })?;
        self.append(Event::StepFailed {
            step: step.id.clone(),
            phase: step.phase,
            attempt: 1,
            error: error.clone(),
            transient: false,
            will_retry: false,
        })?;
        self.progress.note(&step.id, &format!("failed: {error}"));
        Ok(StepEnd::Failed)
    }
}

/// The folder relative paths of a runbook are taken from.
pub fn base_dir(runbook_path: &Path) -> &Path {
    match runbook_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Ctrl+C and SIGTERM as they come.
pub(crate) struct Interrupts {
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    pub(crate) fn new() -> Interrupts {
        Interrupts {
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// Waits for the next one: `false` for Ctrl+C, `true` for SIGTERM.
    pub(crate) async fn next(&mut self) -> bool {
        let terminated = async {
            match self.term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => false,
            _ = terminated => true,
        }
    }
}

/// Counts Ctrl+C and SIGTERM: a block stops at the first one that comes after it began.
fn interrupt_signal() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        let mut interrupts = Interrupts::new();
        loop {
            interrupts.next().await;
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

/// The interrupts a block stops at: those after the ones already seen when it began.
#[derive(Clone)]
struct Stop {
    signals: watch::Receiver<u32>,
    seen: u32,
}

impl Stop {
    /// Stops at the next interrupt from now on.
    fn from_now(signals: &watch::Receiver<u32>) -> Stop {
        Stop {
            seen: *signals.borrow(),
            signals: signals.clone(),
        }
    }

    /// Resolves once an interrupt came.
    async fn requested(&self) {
        let seen = self.seen;
        let mut signals = self.signals.clone();
        let _ = signals.wait_for(|n| *n > seen).await;
    }
}

//! The one reading of a journal: its events replayed, in order, into the run's state.
//!
//! Every reader (`show`, `runs`, `report`, `resume`, `destroy`, `metrics.capture`) asks
//! this replay instead of interpreting events itself, so they cannot disagree. Each event
//! must follow from the state the earlier ones left (a step succeeds only while it runs,
//! an attempt follows the one before, rollback steps start only in the rollback block):
//! the journal's writer checks that before appending, and a reader checks it again, so a
//! journal that does not tell a possible story is refused rather than believed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Event, Phase, Record, RunStatus};
use crate::actions::Outputs;

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// An attempt is under way.
    Running,
    /// An attempt failed and another one follows after the backoff.
    Retrying,
    Succeeded,
    Failed,
    /// Its `when` was false.
    Skipped,
    /// Stopped by Ctrl+C, SIGTERM, or the end of the process that ran it.
    Interrupted,
    /// An approval nobody could be asked for; it runs again when the run is resumed.
    AwaitingApproval,
}

impl StepStatus {
    /// Whether the step is in the middle of its attempts.
    pub fn is_open(self) -> bool {
        matches!(self, StepStatus::Running | StepStatus::Retrying)
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepStatus::Running => "running",
            StepStatus::Retrying => "retrying",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Interrupted => "interrupted",
            StepStatus::AwaitingApproval => "awaiting_approval",
        })
    }
}

/// One step as the journal tells it, over the whole run (resumes included).
#[derive(Clone, Debug, Serialize)]
pub struct StepState {
    pub id: String,
    pub action: String,
    pub phase: Phase,
    pub status: StepStatus,
    /// How many attempts started, over every resume of the run.
    pub attempts: u32,
    /// When its latest round of attempts began (retries included, earlier resumes not).
    pub started_at: Option<DateTime<Utc>>,
    /// When it last ended; `None` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// The error of its last failed attempt.
    pub error: Option<String>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its status lines, in order.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// What it created (a server process, a stack), in order.
    #[serde(skip)]
    pub resources: Vec<Value>,
    /// The process groups its attempts started, in order.
    #[serde(skip)]
    pub process_groups: Vec<i32>,
    /// How many rollbacks had started when it last succeeded: a later one may have undone it.
    #[serde(skip)]
    rollbacks_before: u32,
    /// The rendered inputs of its latest attempt.
    #[serde(skip)]
    pub inputs: Value,
    /// The outputs of its latest success, kept even when it runs again.
    #[serde(skip)]
    pub outputs: Option<Outputs>,
    /// The number of the attempt under way or last ended.
    #[serde(skip)]
    attempt: u32,
}

/// The run as a whole.
#[derive(Clone, Debug)]
pub struct RunState {
    pub run_id: String,
    pub runbook: String,
    pub file: String,
    pub digest: String,
    pub platform: String,
    pub started_at: DateTime<Utc>,
    pub status: RunStatus,
    /// When it last finished; `None` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times it was resumed.
    pub resumes: usize,
    /// The step whose failure started the latest rollback.
    pub rolled_back_after: Option<String>,
}

/// An event that cannot follow from the journal before it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IllegalEvent {
    /// Something happened before the run started.
    #[error("`{event}` before `run_started`")]
    NotStarted { event: &'static str },
    /// A run starts once; later it is resumed.
    #[error("a second `run_started`")]
    StartedTwice,
    /// Steps run only between a start (or resume) and the end.
    #[error("`{event}` after the run finished")]
    Finished { event: &'static str },
    /// The run or a block ends while a step is still under way.
    #[error("`{event}` while step `{step}` is {status}")]
    StepOpen {
        event: &'static str,
        step: String,
        status: StepStatus,
    },
    /// The step is not where the event says (success of a step that never started, ...).
    #[error("`{event}` for step `{step}`, which is {status}")]
    Step {
        event: &'static str,
        step: String,
        status: String,
    },
    /// Attempts count up by one, from 1 after every fresh start.
    #[error("step `{step}` is at attempt {expected}, not {got}")]
    Attempt {
        step: String,
        expected: u32,
        got: u32,
    },
    /// A step of one block ran while another block was under way.
    #[error("step `{step}` of the {phase} block runs during the {block} block")]
    Block {
        step: String,
        phase: Phase,
        block: Phase,
    },
    /// Rollback comes after the steps, finally after both, each once per start or resume.
    #[error("`{event}` during the {block} block")]
    BlockOrder { event: &'static str, block: Phase },
}

/// A run's state, built one event at a time.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    run: Option<RunState>,
    steps: Vec<StepState>,
    index: HashMap<String, usize>,
    /// The block under way since the latest start or resume.
    block: Option<Phase>,
    /// How many rollbacks started, over every resume of the run.
    rollbacks: u32,
}

impl Replay {
    /// The state after `records`, or the first record (by index) that does not follow.
    pub fn of(records: &[Record]) -> Result<Replay, (usize, IllegalEvent)> {
        let mut replay = Replay::default();
        for (i, record) in records.iter().enumerate() {
            replay.apply(record).map_err(|e| (i, e))?;
        }
        Ok(replay)
    }

    /// Whether `record` may come next; the state is left as it was.
    pub fn check(&self, record: &Record) -> Result<(), IllegalEvent> {
        self.clone().apply(record)
    }

    /// Takes one more event into the state, or says why it cannot come now.
    pub fn apply(&mut self, record: &Record) -> Result<(), IllegalEvent> {
        let ts = record.ts;
        let name = record.event.name();
        let event = &record.event;
        if let Event::RunStarted {
            run_id,
            runbook,
            file,
            digest,
            platform,
            ..
        } = event
        {
            if self.run.is_some() {
                return Err(IllegalEvent::StartedTwice);
            }
            self.run = Some(RunState {
                run_id: run_id.clone(),
                runbook: runbook.clone(),
                file: file.clone(),
                digest: digest.clone(),
                platform: platform.clone(),
                started_at: ts,
                status: RunStatus::Running,
                finished_at: None,
                resumes: 0,
                rolled_back_after: None,
            });
            self.block = Some(Phase::Steps);
            return Ok(());
        }
        let Some(run) = self.run.as_mut() else {
            return Err(IllegalEvent::NotStarted { event: name });
        };
        if let Event::RunResumed { .. } = event {
            run.status = RunStatus::Running;
            run.finished_at = None;
            run.resumes += 1;
            // What was under way when the last process ended did not finish.
            for step in self.steps.iter_mut().filter(|s| s.status.is_open()) {
                step.status = StepStatus::Interrupted;
            }
            self.block = Some(Phase::Steps);
            return Ok(());
        }
        let Some(block) = self.block else {
            return Err(IllegalEvent::Finished { event: name });
        };
        match event {
            Event::RunStarted { .. } | Event::RunResumed { .. } => unreachable!("handled above"),
            Event::RunFinished { status } => {
                self.no_open_step(name)?;
                let run = self.run.as_mut().expect("checked above");
                run.status = *status;
                run.finished_at = Some(ts);
                self.block = None;
            }
            Event::RollbackStarted { failed_step } => {
                if block != Phase::Steps {
                    return Err(IllegalEvent::BlockOrder { event: name, block });
                }
                self.no_open_step(name)?;
                self.run.as_mut().expect("checked above").rolled_back_after =
                    Some(failed_step.clone());
                self.block = Some(Phase::Rollback);
                self.rollbacks += 1;
            }
            Event::FinallyStarted => {
                if block == Phase::Finally {
                    return Err(IllegalEvent::BlockOrder { event: name, block });
                }
                self.no_open_step(name)?;
                self.block = Some(Phase::Finally);
            }
            Event::StepStarted {
                step,
                action,
                phase,
                attempt,
                inputs,
            } => {
                in_block(step, *phase, block)?;
                let s = self.step_mut(step, action, *phase);
                let expected = match s.status {
                    StepStatus::Running => return Err(not_now(name, s)),
                    StepStatus::Retrying => s.attempt + 1,
                    _ => 1,
                };
                if *attempt != expected {
                    return Err(IllegalEvent::Attempt {
                        step: step.clone(),
                        expected,
                        got: *attempt,
                    });
                }
                if *attempt == 1 {
                    s.started_at = Some(ts);
                }
                s.action = action.clone();
                s.phase = *phase;
                s.status = StepStatus::Running;
                s.attempt = *attempt;
                s.attempts += 1;
                s.finished_at = None;
                s.error = None;
                s.reason = None;
                s.inputs = inputs.clone();
            }
            Event::StepSkipped {
                step,
                action,
                phase,
                reason,
            } => {
                in_block(step, *phase, block)?;
                let s = self.step_mut(step, action, *phase);
                if s.status.is_open() {
                    return Err(not_now(name, s));
                }
                s.action = action.clone();
                s.phase = *phase;
                s.status = StepStatus::Skipped;
                s.started_at = Some(ts);
                s.finished_at = Some(ts);
                s.error = None;
                s.reason = Some(reason.clone());
                s.notes.push(reason.clone());
            }
            Event::StepNote { step, message } => {
                self.running(name, step, None)?.notes.push(message.clone());
            }
            Event::StepResource { step, resource } => {
                self.running(name, step, None)?
                    .resources
                    .push(resource.clone());
            }
            Event::StepProcess { step, pgid } => {
                self.running(name, step, None)?.process_groups.push(*pgid);
            }
            Event::StepSucceeded {
                step,
                attempt,
                outputs,
                ..
            } => {
                let rollbacks = self.rollbacks;
                let s = self.running(name, step, Some(*attempt))?;
                s.status = StepStatus::Succeeded;
                s.finished_at = Some(ts);
                s.outputs = Some(outputs.clone());
                s.rollbacks_before = rollbacks;
            }
            Event::StepFailed {
                step,
                attempt,
                error,
                will_retry,
                ..
            } => {
                let s = self.running(name, step, Some(*attempt))?;
                s.status = if *will_retry {
                    StepStatus::Retrying
                } else {
                    StepStatus::Failed
                };
                s.finished_at = Some(ts);
                s.error = Some(error.clone());
            }
            Event::StepAwaitingApproval {
                step,
                attempt,
                message,
                ..
            } => {
                let s = self.running(name, step, Some(*attempt))?;
                s.status = StepStatus::AwaitingApproval;
                s.finished_at = Some(ts);
                s.error = Some(message.clone());
            }
            Event::StepInterrupted { step, attempt, .. } => {
                let s = self.open(name, step, Some(*attempt))?;
                s.status = StepStatus::Interrupted;
                s.finished_at = Some(ts);
            }
        }
        Ok(())
    }

    /// The process that wrote the journal is gone (nobody holds the run's lock): a run
    /// and steps still under way were interrupted.
    pub fn abandon(&mut self) {
        if let Some(run) = self.run.as_mut()
            && run.status == RunStatus::Running
        {
            run.status = RunStatus::Interrupted;
            for step in self.steps.iter_mut().filter(|s| s.status.is_open()) {
                step.status = StepStatus::Interrupted;
            }
        }
    }

    /// The run, once its `run_started` is read.
    pub fn run(&self) -> Option<&RunState> {
        self.run.as_ref()
    }

    /// Every step that appeared, in the order it first did.
    pub fn steps(&self) -> &[StepState] {
        &self.steps
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.index.get(id).map(|&i| &self.steps[i])
    }

    /// The outputs of the main steps whose latest attempt succeeded and that no rollback
    /// may have undone since: a resumed run does not run them again.
    pub fn done(&self) -> HashMap<String, Outputs> {
        self.succeeded(|s| s.rollbacks_before == self.rollbacks)
    }

    /// The outputs of the main steps whose latest attempt succeeded, rolled back or not:
    /// what `resume --from` keeps of the steps before the one it starts at.
    pub fn done_before_rollback(&self) -> HashMap<String, Outputs> {
        self.succeeded(|_| true)
    }

    fn succeeded(&self, keep: impl Fn(&StepState) -> bool) -> HashMap<String, Outputs> {
        self.steps
            .iter()
            .filter(|s| s.phase == Phase::Steps && s.status == StepStatus::Succeeded && keep(s))
            .filter_map(|s| Some((s.id.clone(), s.outputs.clone()?)))
            .collect()
    }

    /// Everything any step recorded as created, in order.
    pub fn resources(&self) -> impl Iterator<Item = &Value> {
        self.steps.iter().flat_map(|s| &s.resources)
    }

    /// Every process group any step started, in order.
    pub fn process_groups(&self) -> impl Iterator<Item = (&str, i32)> {
        self.steps
            .iter()
            .flat_map(|s| s.process_groups.iter().map(|&g| (s.id.as_str(), g)))
    }

    fn step_mut(&mut self, id: &str, action: &str, phase: Phase) -> &mut StepState {
        let i = *self.index.entry(id.to_string()).or_insert_with(|| {
            self.steps.push(StepState {
                id: id.to_string(),
                action: action.to_string(),
                phase,
                status: StepStatus::Interrupted,
                attempts: 0,
                started_at: None,
                finished_at: None,
                error: None,
                reason: None,
                notes: Vec::new(),
                resources: Vec::new(),
                process_groups: Vec::new(),
                rollbacks_before: 0,
                inputs: Value::Null,
                outputs: None,
                attempt: 0,
            });
            self.steps.len() - 1
        });
        &mut self.steps[i]
    }

    /// The step `id`, which must be running (at `attempt`, when given).
    fn running(
        &mut self,
        event: &'static str,
        id: &str,
        attempt: Option<u32>,
    ) -> Result<&mut StepState, IllegalEvent> {
        let s = self.known(event, id, attempt)?;
        if s.status != StepStatus::Running {
            return Err(not_now(event, s));
        }
        Ok(s)
    }

    /// The step `id`, which must be running or waiting to retry.
    fn open(
        &mut self,
        event: &'static str,
        id: &str,
        attempt: Option<u32>,
    ) -> Result<&mut StepState, IllegalEvent> {
        let s = self.known(event, id, attempt)?;
        if !s.status.is_open() {
            return Err(not_now(event, s));
        }
        Ok(s)
    }

    fn known(
        &mut self,
        event: &'static str,
        id: &str,
        attempt: Option<u32>,
    ) -> Result<&mut StepState, IllegalEvent> {
        let Some(&i) = self.index.get(id) else {
            return Err(IllegalEvent::Step {
                event,
                step: id.to_string(),
                status: "not started".into(),
            });
        };
        let s = &mut self.steps[i];
        match attempt {
            Some(got) if got != s.attempt => Err(IllegalEvent::Attempt {
                step: id.to_string(),
                expected: s.attempt,
                got,
            }),
            _ => Ok(s),
        }
    }

    fn no_open_step(&self, event: &'static str) -> Result<(), IllegalEvent> {
        match self.steps.iter().find(|s| s.status.is_open()) {
            Some(s) => Err(IllegalEvent::StepOpen {
                event,
                step: s.id.clone(),
                status: s.status,
            }),
            None => Ok(()),
        }
    }
}

fn not_now(event: &'static str, s: &StepState) -> IllegalEvent {
    IllegalEvent::Step {
        event,
        step: s.id.clone(),
        status: s.status.to_string(),
    }
}

fn in_block(step: &str, phase: Phase, block: Phase) -> Result<(), IllegalEvent> {
    if phase == block {
        Ok(())
    } else {
        Err(IllegalEvent::Block {
            step: step.to_string(),
            phase,
            block,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts: DateTime::from_timestamp(1_800_000_000 + seq as i64, 0).unwrap(),
            event,
        }
    }

    fn started() -> Event {
        Event::RunStarted {
            run_id: "r".into(),
            runbook: "rb".into(),
            file: "rb.yaml".into(),
            digest: "sha256:00".into(),
            platform: "local".into(),
            params: Default::default(),
        }
    }

    fn start(step: &str, phase: Phase, attempt: u32) -> Event {
        Event::StepStarted {
            step: step.into(),
            action: "exec".into(),
            phase,
            attempt,
            inputs: Value::Null,
        }
    }

    fn succeed(step: &str, attempt: u32) -> Event {
        Event::StepSucceeded {
            step: step.into(),
            phase: Phase::Steps,
            attempt,
            outputs: Outputs::new(),
        }
    }

    fn fail(step: &str, attempt: u32, will_retry: bool) -> Event {
        Event::StepFailed {
            step: step.into(),
            phase: Phase::Steps,
            attempt,
            error: "boom".into(),
            transient: will_retry,
            will_retry,
        }
    }

    fn resumed() -> Event {
        Event::RunResumed {
            from: None,
            digest: "sha256:00".into(),
            allow_changed: false,
        }
    }

    fn replay(events: Vec<Event>) -> Result<Replay, (usize, IllegalEvent)> {
        let records: Vec<Record> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| record(i as u64 + 1, e))
            .collect();
        Replay::of(&records)
    }

    #[test]
    fn retries_and_resumes_count_every_attempt_and_a_kill_interrupts() {
        let r = replay(vec![
            started(),
            start("a", Phase::Steps, 1),
            fail("a", 1, true),
            start("a", Phase::Steps, 2),
            succeed("a", 2),
            start("b", Phase::Steps, 1),
            // killed here
            resumed(),
            start("b", Phase::Steps, 1),
        ])
        .unwrap();
        let a = r.step("a").unwrap();
        assert_eq!((a.status, a.attempts), (StepStatus::Succeeded, 2));
        let b = r.step("b").unwrap();
        assert_eq!((b.status, b.attempts), (StepStatus::Running, 2));
        assert_eq!(r.run().unwrap().resumes, 1);
        assert_eq!(r.done().keys().collect::<Vec<_>>(), ["a"]);
        let mut gone = r.clone();
        gone.abandon();
        assert_eq!(gone.run().unwrap().status, RunStatus::Interrupted);
        assert_eq!(gone.step("b").unwrap().status, StepStatus::Interrupted);
    }

    #[test]
    fn events_that_do_not_follow_are_refused_with_their_index() {
        let cases: Vec<(Vec<Event>, (usize, IllegalEvent))> = vec![
            (
                vec![start("a", Phase::Steps, 1)],
                (
                    0,
                    IllegalEvent::NotStarted {
                        event: "step_started",
                    },
                ),
            ),
            (vec![started(), started()], (1, IllegalEvent::StartedTwice)),
            (
                vec![started(), succeed("a", 1)],
                (
                    1,
                    IllegalEvent::Step {
                        event: "step_succeeded",
                        step: "a".into(),
                        status: "not started".into(),
                    },
                ),
            ),
            (
                vec![started(), start("a", Phase::Steps, 1), succeed("a", 2)],
                (
                    2,
                    IllegalEvent::Attempt {
                        step: "a".into(),
                        expected: 1,
                        got: 2,
                    },
                ),
            ),
            (
                vec![
                    started(),
                    start("a", Phase::Steps, 1),
                    fail("a", 1, true),
                    start("a", Phase::Steps, 3),
                ],
                (
                    3,
                    IllegalEvent::Attempt {
                        step: "a".into(),
                        expected: 2,
                        got: 3,
                    },
                ),
            ),
            (
                vec![
                    started(),
                    start("a", Phase::Steps, 1),
                    Event::RunFinished {
                        status: RunStatus::Succeeded,
                    },
                ],
                (
                    2,
                    IllegalEvent::StepOpen {
                        event: "run_finished",
                        step: "a".into(),
                        status: StepStatus::Running,
                    },
                ),
            ),
            (
                vec![started(), start("undo", Phase::Rollback, 1)],
                (
                    1,
                    IllegalEvent::Block {
                        step: "undo".into(),
                        phase: Phase::Rollback,
                        block: Phase::Steps,
                    },
                ),
            ),
            (
                vec![
                    started(),
                    Event::RunFinished {
                        status: RunStatus::Succeeded,
                    },
                    start("a", Phase::Steps, 1),
                ],
                (
                    2,
                    IllegalEvent::Finished {
                        event: "step_started",
                    },
                ),
            ),
            (
                vec![
                    started(),
                    Event::FinallyStarted,
                    Event::RollbackStarted {
                        failed_step: "a".into(),
                    },
                ],
                (
                    2,
                    IllegalEvent::BlockOrder {
                        event: "rollback_started",
                        block: Phase::Finally,
                    },
                ),
            ),
        ];
        for (events, expected) in cases {
            let err = replay(events.clone()).unwrap_err();
            assert_eq!(err, expected, "{events:?}");
        }
    }

    #[test]
    fn a_step_run_again_after_a_finished_run_starts_at_attempt_one() {
        let r = replay(vec![
            started(),
            start("a", Phase::Steps, 1),
            fail("a", 1, false),
            Event::RollbackStarted {
                failed_step: "a".into(),
            },
            start("undo", Phase::Rollback, 1),
            Event::StepSucceeded {
                step: "undo".into(),
                phase: Phase::Rollback,
                attempt: 1,
                outputs: Outputs::new(),
            },
            Event::RunFinished {
                status: RunStatus::RolledBack,
            },
            resumed(),
            start("a", Phase::Steps, 1),
            succeed("a", 1),
            Event::RunFinished {
                status: RunStatus::Succeeded,
            },
        ])
        .unwrap();
        let run = r.run().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.rolled_back_after.as_deref(), Some("a"));
        assert_eq!(r.done().keys().collect::<Vec<_>>(), ["a"]);
        let a = r.step("a").unwrap();
        assert_eq!(
            (a.status, a.attempts, a.error.as_deref()),
            (StepStatus::Succeeded, 2, None)
        );
    }
}

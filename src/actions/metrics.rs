//! The step windows `metrics.capture` measures: the probe says what clients felt, the
//! group's metrics (CloudWatch on aws) say what the nodes went through in the same windows,
//! so the report can show both per step.

use chrono::{DateTime, Utc};

use crate::journal::{Replay, StepStatus};

/// When one step ran: from the start of its latest round of attempts (retries included)
/// to its end.
#[derive(Clone, Debug, PartialEq)]
pub struct StepWindow {
    pub step: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The windows of the steps the run went through, in the order they first started,
/// leaving out `exclude` (the capturing step itself) and skipped steps. A step still
/// running ends at `now`.
pub fn step_windows(replay: &Replay, exclude: &str, now: DateTime<Utc>) -> Vec<StepWindow> {
    replay
        .steps()
        .iter()
        .filter(|s| s.id != exclude && s.status != StepStatus::Skipped)
        .filter_map(|s| {
            Some(StepWindow {
                step: s.id.clone(),
                start: s.started_at?,
                end: s.finished_at.unwrap_or(now),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Event, Phase, Record};

    fn at(secs: i64, event: Event) -> Record {
        Record {
            seq: secs as u64,
            ts: DateTime::from_timestamp(secs, 0).unwrap(),
            event,
        }
    }

    fn started(step: &str, attempt: u32) -> Event {
        Event::StepStarted {
            step: step.into(),
            action: "sleep".into(),
            phase: Phase::Steps,
            attempt,
            inputs: serde_json::Value::Null,
        }
    }

    fn failed(step: &str) -> Event {
        Event::StepFailed {
            step: step.into(),
            phase: Phase::Steps,
            attempt: 1,
            error: "x".into(),
            transient: true,
            will_retry: true,
        }
    }

    fn succeeded(step: &str) -> Event {
        Event::StepSucceeded {
            step: step.into(),
            phase: Phase::Steps,
            attempt: 2,
            outputs: crate::actions::Outputs::new(),
        }
    }

    #[test]
    fn windows_span_every_attempt_and_leave_out_the_capturing_step() {
        let records = vec![
            at(
                99,
                Event::RunStarted {
                    run_id: "r".into(),
                    runbook: "rb".into(),
                    file: "rb.yaml".into(),
                    digest: "sha256:00".into(),
                    platform: "aws".into(),
                    params: Default::default(),
                },
            ),
            at(100, started("a", 1)),
            at(110, failed("a")),
            at(115, started("a", 2)),
            at(130, succeeded("a")),
            at(131, started("b", 1)),
            at(
                135,
                Event::StepSkipped {
                    step: "c".into(),
                    action: "sleep".into(),
                    phase: Phase::Steps,
                    reason: "`when` is false".into(),
                },
            ),
            at(140, started("metrics", 1)),
        ];
        let replay = Replay::of(&records).unwrap();
        let now = DateTime::from_timestamp(150, 0).unwrap();
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(
            step_windows(&replay, "metrics", now),
            [
                StepWindow {
                    step: "a".into(),
                    start: t(100),
                    end: t(130)
                },
                StepWindow {
                    step: "b".into(),
                    start: t(131),
                    end: now
                },
            ]
        );
    }
}

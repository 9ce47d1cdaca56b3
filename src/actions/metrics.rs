//! The step windows `metrics.capture` measures: the probe says what clients felt, the
//! group's metrics (CloudWatch on aws) say what the nodes went through in the same windows,
//! so the report can show both per step.

use chrono::{DateTime, Utc};

use crate::journal::{Event, Record};

/// When one step ran: from its first start to its last end (every attempt included).
#[derive(Clone, Debug, PartialEq)]
pub struct StepWindow {
    pub step: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The windows of the steps in a journal, in the order they started, leaving out
/// `exclude` (the capturing step itself). A step still running ends at `now`.
pub fn step_windows(records: &[Record], exclude: &str, now: DateTime<Utc>) -> Vec<StepWindow> {
    let mut windows: Vec<(StepWindow, bool)> = Vec::new();
    for record in records {
        let (step, started) = match &record.event {
            Event::StepStarted { step, .. } => (step, true),
            Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepInterrupted { step, .. } => (step, false),
            _ => continue,
        };
        if step == exclude {
            continue;
        }
        match windows.iter_mut().find(|(w, _)| &w.step == step) {
            Some((w, open)) => {
                w.end = record.ts;
                *open = started;
            }
            None if started => windows.push((
                StepWindow {
                    step: step.clone(),
                    start: record.ts,
                    end: record.ts,
                },
                true,
            )),
            None => {}
        }
    }
    windows
        .into_iter()
        .map(|(mut w, open)| {
            if open {
                w.end = now;
            }
            w
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Phase;

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
            at(100, started("a", 1)),
            at(110, failed("a")),
            at(115, started("a", 2)),
            at(130, succeeded("a")),
            at(131, started("b", 1)),
            at(140, started("metrics", 1)),
        ];
        let now = DateTime::from_timestamp(150, 0).unwrap();
        let windows = step_windows(&records, "metrics", now);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].step, "a");
        assert_eq!(
            (windows[0].start.timestamp(), windows[0].end.timestamp()),
            (100, 130)
        );
        assert_eq!(windows[1].step, "b");
        assert_eq!(windows[1].end, now, "a step still running ends now");
    }
}

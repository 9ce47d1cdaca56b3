//! The run's memory: an append-only log of events, one JSON object a line.
//!
//! Every event is written and fsync'd before the executor moves on, so after a crash
//! (kill -9 included) the journal says exactly which steps finished. A torn last line —
//! a crash in the middle of a write — is dropped on open; any other damage is reported,
//! never silently skipped. Every string is redacted before it is written.
//!
//! What the events mean is [`Replay`]'s business alone: it is checked before an event is
//! appended and again when the journal is read.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actions::Outputs;
use crate::redact::Redactor;

mod replay;

pub use replay::{IllegalEvent, Replay, RunState, StepState, StepStatus};

/// The block a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Steps,
    Rollback,
    Finally,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Steps => "steps",
            Phase::Rollback => "rollback",
            Phase::Finally => "finally",
        })
    }
}

/// The state of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
    RolledBack,
    /// Stopped at an approval nobody could be asked for; `resume --yes` goes on from there.
    AwaitingApproval,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::AwaitingApproval => "awaiting_approval",
        })
    }
}

/// Something that happened in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        runbook: String,
        file: String,
        digest: String,
        #[serde(alias = "target")]
        platform: String,
        params: serde_json::Map<String, serde_json::Value>,
    },
    RunResumed {
        from: Option<String>,
        digest: String,
        allow_changed: bool,
    },
    StepStarted {
        step: String,
        action: String,
        phase: Phase,
        attempt: u32,
        inputs: serde_json::Value,
    },
    StepNote {
        step: String,
        message: String,
    },
    StepResource {
        step: String,
        resource: serde_json::Value,
    },
    /// A step started a process group (`exec`), written before the command may run: a
    /// resume ends what a killed run left of it before running anything.
    StepProcess {
        step: String,
        pgid: i32,
    },
    StepSucceeded {
        step: String,
        phase: Phase,
        attempt: u32,
        outputs: Outputs,
    },
    StepFailed {
        step: String,
        phase: Phase,
        attempt: u32,
        error: String,
        transient: bool,
        will_retry: bool,
    },
    StepSkipped {
        step: String,
        action: String,
        phase: Phase,
        reason: String,
    },
    StepInterrupted {
        step: String,
        phase: Phase,
        attempt: u32,
    },
    /// An approval step could not ask anyone: the run stops here, without rolling back.
    StepAwaitingApproval {
        step: String,
        phase: Phase,
        attempt: u32,
        message: String,
    },
    RollbackStarted {
        failed_step: String,
    },
    FinallyStarted,
    RunFinished {
        status: RunStatus,
    },
}

impl Event {
    /// The event's name as the journal spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::RunResumed { .. } => "run_resumed",
            Event::StepStarted { .. } => "step_started",
            Event::StepNote { .. } => "step_note",
            Event::StepResource { .. } => "step_resource",
            Event::StepProcess { .. } => "step_process",
            Event::StepSucceeded { .. } => "step_succeeded",
            Event::StepFailed { .. } => "step_failed",
            Event::StepSkipped { .. } => "step_skipped",
            Event::StepInterrupted { .. } => "step_interrupted",
            Event::StepAwaitingApproval { .. } => "step_awaiting_approval",
            Event::RollbackStarted { .. } => "rollback_started",
            Event::FinallyStarted => "finally_started",
            Event::RunFinished { .. } => "run_finished",
        }
    }
}

/// An event with its sequence number and time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// A run's journal, open for appending.
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
    redactor: Redactor,
}

struct Inner {
    file: File,
    next_seq: u64,
    replay: Replay,
}

/// Why a journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the journal {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The disk refused the event: the run cannot go on, it could not be resumed safely.
    #[error("cannot write the journal {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line other than the last does not parse: the file was edited or damaged.
    #[error(
        "the journal {path} is damaged at line {line} (only a torn last line is expected after a crash)"
    )]
    Damaged {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The lines parse but do not tell a possible story: the file was edited or mixed up.
    #[error("the journal {path} is damaged at line {line}")]
    Illegal {
        path: PathBuf,
        line: usize,
        #[source]
        source: IllegalEvent,
    },
    /// The executor tried to record an event that does not follow: a defect, refused
    /// before it could make the journal lie.
    #[error("refusing to add `{event}` to the journal {path}")]
    Refused {
        path: PathBuf,
        event: &'static str,
        #[source]
        source: IllegalEvent,
    },
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` for appending. A torn last line
    /// left by a crash is cut off first, so the next event starts on a line of its own.
    pub fn open(path: &Path, redactor: Redactor) -> Result<Journal, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (records, good_len) = read_records(path)?;
        let replay = replay_records(path, &records)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        if file.metadata().map_err(io_err)?.len() != good_len {
            file.set_len(good_len).map_err(io_err)?;
            file.sync_data().map_err(io_err)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_err)?;
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        Ok(Journal {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                next_seq,
                replay,
            }),
            redactor,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The redacted form of `text`, as it would be journaled.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The run's state as the events so far tell it.
    pub fn replay(&self) -> Replay {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replay
            .clone()
    }

    /// Appends one event and fsyncs it, if it follows from the events before it.
    pub fn append(&self, event: Event) -> Result<Record, JournalError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let record = Record {
            seq: inner.next_seq,
            ts: Utc::now(),
            event,
        };
        inner
            .replay
            .check(&record)
            .map_err(|source| JournalError::Refused {
                path: self.path.clone(),
                event: record.event.name(),
                source,
            })?;
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let value = serde_json::to_value(&record).map_err(|e| write_err(io::Error::other(e)))?;
        let mut line = serde_json::to_string(&self.redactor.redact_json(&value))
            .map_err(|e| write_err(io::Error::other(e)))?;
        line.push('\n');
        inner.file.write_all(line.as_bytes()).map_err(write_err)?;
        inner.file.sync_data().map_err(write_err)?;
        inner.next_seq += 1;
        inner.replay.apply(&record).expect("checked before writing");
        Ok(record)
    }

    /// A step's status line. Best effort: a note that cannot be written must not fail the step.
    pub fn note(&self, step: &str, message: &str) {
        let _ = self.append(Event::StepNote {
            step: step.to_string(),
            message: message.to_string(),
        });
    }

    /// Records a resource a step created (a server process, a stack).
    pub fn resource(&self, step: &str, resource: serde_json::Value) -> Result<(), JournalError> {
        self.append(Event::StepResource {
            step: step.to_string(),
            resource,
        })
        .map(|_| ())
    }
}

/// Reads every record of a journal, tolerating a torn last line.
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    read_records(path).map(|(records, _)| records)
}

/// The run's state as the journal at `path` tells it (empty when there is no journal).
pub fn replay(path: &Path) -> Result<Replay, JournalError> {
    replay_records(path, &read(path)?)
}

fn replay_records(path: &Path, records: &[Record]) -> Result<Replay, JournalError> {
    Replay::of(records).map_err(|(i, source)| JournalError::Illegal {
        path: path.to_path_buf(),
        line: i + 1,
        source,
    })
}

/// The records, and the length of the file up to the end of the last good line.
fn read_records(path: &Path) -> Result<(Vec<Record>, u64), JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(e)),
    };
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut buf = Vec::new();
    let mut line_no = 0;
    let mut pending_damage: Option<(usize, serde_json::Error)> = None;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some((line, source)) = pending_damage.take() {
            // A bad line followed by more lines is damage, not a torn write.
            return Err(JournalError::Damaged {
                path: path.to_path_buf(),
                line,
                source,
            });
        }
        let complete = buf.ends_with(b"\n");
        match serde_json::from_slice::<Record>(&buf) {
            Ok(record) if complete => {
                records.push(record);
                good_len += n as u64;
            }
            Ok(_) => {} // a last line without its newline: the write was cut short
            Err(e) => pending_damage = Some((line_no, e)),
        }
    }
    Ok((records, good_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: u32) -> Event {
        Event::StepNote {
            step: "s".into(),
            message: format!("n{i}"),
        }
    }

    /// A journal whose run is started and whose step `s` runs.
    fn open_running(path: &Path, redactor: Redactor) -> Journal {
        let j = Journal::open(path, redactor).unwrap();
        j.append(Event::RunStarted {
            run_id: "r".into(),
            runbook: "rb".into(),
            file: "rb.yaml".into(),
            digest: "sha256:00".into(),
            platform: "local".into(),
            params: Default::default(),
        })
        .unwrap();
        j.append(Event::StepStarted {
            step: "s".into(),
            action: "exec".into(),
            phase: Phase::Steps,
            attempt: 1,
            inputs: serde_json::Value::Null,
        })
        .unwrap();
        j
    }

    #[test]
    fn torn_last_line_is_dropped_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = open_running(&path, Redactor::default());
        j.append(note(1)).unwrap();
        drop(j);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":4,\"ts\":\"2026-");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap().len(), 3);
        let j = Journal::open(&path, Redactor::default()).unwrap();
        let r = j.append(note(2)).unwrap();
        assert_eq!(r.seq, 4);
        let all = read(&path).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].event, note(2));
        assert_eq!(j.replay().step("s").unwrap().notes, ["n1", "n2"]);
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        drop(open_running(&path, Redactor::default()));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        assert!(matches!(
            read(&path),
            Err(JournalError::Damaged { line: 1, .. })
        ));
    }

    #[test]
    fn an_event_that_does_not_follow_is_refused_on_append_and_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = open_running(&path, Redactor::default());
        let finished = Event::RunFinished {
            status: RunStatus::Succeeded,
        };
        let err = j.append(finished.clone()).unwrap_err();
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            format!(
                "refusing to add `run_finished` to the journal {}: `run_finished` while step `s` is running",
                path.display()
            )
        );
        assert_eq!(read(&path).unwrap().len(), 2, "nothing was written");
        drop(j);
        // The same event written behind the journal's back is caught when read.
        let line = serde_json::to_string(&Record {
            seq: 3,
            ts: Utc::now(),
            event: finished,
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{line}\n")).unwrap();
        let err = replay(&path).unwrap_err();
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            format!(
                "the journal {} is damaged at line 3: `run_finished` while step `s` is running",
                path.display()
            )
        );
        assert!(Journal::open(&path, Redactor::default()).is_err());
    }

    #[test]
    fn secrets_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let redactor = Redactor::default();
        redactor.add("t0ps3cret");
        let j = open_running(&path, redactor);
        j.note("s", "password is t0ps3cret, url redis://:pw9@h:1");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("step_note"), "{text}");
        assert!(
            !text.contains("t0ps3cret") && !text.contains("pw9"),
            "{text}"
        );
    }
}

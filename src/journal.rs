//! The run's memory: an append-only log of events, one JSON object a line.
//!
//! Every event is written and fsync'd before the executor moves on, so after a crash
//! (kill -9 included) the journal says exactly which steps finished. A torn last line —
//! a crash in the middle of a write — is dropped on open; any other damage is reported,
//! never silently skipped. Every string is redacted before it is written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actions::Outputs;
use crate::redact::Redactor;

/// The block a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Steps,
    Rollback,
    Finally,
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
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::RolledBack => "rolled_back",
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
    RollbackStarted {
        failed_step: String,
    },
    FinallyStarted,
    RunFinished {
        status: RunStatus,
    },
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
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A line other than the last does not parse: the file was edited or damaged.
    #[error(
        "the journal {path} is damaged at line {line}: {why}; it was not written by an interrupted runbook (only a torn last line is expected)"
    )]
    Damaged {
        path: PathBuf,
        line: usize,
        why: String,
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
            inner: Mutex::new(Inner { file, next_seq }),
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

    /// Appends one event and fsyncs it.
    pub fn append(&self, event: Event) -> io::Result<Record> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let record = Record {
            seq: inner.next_seq,
            ts: Utc::now(),
            event,
        };
        let value = serde_json::to_value(&record).map_err(io::Error::other)?;
        let mut line =
            serde_json::to_string(&self.redactor.redact_json(&value)).map_err(io::Error::other)?;
        line.push('\n');
        inner.file.write_all(line.as_bytes())?;
        inner.file.sync_data()?;
        inner.next_seq += 1;
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
    pub fn resource(&self, step: &str, resource: serde_json::Value) -> io::Result<()> {
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
    let mut pending_damage: Option<(usize, String)> = None;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some((line, why)) = pending_damage.take() {
            // A bad line followed by more lines is damage, not a torn write.
            return Err(JournalError::Damaged {
                path: path.to_path_buf(),
                line,
                why,
            });
        }
        let complete = buf.ends_with(b"\n");
        match serde_json::from_slice::<Record>(&buf) {
            Ok(record) if complete => {
                records.push(record);
                good_len += n as u64;
            }
            Ok(_) => {} // a last line without its newline: the write was cut short
            Err(e) => pending_damage = Some((line_no, e.to_string())),
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

    #[test]
    fn torn_last_line_is_dropped_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path, Redactor::default()).unwrap();
        j.append(note(1)).unwrap();
        j.append(note(2)).unwrap();
        drop(j);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":3,\"ts\":\"2026-");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        let j = Journal::open(&path, Redactor::default()).unwrap();
        let r = j.append(note(3)).unwrap();
        assert_eq!(r.seq, 3);
        let all = read(&path).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].event, note(3));
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path, Redactor::default()).unwrap();
        j.append(note(1)).unwrap();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        assert!(matches!(
            read(&path),
            Err(JournalError::Damaged { line: 1, .. })
        ));
    }

    #[test]
    fn secrets_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let redactor = Redactor::default();
        redactor.add("t0ps3cret");
        let j = Journal::open(&path, redactor).unwrap();
        j.note("s", "password is t0ps3cret, url redis://:pw9@h:1");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("t0ps3cret") && !text.contains("pw9"),
            "{text}"
        );
    }
}

//! The run's memory: an append-only log of events, one JSON object a line.
//!
//! Every event is written and fsync'd before the executor moves on, so after a crash
//! (kill -9 included) the journal says exactly which steps finished. A torn last line —
//! a crash in the middle of a write — is dropped on open; any other damage is reported,
//! never silently skipped. Every string is redacted before it is written. With the state on
//! S3, each line also reaches the journal's [`Mirror`] there before `append` returns.
//!
//! Each line carries its `seq` (1, 2, 3, …) and `prev`, the sha256 of the line before it
//! (of the empty text for the first), so a line deleted, repeated, moved or edited breaks
//! the chain at the line after it: a journal that lost its past cannot pass for a shorter one.
//! A chain cannot tell a journal that lost its last lines from one whose writer was
//! killed — any beginning of a sound chain is sound — nor an edit of the very last line;
//! so `journal.head`, rewritten after each line, names the last line written (its `seq`
//! and digest), and a journal that ends before it, or ends in another line, is damaged.
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

/// A copy of the journal elsewhere (state on S3) that each line must reach before the run
/// moves on.
pub trait Mirror: Send + Sync {
    /// Called once `record`'s line and the head are written here, with the journal's lock
    /// held, so lines reach the copy in order; an error fails the append.
    fn appended(&self, record: &Record) -> io::Result<()>;
    /// Brings the copy to the journal as it is here (after a repair).
    fn push_journal(&self) -> io::Result<()>;
}

/// A run's journal, open for appending.
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
    redactor: Redactor,
    mirror: Option<std::sync::Arc<dyn Mirror>>,
}

struct Inner {
    file: File,
    next_seq: u64,
    /// The digest of the last line written, which the next line names as `prev`.
    prev: String,
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
    /// A line is not where the chain says it should be: one was deleted, repeated, moved
    /// or edited.
    #[error("the journal {path} is damaged at line {line}: {why}")]
    Broken {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// `journal.head` names a later line than the journal's last: lines were lost at the
    /// end (a chain alone cannot tell that from a run killed after its last line).
    #[error(
        "the journal {path} ends at line {lines}, but {written} lines were written (as journal.head records): its last lines were lost"
    )]
    Truncated {
        path: PathBuf,
        lines: usize,
        written: u64,
    },
    /// The run has its `run.json` but its journal lost every line: nothing tells what ran.
    #[error(
        "the journal {path} is {what} although the run's run.json exists: what the run did is lost"
    )]
    Lost { path: PathBuf, what: &'static str },
    /// A line without `prev`: the journal was written before lines carried digests.
    #[error(
        "the journal {path} has no digest at line {line}: it was written by an older runbook, \
         before journals carried them, and cannot be checked; inspect or finish that run with \
         the version that started it, or start a new run"
    )]
    NoDigest { path: PathBuf, line: usize },
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
        let scan = scan(path)?;
        if let Some(damage) = scan.damage {
            return Err(damage);
        }
        let good_len = scan.good_len();
        let Scan {
            records,
            last_digest,
            ..
        } = scan;
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
                prev: last_digest,
                replay,
            }),
            redactor,
            mirror: None,
        })
    }

    /// This journal, with each line also written to `mirror`.
    pub fn mirrored(mut self, mirror: std::sync::Arc<dyn Mirror>) -> Journal {
        self.mirror = Some(mirror);
        self
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
        let value = self.redactor.redact_json(
            &serde_json::to_value(&record).map_err(|e| write_err(io::Error::other(e)))?,
        );
        let line = encode_line(value, &inner.prev).map_err(|e| write_err(io::Error::other(e)))?;
        inner
            .file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(write_err)?;
        inner.file.sync_data().map_err(write_err)?;
        inner.next_seq += 1;
        inner.prev = crate::load::digest(&line);
        inner.replay.apply(&record).expect("checked before writing");
        write_head(&self.path, record.seq, &inner.prev).map_err(write_err)?;
        if let Some(mirror) = &self.mirror {
            mirror.appended(&record).map_err(write_err)?;
        }
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
    let scan = scan(path)?;
    match scan.damage {
        Some(damage) => Err(damage),
        None => Ok(scan.records),
    }
}

/// The run's state as the journal at `path` tells it (empty when there is no journal).
pub fn replay(path: &Path) -> Result<Replay, JournalError> {
    replay_records(path, &read(path)?)
}

/// The journal lines of `records`, chained as [`Journal::append`] writes them: for a
/// journal written by other means (an import, a test) that must read back as sound.
pub fn encode(records: &[Record]) -> Result<String, serde_json::Error> {
    let mut text = String::new();
    let mut prev = crate::load::digest("");
    for record in records {
        let line = encode_line(serde_json::to_value(record)?, &prev)?;
        prev = crate::load::digest(&line);
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// One line: the record with `prev` (the digest of the line before) after `seq` and `ts`.
fn encode_line(record: serde_json::Value, prev: &str) -> Result<String, serde_json::Error> {
    let serde_json::Value::Object(fields) = record else {
        return serde_json::to_string(&record);
    };
    let mut ordered = serde_json::Map::new();
    let mut rest = fields.into_iter();
    for (k, v) in rest.by_ref() {
        let last_head = k == "ts";
        ordered.insert(k, v);
        if last_head {
            break;
        }
    }
    ordered.insert("prev".into(), prev.into());
    ordered.extend(rest);
    serde_json::to_string(&ordered)
}

/// What `journal.head` holds: the last line written to the journal.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    digest: String,
}

/// Where the head of the journal at `path` is kept.
fn head_path(path: &Path) -> PathBuf {
    path.with_extension("head")
}

/// Records line `seq`, whose digest is `digest`, as the last written; atomically, so a
/// crash leaves the old head or the new one. A crash between a line and its head leaves
/// the head one line behind, which reading tolerates.
fn write_head(path: &Path, seq: u64, digest: &str) -> io::Result<()> {
    let head = head_path(path);
    let tmp = head.with_extension("head.tmp");
    let text = serde_json::to_string(&Head {
        seq,
        digest: digest.to_string(),
    })
    .map_err(io::Error::other)?;
    let mut file = File::create(&tmp)?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_data()?;
    std::fs::rename(tmp, head)
}

/// Makes the journal's last sound line its head again: after a repair cut it back.
pub fn reseal(path: &Path) -> Result<(), JournalError> {
    let mut scan = scan_chain(path)?;
    if let Some(damage) = scan.damage.take() {
        return Err(damage);
    }
    let written = |source| JournalError::Write {
        path: path.to_path_buf(),
        source,
    };
    match scan.records.last() {
        Some(last) => write_head(path, last.seq, &scan.last_digest).map_err(written),
        None => match std::fs::remove_file(head_path(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(written(e)),
            _ => Ok(()),
        },
    }
}

/// Checks the sound chain of `scan` against the journal's head, if it has one (a journal
/// written by other means, see [`encode`], has none and is checked by its chain alone).
fn check_head(path: &Path, scan: &mut Scan) -> Result<(), JournalError> {
    let Some(last) = scan.records.last() else {
        // No line at all: the run's own checks say the journal is lost.
        return Ok(());
    };
    let text = match std::fs::read_to_string(head_path(path)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(JournalError::Io {
                path: head_path(path),
                source,
            });
        }
    };
    let Ok(head) = serde_json::from_str::<Head>(&text) else {
        scan.damage = Some(JournalError::Broken {
            path: path.to_path_buf(),
            line: scan.records.len(),
            why: format!(
                "{} does not say which line was written last",
                head_path(path).display()
            ),
        });
        return Ok(());
    };
    if head.seq > last.seq {
        scan.damage = Some(JournalError::Truncated {
            path: path.to_path_buf(),
            lines: scan.records.len(),
            written: head.seq,
        });
    } else if head.seq == last.seq && head.digest != scan.last_digest {
        // The edited line is not sound: what comes before it is.
        scan.records.pop();
        scan.ends.pop();
        scan.damage = Some(JournalError::Broken {
            path: path.to_path_buf(),
            line: scan.records.len() + 1,
            why: "it is not the line that was written last (a line was edited or replaced)".into(),
        });
    }
    Ok(())
}

fn replay_records(path: &Path, records: &[Record]) -> Result<Replay, JournalError> {
    Replay::of(records).map_err(|(i, source)| JournalError::Illegal {
        path: path.to_path_buf(),
        line: i + 1,
        source,
    })
}

/// A journal read up to its first damage.
pub struct Scan {
    /// The records before the damage (all of them when there is none).
    pub records: Vec<Record>,
    /// Where each of `records`' lines ends in the file.
    pub ends: Vec<u64>,
    /// The digest of the last of `records`' lines.
    last_digest: String,
    /// How many lines the file has, a torn last one included.
    pub lines: usize,
    /// The first damage, if any; a torn last line is not damage.
    pub damage: Option<JournalError>,
}

impl Scan {
    /// The length of the file up to the end of the last of `records`.
    pub fn good_len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }
}

/// Reads a journal line by line, checking that each line parses, follows the previous
/// one's digest and carries the next `seq`, and stops at the first line that does not;
/// then that it ends in the line its head names.
pub fn scan(path: &Path) -> Result<Scan, JournalError> {
    let mut scan = scan_chain(path)?;
    if scan.damage.is_none() {
        check_head(path, &mut scan)?;
    }
    Ok(scan)
}

/// [`scan`] without the head: the chain alone.
fn scan_chain(path: &Path) -> Result<Scan, JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut scan = Scan {
        records: Vec::new(),
        ends: Vec::new(),
        last_digest: crate::load::digest(""),
        lines: 0,
        damage: None,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
        Err(e) => return Err(io_err(e)),
    };
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut pending: Option<JournalError> = None;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        scan.lines += 1;
        if let Some(damage) = pending.take() {
            // A bad line followed by more lines is damage, not a torn write.
            scan.damage = Some(damage);
            // Count the remaining lines all the same.
            while reader.read_until(b'\n', &mut buf).map_err(io_err)? > 0 {
                scan.lines += 1;
                buf.clear();
            }
            break;
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            // A last line without its newline: the write was cut short.
            break;
        };
        match check_line(path, scan.lines, line, &scan) {
            Ok((record, digest)) => {
                scan.records.push(record);
                scan.ends.push(scan.good_len() + n as u64);
                scan.last_digest = digest;
            }
            Err(damage) => pending = Some(damage),
        }
    }
    // A damaged line that is the last one is what a torn write may leave, except when it
    // parses but breaks the chain: that is an edit.
    if let Some(damage @ (JournalError::Broken { .. } | JournalError::NoDigest { .. })) = pending {
        scan.damage = Some(damage);
    }
    Ok(scan)
}

/// The record of line `line_no` and its digest, if it follows the lines before it.
fn check_line(
    path: &Path,
    line_no: usize,
    line: &[u8],
    before: &Scan,
) -> Result<(Record, String), JournalError> {
    let damaged = |source| JournalError::Damaged {
        path: path.to_path_buf(),
        line: line_no,
        source,
    };
    let broken = |why: String| JournalError::Broken {
        path: path.to_path_buf(),
        line: line_no,
        why,
    };
    let mut value: serde_json::Value = serde_json::from_slice(line).map_err(damaged)?;
    let prev = value.as_object_mut().and_then(|o| o.remove("prev"));
    let record: Record = serde_json::from_value(value).map_err(damaged)?;
    let expected = before.records.last().map_or(1, |r| r.seq + 1);
    if record.seq != expected {
        return Err(broken(format!(
            "`seq` is {} where {expected} should follow (a line was deleted, repeated or moved)",
            record.seq
        )));
    }
    match prev {
        None => {
            return Err(JournalError::NoDigest {
                path: path.to_path_buf(),
                line: line_no,
            });
        }
        Some(serde_json::Value::String(p)) if p == before.last_digest => {}
        Some(_) if line_no == 1 => {
            return Err(broken(
                "its `prev` is not the digest of the empty text, as a first line's is (lines were removed before it)".into(),
            ));
        }
        Some(_) => {
            return Err(broken(format!(
                "its `prev` is not the digest of line {} (a line was edited or replaced)",
                line_no - 1
            )));
        }
    }
    let text = std::str::from_utf8(line).map_err(|e| broken(format!("not UTF-8 ({e})")))?;
    Ok((record, crate::load::digest(text)))
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
        let mut records = read(&path).unwrap();
        records.push(Record {
            seq: 3,
            ts: Utc::now(),
            event: finished,
        });
        std::fs::write(&path, encode(&records).unwrap()).unwrap();
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

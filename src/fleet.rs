//! Fleets: one ordinary run per value of a parameter (`runbook run FILE --for-each
//! NAME=VALUES`), a few at a time, stopping new starts after too many failures — the
//! targets, max-concurrency and max-errors of SSM Automation.
//!
//! Each member is a child process (`runbook run` or `runbook resume` of this very
//! executable), so it has its own lock, journal, probe and report exactly as a run started
//! by hand, and a member that dies takes no other with it. The fleet's own record
//! (`<state-dir>/fleets/<fleet-id>/fleet.json`) only says which value became which run;
//! how each member stands is read from that run's journal, never stored twice.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use crate::cli::Global;
use crate::error::Outcome;
use crate::journal::RunStatus;
use crate::platform::PlatformKind;
use crate::progress::FleetProgress;
use crate::runbook::{FleetApproval, Runbook};
use crate::state::{self, StateDir};

/// `--for-each NAME=VALUES`: the param each member sets and its values, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForEach {
    pub name: String,
    pub values: Vec<String>,
}

/// Reads `NAME=a,b,c` or `NAME=@file` (one value a line; blank lines and `#` comments
/// skipped). Values are trimmed, non-empty and distinct: one run per value.
pub fn parse_for_each(text: &str) -> Result<ForEach, String> {
    let Some((name, values)) = text.split_once('=') else {
        return Err(format!(
            "`{text}` is not NAME=VALUES; write e.g. `--for-each cache=orders,sessions` or `--for-each cache=@caches.txt`"
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("the param name before `=` is missing".into());
    }
    let values: Vec<String> = match values.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the values file {path}: {e}"))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        }
        None => values.split(',').map(|v| v.trim().to_string()).collect(),
    };
    if values.is_empty() || values.iter().any(String::is_empty) {
        return Err(format!(
            "every value of `{name}` must be non-empty; separate values with `,` or give one a line in a file (`{name}=@FILE`)"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = values.iter().find(|v| !seen.insert(v.as_str())) {
        return Err(format!(
            "`{twice}` is given twice: a fleet makes one run per value"
        ));
    }
    Ok(ForEach {
        name: name.to_string(),
        values,
    })
}

/// What `fleet.json` holds: how the fleet was asked for, and which value became which run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetRecord {
    pub id: String,
    /// The runbook's `name`.
    pub runbook: String,
    /// The runbook file (absolute) and its digest when the fleet started.
    pub file: PathBuf,
    pub digest: String,
    pub platform: PlatformKind,
    pub started_at: DateTime<Utc>,
    /// The param each member sets.
    pub param: String,
    pub max_concurrency: usize,
    pub max_errors: Option<usize>,
    pub approval: FleetApproval,
    /// Flags every member gets: `--var` of non-secret params (secrets are never kept:
    /// give them again on resume), `--vars-file`, and the AWS and resolve flags.
    pub vars: Vec<String>,
    pub vars_file: Option<PathBuf>,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub resolve: Vec<String>,
    pub members: Vec<Member>,
}

/// One value of the fleet and the run it became.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub value: String,
    /// The run, once its process said its id.
    pub run_id: Option<String>,
    /// Why the member's process ended before it had a run (invalid input, for example).
    pub start_error: Option<String>,
}

/// How a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberStatus {
    NotStarted,
    /// Its process ended before it had a run.
    FailedToStart,
    /// Its run's journal cannot be read or trusted.
    Damaged,
    Run(RunStatus),
}

impl MemberStatus {
    /// Whether it counts against `--max-errors`.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            MemberStatus::FailedToStart
                | MemberStatus::Damaged
                | MemberStatus::Run(
                    RunStatus::Failed | RunStatus::RolledBack | RunStatus::Interrupted
                )
        )
    }
}

impl std::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberStatus::NotStarted => f.write_str("not_started"),
            MemberStatus::FailedToStart => f.write_str("failed_to_start"),
            MemberStatus::Damaged => f.write_str("damaged"),
            MemberStatus::Run(s) => s.fmt(f),
        }
    }
}

impl Serialize for MemberStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A member as its run's journal tells it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    pub value: String,
    pub run_id: Option<String>,
    pub status: MemberStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_s: Option<f64>,
    /// Why it failed to start, or why its journal is not believed.
    pub error: Option<String>,
}

/// Why a fleet's record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a fleet's record")]
    Bad {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads `fleet.json` of a fleet folder.
pub fn read_record(dir: &Path) -> Result<FleetRecord, FleetError> {
    let path = dir.join("fleet.json");
    let text = std::fs::read_to_string(&path).map_err(|source| FleetError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| FleetError::Bad { path, source })
}

/// Writes `fleet.json` atomically: a crash leaves the old record or the new one.
pub fn write_record(dir: &Path, record: &FleetRecord) -> Result<(), FleetError> {
    let path = dir.join("fleet.json");
    let tmp = dir.join("fleet.json.tmp");
    let write = || -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| FleetError::Write {
        path: path.clone(),
        source,
    })
}

/// How member `m` stands, read from its run in `state`.
pub fn view(state: &StateDir, m: &Member) -> MemberView {
    let mut v = MemberView {
        value: m.value.clone(),
        run_id: m.run_id.clone(),
        status: MemberStatus::NotStarted,
        started_at: None,
        finished_at: None,
        duration_s: None,
        error: m.start_error.clone(),
    };
    let Some(id) = &m.run_id else {
        if m.start_error.is_some() {
            v.status = MemberStatus::FailedToStart;
        }
        return v;
    };
    match state.run_dir(id).and_then(|dir| state::summarize(&dir)) {
        Ok(s) => {
            v.status = MemberStatus::Run(s.status);
            v.started_at = Some(s.started_at);
            v.finished_at = s.finished_at;
            v.duration_s = s
                .finished_at
                .map(|f| (f - s.started_at).num_milliseconds() as f64 / 1000.0);
        }
        Err(e) => {
            v.status = MemberStatus::Damaged;
            v.error = Some(crate::error::chain(&e));
        }
    }
    v
}

/// A fleet as `show` and `report` see it: the record and every member's standing.
#[derive(Clone, Debug, Serialize)]
pub struct FleetSummary {
    pub id: String,
    pub runbook: String,
    pub platform: PlatformKind,
    pub param: String,
    pub status: FleetStatus,
    pub started_at: DateTime<Utc>,
    pub max_concurrency: usize,
    pub max_errors: Option<usize>,
    pub approval: FleetApproval,
    pub members: Vec<MemberView>,
}

/// Reads the fleet in `dir` and each member's run in `state`.
pub fn summarize(state: &StateDir, dir: &Path) -> Result<FleetSummary, FleetError> {
    let r = read_record(dir)?;
    let members: Vec<MemberView> = r.members.iter().map(|m| view(state, m)).collect();
    Ok(FleetSummary {
        status: status(&members, crate::lock::RunLock::is_held(dir)),
        id: r.id,
        runbook: r.runbook,
        platform: r.platform,
        param: r.param,
        started_at: r.started_at,
        max_concurrency: r.max_concurrency,
        max_errors: r.max_errors,
        approval: r.approval,
        members,
    })
}

/// The fleet report: every member with what its clients felt and its key parity, from
/// its run's own report. Versioned like a run's report (`format_version`).
#[derive(Clone, Debug, Serialize)]
pub struct FleetReport {
    pub format_version: u32,
    pub fleet: FleetSummary,
    pub members: Vec<MemberReport>,
}

/// One member of the fleet report.
#[derive(Clone, Debug, Serialize)]
pub struct MemberReport {
    pub value: String,
    pub run_id: Option<String>,
    pub status: MemberStatus,
    pub duration_s: Option<f64>,
    /// The run report's outcome: client impact (`unwritable_s`, `disconnects`, …) and
    /// `parity`; `None` without a run or when its report cannot be built.
    pub outcome: Option<crate::report::model::Outcome>,
    /// Why there is no outcome although there is a run.
    pub error: Option<String>,
}

/// The version of the fleet report's JSON.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// Builds the fleet report of the fleet in `dir`.
pub fn report(state: &StateDir, dir: &Path) -> Result<FleetReport, FleetError> {
    let fleet = summarize(state, dir)?;
    let members = fleet
        .members
        .iter()
        .map(|m| {
            let built = m.run_id.as_ref().map(|id| {
                state
                    .run_dir(id)
                    .map_err(|e| crate::error::chain(&e))
                    .and_then(|d| crate::report::build(&d).map_err(|e| crate::error::chain(&e)))
            });
            let (outcome, error) = match built {
                None => (None, m.error.clone()),
                Some(Ok(r)) => (Some(r.outcome), None),
                Some(Err(e)) => (None, Some(e)),
            };
            MemberReport {
                value: m.value.clone(),
                run_id: m.run_id.clone(),
                status: m.status,
                duration_s: m.duration_s,
                outcome,
                error,
            }
        })
        .collect();
    Ok(FleetReport {
        format_version: REPORT_FORMAT_VERSION,
        fleet,
        members,
    })
}

/// The fleet report as a table: Markdown (`md`) or aligned text.
pub fn report_table(r: &FleetReport, markdown: bool) -> String {
    let f = &r.fleet;
    let mut out = String::new();
    let heading = format!(
        "fleet {}: {} on {}, for each {}",
        f.id, f.runbook, f.platform, f.param
    );
    let status = format!("status: {} ({})", f.status, counts(&f.members));
    if markdown {
        out.push_str(&format!("# {heading}\n\n{status}\n\n"));
    } else {
        out.push_str(&format!("{heading}\n{status}\n\n"));
    }
    let head = [
        "VALUE",
        "RUN",
        "STATUS",
        "DURATION",
        "UNWRITABLE",
        "UNREADABLE",
        "DISCONNECTS",
        "ERRORS",
        "LOST WRITES",
        "PARITY",
    ];
    let rows: Vec<[String; 10]> = r
        .members
        .iter()
        .map(|m| {
            let o = m.outcome.as_ref();
            let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |d| format!("{d:.1}s"));
            let count = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
            let probed = o.is_some_and(|o| o.probed != crate::report::model::Coverage::None);
            let impact = |v: Option<u64>| if probed { count(v) } else { "-".to_string() };
            [
                crate::redact::printable(&m.value).into_owned(),
                m.run_id.clone().unwrap_or_else(|| "-".into()),
                m.status.to_string(),
                secs(m.duration_s),
                secs(o.and_then(|o| o.unwritable_s)),
                secs(o.and_then(|o| o.unreadable_s)),
                impact(o.map(|o| o.disconnects as u64)),
                impact(o.map(|o| o.errors as u64)),
                impact(o.map(|o| o.lost_writes)),
                match o.and_then(|o| o.parity.as_ref()) {
                    None => "-".into(),
                    Some(p) if p.equal => format!("equal ({} keys)", p.keys_checked),
                    Some(p) => format!("{} of {} keys differ", p.mismatches, p.keys_checked),
                },
            ]
        })
        .collect();
    if markdown {
        out.push_str(&format!("| {} |\n", head.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
        for row in &rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    } else {
        let widths: Vec<usize> = (0..head.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([head[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        out.push_str(&line(head.to_vec()));
        for row in &rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
    }
    let problems: Vec<String> = r
        .members
        .iter()
        .filter_map(|m| {
            m.error.as_ref().map(|e| {
                format!(
                    "{}: {}",
                    crate::redact::printable(&m.value),
                    crate::redact::printable(e)
                )
            })
        })
        .collect();
    if !problems.is_empty() {
        out.push_str(if markdown {
            "\n## Problems\n\n"
        } else {
            "\nproblems:\n"
        });
        for p in problems {
            out.push_str(&format!("- {p}\n"));
        }
    }
    out
}

/// The state of a whole fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    /// A process drives it now.
    Running,
    /// Every member succeeded.
    Succeeded,
    /// Some member failed (or could not start, or is damaged).
    Failed,
    /// No member failed, but some did not finish: never started, or awaiting approval.
    Incomplete,
}

impl std::fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FleetStatus::Running => "running",
            FleetStatus::Succeeded => "succeeded",
            FleetStatus::Failed => "failed",
            FleetStatus::Incomplete => "incomplete",
        })
    }
}

/// The fleet's status from its members', `live` when a process holds its lock.
pub fn status(members: &[MemberView], live: bool) -> FleetStatus {
    if live {
        FleetStatus::Running
    } else if members
        .iter()
        .all(|m| m.status == MemberStatus::Run(RunStatus::Succeeded))
    {
        FleetStatus::Succeeded
    } else if members.iter().any(|m| m.status.is_error()) {
        FleetStatus::Failed
    } else {
        FleetStatus::Incomplete
    }
}

/// `3 succeeded, 1 failed, 2 not_started`: how many members stand how, in a fixed order.
pub fn counts(members: &[MemberView]) -> String {
    let mut by: Vec<(String, usize)> = Vec::new();
    for m in members {
        let s = m.status.to_string();
        match by.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => by.push((s, 1)),
        }
    }
    by.sort_by_key(|(k, _)| order(k));
    by.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn order(status: &str) -> usize {
    [
        "succeeded",
        "running",
        "awaiting_approval",
        "failed",
        "rolled_back",
        "interrupted",
        "failed_to_start",
        "damaged",
        "not_started",
    ]
    .iter()
    .position(|s| *s == status)
    .unwrap_or(usize::MAX)
}

/// What a member's process is to do.
#[derive(Clone, Debug)]
pub enum Work {
    /// `runbook run FILE --var NAME=VALUE`.
    Start,
    /// `runbook resume RUN_ID`.
    Resume(String),
}

/// How the members' processes are started.
pub struct Launch {
    /// `--state-dir` as this process was given it (members run in the same working folder).
    pub state_dir: PathBuf,
    /// `--var` flags given to this command now (secrets included: they are not kept).
    pub vars: Vec<String>,
    /// `--yes` for every member.
    pub yes: bool,
    /// `--allow-changed` for resumed members.
    pub allow_changed: bool,
}

/// The arguments of member `value`'s process.
fn member_args(record: &FleetRecord, launch: &Launch, value: &str, work: &Work) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    flag(&mut args, "--state-dir", &launch.state_dir);
    if let Some(f) = &record.vars_file {
        flag(&mut args, "--vars-file", f);
    }
    if let Some(p) = &record.profile {
        flag(&mut args, "--profile", p);
    }
    if let Some(r) = &record.region {
        flag(&mut args, "--region", r);
    }
    if let Some(u) = &record.endpoint_url {
        flag(&mut args, "--endpoint-url", u);
    }
    for r in &record.resolve {
        flag(&mut args, "--resolve", r);
    }
    match work {
        Work::Start => {
            // Kept vars first, the ones given now after them: the later one wins.
            let given: Vec<&str> = launch.vars.iter().filter_map(|v| var_name(v)).collect();
            for v in &record.vars {
                if !var_name(v).is_some_and(|n| given.contains(&n)) {
                    flag(&mut args, "--var", v);
                }
            }
            for v in &launch.vars {
                flag(&mut args, "--var", v);
            }
            flag(&mut args, "--var", format!("{}={value}", record.param));
            args.push("run".into());
            args.push(record.file.clone().into());
            flag(&mut args, "--platform", record.platform.to_string());
        }
        Work::Resume(id) => {
            for v in &launch.vars {
                flag(&mut args, "--var", v);
            }
            args.push("resume".into());
            args.push(id.into());
            if launch.allow_changed {
                args.push("--allow-changed".into());
            }
        }
    }
    if launch.yes {
        args.push("--yes".into());
    }
    args
}

/// Adds `name value` to `args`.
fn flag(args: &mut Vec<OsString>, name: &str, value: impl AsRef<std::ffi::OsStr>) {
    args.push(name.into());
    args.push(value.as_ref().to_os_string());
}

/// The name of a `NAME=VALUE` flag.
pub fn var_name(var: &str) -> Option<&str> {
    var.split_once('=').map(|(n, _)| n.trim())
}

/// What a member's process, or a signal, tells the fleet.
enum Note {
    RunId(usize, String),
    Line(usize, String),
    Ended(usize, Option<String>),
    /// Ctrl+C (`false`: the terminal sent it to every member too) or SIGTERM (`true`:
    /// members are sent one each).
    Interrupt(bool),
}

/// Sends a note at each Ctrl+C and SIGTERM.
fn watch_signals(tx: mpsc::UnboundedSender<Note>) {
    tokio::spawn(async move {
        let mut interrupts = crate::executor::Interrupts::new();
        loop {
            let forward = interrupts.next().await;
            if tx.send(Note::Interrupt(forward)).is_err() {
                return;
            }
        }
    });
}

/// Runs `work` (member index and what to do) at most `max_concurrency` at once, starting
/// no new member once `max_errors` of them failed; members already running finish.
/// `record` is saved whenever a member gets its run.
pub async fn drive(
    dir: &Path,
    record: &mut FleetRecord,
    work: Vec<(usize, Work)>,
    launch: &Launch,
) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe()?;
    let state = StateDir::new(&launch.state_dir);
    let logs = dir.join("members");
    std::fs::create_dir_all(&logs)?;
    let mut queue: VecDeque<(usize, Work)> = work.into();
    let (tx, mut rx) = mpsc::unbounded_channel::<Note>();
    let mut progress = FleetProgress::new();
    let mut running = 0usize;
    let mut errors = 0usize;
    let mut stop_said = false;
    let mut last_lines: HashMap<usize, String> = HashMap::new();
    let limit = record.max_errors.unwrap_or(usize::MAX);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut interrupted = false;
    watch_signals(tx.clone());
    loop {
        while running < record.max_concurrency && errors < limit && !interrupted {
            let Some((index, what)) = queue.pop_front() else {
                break;
            };
            let value = record.members[index].value.clone();
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(member_args(record, launch, &value, &what))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(false);
            record.members[index].start_error = None;
            progress.start(index, &value);
            progress.line(&match &what {
                Work::Start => format!("[{value}] starting"),
                Work::Resume(id) => format!("[{value}] resuming run {id}"),
            });
            running += 1;
            let log = logs.join(format!("{}.log", index + 1));
            tokio::spawn(member(index, cmd, log, tx.clone(), stop_rx.clone()));
        }
        if running == 0 {
            break;
        }
        let Some(note) = rx.recv().await else { break };
        match note {
            Note::RunId(index, id) => {
                record.members[index].run_id = Some(id);
                write_record(dir, record)?;
            }
            Note::Line(index, line) => {
                progress.member_line(index, &record.members[index].value, &line);
                last_lines.insert(index, line);
            }
            Note::Interrupt(forward) => {
                if !std::mem::replace(&mut interrupted, true) {
                    progress.line(
                        "interrupted: no new member starts; those running stop, to be resumed",
                    );
                }
                if forward {
                    let _ = stop_tx.send(true);
                }
            }
            Note::Ended(index, spawn_error) => {
                running -= 1;
                let m = &mut record.members[index];
                if m.run_id.is_none() {
                    m.start_error = Some(
                        spawn_error
                            .or_else(|| last_lines.remove(&index))
                            .unwrap_or_else(|| "its process ended without a word".into()),
                    );
                    write_record(dir, record)?;
                }
                let v = view(&state, &record.members[index]);
                if v.status.is_error() {
                    errors += 1;
                }
                progress.finish(index, &v.value, &verdict(&v));
                if errors >= limit && !queue.is_empty() && !std::mem::replace(&mut stop_said, true)
                {
                    progress.line(&format!(
                        "{errors} member{} failed (--max-errors {limit}): no new member starts; those running finish",
                        if errors == 1 { "" } else { "s" }
                    ));
                }
            }
        }
    }
    let views: Vec<MemberView> = record.members.iter().map(|m| view(&state, m)).collect();
    let status = status(&views, false);
    progress.line(&format!("fleet {} {status}: {}", record.id, counts(&views)));
    if status == FleetStatus::Succeeded {
        Ok(Outcome::Success)
    } else {
        let state_flag = if launch.state_dir == Path::new(".runbook") {
            String::new()
        } else {
            format!(" --state-dir {}", launch.state_dir.display())
        };
        let waiting = views
            .iter()
            .any(|v| v.status == MemberStatus::Run(RunStatus::AwaitingApproval));
        let next = if waiting {
            "to approve and go on"
        } else {
            "fix the causes, then"
        };
        progress.line(&format!(
            "see: runbook show {id}{state_flag}\n{next}: runbook resume {id}{state_flag}{}",
            if waiting { " --yes" } else { "" },
            id = record.id
        ));
        Ok(Outcome::Failed)
    }
}

/// `succeeded: run 2026…-7f3a (12.3s)`.
fn verdict(v: &MemberView) -> String {
    match (&v.run_id, v.status) {
        (Some(id), _) => format!(
            "{}: run {id}{}",
            v.status,
            v.duration_s
                .map(|d| format!(" ({d:.1}s)"))
                .unwrap_or_default()
        ),
        (None, s) => format!(
            "{s}: {}",
            v.error.as_deref().unwrap_or("no run was started")
        ),
    }
}

/// One member's process: its run id from the first line of stdout, every stderr line to
/// the fleet and to the member's log, then its end.
async fn member(
    index: usize,
    mut cmd: tokio::process::Command,
    log: PathBuf,
    tx: mpsc::UnboundedSender<Note>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Note::Ended(
                index,
                Some(format!("cannot start runbook: {e}")),
            ));
            return;
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = async {
        let Some(stdout) = stdout else { return };
        let mut lines = BufReader::new(stdout).lines();
        let mut first = true;
        while let Ok(Some(line)) = lines.next_line().await {
            let id = line.trim();
            if std::mem::take(&mut first) && state::check_run_id(id).is_ok() {
                let _ = tx.send(Note::RunId(index, id.to_string()));
            }
        }
    };
    let err = async {
        let Some(stderr) = stderr else { return };
        let mut file = tokio::fs::File::create(&log).await.ok();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(f) = &mut file {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
            let _ = tx.send(Note::Line(index, line));
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let ran = async {
        tokio::join!(out, err);
        let _ = child.wait().await;
    };
    tokio::pin!(ran);
    loop {
        tokio::select! {
            () = &mut ran => break,
            Ok(()) = stop.changed() => {
                if let Some(pid) = pid.filter(|_| *stop.borrow()) {
                    // SAFETY: a signal to the member's own process, which has not been
                    // reaped yet (`ran` waits for it), so the pid is still its.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
    }
    let _ = tx.send(Note::Ended(index, None));
}

/// For `approve: once`: asks on the terminal, once for the whole fleet. `Ok(true)`: every
/// member may pass its approve steps; `Ok(false)`: nobody could be asked, so members stop
/// at their approve steps, awaiting approval.
pub fn approve_once(rb: &Runbook, param: &str, values: &[String]) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "the fleet needs one approval (the runbook says `fleet: {{ approve: once }}`) and there is no terminal to ask on: members stop at their approve steps; resume the fleet with --yes to approve them all"
        );
        return Ok(false);
    }
    eprint!(
        "approve every step of `{}` that asks for approval, in all {} runs ({param} = {})? [y/N] ",
        rb.name,
        values.len(),
        values.join(", ")
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(true)
    } else {
        Err(crate::error::invalid("not approved: no member was started"))
    }
}

/// How a fleet command starts its members: where state is, the `--var`s given now.
pub fn launch_for(global: &Global, yes: bool, allow_changed: bool) -> Launch {
    Launch {
        state_dir: global.state_dir.clone(),
        vars: global.vars.clone(),
        yes,
        allow_changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_inline_or_from_a_file() {
        assert_eq!(
            parse_for_each("cache= a, b ,c").unwrap(),
            ForEach {
                name: "cache".into(),
                values: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.txt");
        std::fs::write(&file, "# caches\norders\n\n sessions \n").unwrap();
        assert_eq!(
            parse_for_each(&format!("cache=@{}", file.display())).unwrap(),
            ForEach {
                name: "cache".into(),
                values: vec!["orders".into(), "sessions".into()]
            }
        );
    }

    #[test]
    fn wrong_values_are_refused_with_the_way_out() {
        assert_eq!(
            parse_for_each("cache").unwrap_err(),
            "`cache` is not NAME=VALUES; write e.g. `--for-each cache=orders,sessions` or `--for-each cache=@caches.txt`"
        );
        assert_eq!(
            parse_for_each("cache=a,,b").unwrap_err(),
            "every value of `cache` must be non-empty; separate values with `,` or give one a line in a file (`cache=@FILE`)"
        );
        assert_eq!(
            parse_for_each("cache=a,b,a").unwrap_err(),
            "`a` is given twice: a fleet makes one run per value"
        );
        assert_eq!(
            parse_for_each("=a").unwrap_err(),
            "the param name before `=` is missing"
        );
    }

    #[test]
    fn errors_are_the_ends_that_need_a_fix() {
        let errors: Vec<MemberStatus> = [
            MemberStatus::NotStarted,
            MemberStatus::FailedToStart,
            MemberStatus::Damaged,
            MemberStatus::Run(RunStatus::Succeeded),
            MemberStatus::Run(RunStatus::Failed),
            MemberStatus::Run(RunStatus::RolledBack),
            MemberStatus::Run(RunStatus::Interrupted),
            MemberStatus::Run(RunStatus::AwaitingApproval),
        ]
        .into_iter()
        .filter(|s| s.is_error())
        .collect();
        assert_eq!(
            errors,
            [
                MemberStatus::FailedToStart,
                MemberStatus::Damaged,
                MemberStatus::Run(RunStatus::Failed),
                MemberStatus::Run(RunStatus::RolledBack),
                MemberStatus::Run(RunStatus::Interrupted),
            ]
        );
    }
}

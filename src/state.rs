//! The state directory: one folder per run, and what a run's journal says about it.
//!
//! `<state-dir>/runs/<run-id>/` holds `runbook.yaml` (the runbook as it was), `run.json`
//! (who, what, which parameters — secrets masked), `journal.jsonl`, `lock`, the probe's
//! data and the reports. Status is never stored twice: it is read back from the journal.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::journal::{self, Event, JournalError, Replay, RunStatus, StepState};
use crate::lock::RunLock;

pub mod s3;

/// Facts about a run fixed when it starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMeta {
    pub id: String,
    /// The runbook's `name`.
    pub runbook: String,
    /// The runbook file as given (absolute).
    pub file: PathBuf,
    pub digest: String,
    #[serde(alias = "target")]
    pub platform: crate::platform::PlatformKind,
    pub started_at: DateTime<Utc>,
    /// Parameter values, secrets masked.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Names of secret params that had a value (they must be given again on resume).
    pub secrets_given: Vec<String>,
}

/// Why a run could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not something `create_run` makes: it could name a path outside the state dir.
    #[error("{0}")]
    BadId(String),
    #[error("no run `{id}` in {dir}{hint}")]
    NoSuchRun {
        id: String,
        dir: PathBuf,
        hint: String,
    },
    #[error("no fleet `{id}` in {dir} (is --state-dir right?)")]
    NoSuchFleet { id: String, dir: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a run's metadata")]
    BadMeta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: root.to_path_buf(),
        }
    }

    fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Makes a new run folder; the id reads `20261122-0312-online-migration-7f3a`.
    pub fn create_run(
        &self,
        runbook: &str,
        now: DateTime<Utc>,
    ) -> std::io::Result<(String, PathBuf)> {
        create_in(&self.runs(), "", runbook, now)
    }

    /// Makes a new fleet folder; the id reads `fleet-20261122-0312-online-migration-7f3a`.
    pub fn create_fleet(
        &self,
        runbook: &str,
        now: DateTime<Utc>,
    ) -> std::io::Result<(String, PathBuf)> {
        create_in(&self.root.join("fleets"), FLEET_PREFIX, runbook, now)
    }

    /// The folder of fleet `id`, if there is one.
    pub fn fleet_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        check_run_id(id).map_err(StateError::BadId)?;
        let dir = self.root.join("fleets").join(id);
        if dir.join("fleet.json").is_file() {
            Ok(dir)
        } else {
            Err(StateError::NoSuchFleet {
                id: id.to_string(),
                dir: self.root.clone(),
            })
        }
    }

    /// The ids of the fleets here, sorted.
    pub fn fleet_ids(&self) -> Vec<String> {
        folders_with(&self.root.join("fleets"), "fleet.json")
    }

    /// The folder of run `id`, or an error that lists near ids.
    pub fn run_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        check_run_id(id).map_err(StateError::BadId)?;
        let dir = self.runs().join(id);
        if dir.join("run.json").is_file() {
            return Ok(dir);
        }
        let ids = self.run_ids();
        let hint = match crate::diagnostic::suggest(id, ids.iter().map(String::as_str)) {
            Some(near) => format!("; did you mean `{near}`?"),
            None if ids.is_empty() => "; there are no runs there (is --state-dir right?)".into(),
            None => "; `runbook runs` lists the runs".into(),
        };
        Err(StateError::NoSuchRun {
            id: id.to_string(),
            dir: self.root.clone(),
            hint,
        })
    }

    /// Every run id, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        folders_with(&self.runs(), "run.json")
    }
}

/// The names of the folders in `dir` that hold a file `marker`, sorted (ids begin with
/// their start time, so that is oldest first).
fn folders_with(dir: &Path, marker: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(marker).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Whether `id` can be a run id: letters, digits, `-`, `_` and `.` (not first), so it
/// names a folder right inside `runs/` and never a path elsewhere (`..`, `/`, `\`).
pub fn check_run_id(id: &str) -> Result<(), String> {
    let fine = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a run id: run ids have letters, digits, `-`, `_` and `.` (not first), as `runbook runs` lists them"
        ))
    }
}

/// Fleet ids start so, and run ids never do (theirs start with the date).
pub const FLEET_PREFIX: &str = "fleet-";

/// Whether `id` names a fleet rather than a run.
pub fn is_fleet_id(id: &str) -> bool {
    id.starts_with(FLEET_PREFIX)
}

/// Makes a new folder in `parent` named `<prefix><date>-<time>-<slug>-<random>`.
fn create_in(
    parent: &Path,
    prefix: &str,
    runbook: &str,
    now: DateTime<Utc>,
) -> std::io::Result<(String, PathBuf)> {
    std::fs::create_dir_all(parent)?;
    let slug: String = runbook
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    loop {
        let suffix = format!("{:04x}", rand_u16());
        let id = format!(
            "{prefix}{}-{}-{suffix}",
            now.format("%Y%m%d-%H%M"),
            if slug.is_empty() { "run" } else { slug }
        );
        let dir = parent.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

/// Reads `run.json` of a run folder.
pub fn read_meta(run_dir: &Path) -> Result<RunMeta, StateError> {
    let path = run_dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|source| StateError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| StateError::BadMeta { path, source })
}

/// Writes `run.json` atomically.
pub fn write_meta(run_dir: &Path, meta: &RunMeta) -> std::io::Result<()> {
    let tmp = run_dir.join("run.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?,
    )?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, run_dir.join("run.json"))
}

/// A run as the journal tells it.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub runbook: String,
    pub platform: crate::platform::PlatformKind,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepState>,
}

/// Reads a run's metadata and replays its journal; a run whose journal says `running`
/// but whose lock nobody holds was killed: it is `interrupted`.
pub fn summarize(run_dir: &Path) -> Result<RunSummary, StateError> {
    let meta = read_meta(run_dir)?;
    let replay = replay(run_dir)?;
    let (status, finished_at) = match replay.run() {
        Some(run) => (run.status, run.finished_at),
        // Killed before its first event, or about to write it.
        None if RunLock::is_held(run_dir) => (RunStatus::Running, None),
        None => (RunStatus::Interrupted, None),
    };
    Ok(RunSummary {
        id: meta.id,
        runbook: meta.runbook,
        platform: meta.platform,
        status,
        started_at: meta.started_at,
        finished_at,
        steps: replay.steps().to_vec(),
    })
}

/// The run in `run_dir` as its journal tells it, with what was under way marked
/// interrupted when no live process drives the run any more. A run folder's journal must
/// be that run's, whole: see [`history`]. A probe folder has no journal to check.
pub fn replay(run_dir: &Path) -> Result<Replay, JournalError> {
    let live = RunLock::is_held(run_dir);
    let mut replay = match read_meta(run_dir) {
        Ok(meta) => history(run_dir, &meta.id, live)?,
        Err(_) => journal::replay(&run_dir.join("journal.jsonl"))?,
    };
    if !live {
        replay.abandon();
    }
    Ok(replay)
}

/// The journal of run `id` replayed, refused when it is damaged, belongs to another run, or
/// — unless the run is `live`, between writing `run.json` and its first event — has no line.
pub fn history(run_dir: &Path, id: &str, live: bool) -> Result<Replay, JournalError> {
    let path = run_dir.join("journal.jsonl");
    let scan = journal::scan(&path)?;
    // Another run's journal is that first, whatever else is wrong with it.
    if let Some(Event::RunStarted { run_id, .. }) = scan.records.first().map(|r| &r.event)
        && run_id != id
    {
        return Err(foreign(&path, run_id, id));
    }
    if let Some(damage) = scan.damage {
        return Err(damage);
    }
    let records = scan.records;
    match records.first().map(|r| &r.event) {
        None if live => {}
        None => {
            return Err(JournalError::Lost {
                what: if path.exists() { "empty" } else { "missing" },
                path,
            });
        }
        Some(Event::RunStarted { run_id, .. }) if run_id != id => {
            return Err(foreign(&path, run_id, id));
        }
        Some(_) => {}
    }
    Replay::of(&records).map_err(|(i, source)| JournalError::Illegal {
        path,
        line: i + 1,
        source,
    })
}

fn foreign(path: &Path, found: &str, id: &str) -> JournalError {
    JournalError::Broken {
        path: path.to_path_buf(),
        line: 1,
        why: format!("it is the journal of run `{found}`, not of `{id}`"),
    }
}

/// What follows a damage report: how an operator gets the run going again.
pub fn repair_hint(id: &str) -> String {
    format!(
        "run {id} cannot be trusted as it is (`runbook resume {id} --repair` says how it would be cut back to its last good line)"
    )
}

/// How `resume --repair` would cut a damaged journal back to its last good line.
#[derive(Debug)]
pub struct Repair {
    /// The damage found first.
    pub damage: JournalError,
    /// How many lines are kept, from the first.
    pub keep: usize,
    /// The file's length once cut.
    pub keep_len: u64,
    /// How many lines the file has now.
    pub lines: usize,
    /// The steps that, once the lines are gone, have not finished: they run on resume.
    pub unfinished: Vec<String>,
}

/// The repair of run `id`'s journal, or `None` when it is sound.
pub fn plan_repair(run_dir: &Path, id: &str) -> Result<Option<Repair>, JournalError> {
    let path = run_dir.join("journal.jsonl");
    let mut scan = journal::scan(&path)?;
    let mut damage = scan.damage.take();
    let mut keep = scan.records.len();
    if let Some(Event::RunStarted { run_id, .. }) = scan.records.first().map(|r| &r.event)
        && run_id != id
    {
        damage = Some(foreign(&path, run_id, id));
        keep = 0;
    } else if damage.is_none() {
        match scan.records.first().map(|r| &r.event) {
            None => {
                damage = Some(JournalError::Lost {
                    what: if path.exists() { "empty" } else { "missing" },
                    path: path.clone(),
                })
            }
            Some(Event::RunStarted { run_id, .. }) if run_id != id => {
                damage = Some(foreign(&path, run_id, id));
                keep = 0;
            }
            Some(_) => {
                if let Err((i, source)) = Replay::of(&scan.records) {
                    damage = Some(JournalError::Illegal {
                        path: path.clone(),
                        line: i + 1,
                        source,
                    });
                    keep = i;
                }
            }
        }
    }
    let Some(damage) = damage else {
        return Ok(None);
    };
    let kept = &scan.records[..keep];
    let before = Replay::of(kept).unwrap_or_default();
    let done = before.done();
    let keep_len = if keep == 0 { 0 } else { scan.ends[keep - 1] };
    // The steps the removed lines speak of, and those left open by the cut.
    let text = std::fs::read(&path).unwrap_or_default();
    let removed = text.get(keep_len as usize..).unwrap_or_default();
    let mut unfinished: Vec<String> = before
        .steps()
        .iter()
        .filter(|s| s.status.is_open())
        .map(|s| s.id.clone())
        .collect();
    for line in removed.split(|&b| b == b'\n') {
        let step = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("step")?.as_str().map(str::to_string));
        if let Some(step) = step
            && !done.contains_key(&step)
            && !unfinished.contains(&step)
        {
            unfinished.push(step);
        }
    }
    Ok(Some(Repair {
        damage,
        keep,
        keep_len,
        lines: scan.lines,
        unfinished,
    }))
}

/// Cuts the journal back as `repair` says, keeping the damaged file next to it; returns
/// where the damaged copy went.
pub fn apply_repair(run_dir: &Path, repair: &Repair) -> std::io::Result<PathBuf> {
    let path = run_dir.join("journal.jsonl");
    let copy = run_dir.join(format!(
        "journal.damaged-{}.jsonl",
        Utc::now().format("%Y%m%dT%H%M%S%.3f")
    ));
    std::fs::copy(&path, &copy)?;
    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.set_len(repair.keep_len)?;
    file.sync_all()?;
    journal::reseal(&path).map_err(std::io::Error::other)?;
    Ok(copy)
}

/// Where runs are kept, as `--state-dir` says: a local folder, or a prefix on S3 with this
/// machine's working copy of it, which the rest of the code reads and writes as a folder.
pub struct Store {
    /// The folder the commands work in (the working copy for S3).
    pub dir: StateDir,
    pub root: PathBuf,
    pub s3: Option<s3::S3State>,
}

impl Store {
    /// The state dir of the command line; for S3 the bucket is checked to be there.
    pub fn open(global: &crate::cli::Global) -> anyhow::Result<Store> {
        let Some(url) = global.s3_state() else {
            return Ok(Store {
                dir: StateDir::new(&global.state_dir),
                root: global.state_dir.clone(),
                s3: None,
            });
        };
        let url = url.map_err(crate::error::invalid)?;
        let opts = crate::platform::aws::AwsOptions {
            profile: global.profile.clone(),
            region: global.region.clone(),
            endpoint_url: global.endpoint_url.clone(),
        };
        let s3 = s3::S3State::connect(url, &opts)?;
        Ok(Store {
            dir: StateDir::new(&s3.root),
            root: s3.root.clone(),
            s3: Some(s3),
        })
    }

    /// This machine's folder of the state dir, without reaching S3: where a command keeps
    /// what stays on the machine (a standalone probe's data, a rehearsal's servers).
    pub fn local_root(global: &crate::cli::Global) -> anyhow::Result<PathBuf> {
        match global.s3_state() {
            Some(url) => s3::working_copy(&url.map_err(crate::error::invalid)?),
            None => Ok(global.state_dir.clone()),
        }
    }

    /// Every run id, oldest first; on S3 the runs there, each with its metadata, lease and
    /// journal brought into the working copy (one the working copy alone has is not listed).
    pub fn run_ids(&self) -> anyhow::Result<Vec<String>> {
        match &self.s3 {
            Some(s3) => s3.pull_runs(),
            None => Ok(self.dir.run_ids()),
        }
    }

    /// Brings run `id` from S3: its metadata, lease and journal, and with `whole` its probe
    /// data, step output and reports.
    pub fn pull(&self, id: &str, whole: bool) -> anyhow::Result<()> {
        match &self.s3 {
            Some(s3) => s3.pull(id, whole).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Takes run `id`'s lock: on S3 its lease first (then the run is pulled again, as no one
    /// else can change it any more), then the OS lock of the folder.
    pub fn lock(&self, dir: &Path, id: &str) -> anyhow::Result<RunLock> {
        let Some(s3) = &self.s3 else {
            return Ok(RunLock::acquire(dir, id)?);
        };
        let lease = s3.lease(id)?;
        s3.pull(id, true)?;
        // The pull brought this process's own lease: the OS lock says it drives the run.
        let _ = std::fs::remove_file(dir.join(s3::lease::OBJECT));
        Ok(RunLock::acquire(dir, id)?.with_lease(lease))
    }

    /// Takes run `id`'s lock (on S3 its lease, then the OS lock) for a run that is new, or
    /// whose files here are all a command needs.
    pub fn lock_as_is(&self, dir: &Path, id: &str) -> anyhow::Result<RunLock> {
        let Some(s3) = &self.s3 else {
            return Ok(RunLock::acquire(dir, id)?);
        };
        let lease = s3.lease(id)?;
        Ok(RunLock::acquire(dir, id)?.with_lease(lease))
    }

    /// Publishes a new run on S3: its `run.json` (refused if a run of that id is there) and
    /// its runbook copy.
    pub fn publish(&self, dir: &Path, id: &str) -> anyhow::Result<()> {
        match &self.s3 {
            Some(s3) => s3.publish(dir, id),
            None => Ok(()),
        }
    }

    /// Opens run `id`'s journal for appending; on S3 every line also goes there.
    pub fn journal(
        &self,
        dir: &Path,
        id: &str,
        redactor: crate::redact::Redactor,
    ) -> Result<journal::Journal, JournalError> {
        let journal = journal::Journal::open(&dir.join("journal.jsonl"), redactor)?;
        Ok(match &self.s3 {
            Some(s3) => journal.mirrored(s3.mirror(dir, id)),
            None => journal,
        })
    }

    /// Copies what a command wrote into run `id`'s folder (reports) to S3; a failure is a
    /// warning, the local files are there.
    pub fn push(&self, dir: &Path, id: &str) {
        if let Some(s3) = &self.s3
            && let Err(e) = s3.push_files(dir, id)
        {
            eprintln!(
                "warning: run {id}: its files could not be copied to {}: {e:#}",
                s3.remote.url
            );
        }
    }

    /// Copies a repaired journal of run `id` to S3.
    pub fn push_repair(&self, dir: &Path, id: &str) -> anyhow::Result<()> {
        match &self.s3 {
            Some(s3) => s3.push_repair(dir, id),
            None => Ok(()),
        }
    }
}

/// Fleets keep their folder locally for now: refused with a state dir on S3.
pub fn local_only(global: &crate::cli::Global, what: &str) -> anyhow::Result<()> {
    match global.s3_state() {
        Some(_) => Err(crate::error::invalid(format!(
            "{what} keeps its state in a local folder for now: give a local --state-dir, not {}",
            global.state_dir.display()
        ))),
        None => Ok(()),
    }
}

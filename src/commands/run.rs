//! `runbook run FILE`: start a run, and what `resume` shares with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;

use crate::actions::Outputs;
use crate::cli::Global;
use crate::endpoint::Resolver;
use crate::error::{Outcome, invalid};
use crate::executor::Executor;
use crate::fleet::{self, FleetRecord, ForEach, Member, Work};
use crate::journal::{Event, Journal, Phase, RunStatus, StepStatus};
use crate::load::{LoadFailure, load};
use crate::lock::RunLock;
use crate::platform::{Platform, PlatformKind, PlatformOptions};
use crate::progress::Progress;
use crate::runbook::{FleetApproval, Runbook};
use crate::state::{self, RunMeta, StateDir, Store};
use crate::template::Scope;
use crate::vars::{self, Params};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runbook file.
    pub file: PathBuf,
    /// The control plane: real local servers (a rehearsal) or AWS.
    #[arg(long, value_enum, default_value_t = PlatformKind::Local)]
    pub platform: PlatformKind,
    /// Approve every `approve` step without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// A fleet: one run per value, each with `--var NAME=VALUE`; values separated by
    /// commas, or `@FILE` with one a line.
    #[arg(long, value_name = "NAME=VALUES", value_parser = fleet::parse_for_each)]
    pub for_each: Option<ForEach>,
    /// In a fleet, how many runs go at once.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "for_each",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrency: u16,
    /// In a fleet, start no new run once M runs failed (those running finish); default:
    /// no limit.
    #[arg(long, value_name = "M", requires = "for_each",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_errors: Option<u16>,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let rb = load_runbook(&args.file)?;
    if let Some(each) = args.for_each.clone() {
        state::local_only(global, "a fleet (--for-each)")?;
        return start_fleet(global, &args, rb, each).await;
    }
    let params = vars::resolve(&rb, &global.vars, global.vars_file.as_deref(), None, &[])?;
    let settled = settle(global, rb, params, args.platform, args.yes).await?;
    start(global, &args.file, args.platform, settled).await
}

/// Starts a run of settled input on its open platform: its folder, lock, copy of the
/// runbook, `run.json` and journal, then drives it. Everything here writes, so nothing
/// may be wrong with the input any more.
pub async fn start(
    global: &Global,
    file: &Path,
    kind: PlatformKind,
    settled: Settled,
) -> anyhow::Result<Outcome> {
    let Settled { rb, params, .. } = &settled;
    let store = Store::open(global)?;
    let started_at = Utc::now();
    let (id, dir) = store
        .dir
        .create_run(&rb.name, started_at)
        .with_context(|| format!("cannot create a run folder in {}", store.root.display()))?;
    let lock = store.lock_as_is(&dir, &id)?;
    std::fs::write(dir.join("runbook.yaml"), &rb.source.text)
        .context("cannot keep a copy of the runbook")?;
    let meta = RunMeta {
        id: id.clone(),
        runbook: rb.name.clone(),
        file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
        digest: rb.source.digest.clone(),
        platform: kind,
        started_at,
        params: params.redacted(rb),
        secrets_given: params.secrets_given(rb),
    };
    state::write_meta(&dir, &meta).context("cannot write run.json")?;
    store.publish(&dir, &id)?;
    let journal = Arc::new(store.journal(&dir, &id, params.redactor.clone())?);
    journal.append(Event::RunStarted {
        run_id: id.clone(),
        runbook: rb.name.clone(),
        file: meta.file.display().to_string(),
        digest: meta.digest.clone(),
        platform: kind.to_string(),
        params: meta.params.clone(),
    })?;
    println!("{id}");
    drive(
        global,
        &store,
        settled,
        &meta,
        journal,
        &HashMap::new(),
        lock,
    )
    .await
}

/// `run --for-each`: checks every member's input, then starts the fleet.
async fn start_fleet(
    global: &Global,
    args: &Args,
    rb: Runbook,
    each: ForEach,
) -> anyhow::Result<Outcome> {
    let Some(param) = rb.param(&each.name) else {
        let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
        let hint = match crate::diagnostic::suggest(&each.name, names.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None if names.is_empty() => "it declares no params".into(),
            None => format!("its params: {}", names.join(", ")),
        };
        return Err(invalid(format!(
            "--for-each: runbook `{}` has no param `{}`; {hint}",
            rb.name, each.name
        )));
    };
    if param.secret {
        return Err(invalid(format!(
            "--for-each: `{}` is a secret param; a fleet's values are written down, so they cannot be secret",
            each.name
        )));
    }
    if global
        .vars
        .iter()
        .any(|v| fleet::var_name(v) == Some(each.name.as_str()))
    {
        return Err(invalid(format!(
            "`{}` is given both by --var and by --for-each; drop the --var",
            each.name
        )));
    }
    // Every member's input is checked before the first one starts.
    Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let opts = PlatformOptions {
        profile: global.profile.clone(),
        region: global.region.clone(),
        endpoint_url: global.endpoint_url.clone(),
    };
    let platform = crate::platform::open(args.platform, &opts).await?;
    for value in &each.values {
        let mut vars = global.vars.clone();
        vars.push(format!("{}={value}", each.name));
        let params = vars::resolve(&rb, &vars, global.vars_file.as_deref(), None, &[])
            .with_context(|| format!("--for-each: the run for {}={value}", each.name))?;
        crate::plan::checked(&rb, &params, platform.as_ref())
            .with_context(|| format!("--for-each: the run for {}={value}", each.name))?;
    }
    let yes = args.yes
        || (rb.fleet_approval == FleetApproval::Once
            && fleet::approve_once(&rb, &each.name, &each.values)?);
    // Everything below writes.
    let state = StateDir::new(&global.state_dir);
    let started_at = Utc::now();
    let (id, dir) = state.create_fleet(&rb.name, started_at).with_context(|| {
        format!(
            "cannot create a fleet folder in {}",
            global.state_dir.display()
        )
    })?;
    let _lock = RunLock::acquire(&dir, &id)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut record = FleetRecord {
        id: id.clone(),
        runbook: rb.name.clone(),
        file: absolute(&args.file),
        digest: rb.source.digest.clone(),
        platform: args.platform,
        started_at,
        param: each.name.clone(),
        max_concurrency: usize::from(args.max_concurrency),
        max_errors: args.max_errors.map(usize::from),
        approval: rb.fleet_approval,
        vars: global
            .vars
            .iter()
            .filter(|v| {
                fleet::var_name(v)
                    .and_then(|n| rb.param(n))
                    .is_some_and(|p| !p.secret)
            })
            .cloned()
            .collect(),
        vars_file: global.vars_file.as_deref().map(absolute),
        profile: global.profile.clone(),
        region: global.region.clone(),
        endpoint_url: global.endpoint_url.clone(),
        resolve: global.resolve.clone(),
        members: each
            .values
            .iter()
            .map(|v| Member {
                value: v.clone(),
                run_id: None,
                start_error: None,
            })
            .collect(),
    };
    fleet::write_record(&dir, &record)?;
    println!("{id}");
    let work = (0..record.members.len())
        .map(|i| (i, Work::Start))
        .collect();
    fleet::drive(
        &dir,
        &mut record,
        work,
        &fleet::launch_for(global, yes, false),
    )
    .await
}

/// A run's input once every part of it is known to be right: what `plan` checks has
/// passed and the platform is open. Nothing is written before a run has this.
pub struct Settled {
    pub rb: Runbook,
    pub params: Params,
    pub resolver: Resolver,
    pub platform: Box<dyn Platform>,
    /// `--yes`: every approval passes.
    pub assume_yes: bool,
}

/// Checks the rest of a run's input (resolver rules, the platform's configuration,
/// everything `plan` validates) and opens the platform, without writing anything.
pub async fn settle(
    global: &Global,
    rb: Runbook,
    params: Params,
    kind: PlatformKind,
    assume_yes: bool,
) -> anyhow::Result<Settled> {
    let resolver = Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let opts = PlatformOptions {
        profile: global.profile.clone(),
        region: global.region.clone(),
        endpoint_url: global.endpoint_url.clone(),
    };
    let platform = crate::platform::open(kind, &opts).await?;
    crate::plan::checked(&rb, &params, platform.as_ref())?;
    Ok(Settled {
        rb,
        params,
        resolver,
        platform,
        assume_yes,
    })
}

/// Loads a runbook; a missing file or a wrong one is invalid input (exit 2).
pub fn load_runbook(path: &Path) -> anyhow::Result<Runbook> {
    load(path).map_err(|e| match e {
        LoadFailure::Invalid(text) => invalid(text),
        LoadFailure::Read { .. } => invalid(crate::error::chain(&e)),
    })
}

/// Runs (or resumes) a run whose journal is open, then writes its reports and says how it ended.
/// The run's folder is `runs/<id>/` of `store`.
pub async fn drive(
    global: &Global,
    store: &Store,
    settled: Settled,
    meta: &RunMeta,
    journal: Arc<Journal>,
    done: &HashMap<String, Outputs>,
    _lock: RunLock,
) -> anyhow::Result<Outcome> {
    let dir = &store.root.join("runs").join(&meta.id);
    let Settled {
        rb,
        params,
        resolver,
        platform,
        assume_yes,
    } = settled;
    let mut scope = Scope {
        params: params.values,
        ..Scope::for_runbook(&rb, &params.redactor)
    };
    scope.run.insert("id".into(), meta.id.clone().into());
    scope
        .run
        .insert("platform".into(), meta.platform.to_string().into());
    scope
        .run
        .insert("started_at".into(), meta.started_at.to_rfc3339().into());
    scope
        .run
        .insert("dir".into(), dir.display().to_string().into());
    let mut executor = Executor {
        runbook: &rb,
        run_id: meta.id.clone(),
        run_dir: dir.to_path_buf(),
        journal: journal.clone(),
        platform,
        resolver,
        progress: Progress::new(),
        assume_yes,
        scope,
    };
    let status = executor.execute(done).await?;
    executor.progress.finish();
    match crate::report::write_run_reports(dir) {
        Ok(paths) => {
            for p in paths {
                eprintln!("report: {}", p.display());
            }
        }
        Err(e) => eprintln!("warning: the report could not be written: {e:#}"),
    }
    store.push(dir, &meta.id);
    let state_flag = if global.state_dir == Path::new(".runbook") {
        String::new()
    } else {
        format!(" --state-dir {}", global.state_dir.display())
    };
    let summary = state::summarize(dir)?;
    let stopped_at = summary
        .steps
        .iter()
        .rev()
        .find(|s| {
            s.phase == Phase::Steps
                && matches!(
                    s.status,
                    StepStatus::Failed | StepStatus::Interrupted | StepStatus::AwaitingApproval
                )
        })
        .map(|s| {
            format!(
                " at step `{}`: {}",
                s.id,
                s.error.clone().unwrap_or_else(|| s.status.to_string())
            )
        })
        .unwrap_or_default();
    match status {
        RunStatus::Succeeded => {
            eprintln!("run {} succeeded", meta.id);
            Ok(Outcome::Success)
        }
        RunStatus::Interrupted => {
            eprintln!(
                "run {} was interrupted{stopped_at}\ncontinue with: runbook resume {}{state_flag}",
                meta.id, meta.id
            );
            Ok(Outcome::Failed)
        }
        RunStatus::AwaitingApproval => {
            eprintln!(
                "run {} is awaiting approval{stopped_at}\nnothing was rolled back; to approve and go on: runbook resume {}{state_flag} --yes",
                meta.id, meta.id
            );
            Ok(Outcome::Failed)
        }
        other => {
            let rolled = if other == RunStatus::RolledBack {
                " (rolled back)"
            } else {
                ""
            };
            eprintln!(
                "run {} failed{stopped_at}{rolled}\nfix the cause, then: runbook resume {}{state_flag}",
                meta.id, meta.id
            );
            let replay = journal.replay();
            if replay.done().len() != replay.done_before_rollback().len() {
                eprintln!(
                    "the rollback may have undone earlier steps: resume runs every step again from the first (each finds what is already done); `--from STEP` starts at STEP instead"
                );
            }
            Ok(Outcome::Failed)
        }
    }
}

//! `runbook resume RUN_ID`: continue a failed or interrupted run at the step that did not finish.

use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::fleet::{self, MemberStatus, Work};
use crate::journal::{Event, RunStatus};
use crate::load::{LoadFailure, load_text};
use crate::lock::RunLock;
use crate::runbook::FleetApproval;
use crate::state::{self, StateDir, Store};
use crate::vars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to continue (`runbook runs` lists them).
    pub run_id: String,
    /// Run again from this step on, even if it and later steps succeeded.
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// Resume even though the runbook file changed since the run started.
    #[arg(long)]
    pub allow_changed: bool,
    /// Approve every `approve` step without asking; with --repair, do the repair.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Say how a damaged journal would be cut back to its last good line (and, with
    /// --yes, do it), then stop: nothing runs.
    #[arg(long, conflicts_with_all = ["from", "allow_changed"])]
    pub repair: bool,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    if state::is_fleet_id(&args.run_id) {
        state::local_only(global, "a fleet")?;
        return resume_fleet(global, args).await;
    }
    let store = Store::open(global)?;
    store.pull(&args.run_id, false)?;
    let dir = store
        .dir
        .run_dir(&args.run_id)
        .map_err(|e| invalid(e.to_string()))?;
    let meta = state::read_meta(&dir)?;
    let lock = store.lock(&dir, &meta.id)?;
    if args.repair {
        return repair(&store, &dir, &meta.id, args.yes);
    }
    let replay = state::history(&dir, &meta.id, false)
        .map_err(|e| anyhow::Error::from(e).context(state::repair_hint(&meta.id)))?;
    let status = replay.run().map(|r| r.status);
    if status == Some(RunStatus::Succeeded) && args.from.is_none() {
        eprintln!(
            "run {} already succeeded: nothing to resume (use --from STEP to run steps again)",
            meta.id
        );
        return Ok(Outcome::Success);
    }
    // The runbook as it is now, if it still exists; else the copy kept with the run.
    let (text, path) = match std::fs::read_to_string(&meta.file) {
        Ok(text) => (text, meta.file.clone()),
        Err(_) => (
            std::fs::read_to_string(dir.join("runbook.yaml"))
                .context("the run's copy of the runbook is missing")?,
            meta.file.clone(),
        ),
    };
    let digest = crate::load::digest(&text);
    if digest != meta.digest && !args.allow_changed {
        return Err(invalid(format!(
            "the runbook {} changed since run {} started (digest {} then, {} now); \
             resuming could run steps the run never planned. Undo the change, or pass --allow-changed to resume with the new file",
            path.display(),
            meta.id,
            short(&meta.digest),
            short(&digest)
        )));
    }
    let rb = load_text(&path, text).map_err(|e| match e {
        LoadFailure::Invalid(t) => invalid(t),
        other => invalid(crate::error::chain(&other)),
    })?;
    let params = vars::resolve(
        &rb,
        &global.vars,
        global.vars_file.as_deref(),
        Some(&meta.params),
        &meta.secrets_given,
    )?;
    // After a rollback, steps that succeeded before it may be undone: they run again
    // (each finds what is already done), unless `--from` says where to start.
    let mut done = replay.done();
    if let Some(from) = &args.from {
        done = replay.done_before_rollback();
        let Some(pos) = rb.steps.iter().position(|s| &s.id == from) else {
            let ids: Vec<&str> = rb.steps.iter().map(|s| s.id.as_str()).collect();
            let hint = match crate::diagnostic::suggest(from, ids.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("its steps: {}", ids.join(", ")),
            };
            return Err(invalid(format!(
                "--from: runbook `{}` has no step `{from}`; {hint}",
                rb.name
            )));
        };
        for s in &rb.steps[pos..] {
            done.remove(&s.id);
        }
    }
    let redactor = params.redactor.clone();
    let settled = super::run::settle(global, rb, params, meta.platform, args.yes).await?;
    // Everything below writes: nothing may be wrong with the input from here on.
    // A command that a killed attempt left running must not finish behind this one's back.
    for (step, pgid) in replay.process_groups() {
        if crate::actions::exec::end_leftover(pgid, &meta.id) {
            eprintln!("ended what step `{step}` left running (process group {pgid})");
        }
    }
    let journal = Arc::new(store.journal(&dir, &meta.id, redactor)?);
    journal.append(Event::RunResumed {
        from: args.from.clone(),
        digest,
        allow_changed: args.allow_changed,
    })?;
    println!("{}", meta.id);
    super::run::drive(global, &store, settled, &meta, journal, &done, lock).await
}

/// `resume FLEET_ID`: resumes the members that did not succeed and starts those that never
/// started, with the fleet's concurrency and error limit (errors counted afresh).
async fn resume_fleet(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    if args.from.is_some() || args.repair {
        return Err(invalid(format!(
            "--from and --repair apply to one run, not to fleet {}; give them with one member's run id (`runbook show {}` lists them)",
            args.run_id, args.run_id
        )));
    }
    let state = StateDir::new(&global.state_dir);
    let dir = state
        .fleet_dir(&args.run_id)
        .map_err(|e| invalid(e.to_string()))?;
    let _lock = RunLock::acquire(&dir, &args.run_id)?;
    let mut record = fleet::read_record(&dir)?;
    let work: Vec<(usize, Work)> = record
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let v = fleet::view(&state, m);
            match (&m.run_id, v.status) {
                (_, MemberStatus::Run(RunStatus::Succeeded)) => None,
                (Some(id), _) => Some((i, Work::Resume(id.clone()))),
                (None, _) => Some((i, Work::Start)),
            }
        })
        .collect();
    if work.is_empty() {
        eprintln!(
            "every run of fleet {} already succeeded: nothing to resume",
            record.id
        );
        return Ok(Outcome::Success);
    }
    // Members never started run the runbook file as it is now: it must be the fleet's.
    let new: Vec<String> = work
        .iter()
        .filter(|(_, w)| matches!(w, Work::Start))
        .map(|(i, _)| record.members[*i].value.clone())
        .collect();
    let mut yes = args.yes;
    if !new.is_empty() || (record.approval == FleetApproval::Once && !yes) {
        let rb = super::run::load_runbook(&record.file)?;
        if rb.source.digest != record.digest && !args.allow_changed {
            return Err(invalid(format!(
                "the runbook {} changed since fleet {} started (digest {} then, {} now); \
                 the runs not started yet would run steps the others never had. Undo the change, or pass --allow-changed",
                record.file.display(),
                record.id,
                short(&record.digest),
                short(&rb.source.digest)
            )));
        }
        if !yes && record.approval == FleetApproval::Once {
            let values: Vec<String> = work
                .iter()
                .map(|(i, _)| record.members[*i].value.clone())
                .collect();
            yes = fleet::approve_once(&rb, &record.param, &values)?;
        }
    }
    println!("{}", record.id);
    let launch = fleet::launch_for(global, yes, args.allow_changed);
    fleet::drive(&dir, &mut record, work, &launch).await
}

/// `resume --repair`: what cutting the journal back does, done only with `--yes`.
fn repair(store: &Store, dir: &std::path::Path, id: &str, yes: bool) -> anyhow::Result<Outcome> {
    let Some(repair) = state::plan_repair(dir, id)? else {
        println!("the journal of run {id} is sound: nothing to repair");
        return Ok(Outcome::Success);
    };
    println!("{}", crate::error::chain(&repair.damage));
    if repair.keep == 0 {
        println!(
            "no line of it can be kept: run {id} cannot be resumed; start a new run with `runbook run`"
        );
        return Ok(Outcome::Failed);
    }
    let unfinished = if repair.unfinished.is_empty() {
        "no step becomes unfinished".to_string()
    } else {
        let names: Vec<String> = repair.unfinished.iter().map(|s| format!("`{s}`")).collect();
        format!(
            "then {} not finished and run again on resume",
            if names.len() == 1 {
                format!("step {} is", names[0])
            } else {
                format!("steps {} are", names.join(", "))
            }
        )
    };
    if repair.keep == repair.lines {
        println!(
            "repair: take lines 1-{}, all that is left, as the whole journal; {unfinished}",
            repair.keep
        );
    } else {
        println!(
            "repair: keep lines 1-{} and remove lines {}-{}; {unfinished}",
            repair.keep,
            repair.keep + 1,
            repair.lines
        );
    }
    if !yes {
        println!("nothing was changed; pass --yes to do it");
        return Ok(Outcome::Failed);
    }
    let copy = state::apply_repair(dir, &repair)
        .with_context(|| format!("cannot repair the journal of run {id}"))?;
    store.push_repair(dir, id)?;
    println!(
        "done; the damaged journal is kept as {}\ncontinue with: runbook resume {id}",
        copy.display()
    );
    Ok(Outcome::Success)
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

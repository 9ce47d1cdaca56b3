//! `runbook report RUN_ID`: a run's report as text, Markdown, HTML or versioned JSON, or
//! with `--compare OTHER_RUN_ID` two runs side by side, step by step; of a fleet, one row per
//! member.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::fleet;
use crate::report::{self, Format};
use crate::state::{self, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run (as `runbook runs` lists it), or the path of a run or probe folder.
    pub run_id: String,
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// Write to this file (a Markdown report's charts go next to it); default: stdout
    /// for text and JSON, `report.<format>` in the run folder otherwise
    /// (`compare-<OTHER_RUN_ID>.<format>` with `--compare`).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Set this run (A) and another one (B) side by side, step by step: durations,
    /// outages, latency percentiles, parity.
    #[arg(long, value_name = "OTHER_RUN_ID")]
    pub compare: Option<String>,
}

/// The folder of a run given by id (pulled first from a state dir on S3) or path, checked
/// to be readable.
fn run_dir(global: &Global, store: &Store, run_id: &str) -> anyhow::Result<PathBuf> {
    let as_path = PathBuf::from(run_id);
    if state::check_run_id(run_id).is_ok() {
        store.pull(run_id, true)?;
    }
    let by_id = state::check_run_id(run_id)
        .ok()
        .map(|()| store.root.join("runs").join(run_id))
        .filter(|d| d.join("run.json").is_file());
    let dir = if let Some(by_id) = by_id {
        by_id
    } else if as_path.join("journal.jsonl").is_file() || as_path.join("probe").is_dir() {
        as_path
    } else if let Err(why) = state::check_run_id(run_id) {
        return Err(invalid(format!(
            "{why}; nor is it a run or probe folder (one that holds journal.jsonl or probe/)"
        )));
    } else {
        return Err(invalid(format!(
            "no run `{run_id}` in {} (list the runs with `runbook runs`)",
            global.state_dir.join("runs").display()
        )));
    };
    // A report tells what the journal says: a damaged one is refused, with the way out.
    if let (Ok(meta), Err(e)) = (state::read_meta(&dir), state::replay(&dir)) {
        return Err(anyhow::Error::from(e).context(state::repair_hint(&meta.id)));
    }
    Ok(dir)
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    if state::is_fleet_id(&args.run_id) {
        state::local_only(global, "a fleet")?;
        return report_fleet(global, &args);
    }
    let store = Store::open(global)?;
    let dir = run_dir(global, &store, &args.run_id)?;
    // A report written into a run's folder of the state dir goes where the folder goes.
    let push = |path: &std::path::Path| {
        if path.parent() == Some(dir.as_path()) && dir.starts_with(&store.root) {
            store.push(&dir, &args.run_id);
        }
    };
    if let Some(other) = &args.compare {
        let other_dir = run_dir(global, &store, other)?;
        let comparison = report::compare(&report::build(&dir)?, &report::build(&other_dir)?);
        let text = report::render_comparison(&comparison, args.format)?;
        let path = match (&args.output, args.format) {
            (None, Format::Text | Format::Json) => {
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
                return Ok(Outcome::Success);
            }
            (Some(path), _) => path.clone(),
            (None, format) => {
                let name = other_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "other".into());
                dir.join(format!("compare-{name}.{}", format.extension()))
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        push(&path);
        println!("{}", path.display());
        return Ok(Outcome::Success);
    }
    match (&args.output, args.format) {
        (None, Format::Text) => print!("{}", report::to_text(&report::build(&dir)?)),
        (None, Format::Json) => println!("{}", report::to_json(&report::build(&dir)?)),
        (output, format) => {
            let path = output
                .clone()
                .unwrap_or_else(|| dir.join(format!("report.{}", format.extension())));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let written = report::write_report(&dir, format, &path)?;
            push(&written);
            println!("{}", written.display());
        }
    }
    Ok(Outcome::Success)
}

/// `report FLEET_ID`: every member's status, duration, client impact and parity, as a
/// text or Markdown table or JSON; `-o` writes it to a file.
fn report_fleet(global: &Global, args: &Args) -> anyhow::Result<Outcome> {
    if args.compare.is_some() {
        return Err(invalid(
            "--compare sets two runs side by side; give it one member's run id, not a fleet id",
        ));
    }
    let state = state::StateDir::new(&global.state_dir);
    let dir = state
        .fleet_dir(&args.run_id)
        .map_err(|e| invalid(e.to_string()))?;
    let r = fleet::report(&state, &dir)?;
    let text = match args.format {
        Format::Text => fleet::report_table(&r, false),
        Format::Md => fleet::report_table(&r, true),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&r)?),
        Format::Html => {
            return Err(invalid(
                "a fleet's report is text, md or json; each member's run has its HTML report (`runbook report RUN_ID --format html`)",
            ));
        }
    };
    match &args.output {
        None => print!("{text}"),
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(Outcome::Success)
}

//! `runbook report RUN_ID`: a run's report as Markdown, HTML or versioned JSON.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::report::{self, Format};
use crate::state;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run (as `runbook runs` lists it), or the path of a run or probe folder.
    pub run_id: String,
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// Write to this file (a Markdown report's charts go next to it); default: stdout
    /// for JSON, `report.<format>` in the run folder otherwise.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let as_path = PathBuf::from(&args.run_id);
    let by_id = state::check_run_id(&args.run_id)
        .ok()
        .map(|()| global.state_dir.join("runs").join(&args.run_id))
        .filter(|d| d.join("run.json").is_file());
    let dir = if let Some(by_id) = by_id {
        by_id
    } else if as_path.join("journal.jsonl").is_file() || as_path.join("probe").is_dir() {
        as_path
    } else if let Err(why) = state::check_run_id(&args.run_id) {
        return Err(invalid(format!(
            "{why}; nor is it a run or probe folder (one that holds journal.jsonl or probe/)"
        )));
    } else {
        return Err(invalid(format!(
            "no run `{}` in {} (list the runs with `runbook runs`)",
            args.run_id,
            global.state_dir.join("runs").display()
        )));
    };
    // A report tells what the journal says: a damaged one is refused, with the way out.
    if let (Ok(meta), Err(e)) = (state::read_meta(&dir), state::replay(&dir)) {
        return Err(anyhow::Error::from(e).context(state::repair_hint(&meta.id)));
    }
    match (&args.output, args.format) {
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
            println!("{}", written.display());
        }
    }
    Ok(Outcome::Success)
}

//! `runbook report RUN_ID`: a run's report as Markdown, HTML or versioned JSON.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::report::{self, Format};

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
    let by_id = global.state_dir.join("runs").join(&args.run_id);
    let dir = if by_id.is_dir() {
        by_id
    } else if PathBuf::from(&args.run_id).join("journal.jsonl").is_file()
        || PathBuf::from(&args.run_id).join("probe").is_dir()
    {
        PathBuf::from(&args.run_id)
    } else {
        return Err(invalid(format!(
            "no run `{}` in {} (list the runs with `runbook runs`)",
            args.run_id,
            global.state_dir.join("runs").display()
        )));
    };
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

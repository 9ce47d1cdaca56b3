//! `runbook show RUN_ID`: one run's status, step by step.

use super::ListFormat;
use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::state::{self, StateDir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run (`runbook runs` lists them).
    pub run_id: String,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let dir = StateDir::new(&global.state_dir)
        .run_dir(&args.run_id)
        .map_err(|e| invalid(e.to_string()))?;
    let summary = state::summarize(&dir).map_err(|e| match e {
        state::StateError::Journal(j) => {
            anyhow::Error::from(j).context(state::repair_hint(&args.run_id))
        }
        other => other.into(),
    })?;
    match args.format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        ListFormat::Text => {
            println!(
                "run {}  ({} on {})",
                summary.id, summary.runbook, summary.platform
            );
            println!("status: {}", summary.status);
            println!(
                "started: {}",
                summary
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            if let Some(f) = summary.finished_at {
                println!(
                    "finished: {}",
                    f.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            println!(
                "\n{:<24} {:<22} {:<12} {:>8}  ERROR",
                "STEP", "ACTION", "STATUS", "ATTEMPTS"
            );
            for s in &summary.steps {
                println!(
                    "{:<24} {:<22} {:<12} {:>8}  {}",
                    s.id,
                    s.action,
                    s.status.to_string(),
                    s.attempts,
                    crate::redact::printable(
                        s.error.as_deref().or(s.reason.as_deref()).unwrap_or("")
                    )
                );
            }
            println!("\nfolder: {}", dir.display());
        }
    }
    Ok(Outcome::Success)
}

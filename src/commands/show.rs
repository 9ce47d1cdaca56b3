//! `runbook show RUN_ID`: one run's status, step by step; of a fleet, member by member.

use super::ListFormat;
use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::fleet;
use crate::runbook::FleetApproval;
use crate::state::{self, StateDir, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run (`runbook runs` lists them).
    pub run_id: String,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    if state::is_fleet_id(&args.run_id) {
        state::local_only(global, "a fleet")?;
        return show_fleet(global, &args);
    }
    let store = Store::open(global)?;
    store.pull(&args.run_id, false)?;
    let dir = store
        .dir
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

/// `show FLEET_ID`: the fleet's status and each member's, read from its run's journal.
fn show_fleet(global: &Global, args: &Args) -> anyhow::Result<Outcome> {
    let state = StateDir::new(&global.state_dir);
    let dir = state
        .fleet_dir(&args.run_id)
        .map_err(|e| invalid(e.to_string()))?;
    let f = fleet::summarize(&state, &dir)?;
    match args.format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&f)?),
        ListFormat::Text => {
            println!(
                "fleet {}  ({} on {}, for each {})",
                f.id, f.runbook, f.platform, f.param
            );
            println!("status: {} ({})", f.status, fleet::counts(&f.members));
            println!(
                "started: {}",
                f.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            println!(
                "max concurrency {}, max errors {}, approval {}",
                f.max_concurrency,
                f.max_errors
                    .map_or_else(|| "none".to_string(), |m| m.to_string()),
                match f.approval {
                    FleetApproval::Each => "by each run",
                    FleetApproval::Once => "once for the fleet",
                }
            );
            println!(
                "\n{:<24} {:<44} {:<18} {:>9}  ERROR",
                "VALUE", "RUN", "STATUS", "DURATION"
            );
            for m in &f.members {
                let row = format!(
                    "{:<24} {:<44} {:<18} {:>9}  {}",
                    crate::redact::printable(&m.value),
                    m.run_id.as_deref().unwrap_or("-"),
                    m.status.to_string(),
                    m.duration_s
                        .map_or_else(|| "-".to_string(), |d| format!("{d:.1}s")),
                    crate::redact::printable(m.error.as_deref().unwrap_or(""))
                );
                println!("{}", row.trim_end());
            }
            println!("\nfolder: {}", dir.display());
        }
    }
    Ok(Outcome::Success)
}

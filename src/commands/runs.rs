//! `runbook runs`: every run in the state dir, oldest first.

use super::ListFormat;
use crate::cli::Global;
use crate::error::Outcome;
use crate::state::{self, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let store = Store::open(global)?;
    let mut runs = Vec::new();
    for id in store.run_ids()? {
        let dir = store.dir.run_dir(&id)?;
        match state::summarize(&dir) {
            Ok(mut s) => {
                s.steps.clear();
                runs.push(s);
            }
            Err(e) => eprintln!("warning: run {id}: {}", crate::error::chain(&e)),
        }
    }
    runs.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    match args.format {
        ListFormat::Json => {
            let list: Vec<serde_json::Value> = runs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "runbook": r.runbook, "status": r.status, "platform": r.platform,
                        "started_at": r.started_at, "finished_at": r.finished_at,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ListFormat::Text if runs.is_empty() => {
            eprintln!("no runs in {}", global.state_dir.display())
        }
        ListFormat::Text => {
            println!(
                "{:<44} {:<12} {:<8} {:<25} RUNBOOK",
                "ID", "STATUS", "PLATFORM", "STARTED"
            );
            for r in &runs {
                println!(
                    "{:<44} {:<12} {:<8} {:<25} {}",
                    r.id,
                    r.status.to_string(),
                    r.platform.to_string(),
                    r.started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    r.runbook
                );
            }
        }
    }
    Ok(Outcome::Success)
}

//! `runbook runs`: every run in the state dir, oldest first, then the fleets, so that a
//! fleet whose id scrolled away is found again and each run says the fleet it belongs to.

use std::collections::HashMap;

use super::ListFormat;
use crate::cli::Global;
use crate::error::Outcome;
use crate::fleet;
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
    let mut fleets = Vec::new();
    for id in store.dir.fleet_ids() {
        let summary = store
            .dir
            .fleet_dir(&id)
            .map_err(anyhow::Error::from)
            .and_then(|dir| Ok(fleet::summarize(&store.dir, &dir)?));
        match summary {
            Ok(f) => fleets.push(f),
            Err(e) => eprintln!("warning: fleet {id}: {e:#}"),
        }
    }
    fleets.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    let fleet_of: HashMap<&str, &str> = fleets
        .iter()
        .flat_map(|f| {
            f.members
                .iter()
                .filter_map(|m| Some((m.run_id.as_deref()?, f.id.as_str())))
        })
        .collect();
    match args.format {
        ListFormat::Json => {
            let list: Vec<serde_json::Value> = runs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "runbook": r.runbook, "status": r.status, "platform": r.platform,
                        "started_at": r.started_at, "finished_at": r.finished_at,
                        "fleet": fleet_of.get(r.id.as_str()),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ListFormat::Text if runs.is_empty() && fleets.is_empty() => {
            eprintln!("no runs in {}", global.state_dir.display())
        }
        ListFormat::Text => {
            if !runs.is_empty() {
                println!(
                    "{:<44} {:<12} {:<8} {:<25} RUNBOOK",
                    "ID", "STATUS", "PLATFORM", "STARTED"
                );
            }
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
            if !fleets.is_empty() {
                if !runs.is_empty() {
                    println!();
                }
                println!(
                    "{:<44} {:<12} {:<8} {:<25} MEMBERS",
                    "FLEET", "STATUS", "PLATFORM", "STARTED"
                );
            }
            for f in &fleets {
                println!(
                    "{:<44} {:<12} {:<8} {:<25} {}",
                    f.id,
                    f.status.to_string(),
                    f.platform.to_string(),
                    f.started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    fleet::counts(&f.members)
                );
            }
        }
    }
    Ok(Outcome::Success)
}

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
            let started = |at: &chrono::DateTime<chrono::Utc>| {
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            if !runs.is_empty() {
                row(["ID", "STATUS", "PLATFORM", "STARTED", "RUNBOOK"]);
            }
            for r in &runs {
                let (status, platform) = (r.status.to_string(), r.platform.to_string());
                row([
                    &r.id,
                    &status,
                    &platform,
                    &started(&r.started_at),
                    &r.runbook,
                ]);
            }
            if !fleets.is_empty() {
                if !runs.is_empty() {
                    println!();
                }
                row(["FLEET", "STATUS", "PLATFORM", "STARTED", "MEMBERS"]);
            }
            for f in &fleets {
                let (status, platform) = (f.status.to_string(), f.platform.to_string());
                let members = fleet::counts(&f.members);
                row([&f.id, &status, &platform, &started(&f.started_at), &members]);
            }
        }
    }
    Ok(Outcome::Success)
}

/// One line of a table: id, status, platform, start, and the last column as it is.
fn row([id, status, platform, started, last]: [&str; 5]) {
    println!("{id:<44} {status:<12} {platform:<8} {started:<25} {last}");
}

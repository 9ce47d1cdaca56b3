//! `runbook destroy`: stop every server a local rehearsal started, whatever state the run
//! ended in (a run killed halfway leaves its servers running on purpose, so it can resume).

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::lock::RunLock;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run whose servers to stop (see `runbook runs`).
    pub run_id: String,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    if args.run_id.is_empty() || args.run_id.contains(['/', '\\']) || args.run_id.starts_with('.') {
        return Err(invalid(format!(
            "`{}` is not a run id (see `runbook runs`)",
            args.run_id
        )));
    }
    // A rehearsal's servers are on the machine that ran it, in its own folder of the state dir.
    let run_dir: PathBuf = crate::state::Store::local_root(global)?
        .join("runs")
        .join(&args.run_id);
    if !run_dir.join("journal.jsonl").exists() {
        return Err(invalid(format!(
            "there is no run `{}` in {} (see `runbook runs`, or pass --state-dir)",
            args.run_id,
            global.state_dir.display()
        )));
    }
    // A live run may be starting or using these servers: only a run nobody drives is destroyed.
    let _lock = if global.s3_state().is_some() {
        crate::state::Store::open(global)?.lock_as_is(&run_dir, &args.run_id)?
    } else {
        RunLock::acquire(&run_dir, &args.run_id)?
    };
    let recorded = crate::platform::local::recorded_servers(&run_dir)?;
    let stopped = crate::platform::local::stop_recorded(&run_dir)
        .await
        .with_context(|| format!("stopping the servers of run {}", args.run_id))?;
    for s in &stopped {
        println!(
            "stopped {} ({}) on 127.0.0.1:{} (pid {})",
            s.node, s.group, s.port, s.pid
        );
    }
    println!(
        "{}: {} server(s) stopped, {} already gone; data and logs stay in {}",
        args.run_id,
        stopped.len(),
        recorded.len() - stopped.len(),
        run_dir.join("servers").display()
    );
    Ok(Outcome::Success)
}

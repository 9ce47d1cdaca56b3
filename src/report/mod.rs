//! The per-step change-review report of a run.
//!
//! (Being built; this is the contract the executor uses.)

use std::path::{Path, PathBuf};

/// Writes the run's reports (md, html, json) into its directory; returns their paths.
pub fn write_run_reports(_run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(Vec::new())
}

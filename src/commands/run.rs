//! `runbook run`.

use crate::cli::Global;
use crate::error::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_global: &Global, _args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`runbook run` is not built yet")
}

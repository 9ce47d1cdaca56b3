//! The command line: global flags shared by every command, and one subcommand per verb.
//!
//! Each command's own flags live in its module under `commands/`, next to its code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::error::Outcome;

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RUNBOOK_GIT_REVISION"), ")"),
    about = "Run, rehearse, resume and report runbooks that move Redis OSS caches to Valkey",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Clone, Debug, Args)]
pub struct Global {
    /// Where runs are kept.
    #[arg(
        long,
        global = true,
        default_value = ".runbook",
        env = "RUNBOOK_STATE_DIR",
        value_name = "DIR",
        value_parser = local_state_dir
    )]
    pub state_dir: PathBuf,
    /// Set a runbook parameter (repeatable).
    #[arg(long = "var", global = true, value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read runbook parameters from a YAML mapping.
    #[arg(long, global = true, value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
    /// AWS profile (aws platform).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS region (aws platform).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS endpoint URL, e.g. a local moto or LocalStack (aws platform).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Reach HOST:PORT at ADDR:PORT instead (an SSH tunnel or bastion), curl-style. Repeatable.
    #[arg(long, global = true, value_name = "HOST:PORT=ADDR:PORT")]
    pub resolve: Vec<String>,
}

/// A state dir is a local folder: an `s3://` URL would otherwise become a folder named
/// `s3:` here, and runs a team thinks are shared would not be.
fn local_state_dir(text: &str) -> Result<PathBuf, String> {
    if text.starts_with("s3://") {
        Err("state on S3 is not available in this version; give a local folder".into())
    } else {
        Ok(PathBuf::from(text))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and print every step without changing anything.
    Plan(commands::plan::Args),
    /// Execute a runbook.
    Run(commands::run::Args),
    /// Continue a failed or interrupted run.
    Resume(commands::resume::Args),
    /// Write a run's report.
    Report(commands::report::Args),
    /// List runs.
    Runs(commands::runs::Args),
    /// Show one run's status.
    Show(commands::show::Args),
    /// Probe endpoints (latency, errors, disconnects) until Ctrl+C or --duration.
    Probe(commands::probe::Args),
    /// Compare the keys of two endpoints.
    Verify(commands::verify::Args),
    /// Write deterministic test data to an endpoint.
    Seed(commands::seed::Args),
    /// Benchmark endpoints side by side.
    Bench(commands::bench::Args),
    /// Stop and remove what a local rehearsal started.
    Destroy(commands::destroy::Args),
    /// Print the JSON Schema of the runbook format.
    Schema(commands::schema::Args),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(commands::completions::Args),
}

/// Runs the chosen command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    match cli.command {
        Command::Plan(a) => commands::plan::run(g, a).await,
        Command::Run(a) => commands::run::run(g, a).await,
        Command::Resume(a) => commands::resume::run(g, a).await,
        Command::Report(a) => commands::report::run(g, a).await,
        Command::Runs(a) => commands::runs::run(g, a).await,
        Command::Show(a) => commands::show::run(g, a).await,
        Command::Probe(a) => commands::probe::run(g, a).await,
        Command::Verify(a) => commands::verify::run(g, a).await,
        Command::Seed(a) => commands::seed::run(g, a).await,
        Command::Bench(a) => commands::bench::run(g, a).await,
        Command::Destroy(a) => commands::destroy::run(g, a).await,
        Command::Schema(a) => commands::schema::run(g, a).await,
        Command::Completions(a) => commands::completions::run(g, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_state_dir_is_refused_not_taken_for_a_folder() {
        let err =
            Cli::try_parse_from(["runbook", "runs", "--state-dir", "s3://team/runs"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "error: invalid value 's3://team/runs' for '--state-dir <DIR>': state on S3 is not available in this version; give a local folder\n\nFor more information, try '--help'.\n"
        );
    }
}

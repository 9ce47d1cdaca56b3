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
    /// Where runs are kept: a folder, or s3://BUCKET/PREFIX for a team.
    #[arg(
        long,
        global = true,
        default_value = ".runbook",
        env = "RUNBOOK_STATE_DIR",
        value_name = "DIR",
        value_parser = state_dir
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

/// A state dir is a folder or an `s3://` URL, checked here so that a wrong URL is refused
/// before anything runs (and never becomes a folder named `s3:`).
fn state_dir(text: &str) -> Result<PathBuf, String> {
    match crate::state::s3::S3Url::parse(text) {
        Some(Err(why)) => Err(why),
        _ => Ok(PathBuf::from(text)),
    }
}

impl Global {
    /// The state dir on S3, when `--state-dir` is an `s3://` URL.
    pub fn s3_state(&self) -> Option<Result<crate::state::s3::S3Url, String>> {
        self.state_dir
            .to_str()
            .and_then(crate::state::s3::S3Url::parse)
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
    /// Break the lock of a run on S3 whose holder is gone (its lease ran out).
    Unlock(commands::unlock::Args),
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
        Command::Unlock(a) => commands::unlock::run(g, a).await,
        Command::Schema(a) => commands::schema::run(g, a).await,
        Command::Completions(a) => commands::completions::run(g, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_state_dir_is_read_and_a_wrong_one_refused() {
        let cli = Cli::try_parse_from(["runbook", "runs", "--state-dir", "s3://team/runs/"])
            .expect("a bucket and a prefix");
        assert_eq!(
            cli.global.s3_state(),
            Some(Ok(crate::state::s3::S3Url {
                bucket: "team".into(),
                prefix: "runs".into()
            }))
        );
        let err = Cli::try_parse_from(["runbook", "runs", "--state-dir", "s3://"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "error: invalid value 's3://' for '--state-dir <DIR>': an S3 state dir names its bucket: s3://BUCKET or s3://BUCKET/PREFIX\n\nFor more information, try '--help'.\n"
        );
    }
}

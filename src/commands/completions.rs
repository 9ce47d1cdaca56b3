//! `runbook completions SHELL`: the shell's completion script, generated from the same
//! definitions clap parses, so it always knows every command and flag.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, Global};
use crate::error::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:
  bash: runbook completions bash > ~/.local/share/bash-completion/completions/runbook
  zsh:  runbook completions zsh > \"${fpath[1]}/_runbook\"
  fish: runbook completions fish > ~/.config/fish/completions/runbook.fish")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub async fn run(_global: &Global, args: Args) -> anyhow::Result<Outcome> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "runbook",
        &mut std::io::stdout(),
    );
    Ok(Outcome::Success)
}

//! The `runbook` binary: parse the command line, run the command, map the outcome to an
//! exit status (0 success, 1 the run or check failed, 2 invalid input).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output goes away
    // (`runbook plan ... | head`) instead of failing on a broken pipe.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = runbook::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(runbook::cli::dispatch(cli)) {
        Ok(outcome) => ExitCode::from(outcome as u8),
        Err(err) => {
            let message = format!("{err:#}");
            // Diagnostics of a runbook come rendered, each with its own `error:` line.
            if message.starts_with("error: ") {
                eprintln!("{message}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(runbook::error::exit_status(&err))
        }
    }
}

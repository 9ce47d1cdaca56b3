//! What the person running a runbook sees on stderr while it runs.
//!
//! A spinner (indicatif) on a terminal; plain lines when stderr is not a terminal
//! (CI logs, pipes), so a log still tells the story.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one command.
pub struct Progress {
    /// A spinner when stderr is a terminal.
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix} {wide_msg}")
                    .expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, quiet: false }
    }

    /// A progress display that prints nothing.
    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            quiet: true,
        }
    }

    /// The step now running, `index` of `total`.
    pub fn step(&self, index: usize, total: usize, step: &str, action: &str) {
        let prefix = format!("[{index}/{total}] {step}");
        match &self.bar {
            Some(bar) => {
                bar.println(format!("{prefix} ({action})"));
                bar.set_prefix(prefix);
                bar.set_message(action.to_string());
            }
            None => self.line(&format!("{prefix} ({action})")),
        }
    }

    /// A line about a step, kept above the spinner.
    pub fn note(&self, step: &str, message: &str) {
        self.line(&format!("  {step}: {message}"));
    }

    /// A line printed as it is, but for control characters, shown escaped.
    pub fn line(&self, message: &str) {
        let message = crate::redact::printable(message);
        let message = message.as_ref();
        match &self.bar {
            Some(bar) => bar.println(message),
            None if !self.quiet => eprintln!("{message}"),
            None => {}
        }
    }

    /// Runs `f` with the spinner hidden (a prompt, for example).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

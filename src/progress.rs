//! What the person running a runbook sees on stderr while it runs.
//!
//! A spinner (indicatif) on a terminal; plain lines when stderr is not a terminal
//! (CI logs, pipes), so a log still tells the story. A fleet shows one spinner per running
//! member.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// The progress display of a fleet: one line per running member on a terminal
/// (indicatif's multi-progress), each showing the member's latest line; every member's
/// lines, each after its value, when stderr is not a terminal.
pub struct FleetProgress {
    multi: Option<MultiProgress>,
    bars: HashMap<usize, ProgressBar>,
}

impl FleetProgress {
    pub fn new() -> FleetProgress {
        FleetProgress {
            multi: std::io::stderr()
                .is_terminal()
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: HashMap::new(),
        }
    }

    /// Member `index` (its value `label`) started.
    pub fn start(&mut self, index: usize, label: &str) {
        if let Some(multi) = &self.multi {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix} {wide_msg}")
                    .expect("static template"),
            );
            bar.set_prefix(format!("[{label}]"));
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(index, bar);
        }
    }

    /// A line member `index` printed: its bar's message, or a plain line.
    pub fn member_line(&self, index: usize, label: &str, line: &str) {
        let line = crate::redact::printable(line);
        match self.bars.get(&index) {
            Some(bar) => bar.set_message(line.into_owned()),
            None => eprintln!("[{label}] {line}"),
        }
    }

    /// Member `index` ended: its bar goes, `verdict` stays.
    pub fn finish(&mut self, index: usize, label: &str, verdict: &str) {
        if let Some(bar) = self.bars.remove(&index) {
            bar.finish_and_clear();
        }
        self.line(&format!("[{label}] {verdict}"));
    }

    /// A line of the fleet's own, kept above the members' bars.
    pub fn line(&self, message: &str) {
        let message = crate::redact::printable(message);
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(message.as_ref());
            }
            None => eprintln!("{message}"),
        }
    }
}

impl Default for FleetProgress {
    fn default() -> Self {
        FleetProgress::new()
    }
}

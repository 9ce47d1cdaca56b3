//! `exec`: run a shell command, capture its output, check its exit status.
//!
//! What a command prints may be huge: the whole of it (secrets masked) goes to
//! `steps/<id>/stdout` and `stderr` in the run folder; the output `stdout`, which the
//! journal and the reports keep, holds at most its head and tail.

use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};

pub const SPEC: ActionSpec = ActionSpec {
    name: "exec",
    summary: "Run a command with `sh -c`; its standard output becomes the output `stdout`.",
    outputs: super::Declared::Listed(&["stdout", "exit_status"]),
    effect: Effect::Changes,
    build: super::build::<Exec>,
    schema: super::schema::<Exec>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The command, run by `sh -c` in the runbook's folder.
    command: String,
    /// When this path exists the command is not run again: how a non-idempotent command
    /// is made safe to resume (the command should create the path last).
    #[serde(default)]
    creates: Option<PathBuf>,
    /// Exit statuses that count as success (default: 0 only).
    #[serde(default = "default_ok")]
    ok_status: Vec<i32>,
}

/// How many lines of a command's output are shown as notes.
const SHOWN_LINES: usize = 10;
/// The most of a command's output kept in its output `stdout` (and so in the journal and
/// the reports): its head and its tail; the whole of it goes to a file of the run.
const KEPT_BYTES: usize = 64 * 1024;
/// The longest line of output shown as a note or in an error.
const SHOWN_LINE_BYTES: usize = 512;

fn default_ok() -> Vec<i32> {
    vec![0]
}

#[async_trait]
impl Action for Exec {
    fn effect(&self) -> Effect {
        Effect::Changes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        let mut op = Operation::new("shell", format!("sh -c {:?}", self.command));
        if let Some(c) = &self.creates {
            op = op.param("unless_exists", c.display().to_string());
        }
        vec![op]
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        if let Some(creates) = &self.creates {
            let path = ctx.path(creates);
            if path.exists() {
                ctx.note(format!("{} exists: already done", creates.display()));
                return Ok(outputs(String::new(), 0));
            }
        }
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .current_dir(ctx.base_dir)
            .env("RUNBOOK_RUN_ID", ctx.run_id)
            .env("RUNBOOK_RUN_DIR", ctx.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timeout or Ctrl+C drops this future: the command must not live on.
            .kill_on_drop(true);
        // If `runbook` itself is killed (kill -9), the command dies with it instead of
        // finishing behind a resumed run's back.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| ActionError::fatal(format!("cannot start `sh`: {e}")))?;
        let stdout = ctx.journal.redact(&String::from_utf8_lossy(&out.stdout));
        let stderr = ctx.journal.redact(&String::from_utf8_lossy(&out.stderr));
        let dir = ctx.run_dir.join("steps").join(ctx.step_id);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("stdout"), &stdout))
            .and_then(|()| std::fs::write(dir.join("stderr"), &stderr))
            .map_err(|e| {
                ActionError::fatal(format!(
                    "cannot keep the command's output in {}: {e}",
                    dir.display()
                ))
            })?;
        let stdout = cap(&stdout, &dir.join("stdout"));
        let code = out.status.code().unwrap_or(-1);
        if !self.ok_status.contains(&code) {
            let tail: Vec<&str> = stderr.lines().rev().take(5).map(short_line).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(ActionError::fatal(format!(
                "command exited with status {code}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            )));
        }
        // The person watching (and the journal) sees what the command said, briefly.
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in lines.iter().take(SHOWN_LINES) {
            ctx.note(short_line(line));
        }
        if lines.len() > SHOWN_LINES {
            ctx.note(format!(
                "… {} more lines in the output `stdout`",
                lines.len() - SHOWN_LINES
            ));
        }
        Ok(outputs(stdout.trim_end_matches('\n').to_string(), code))
    }
}

/// `text` if it is at most [`KEPT_BYTES`] long, else its head and tail around a marker
/// that says how much was left out and where the whole is.
fn cap(text: &str, whole: &std::path::Path) -> String {
    if text.len() <= KEPT_BYTES {
        return text.to_string();
    }
    let half = KEPT_BYTES / 2;
    let head = &text[..text.floor_char_boundary(half)];
    let tail = &text[text.ceil_char_boundary(text.len() - half)..];
    format!(
        "{head}\n… {} bytes left out, whole output in {}\n{tail}",
        text.len() - head.len() - tail.len(),
        whole.display()
    )
}

/// A line cut to [`SHOWN_LINE_BYTES`].
fn short_line(line: &str) -> &str {
    &line[..line.floor_char_boundary(SHOWN_LINE_BYTES)]
}

fn outputs(stdout: String, code: i32) -> Outputs {
    let mut o = Outputs::new();
    o.insert("stdout".into(), stdout.into());
    o.insert("exit_status".into(), code.into());
    o
}

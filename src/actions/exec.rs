//! `exec`: run a shell command, capture its output, check its exit status.
//!
//! A command may start children of its own, and `sh` dying does not end them. So each
//! command runs in a process group of its own, journaled before the command may begin
//! (it waits at a gate until the journal has the group); the group is ended when the step
//! is interrupted or times out, and a resume ends what a killed `runbook` left behind —
//! so a side effect happens once, not once per attempt that was cut short.
//!
//! What a command prints may be huge: the whole of it (secrets masked) goes to
//! `steps/<id>/stdout` and `stderr` in the run folder; the output `stdout`, which the
//! journal and the reports keep, holds at most its head and tail.

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::journal::Event;

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
        let (gate, mut open_gate) =
            std::io::pipe().map_err(|e| ActionError::fatal(format!("cannot start `sh`: {e}")))?;
        let gate_fd = gate.as_raw_fd();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(GATED)
            .arg("sh")
            .arg(&self.command)
            .current_dir(ctx.base_dir)
            .env("RUNBOOK_RUN_ID", ctx.run_id)
            .env("RUNBOOK_RUN_DIR", ctx.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // The gate is the command's fd 3 until it opens.
                if libc::dup2(gate_fd, GATE_FD) < 0 || libc::fcntl(GATE_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // If `runbook` itself is killed (kill -9), `sh` dies with it; what it
                // started is ended by the resume, from the journaled group.
                #[cfg(target_os = "linux")]
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| ActionError::fatal(format!("cannot start `sh`: {e}")))?;
        drop(gate);
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Group);
        if let Some(Group(pgid)) = &group {
            ctx.journal
                .append(Event::StepProcess {
                    step: ctx.step_id.to_string(),
                    pgid: *pgid,
                })
                .map_err(|e| {
                    ActionError::fatal(format!(
                        "the command was not started: {}",
                        crate::error::chain(&e)
                    ))
                })?;
        }
        open_gate
            .write_all(b"go\n")
            .and_then(|()| open_gate.flush())
            .map_err(|e| ActionError::fatal(format!("cannot start the command: {e}")))?;
        drop(open_gate);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ActionError::fatal(format!("cannot wait for `sh`: {e}")))?;
        // The command ended on its own: what it left running in the background is its business.
        std::mem::forget(group);
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

/// The file descriptor the gate is on in the command.
const GATE_FD: i32 = 3;

/// Waits at the gate (a line on fd 3, written once the group is journaled), then runs
/// the command (`$1`) as `sh -c` would have.
const GATED: &str = "read -r go <&3 || exit 125; exec 3<&-; exec sh -c \"$1\"";

/// The process group of a command under way; ended when dropped (an interrupt, a timeout).
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: signalling a process group this process created.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

/// Ends the process group `pgid` if it still runs a command of run `run_id` (a `runbook`
/// killed with kill -9 leaves it), and waits until it is gone. Returns whether it ran.
pub fn end_leftover(pgid: i32, run_id: &str) -> bool {
    if members(pgid).iter().all(|&pid| !of_run(pid, run_id)) {
        return false;
    }
    // SAFETY: signalling a process group that runs a command of this run.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The live (not zombie) processes of group `pgid`.
fn members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the parenthesised name: state, ppid, pgrp.
            let mut fields = stat
                .rsplit_once(") ")
                .map(|(_, r)| r)
                .unwrap_or("")
                .split(' ');
            let state = fields.next();
            let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
            group == Some(pgid) && !matches!(state, Some("Z" | "X"))
        })
        .collect()
}

/// Whether process `pid` was started for run `run_id` (a pid reused since is not).
fn of_run(pid: i32, run_id: &str) -> bool {
    let want = format!("RUNBOOK_RUN_ID={run_id}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .any(|var| var == want.as_bytes())
}

fn outputs(stdout: String, code: i32) -> Outputs {
    let mut o = Outputs::new();
    o.insert("stdout".into(), stdout.into());
    o.insert("exit_status".into(), code.into());
    o
}

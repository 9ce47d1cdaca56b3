//! `exec`: run a shell command, capture its output, check its exit status.
//!
//! A command may start children of its own, and `sh` dying does not end them. So each
//! command runs in a process group of its own, journaled before the command may begin
//! (it waits at a gate until the journal has the group); the group is ended when the step
//! is interrupted or times out, and a resume ends what a killed `runbook` left behind —
//! so a side effect happens once, not once per attempt that was cut short.
//!
//! What a command prints may be huge: the whole of it (secrets masked) is streamed to
//! `steps/<id>/stdout` and `stderr` in the run folder as it comes; only its head and tail
//! are held in memory, and the output `stdout`, which the journal and the reports keep,
//! holds just those.

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
        let mut child = cmd
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
        let dir = ctx.run_dir.join("steps").join(ctx.step_id);
        let kept_at = |e: std::io::Error| {
            ActionError::fatal(format!(
                "cannot keep the command's output in {}: {e}",
                dir.display()
            ))
        };
        std::fs::create_dir_all(&dir).map_err(kept_at)?;
        let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
        let redactor = ctx.journal.redactor();
        let (stdout, stderr) = tokio::try_join!(
            keep(out_pipe, dir.join("stdout"), redactor.clone()),
            keep(err_pipe, dir.join("stderr"), redactor.clone()),
        )
        .map_err(kept_at)?;
        let status = child
            .wait()
            .await
            .map_err(|e| ActionError::fatal(format!("cannot wait for `sh`: {e}")))?;
        // The command ended on its own: what it left running in the background is its business.
        std::mem::forget(group);
        let stdout = stdout.text(&dir.join("stdout"));
        let stderr = stderr.text(&dir.join("stderr"));
        let code = status.code().unwrap_or(-1);
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

/// Reads `pipe` to its end, writing all of it, masked, to the file `whole`; only its head
/// and tail stay in memory, so a command that prints gigabytes costs no more than one
/// that prints a page.
async fn keep<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    whole: PathBuf,
    redactor: crate::redact::Redactor,
) -> std::io::Result<Kept> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(&whole).await?);
    let mut kept = Kept::default();
    let mut masker = crate::redact::StreamMasker::new(redactor);
    if let Some(mut pipe) = pipe {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = pipe.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let text = masker.push(&buf[..n]);
            file.write_all(text.as_bytes()).await?;
            kept.push(&text);
        }
    }
    let text = masker.finish();
    file.write_all(text.as_bytes()).await?;
    kept.push(&text);
    file.flush().await?;
    Ok(kept)
}

/// What is kept in memory of a command's (masked) output: its first [`KEPT_BYTES`], and
/// its last half of that.
#[derive(Default)]
struct Kept {
    head: String,
    /// The last bytes seen; may start inside a character.
    tail: Vec<u8>,
    len: usize,
}

impl Kept {
    fn push(&mut self, text: &str) {
        self.len += text.len();
        let room = KEPT_BYTES.saturating_sub(self.head.len());
        self.head
            .push_str(&text[..text.floor_char_boundary(room.min(text.len()))]);
        self.tail.extend_from_slice(text.as_bytes());
        let half = KEPT_BYTES / 2;
        if self.tail.len() > 2 * half {
            self.tail.drain(..self.tail.len() - half);
        }
    }

    /// The whole output if it is at most [`KEPT_BYTES`] long, else its head and tail around
    /// a marker that says how much was left out and that the whole is in `whole`.
    fn text(self, whole: &std::path::Path) -> String {
        if self.len <= KEPT_BYTES {
            return self.head;
        }
        let half = KEPT_BYTES / 2;
        let head = &self.head[..self.head.floor_char_boundary(half)];
        let tail_bytes = &self.tail[self.tail.len().saturating_sub(half)..];
        let starts = tail_bytes
            .iter()
            .position(|&b| (b as i8) >= -0x40)
            .unwrap_or(tail_bytes.len());
        let tail = String::from_utf8_lossy(&tail_bytes[starts..]);
        format!(
            "{head}\n… {} bytes left out, whole output in {}\n{tail}",
            self.len - head.len() - tail.len(),
            whole.display()
        )
    }
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

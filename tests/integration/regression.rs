//! Regression tests named after the behaviour they guard: input a careless or hostile user
//! could give, each once reported broken (a crash, a silent cut, a dangerous default).

use std::time::{Duration, Instant};

use crate::support::Workspace;

/// A runbook whose only param is required and ends up in a destructive command.
const RM: &str = "version: 1
name: cleanup
params:
  dir: { description: the folder to empty }
steps:
  - id: clean
    action: exec
    with: { command: \"rm -rf {{ params.dir }}/\" }
";

const EMPTY_DIR: &str = "error: param `dir` is empty: a required param needs a value (pass --var dir=VALUE; or declare `allow_empty: true` if empty is meant)\n";

#[test]
fn an_empty_var_does_not_satisfy_a_required_param() {
    let ws = Workspace::new();
    ws.write("rm.yaml", RM);
    for args in [
        &["plan", "rm.yaml", "--var", "dir="][..],
        &["run", "rm.yaml", "--var", "dir=", "--yes"][..],
    ] {
        let ran = ws.cmd(args).expect(2);
        assert_eq!((ran.stdout.as_str(), ran.stderr.as_str()), ("", EMPTY_DIR));
    }
    assert!(
        !ws.path().join(".runbook/runs").exists(),
        "no run may start"
    );
}

#[test]
fn an_empty_environment_value_does_not_satisfy_a_required_param() {
    let ws = Workspace::new();
    ws.write("rm.yaml", RM);
    let ran = ws
        .cmd(&["plan", "rm.yaml"])
        .env("RUNBOOK_VAR_dir", "")
        .expect(2);
    assert_eq!((ran.stdout.as_str(), ran.stderr.as_str()), ("", EMPTY_DIR));
}

#[test]
fn an_empty_vars_file_entry_does_not_satisfy_a_required_param() {
    let ws = Workspace::new();
    ws.write("rm.yaml", RM);
    for text in ["dir:\n", "dir: \"\"\n", "dir: \"  \"\n"] {
        ws.write("vars.yaml", text);
        let ran = ws
            .cmd(&["plan", "rm.yaml", "--vars-file", "vars.yaml"])
            .expect(2);
        assert_eq!((ran.stdout.as_str(), ran.stderr.as_str()), ("", EMPTY_DIR));
    }
}

#[test]
fn allow_empty_lets_an_empty_value_through() {
    let ws = Workspace::new();
    ws.write(
        "rm.yaml",
        &RM.replace(
            "{ description: the folder to empty }",
            "{ allow_empty: true }",
        ),
    );
    let ran = ws
        .cmd(&["plan", "rm.yaml", "--var", "dir=", "--format", "json"])
        .expect(0);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(plan["steps"][0]["inputs"]["command"], "rm -rf /");
}

/// Runs `plan FILE` and returns stderr, asserting exit 2 and nothing on stdout.
fn plan_error(ws: &Workspace, file: &str, text: &[u8]) -> String {
    std::fs::write(ws.path().join(file), text).expect("write");
    let ran = ws.cmd(&["plan", file]).expect(2);
    assert_eq!(ran.stdout, "");
    ran.stderr
}

#[test]
fn a_nul_byte_is_an_error_not_the_end_of_the_runbook() {
    let ws = Workspace::new();
    let text = b"version: 1\nname: x\nsteps:\n  - id: a\n    action: sleep\n    with: { duration: 1s }\n\0rollback:\n  - id: b\n    action: sleep\n    with: { duration: 1s }\n";
    assert_eq!(
        plan_error(&ws, "nul.yaml", text),
        "error: a NUL byte: this is not a text file\n --> nul.yaml:7:1\n  |\n7 | \0rollback:\n  | ^\n  = help: remove the NUL byte; YAML text cannot contain one\n\n1 error in nul.yaml\n"
    );
}

#[test]
fn a_second_yaml_document_is_an_error_not_ignored() {
    let ws = Workspace::new();
    let text = b"version: 1\nname: x\nsteps: []\n---\nversion: 1\nname: y\nsteps: []\n";
    assert_eq!(
        plan_error(&ws, "two.yaml", text),
        "error: a second YAML document\n --> two.yaml:4:1\n  |\n4 | ---\n  | ^\n  = help: a file holds one runbook: remove the `---` and what follows, or move it to its own file\n\n1 error in two.yaml\n"
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let ws = Workspace::new();
    ws.write(
        "bom.yaml",
        "\u{feff}version: 1\nname: bom\nsteps:\n  - id: a\n    action: sleep\n    with: { duration: 1s }\n",
    );
    ws.write("vars.yaml", "\u{feff}{}\n");
    let ran = ws
        .cmd(&[
            "plan",
            "bom.yaml",
            "--vars-file",
            "vars.yaml",
            "--format",
            "json",
        ])
        .expect(0);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(plan["runbook"], "bom");
    assert_eq!(ran.stderr, "");
}

/// `depth` levels of block mappings under a param's default, each one space further in.
fn deep(depth: usize) -> String {
    let mut text = String::from("version: 1\nname: x\nsteps: []\nparams:\n  p:\n    default:\n");
    for i in 0..depth {
        text.push_str(&" ".repeat(6 + i));
        text.push_str("a:\n");
    }
    text
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let ws = Workspace::new();
    let stderr = plan_error(&ws, "deep.yaml", deep(2000).as_bytes());
    let line = format!("{}a:", " ".repeat(67));
    assert_eq!(
        stderr,
        format!(
            "error: nested more than 64 levels deep\n  --> deep.yaml:68:69\n   |\n68 | {line}\n   | {}^\n   = help: flatten the structure\n\n1 error in deep.yaml\n",
            " ".repeat(68)
        )
    );
}

#[test]
fn deep_nesting_in_a_vars_file_is_an_error_not_a_crash() {
    let ws = Workspace::new();
    ws.write("rm.yaml", RM);
    let mut vars = String::from("dir:\n");
    for i in 0..2000 {
        vars.push_str(&" ".repeat(1 + i));
        vars.push_str("a:\n");
    }
    ws.write("vars.yaml", &vars);
    let ran = ws
        .cmd(&["plan", "rm.yaml", "--vars-file", "vars.yaml"])
        .expect(2);
    assert_eq!(ran.stdout, "");
    let line = format!("{}a:", " ".repeat(64));
    assert_eq!(
        ran.stderr,
        format!(
            "error: nested more than 64 levels deep\n  --> vars.yaml:65:66\n   |\n65 | {line}\n   | {}^\n   = help: flatten the structure\n\n1 error in vars.yaml\n",
            " ".repeat(65)
        )
    );
}

#[test]
fn a_huge_runbook_is_refused_before_it_is_parsed() {
    let ws = Workspace::new();
    let mut text = String::from("version: 1\nname: x\nsteps: []\n");
    text.push_str(&"# padding\n".repeat(500_000));
    assert_eq!(
        plan_error(&ws, "big.yaml", text.as_bytes()),
        format!(
            "error: the file is {} bytes; at most 4194304 are read\n --> big.yaml:1:1\n  |\n1 | version: 1\n  | ^\n  = help: split it, or move data into files the steps read\n\n1 error in big.yaml\n",
            text.len()
        )
    );
}

#[test]
fn bad_probe_endpoints_zero_timeouts_and_endless_retries_are_refused_by_plan() {
    let ws = Workspace::new();
    let text = "version: 1
name: x
probe:
  endpoints: [\"redis://127.0.0.1:70000\", \"http://x\", \"\", \"127.0.0.1:6379\"]
  interval: 0s
steps:
  - id: a
    action: sleep
    with: { duration: 1s }
    timeout: 0s
    retry: { attempts: 1000000 }
";
    let line4 =
        "4 |   endpoints: [\"redis://127.0.0.1:70000\", \"http://x\", \"\", \"127.0.0.1:6379\"]";
    let expected = format!(
        "error: probe endpoint: `redis://127.0.0.1:70000` is not an endpoint: invalid port number (expected redis://[user:password@]host:port[/db], rediss://… for TLS, or host:port)
 --> p.yaml:4:15
  |
{line4}
  |               ^^^^^^^^^^^^^^^^^^^^^^^^^

error: probe endpoint: `http://x` is not an endpoint: unknown scheme `http` (expected redis://[user:password@]host:port[/db], rediss://… for TLS, or host:port)
 --> p.yaml:4:42
  |
{line4}
  |                                          ^^^^^^^^^^

error: probe endpoint: `` is not an endpoint: no host (expected redis://[user:password@]host:port[/db], rediss://… for TLS, or host:port)
 --> p.yaml:4:54
  |
{line4}
  |                                                      ^^

error: `interval` must be more than zero
 --> p.yaml:5:13
  |
5 |   interval: 0s
  |             ^^
  = help: e.g. `10s`, `500ms`, `40m`

error: `timeout` must be more than zero
  --> p.yaml:10:14
   |
10 |     timeout: 0s
   |              ^^
   = help: e.g. `10s`, `500ms`, `40m`

error: `attempts` must be a whole number from 1 to 100
  --> p.yaml:11:24
   |
11 |     retry: {{ attempts: 1000000 }}
   |                        ^^^^^^^

6 errors in p.yaml
"
    );
    assert_eq!(plan_error(&ws, "p.yaml", text.as_bytes()), expected);
    // `run` checks the same before anything starts.
    let ran = ws.cmd(&["run", "p.yaml", "--yes"]).expect(2);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("", expected.as_str())
    );
    assert!(!ws.path().join(".runbook/runs").exists());
}

#[test]
fn a_deeply_nested_cloudformation_template_fails_its_step_not_the_process() {
    let ws = Workspace::new();
    let mut template =
        String::from("Resources:\n  R:\n    Type: AWS::SSM::Parameter\n    Properties:\n");
    for i in 0..2000 {
        template.push_str(&" ".repeat(6 + i));
        template.push_str("a:\n");
    }
    ws.write("deep.yaml", &template);
    ws.write(
        "deploy.yaml",
        "version: 1\nname: deep\nsteps:\n  - id: deploy\n    action: stack.deploy\n    with: { stack_name: deep, template: deep.yaml }\n",
    );
    let why = "./deep.yaml:66:69: nested more than 64 levels deep";
    ws.cmd(&["run", "deploy.yaml", "--yes"])
        .status(1)
        .filter(crate::support::vary::RUN_ID, "[RUN]")
        .stdout("[RUN]\n")
        .stderr(&format!(
            "[1/1] deploy (stack.deploy)
  deploy: failed: {why}
report: .runbook/runs/[RUN]/report.md
report: .runbook/runs/[RUN]/report.html
report: .runbook/runs/[RUN]/report.json
run [RUN] failed at step `deploy`: {why}
fix the cause, then: runbook resume [RUN]
"
        ))
        .check();
}

/// Waits until the journal of run `id` holds `needle`.
fn wait_for_journal(ws: &Workspace, id: &str, needle: &str) {
    let journal = ws.state_dir().join("runs").join(id).join("journal.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(Instant::now() < deadline, "the journal never held {needle}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const LONG: &str =
    "version: 1\nname: long\nsteps:\n  - id: wait\n    action: sleep\n    with: { duration: 5s }\n";

#[test]
fn deleting_the_lock_file_of_a_live_run_does_not_let_a_second_process_drive_it() {
    let ws = Workspace::new();
    ws.write("rb.yaml", LONG);
    let (mut child, id) = ws.spawn(&["run", "rb.yaml"]);
    wait_for_journal(&ws, &id, "\"step\":\"wait\"");
    std::fs::remove_file(ws.state_dir().join("runs").join(&id).join("lock")).unwrap();
    let ran = ws.cmd(&["resume", &id]).expect(1);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "",
            format!(
                "error: run {id} is being driven by another process (its `lock` file, which names it, is gone); wait for it to finish, or stop that process first\n"
            )
            .as_str()
        )
    );
    assert_eq!(ws.show(&id)["status"], "running");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn destroy_refuses_a_live_run_and_names_its_holder() {
    let ws = Workspace::new();
    ws.write("rb.yaml", LONG);
    let (mut child, id) = ws.spawn(&["run", "rb.yaml"]);
    wait_for_journal(&ws, &id, "\"step\":\"wait\"");
    let lock = std::fs::read_to_string(ws.state_dir().join("runs").join(&id).join("lock")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let since = lock.lines().nth(2).unwrap();
    assert!(since.starts_with("since 20"), "{lock}");
    let ran = ws.cmd(&["destroy", &id]).expect(1);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "",
            format!(
                "error: run {id} is being driven by another process (pid {}, host {}, {since}); wait for it to finish, or stop that process first\n",
                child.id(),
                host.trim()
            )
            .as_str()
        )
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A step whose command starts a grandchild that appends a line to `effects` after 3 s.
const GRANDCHILD: &str = "version: 1
name: grandchild
steps:
  - id: effect
    action: exec
    with: { command: \"sh slow.sh\" }
";

const SLOW_SH: &str = "sh -c 'sleep 3; echo once >> effects' &\nwait\n";

/// Runs GRANDCHILD, stops `runbook` with `signal` about a second into the step, resumes,
/// and returns what `effects` holds then.
fn grandchild_after(signal: libc::c_int) -> String {
    let ws = Workspace::new();
    ws.write("rb.yaml", GRANDCHILD);
    ws.write("slow.sh", SLOW_SH);
    let (mut child, id) = ws.spawn(&["run", "rb.yaml"]);
    wait_for_journal(&ws, &id, "\"event\":\"step_process\"");
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait().unwrap();
    assert_eq!(ws.show(&id)["status"], "interrupted");
    let ran = ws.cmd(&["resume", &id]).expect(0);
    assert_eq!(ran.stdout, format!("{id}\n"));
    // Past the time the first grandchild would have written.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::read_to_string(ws.path().join("effects")).unwrap()
}

#[test]
fn a_grandchild_of_exec_does_not_outlive_kill_9_of_runbook() {
    assert_eq!(grandchild_after(libc::SIGKILL), "once\n");
}

#[test]
fn a_grandchild_of_exec_does_not_outlive_sigterm_of_runbook() {
    assert_eq!(grandchild_after(libc::SIGTERM), "once\n");
}

#[test]
fn sigterm_during_rollback_still_runs_finally() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1
name: undo
steps:
  - id: boom
    action: exec
    with: { command: \"exit 3\" }
rollback:
  - id: undo
    action: exec
    with: { command: \"sleep 5; echo undone >> log\" }
finally:
  - id: clean
    action: exec
    with: { command: \"echo cleaned >> log\" }
",
    );
    let (child, id) = ws.spawn(&["run", "rb.yaml"]);
    wait_for_journal(&ws, &id, "\"step\":\"undo\"");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).unwrap(),
        "cleaned\n"
    );
    let v = ws.show(&id);
    let steps: Vec<(&str, &str)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        (v["status"].as_str().unwrap(), steps),
        (
            "interrupted",
            vec![
                ("boom", "failed"),
                ("undo", "interrupted"),
                ("clean", "succeeded")
            ]
        )
    );
}

#[test]
fn an_approval_without_a_terminal_stops_the_run_instead_of_rolling_back() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1
name: careful
steps:
  - id: prepare
    action: exec
    with: { command: \"echo prepared >> log\" }
  - id: ask
    action: approve
    with: { message: \"Complete the migration?\" }
  - id: complete
    action: exec
    with: { command: \"echo completed >> log\" }
rollback:
  - id: undo
    action: exec
    with: { command: \"echo undone >> log\" }
finally:
  - id: clean
    action: exec
    with: { command: \"echo cleaned >> log\" }
",
    );
    let ran = ws.cmd(&["run", "rb.yaml"]).expect(1);
    let id = ran.stdout.trim().to_string();
    let message = "approval needed: Complete the migration? — there is no terminal to ask on";
    let reports = format!(".runbook/runs/{id}/report");
    assert_eq!(
        ran.stderr,
        format!(
            "[1/3] prepare (exec)\n[2/3] ask (approve)\n  ask: {message}\n\
             report: {reports}.md\nreport: {reports}.html\nreport: {reports}.json\n\
             run {id} is awaiting approval at step `ask`: {message}\n\
             nothing was rolled back; to approve and go on: runbook resume {id} --yes\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).unwrap(),
        "prepared\n",
        "neither rollback nor finally ran"
    );
    let v = ws.show(&id);
    assert_eq!(
        (
            &v["status"],
            &v["steps"][1]["status"],
            &v["steps"][1]["error"]
        ),
        (
            &serde_json::json!("awaiting_approval"),
            &serde_json::json!("awaiting_approval"),
            &serde_json::json!(message)
        )
    );
    ws.cmd(&["resume", &id, "--yes"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).unwrap(),
        "prepared\ncompleted\ncleaned\n"
    );
    assert_eq!(ws.show(&id)["status"], "succeeded");
}

#[test]
fn resume_after_a_rollback_runs_again_the_steps_the_rollback_undid() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1
name: undone
steps:
  - id: create
    action: exec
    with: { command: \"touch made\" }
  - id: use
    action: exec
    with: { command: \"test -f fixed && test -f made\" }
rollback:
  - id: remove
    action: exec
    with: { command: \"rm made\" }
",
    );
    let ran = ws.cmd(&["run", "rb.yaml"]).expect(1);
    let id = ran.stdout.trim().to_string();
    let reports = format!(".runbook/runs/{id}/report");
    assert_eq!(
        ran.stderr,
        format!(
            "[1/2] create (exec)\n[2/2] use (exec)\n  use: failed: command exited with status 1\n\
             rolling back: step `use` failed\n[1/1] remove (exec)\n\
             report: {reports}.md\nreport: {reports}.html\nreport: {reports}.json\n\
             run {id} failed at step `use`: command exited with status 1 (rolled back)\n\
             fix the cause, then: runbook resume {id}\n\
             the rollback may have undone earlier steps: resume runs every step again from the first (each finds what is already done); `--from STEP` starts at STEP instead\n"
        )
    );
    assert!(!ws.path().join("made").exists());
    ws.write("fixed", "");
    let ran = ws.cmd(&["resume", &id]).expect(0);
    assert_eq!(
        (ran.stdout, ran.stderr),
        (
            format!("{id}\n"),
            format!(
                "[1/2] create (exec)\n[2/2] use (exec)\n\
                 report: {reports}.md\nreport: {reports}.html\nreport: {reports}.json\n\
                 run {id} succeeded\n"
            )
        )
    );
    assert!(ws.path().join("made").exists());
}

#[test]
fn resume_from_after_a_rollback_keeps_the_steps_before_it() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1
name: chosen
steps:
  - id: create
    action: exec
    with: { command: \"echo create >> log\" }
  - id: use
    action: exec
    with: { command: \"test -f fixed && echo use >> log\" }
rollback:
  - id: note
    action: exec
    with: { command: \"echo rollback >> log\" }
",
    );
    let id = ws
        .cmd(&["run", "rb.yaml"])
        .expect(1)
        .stdout
        .trim()
        .to_string();
    ws.write("fixed", "");
    let ran = ws.cmd(&["resume", &id, "--from", "use"]).expect(0);
    let reports = format!(".runbook/runs/{id}/report");
    assert_eq!(
        ran.stderr,
        format!(
            "[1/2] create (done in an earlier attempt: skipped)\n[2/2] use (exec)\n\
             report: {reports}.md\nreport: {reports}.html\nreport: {reports}.json\n\
             run {id} succeeded\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).unwrap(),
        "create\nrollback\nuse\n"
    );
}

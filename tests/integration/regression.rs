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

/// Three `exec` steps that each append their name to `log`.
const THREE: &str = "version: 1
name: three
steps:
  - id: a
    action: exec
    with: { command: \"echo a >> log\" }
  - id: b
    action: exec
    with: { command: \"echo b >> log\" }
  - id: c
    action: exec
    with: { command: \"echo c >> log\" }
";

/// Runs [`THREE`] to its end; returns the run id and its journal's path (relative to the
/// workspace, as the tool prints it).
fn run_three(ws: &Workspace) -> (String, String) {
    ws.write("three.yaml", THREE);
    let ran = ws.cmd(&["run", "three.yaml", "--yes"]).expect(0);
    let id = ran.stdout.trim().to_string();
    (id.clone(), format!(".runbook/runs/{id}/journal.jsonl"))
}

fn lines(ws: &Workspace, journal: &str) -> Vec<String> {
    std::fs::read_to_string(ws.path().join(journal))
        .expect("journal")
        .lines()
        .map(str::to_string)
        .collect()
}

fn hint(id: &str) -> String {
    format!(
        "run {id} cannot be trusted as it is (`runbook resume {id} --repair` says how it would be cut back to its last good line)"
    )
}

/// `show`, `report` and `resume` all refuse the run with `damage`, and nothing runs.
fn assert_refused(ws: &Workspace, id: &str, damage: &str) {
    let expected = format!("error: {}: {damage}\n", hint(id));
    for args in [
        &["show", id][..],
        &["report", id, "--format", "md"][..],
        &["resume", id, "--yes"][..],
    ] {
        let ran = ws.cmd(args).expect(1);
        assert_eq!(
            (ran.stdout.as_str(), ran.stderr.as_str()),
            ("", expected.as_str()),
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).expect("log"),
        "a\nb\nc\n",
        "no step ran again"
    );
}

#[test]
fn a_journal_that_lost_or_gained_lines_is_damaged_not_believed() {
    let seq_of = |line: &str, seq: u64| {
        let mut v: serde_json::Value = serde_json::from_str(line).expect("json");
        v["seq"] = seq.into();
        serde_json::to_string(&v).expect("json")
    };
    type Edit = fn(&mut Vec<String>);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a line deleted",
            |l| {
                l.remove(3);
            },
            "damaged at line 4: `seq` is 5 where 4 should follow (a line was deleted, repeated or moved)",
        ),
        (
            "two lines swapped",
            |l| l.swap(3, 4),
            "damaged at line 4: `seq` is 5 where 4 should follow (a line was deleted, repeated or moved)",
        ),
        (
            "a line repeated",
            |l| {
                let again = l[2].clone();
                l.insert(3, again);
            },
            "damaged at line 4: `seq` is 3 where 4 should follow (a line was deleted, repeated or moved)",
        ),
        (
            "the first lines removed",
            |l| {
                l.drain(..2);
            },
            "damaged at line 1: `seq` is 3 where 1 should follow (a line was deleted, repeated or moved)",
        ),
    ];
    for (what, edit, damage) in cases {
        let ws = Workspace::new();
        let (id, journal) = run_three(&ws);
        let mut l = lines(&ws, &journal);
        edit(&mut l);
        ws.write(&journal, &(l.join("\n") + "\n"));
        eprintln!("case: {what}");
        assert_refused(&ws, &id, &format!("the journal {journal} is {damage}"));
    }
    // An edited line: the next one's `prev` no longer matches.
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let mut l = lines(&ws, &journal);
    let at = l
        .iter()
        .position(|x| x.contains("\"event\":\"step_succeeded\",\"step\":\"a\""))
        .expect("a succeeded");
    l[at] = l[at].replace("\"attempt\":1", "\"attempt\":2");
    ws.write(&journal, &(l.join("\n") + "\n"));
    assert_refused(
        &ws,
        &id,
        &format!(
            "the journal {journal} is damaged at line {}: its `prev` is not the digest of line {} (a line was edited or replaced)",
            at + 2,
            at + 1
        ),
    );
    // `seq` going backwards, with the digests made to match: the numbers alone give it away.
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let mut l = lines(&ws, &journal);
    l[4] = seq_of(&l[4], 2);
    ws.write(&journal, &(l.join("\n") + "\n"));
    assert_refused(
        &ws,
        &id,
        &format!(
            "the journal {journal} is damaged at line 5: `seq` is 2 where 5 should follow (a line was deleted, repeated or moved)"
        ),
    );
}

#[test]
fn a_missing_or_emptied_journal_is_damaged_not_an_interrupted_run() {
    for what in ["missing", "empty"] {
        let ws = Workspace::new();
        let (id, journal) = run_three(&ws);
        if what == "missing" {
            std::fs::remove_file(ws.path().join(&journal)).expect("rm");
        } else {
            ws.write(&journal, "");
        }
        assert_refused(
            &ws,
            &id,
            &format!(
                "the journal {journal} is {what} although the run's run.json exists: what the run did is lost"
            ),
        );
    }
}

#[test]
fn another_runs_journal_is_damaged_not_believed() {
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let (other, other_journal) = run_three(&ws);
    std::fs::write(ws.path().join("log"), "a\nb\nc\n").expect("reset log");
    std::fs::copy(ws.path().join(other_journal), ws.path().join(&journal)).expect("cp");
    assert_refused(
        &ws,
        &id,
        &format!(
            "the journal {journal} is damaged at line 1: it is the journal of run `{other}`, not of `{id}`"
        ),
    );
}

#[test]
fn a_torn_last_line_is_tolerated() {
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let mut text = std::fs::read_to_string(ws.path().join(&journal)).expect("journal");
    text.push_str("{\"seq\":9,\"ts\":\"2026-");
    ws.write(&journal, &text);
    assert_eq!(ws.show(&id)["status"], "succeeded");
    let ran = ws.cmd(&["resume", &id, "--yes"]).expect(0);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "",
            format!("run {id} already succeeded: nothing to resume (use --from STEP to run steps again)\n").as_str()
        )
    );
}

#[test]
fn a_journal_without_digests_is_refused_with_what_to_do() {
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let old: Vec<String> = lines(&ws, &journal)
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v.as_object_mut().expect("object").remove("prev");
            serde_json::to_string(&v).expect("json")
        })
        .collect();
    ws.write(&journal, &(old.join("\n") + "\n"));
    assert_refused(
        &ws,
        &id,
        &format!(
            "the journal {journal} has no digest at line 1: it was written by an older runbook, before journals carried them, and cannot be checked; inspect or finish that run with the version that started it, or start a new run"
        ),
    );
}

#[test]
fn resume_repair_says_what_it_will_do_and_does_it_only_with_yes() {
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let mut l = lines(&ws, &journal);
    let at = l
        .iter()
        .position(|x| x.contains("\"event\":\"step_started\",\"step\":\"c\""))
        .expect("c started");
    l.remove(at); // what follows `c`'s start no longer follows
    ws.write(&journal, &(l.join("\n") + "\n"));
    let said = format!(
        "the journal {journal} is damaged at line {}: `seq` is {} where {} should follow (a line was deleted, repeated or moved)\nrepair: keep lines 1-{at} and remove lines {}-{}; then step `c` is not finished and run again on resume\n",
        at + 1,
        at + 2,
        at + 1,
        at + 1,
        l.len()
    );
    let ran = ws.cmd(&["resume", &id, "--repair"]).expect(1);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            format!("{said}nothing was changed; pass --yes to do it\n").as_str(),
            ""
        )
    );
    assert_eq!(lines(&ws, &journal), l, "nothing changed without --yes");
    let ran = ws.cmd(&["resume", &id, "--repair", "--yes"]).expect(0);
    let kept: Vec<String> = std::fs::read_dir(ws.path().join(format!(".runbook/runs/{id}")))
        .expect("run dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with("journal.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            format!(
                "{said}done; the damaged journal is kept as .runbook/runs/{id}/{}\ncontinue with: runbook resume {id}\n",
                kept[0]
            )
            .as_str(),
            ""
        )
    );
    assert_eq!(lines(&ws, &journal), l[..at]);
    let statuses: Vec<String> = ws.show(&id)["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["id"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(statuses, ["a succeeded", "b succeeded"]);
    let ran = ws.cmd(&["resume", &id, "--yes"]).expect(0);
    assert_eq!(ran.stdout, format!("{id}\n"));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).expect("log"),
        "a\nb\nc\nc\n",
        "only `c`, whose end the journal lost, ran again"
    );
    let ran = ws.cmd(&["resume", &id, "--repair"]).expect(0);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            format!("the journal of run {id} is sound: nothing to repair\n").as_str(),
            ""
        )
    );
}

const NOT_AN_ID: &str = "is not a run id: run ids have letters, digits, `-`, `_` and `.` (not first), as `runbook runs` lists them";

/// Every file under `dir` with its contents, sorted: to see that nothing was written.
fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                out.push((name, std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_run_id_that_climbs_out_of_the_state_dir_is_refused_and_nothing_is_written() {
    let ws = Workspace::new();
    run_three(&ws);
    // `.runbook/runs/../../outside` is a folder of the workspace: it must stay as it is.
    ws.write("outside/keep", "x");
    let before = tree(ws.path());
    for id in ["../../outside", "../../../../etc"] {
        let ran = ws.cmd(&["report", id, "--format", "md"]).expect(2);
        assert_eq!(
            (ran.stdout.as_str(), ran.stderr.as_str()),
            (
                "",
                format!("error: `{id}` {NOT_AN_ID}; nor is it a run or probe folder (one that holds journal.jsonl or probe/)\n").as_str()
            )
        );
    }
    for args in [
        &["show", "../x"][..],
        &["resume", "../x", "--yes"],
        &["show", ".hidden"],
    ] {
        let ran = ws.cmd(args).expect(2);
        assert_eq!(
            (ran.stdout.as_str(), ran.stderr.as_str()),
            ("", format!("error: `{}` {NOT_AN_ID}\n", args[1]).as_str())
        );
    }
    assert_eq!(tree(ws.path()), before, "nothing was written");
}

#[test]
fn report_output_goes_where_it_is_told_and_nowhere_else() {
    let ws = Workspace::new();
    let (id, _) = run_three(&ws);
    let run_dir = ws.path().join(format!(".runbook/runs/{id}"));
    let before = tree(&run_dir);
    let ran = ws
        .cmd(&["report", &id, "--format", "md", "-o", "elsewhere/r.md"])
        .expect(0);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("elsewhere/r.md\n", "")
    );
    assert_eq!(tree(&run_dir), before, "the run folder is untouched");
    let written: Vec<String> = tree(&ws.path().join("elsewhere"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(written, ["r.md"]);
}

#[test]
fn probe_refuses_an_out_folder_that_is_not_empty() {
    let ws = Workspace::new();
    ws.write("old/probe/events.jsonl", "old data\n");
    let before = tree(ws.path());
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            "redis://127.0.0.1:1",
            "--duration",
            "1s",
            "--out",
            "old",
        ])
        .expect(2);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "",
            "error: --out old is not empty: its old data would mix into the new report; name a new or empty folder\n"
        )
    );
    assert_eq!(tree(ws.path()), before);
}

#[test]
fn what_a_step_prints_is_capped_and_escaped_in_the_journal_the_terminal_and_the_reports() {
    let ws = Workspace::new();
    ws.write(
        "loud.yaml",
        "version: 1
name: loud
steps:
  - id: loud
    action: exec
    with: { command: \"printf '<script>alert(1)</script> \\\\033[32msucceeded\\\\033[0m\\\\n'; head -c 200000 /dev/zero | tr '\\\\0' x\" }
",
    );
    let ran = ws.cmd(&["run", "loud.yaml", "--yes"]).expect(0);
    let id = ran.stdout.trim();
    let dir = format!(".runbook/runs/{id}");
    let first = "<script>alert(1)</script> \x1b[32msucceeded\x1b[0m\n";
    let whole = format!("{first}{}", "x".repeat(200_000));
    assert_eq!(
        std::fs::read_to_string(ws.path().join(&dir).join("steps/loud/stdout")).expect("stdout"),
        whole,
        "the whole output is kept in the run folder"
    );
    let marker = format!(
        "… {} bytes left out, whole output in {dir}/steps/loud/stdout",
        whole.len() - 65536
    );
    let capped = format!(
        "{}\n{marker}\n{}",
        &whole[..32768],
        &whole[whole.len() - 32768..]
    );
    let journal =
        std::fs::read_to_string(ws.path().join(&dir).join("journal.jsonl")).expect("journal");
    let outputs: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|v| v["event"] == "step_succeeded")
        .map(|v| v["outputs"].clone())
        .collect();
    assert_eq!(
        outputs,
        [serde_json::json!({"stdout": capped, "exit_status": 0})]
    );
    assert!(
        journal.len() < 80 * 1024,
        "journal of {} bytes",
        journal.len()
    );
    let shown = "<script>alert(1)</script> \\u{1b}[32msucceeded\\u{1b}[0m";
    let x512 = "x".repeat(512);
    assert_eq!(
        ran.stderr,
        format!(
            "[1/1] loud (exec)\n  loud: {shown}\n  loud: {x512}\n  loud: {marker}\n  loud: {x512}\n\
             report: {dir}/report.md\nreport: {dir}/report.html\nreport: {dir}/report.json\nrun {id} succeeded\n"
        )
    );
    let md = std::fs::read_to_string(ws.path().join(&dir).join("report.md")).expect("md");
    let row: Vec<&str> = md
        .lines()
        .find(|l| l.starts_with("| `loud` |"))
        .expect("the step's row")
        .split(" | ")
        .collect();
    assert_eq!(
        [&row[..4], &row[5..]].concat(),
        [
            "| `loud`",
            "exec",
            "succeeded",
            "1",
            format!("&lt;script&gt;alert(1)&lt;/script&gt; \\u{{1b}}[32msucceeded\\u{{1b}}[0m; {x512}; {marker} (+1 more)").as_str(),
            "–",
            "0",
            "–",
            "–",
            "–",
            "–",
            "0",
            "– |"
        ]
    );
    let html = std::fs::read_to_string(ws.path().join(&dir).join("report.html")).expect("html");
    assert!(
        !html.contains("<script>alert") && !html.contains('\x1b'),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; \\u{1b}[32msucceeded\\u{1b}[0m"),
        "{html}"
    );
}

/// A runbook that reads a secret from the environment, changes it with filters and with
/// commands, and one public variable.
const FROM_ENV: &str = "version: 1
name: from-env
env: [RB_SHOWN]
steps:
  - id: leak
    action: exec
    with: { command: \"echo {{ env.RB_TOKEN }} | base64; echo {{ env.RB_TOKEN | upper }}; echo {{ env.RB_TOKEN | replace(from='hunter', to='HUNTER') }} | rev; echo {{ env.RB_SHOWN }}\" }
";

#[test]
fn environment_values_are_secret_unless_the_runbook_declares_them_public() {
    let ws = Workspace::new();
    ws.write("env.yaml", FROM_ENV);
    let with_env = |args: &[&str]| {
        ws.cmd(args)
            .env("RB_TOKEN", "hunter2secret")
            .env("RB_SHOWN", "visible")
    };
    let ran = with_env(&["plan", "env.yaml"]).expect(0);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "Plan: 1 steps, 1 change something, 0 destructive, 0 approvals; 0 rollback steps, 0 finally steps. Platform: local.

Runbook from-env (env.yaml)

Steps:
  1. leak  exec  [changes]
       command: echo *** | base64; echo ***; echo *** | rev; echo visible
       → sh -c \"echo *** | base64; echo ***; echo *** | rev; echo visible\"
",
            ""
        )
    );
    let ran = with_env(&["run", "env.yaml", "--yes"]).expect(0);
    let id = ran.stdout.trim();
    let dir = ws.path().join(format!(".runbook/runs/{id}"));
    // base64 keeps the encoding of the secret's last byte and the newline: `dAo=`.
    let printed = "***dAo=\n***\n***\nvisible\n";
    assert_eq!(
        std::fs::read_to_string(dir.join("steps/leak/stdout")).expect("stdout"),
        printed
    );
    assert_eq!(
        ran.stderr,
        format!(
            "[1/1] leak (exec)\n  leak: ***dAo=\n  leak: ***\n  leak: ***\n  leak: visible\n\
             report: .runbook/runs/{id}/report.md\nreport: .runbook/runs/{id}/report.html\nreport: .runbook/runs/{id}/report.json\nrun {id} succeeded\n"
        )
    );
    for (name, text) in tree(&dir) {
        let text = String::from_utf8_lossy(&text).to_lowercase();
        for form in ["hunter2secret", "terces2retnuh", "ahvudgvymnnly3jl"] {
            assert!(!text.contains(form), "{form} in {name}");
        }
    }
}

#[test]
fn the_whole_template_context_is_not_available() {
    let ws = Workspace::new();
    ws.write(
        "ctx.yaml",
        "version: 1\nname: x\nsteps:\n  - id: a\n    action: exec\n    with: { command: \"echo {{ __tera_context }}\" }\n",
    );
    let expected = "error: template syntax: `__tera_context` is not available: name the values you need (`params.NAME`, `env.NAME`, …)
 --> ctx.yaml:6:31
  |
6 |     with: { command: \"echo {{ __tera_context }}\" }
  |                               ^

1 error in ctx.yaml
";
    for args in [&["plan", "ctx.yaml"][..], &["run", "ctx.yaml", "--yes"]] {
        let ran = ws.cmd(args).expect(2);
        assert_eq!((ran.stdout.as_str(), ran.stderr.as_str()), ("", expected));
    }
}

#[test]
fn env_must_list_variable_names() {
    let ws = Workspace::new();
    assert_eq!(
        plan_error(
            &ws,
            "e.yaml",
            b"version: 1\nname: x\nenv: [HOME, \"a b\"]\nsteps: []\n"
        ),
        "error: `a b` is not a variable name\n --> e.yaml:3:13\n  |\n3 | env: [HOME, \"a b\"]\n  |             ^^^^^\n  = help: names have letters, digits and `_`, and do not start with a digit\n\n1 error in e.yaml\n"
    );
}

/// The most memory, in kB, a process has held (`VmHWM`).
fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_huge_output_is_streamed_to_its_file_not_held_in_memory() {
    let ws = Workspace::new();
    // 100 MB of output, then the command waits for `go`, so the peak of `runbook`'s memory
    // can be read while it still runs.
    ws.write(
        "loud.yaml",
        "version: 1
name: loud
steps:
  - id: loud
    action: exec
    with: { command: \"head -c 100000000 /dev/zero | tr '\\\\0' y; echo; touch printed; while [ ! -f go ]; do sleep 0.05; done\" }
",
    );
    let (mut child, id) = ws.spawn(&["run", "loud.yaml"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ws.path().join("printed").exists() {
        assert!(
            Instant::now() < deadline,
            "the command never finished printing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let peak_mb = peak_kb(child.id()) / 1024;
    ws.write("go", "");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        peak_mb < 64,
        "runbook held {peak_mb} MB for 100 MB of output"
    );
    let dir = ws.path().join(format!(".runbook/runs/{id}"));
    let file = dir.join("steps/loud/stdout");
    assert_eq!(
        std::fs::metadata(&file).expect("the whole output").len(),
        100_000_001
    );
    let marker = format!(
        "… {} bytes left out, whole output in .runbook/runs/{id}/steps/loud/stdout",
        100_000_001 - 65536
    );
    let ys = "y".repeat(32768);
    let outputs: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("journal.jsonl"))
        .expect("journal")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|v| v["event"] == "step_succeeded")
        .map(|v| v["outputs"].clone())
        .collect();
    assert_eq!(
        outputs,
        [
            serde_json::json!({"stdout": format!("{ys}\n{marker}\n{}", &ys[..32767]), "exit_status": 0})
        ]
    );
}

#[test]
fn more_than_ten_thousand_steps_is_an_error() {
    let ws = Workspace::new();
    let mut text = String::from("version: 1\nname: many\nsteps:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - {{ id: s{i}, action: sleep, with: {{ duration: 1ms }} }}\n"
        ));
    }
    text.push_str("rollback:\n  - { id: one_too_many, action: sleep, with: { duration: 1ms } }\n");
    assert_eq!(
        plan_error(&ws, "many.yaml", text.as_bytes()),
        "error: more than 10000 steps (with rollback and finally)
     --> many.yaml:10005:5
      |
10005 |   - { id: one_too_many, action: sleep, with: { duration: 1ms } }
      |     ^
      = help: split the runbook into several, run one after the other

1 error in many.yaml
"
    );
}

#[test]
fn more_than_a_thousand_params_is_an_error() {
    let ws = Workspace::new();
    let mut text = String::from("version: 1\nname: many\nsteps: []\nparams:\n");
    for i in 0..1001 {
        text.push_str(&format!("  p{i}: {i}\n"));
    }
    assert_eq!(
        plan_error(&ws, "params.yaml", text.as_bytes()),
        "error: more than 1000 params
    --> params.yaml:1005:3
     |
1005 |   p1000: 1000
     |   ^^^^^
     = help: group related values under one param (a mapping or a list)

1 error in params.yaml
"
    );
}

#[test]
fn a_param_value_over_64_kib_is_refused() {
    let ws = Workspace::new();
    ws.write("rm.yaml", RM);
    let big = format!("dir={}", "d".repeat(70_000));
    let ran = ws.cmd(&["plan", "rm.yaml", "--var", &big]).expect(2);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "",
            "error: the value of param `dir` is 70000 bytes; at most 65536 are taken (put large data in a file and pass its path)\n"
        )
    );
}

/// A step whose `ok_status` comes from a param, and one whose `ok_status` comes from what
/// an earlier step printed.
const NUMBERS: &str = "version: 1
name: numbers
params:
  code: { default: 0 }
steps:
  - id: given
    action: exec
    with: { command: \"true\", ok_status: [\"{{ params.code }}\"] }
  - id: printed
    action: exec
    with: { command: \"echo two\" }
  - id: read
    action: exec
    with: { command: \"true\", ok_status: [\"{{ steps.printed.outputs.stdout }}\"] }
";

#[test]
fn a_template_that_gives_a_non_number_where_a_number_is_wanted_names_the_step_and_input() {
    let ws = Workspace::new();
    ws.write("n.yaml", NUMBERS);
    let expected = "error: step `given`: invalid input for `exec`: `ok_status[0]` must be a whole number, not `abc`
 --> n.yaml:8:41
  |
8 |     with: { command: \"true\", ok_status: [\"{{ params.code }}\"] }
  |                                         ^

1 error in n.yaml
";
    for args in [
        &["plan", "n.yaml", "--var", "code=abc"][..],
        &["run", "n.yaml", "--var", "code=abc", "--yes"],
    ] {
        let ran = ws.cmd(args).expect(2);
        assert_eq!((ran.stdout.as_str(), ran.stderr.as_str()), ("", expected));
    }
    // Known only once `printed` ran: the step fails, naming its input, before it starts.
    let ran = ws.cmd(&["run", "n.yaml", "--yes"]).expect(1);
    let id = ran.stdout.trim();
    let why = "invalid input for `exec`: `ok_status[0]` must be a whole number, not `two`";
    let reports = format!(".runbook/runs/{id}/report");
    assert_eq!(
        ran.stderr,
        format!(
            "[1/3] given (exec)\n[2/3] printed (exec)\n  printed: two\n[3/3] read (exec)\n  read: failed: {why}\n\
             report: {reports}.md\nreport: {reports}.html\nreport: {reports}.json\n\
             run {id} failed at step `read`: {why}\n\
             fix the cause, then: runbook resume {id}\n"
        )
    );
}

#[test]
fn a_journal_that_lost_its_last_lines_is_damaged_not_an_interrupted_run() {
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let mut l = lines(&ws, &journal);
    let written = l.len();
    // `c` succeeded, and the run finished: both lines go.
    l.truncate(written - 2);
    ws.write(&journal, &(l.join("\n") + "\n"));
    assert_refused(
        &ws,
        &id,
        &format!(
            "the journal {journal} ends at line {}, but {written} lines were written (as journal.head records): its last lines were lost",
            l.len()
        ),
    );
    let ran = ws.cmd(&["resume", &id, "--repair", "--yes"]).expect(0);
    let kept: Vec<String> = std::fs::read_dir(ws.path().join(format!(".runbook/runs/{id}")))
        .expect("run dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with("journal.damaged-"))
        .collect();
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            format!(
                "the journal {journal} ends at line {0}, but {written} lines were written (as journal.head records): its last lines were lost\n\
                 repair: take lines 1-{0}, all that is left, as the whole journal; then step `c` is not finished and run again on resume\n\
                 done; the damaged journal is kept as .runbook/runs/{id}/{1}\ncontinue with: runbook resume {id}\n",
                l.len(),
                kept[0]
            )
            .as_str(),
            ""
        )
    );
    ws.cmd(&["resume", &id, "--yes"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).expect("log"),
        "a\nb\nc\nc\n"
    );
    assert_eq!(ws.show(&id)["status"], "succeeded");
}

#[test]
fn an_edited_last_line_is_damaged_not_believed() {
    let ws = Workspace::new();
    let (id, journal) = run_three(&ws);
    let mut l = lines(&ws, &journal);
    let last = l.len() - 1;
    l[last] = l[last].replace("\"succeeded\"", "\"failed\"");
    ws.write(&journal, &(l.join("\n") + "\n"));
    assert_refused(
        &ws,
        &id,
        &format!(
            "the journal {journal} is damaged at line {}: it is not the line that was written last (a line was edited or replaced)",
            l.len()
        ),
    );
}

/// Prints what commands make of a secret: base64 of it behind one and two other bytes,
/// percent- and form-encoded; then a value a template computed from a secret param.
const ENCODES: &str = "T=$1
printf 'a%s' \"$T\" | base64
printf 'ab%s' \"$T\" | base64
python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=\"\"), u.quote_plus(sys.argv[1]))' \"$T\"
echo \"$2\"
";

#[test]
fn what_commands_and_templates_make_of_a_secret_is_masked() {
    let ws = Workspace::new();
    ws.write("encodes.sh", ENCODES);
    ws.write(
        "leak.yaml",
        "version: 1
name: leak
params:
  pin: { secret: true }
steps:
  - id: leak
    action: exec
    with: { command: \"sh encodes.sh '{{ env.RB_TOKEN }}' {{ params.pin + 1 }}\" }
",
    );
    let secret = "s3cr3t pass/word!";
    let ran = ws
        .cmd(&["run", "leak.yaml", "--yes"])
        .env("RB_TOKEN", secret)
        .env("RUNBOOK_VAR_pin", "12345678")
        .expect(0);
    let id = ran.stdout.trim();
    let dir = ws.path().join(format!(".runbook/runs/{id}"));
    let printed = "YXMz***\nYWJz***IQ==\n*** ***\n***\n";
    assert_eq!(
        std::fs::read_to_string(dir.join("steps/leak/stdout")).expect("stdout"),
        printed
    );
    for (name, text) in tree(&dir) {
        let text = String::from_utf8_lossy(&text);
        for form in [
            secret,
            "s3cr3t%20pass%2Fword%21",
            "s3cr3t+pass%2Fword%21",
            "12345679",
        ] {
            assert!(!text.contains(form), "{form} in {name}");
        }
    }
}

#[test]
fn a_quoted_param_default_stays_the_text_it_was() {
    let ws = Workspace::new();
    ws.write(
        "zero.yaml",
        "version: 1\nname: zero\nparams:\n  node_group: { default: \"0001\" }\n  plain: { default: 0002 }\nsteps:\n  - id: show\n    action: exec\n    with:\n      command: echo {{ params.node_group }} {{ params.plain }}\n",
    );
    let ran = ws.cmd(&["plan", "zero.yaml", "--format", "json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    // Quoted, the default is text; unquoted, YAML reads a number.
    assert_eq!(plan["steps"][0]["inputs"]["command"], "echo 0001 2");
}

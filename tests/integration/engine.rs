//! The engine through the binary: a plan that changes nothing, runs, resume after kill -9 at
//! every step, locks, approvals, secrets, runs/show (error messages: error_messages.rs).

use std::time::{Duration, Instant};

use crate::support::Workspace;

const DEMO: &str = r#"version: 1
name: demo
params:
  greeting: { default: hello }
  count: 3
  token: { secret: true, required: false }
steps:
  - id: first
    action: exec
    with: { command: "echo {{ params.greeting }} {{ params.count * 2 }}" }
  - id: check
    action: assert
    with:
      that: "{{ steps.first.outputs.stdout == 'hello 6' }}"
      message: first said something else
  - id: ask
    action: approve
    with: { message: "Go on?" }
finally:
  - id: bye
    action: exec
    with: { command: "echo bye {{ params.token }} > bye.txt" }
"#;

#[test]
fn plan_renders_every_step_and_writes_nothing() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    let ran = ws
        .cmd(&["plan", "demo.yaml", "--var", "token=pl4nsecret"])
        .expect(0);
    let first = ran.stdout.lines().next().unwrap();
    assert_eq!(
        first,
        "Plan: 3 steps, 1 change something, 0 destructive, 1 approval; 0 rollback steps, 1 finally step. Platform: local."
    );
    assert!(
        ran.stdout.contains("command: echo hello 6"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("that: ⟨steps.first.outputs.stdout⟩") || ran.stdout.contains("that:"),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("pl4nsecret"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("token = *** (secret)"),
        "{}",
        ran.stdout
    );
    assert!(
        !ws.state_dir().exists(),
        "plan must not write the state dir"
    );
    let json = ws.cmd(&["plan", "demo.yaml", "--format", "json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["summary"]["approvals"], 1);
    assert_eq!(v["steps"][1]["depends_on"][0], "first");
    let md = ws.cmd(&["plan", "demo.yaml", "--format", "md"]).expect(0);
    assert!(md.stdout.starts_with("**Plan: 3 steps"), "{}", md.stdout);
    assert!(!ws.state_dir().exists());
}

#[test]
fn a_run_journals_everything_and_keeps_secrets_out() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    let ran = ws
        .cmd(&["run", "demo.yaml", "--yes"])
        .env("RUNBOOK_VAR_token", "s3cr3t-t0ken")
        .expect(0);
    let id = ran.stdout.lines().next().unwrap().to_string();
    assert!(id.contains("-demo-"), "{id}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("bye.txt"))
            .unwrap()
            .trim(),
        "bye s3cr3t-t0ken"
    );
    for entry in walk(&ws.state_dir()) {
        let text = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("s3cr3t-t0ken"),
            "{} holds the secret",
            entry.display()
        );
    }
    assert!(!ran.stderr.contains("s3cr3t-t0ken"));
    let v = ws.show(&id);
    assert_eq!(v["status"], "succeeded");
    let steps: Vec<(&str, &str)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("first", "succeeded"),
            ("check", "succeeded"),
            ("ask", "succeeded"),
            ("bye", "succeeded")
        ]
    );
    let runs = ws.cmd(&["runs", "--format", "json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["status"], "succeeded");
}

#[test]
fn approval_without_a_terminal_fails_closed_then_resume_with_yes_finishes() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    let ran = ws.cmd(&["run", "demo.yaml"]).expect(1);
    let id = ran.stdout.lines().next().unwrap().to_string();
    assert!(
        ran.stderr.contains("approval needed: Go on?"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&format!("runbook resume {id}")),
        "{}",
        ran.stderr
    );
    let v = ws.show(&id);
    assert_eq!(v["status"], "awaiting_approval");
    assert_eq!(v["steps"][2]["status"], "awaiting_approval");
    // The run stopped, it did not end: `finally` waits for its end.
    assert!(!ws.path().join("bye.txt").exists());
    let resumed = ws.cmd(&["resume", &id, "--yes"]).expect(0);
    assert!(
        resumed
            .stderr
            .contains("first (done in an earlier attempt: skipped)"),
        "{}",
        resumed.stderr
    );
    let v = ws.show(&id);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        v["steps"][0]["attempts"], 1,
        "the first step is not run again"
    );
}

#[test]
fn resume_refuses_a_changed_runbook_unless_allowed_and_from_reruns() {
    let ws = Workspace::new();
    let path = ws.write("demo.yaml", DEMO);
    let id = ws
        .cmd(&["run", "demo.yaml"])
        .expect(1)
        .stdout
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, DEMO.replace("Go on?", "Really go on?")).unwrap();
    let ran = ws.cmd(&["resume", &id, "--yes"]).expect(2);
    assert!(ran.stderr.contains("changed since run"), "{}", ran.stderr);
    assert!(ran.stderr.contains("--allow-changed"), "{}", ran.stderr);
    ws.cmd(&["resume", &id, "--yes", "--allow-changed"])
        .expect(0);
    let ran = ws
        .cmd(&["resume", &id, "--yes", "--allow-changed", "--from", "frist"])
        .expect(2);
    assert!(
        ran.stderr.contains("did you mean `first`?"),
        "{}",
        ran.stderr
    );
    ws.cmd(&["resume", &id, "--yes", "--allow-changed", "--from", "first"])
        .expect(0);
    let v = ws.show(&id);
    assert_eq!(v["steps"][0]["attempts"], 2);
}

#[test]
fn rollback_runs_when_a_step_fails_and_sees_the_failed_step() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        r#"version: 1
name: rolls
steps:
  - id: ok
    action: exec
    with: { command: "true" }
  - id: boom
    action: exec
    with: { command: "echo no such thing >&2; exit 3" }
  - id: never
    action: exec
    with: { command: "touch never" }
rollback:
  - id: undo
    action: exec
    with: { command: "echo {{ failed_step }} > undone" }
"#,
    );
    let ran = ws.cmd(&["run", "rb.yaml"]).expect(1);
    assert!(
        ran.stderr
            .contains("command exited with status 3: no such thing"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("(rolled back)"), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("undone"))
            .unwrap()
            .trim(),
        "boom"
    );
    assert!(!ws.path().join("never").exists());
    let v: serde_json::Value =
        serde_json::from_str(&ws.cmd(&["runs", "--format", "json"]).expect(0).stdout).unwrap();
    assert_eq!(v[0]["status"], "rolled_back");
}

#[test]
fn retries_transient_failures_and_honours_timeouts() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        r#"version: 1
name: slow
steps:
  - id: slow
    action: exec
    timeout: 300ms
    retry: { attempts: 2, backoff: 50ms }
    with: { command: "echo x >> attempts; sleep 5" }
"#,
    );
    let started = Instant::now();
    let ran = ws.cmd(&["run", "rb.yaml"]).expect(1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout did not stop the command"
    );
    assert!(
        ran.stderr.contains("timed out after 300ms"),
        "{}",
        ran.stderr
    );
    let attempts = std::fs::read_to_string(ws.path().join("attempts")).unwrap();
    assert_eq!(attempts.lines().count(), 2);
}

/// Kills `runbook` with SIGKILL in the middle of every step, resumes each time, and checks
/// that every side effect happened exactly once and the run ends succeeded.
#[test]
fn kill_9_in_every_step_then_resume_gives_each_side_effect_exactly_once() {
    let ws = Workspace::new();
    let n = 4;
    let mut text = String::from(
        "version: 1\nname: crashy\nsteps:\n  - id: prepare\n    action: exec\n    with: { command: \"mkdir -p out\" }\n",
    );
    for k in 1..=n {
        text.push_str(&format!(
            "  - id: effect{k}\n    action: exec\n    with:\n      creates: out/done{k}\n      command: \"sleep 0.6; echo {k} >> out/effects; touch out/done{k}\"\n"
        ));
    }
    ws.write("crashy.yaml", &text);
    let state = ws.state_dir();
    let mut run_id: Option<String> = None;
    for k in 1..=n {
        let (mut child, id) = match &run_id {
            None => ws.spawn(&["run", "crashy.yaml"]),
            Some(id) => ws.spawn(&["resume", id]),
        };
        run_id.get_or_insert(id.clone());
        let journal = state.join("runs").join(&id).join("journal.jsonl");
        let want = format!("\"event\":\"step_started\",\"step\":\"effect{k}\"");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .contains(&want)
        {
            assert!(Instant::now() < deadline, "step effect{k} never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(250));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let v = ws.show(&id);
        assert_eq!(v["status"], "interrupted", "after the kill in effect{k}");
    }
    // Give an orphaned command the time it would need to finish behind our back.
    std::thread::sleep(Duration::from_millis(800));
    let id = run_id.unwrap();
    ws.cmd(&["resume", &id]).expect(0);
    let effects = std::fs::read_to_string(ws.path().join("out/effects")).unwrap();
    let lines: Vec<&str> = effects.lines().collect();
    assert_eq!(
        lines,
        ["1", "2", "3", "4"],
        "each side effect exactly once, in order"
    );
    let v = ws.show(&id);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["steps"][0]["attempts"], 1, "prepare ran once");
}

#[test]
fn a_live_run_cannot_be_resumed_by_a_second_process() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1\nname: long\nsteps:\n  - id: wait\n    action: sleep\n    with: { duration: 3s }\n",
    );
    let (mut child, id) = ws.spawn(&["run", "rb.yaml"]);
    let ran = ws.cmd(&["resume", &id]).expect(1);
    assert!(
        ran.stderr
            .contains("is being driven by another process (pid "),
        "{}",
        ran.stderr
    );
    let v = ws.show(&id);
    assert_eq!(v["status"], "running");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn schema_lists_every_action() {
    let ws = Workspace::new();
    let ran = ws.cmd(&["schema"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let actions = v["$defs"]["step"]["properties"]["action"]["enum"]
        .as_array()
        .unwrap();
    for a in ["exec", "sleep", "approve", "assert"] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn ctrl_c_stops_at_the_running_step_and_the_run_resumes() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1\nname: long\nsteps:\n  - id: wait\n    action: exec\n    with: { command: \"sleep 0.5; echo waited >> log\" }\n  - id: after\n    action: exec\n    with: { command: \"echo after >> log\" }\n",
    );
    let (child, id) = ws.spawn(&["run", "rb.yaml"]);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was interrupted at step `wait`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("continue with: runbook resume {id}")),
        "{stderr}"
    );
    assert!(
        !ws.path().join("log").exists(),
        "the interrupted command was stopped"
    );
    let v = ws.show(&id);
    assert_eq!(v["status"], "interrupted");
    ws.cmd(&["resume", &id]).expect(0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("log")).unwrap(),
        "waited\nafter\n"
    );
}

/// `show` and `report` read the same replay of the journal: after `resume --from`, both
/// count the attempt of the first run and the one of the resume.
#[test]
fn show_and_report_agree_on_attempts_after_resume_from() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1\nname: again\nsteps:\n  - id: first\n    action: exec\n    with: { command: \"true\" }\n  - id: second\n    action: exec\n    with: { command: \"true\" }\n",
    );
    let ran = ws.cmd(&["run", "rb.yaml"]).expect(0);
    let id = ran.stdout.lines().next().unwrap().to_string();
    ws.cmd(&["resume", &id, "--from", "second"]).expect(0);
    let rows = |v: &serde_json::Value| -> Vec<(String, String, u64)> {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["status"].as_str().unwrap().to_string(),
                    s["attempts"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let show = rows(&ws.show(&id));
    let report = ws
        .cmd(&["report", &id, "--format", "json"])
        .expect(0)
        .stdout;
    let report = rows(&serde_json::from_str(&report).unwrap());
    let expected = [
        ("first".to_string(), "succeeded".to_string(), 1),
        ("second".to_string(), "succeeded".to_string(), 2),
    ];
    assert_eq!(show, expected);
    assert_eq!(report, expected);
}

/// `run` checks everything `plan` checks before it writes anything: a name no template
/// can read, in a later step, stops the run before its first step and its run folder.
#[test]
fn run_refuses_what_plan_refuses_before_the_first_step() {
    let ws = Workspace::new();
    ws.write(
        "rb.yaml",
        "version: 1\nname: late\nsteps:\n  - id: first\n    action: exec\n    with: { command: \"touch ran\" }\n  - id: later\n    action: exec\n    when: \"{{ nope }}\"\n    with: { command: \"true\" }\n",
    );
    let planned = ws.cmd(&["plan", "rb.yaml"]).expect(2);
    let ran = ws.cmd(&["run", "rb.yaml"]).expect(2);
    assert_eq!(ran.stdout, "");
    assert_eq!(ran.stderr, planned.stderr);
    assert!(
        ran.stderr
            .starts_with("error: step `later`: `when`: Variable `nope` not found in context"),
        "{}",
        ran.stderr
    );
    assert!(!ws.path().join("ran").exists(), "no step ran");
    assert!(!ws.state_dir().exists(), "no run folder was made");
}

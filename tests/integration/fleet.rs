//! Fleets (`run --for-each`): which members start under `--max-concurrency` and
//! `--max-errors`, what `show` and `report` say of them, and `resume FLEET_ID` finishing
//! the rest once the cause of a failure is gone.

use pretty_assertions::assert_eq;

use crate::support::{Ran, Workspace, vary};

/// Each member sleeps as long as `<marks>/<cache>.delay` says, then fails if
/// `<marks>/<cache>.broken` exists: the test decides through files which member is slow
/// and which fails.
const RUNBOOK: &str = r#"version: 1
name: fleet-demo
params:
  cache: { description: the cache this run is for }
  marks: { description: the folder of the marks that slow down or break a run }
steps:
  - id: wait
    action: exec
    with:
      command: "sleep $(cat {{ params.marks }}/{{ params.cache }}.delay 2>/dev/null || echo 0)"
  - id: check
    action: exec
    with:
      command: "test ! -e {{ params.marks }}/{{ params.cache }}.broken"
"#;

const FLEET_ID: &str = r"\bfleet-\d{8}-\d{4}-[a-z0-9-]+?-[0-9a-f]{4}\b";

/// Text with what varies by right read as placeholders: the workspace, the fleet id, run
/// ids, times and durations.
fn masked(ws: &Workspace, text: &str) -> String {
    let text = text.replace(&ws.path().display().to_string(), "[WS]");
    [
        (FLEET_ID, "[FLEET]"),
        (vary::RUN_ID, "[RUN]"),
        (vary::TIMESTAMP, "[TIME]"),
        (r" *\(?\b\d+\.\ds\b\)?", " [T]"),
    ]
    .iter()
    .fold(text, |text, (pattern, with)| {
        regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, *with)
            .into_owned()
    })
}

/// Stderr of a fleet command, each member's lines together in the order it printed them
/// (members run side by side, so their lines interleave), then the fleet's own lines.
fn by_member(ws: &Workspace, ran: &Ran, values: &[&str]) -> String {
    let text = masked(ws, &ran.stderr);
    let mut out = String::new();
    for v in values {
        let prefix = format!("[{v}] ");
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('[')) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn member_lines(v: &str, failed: bool) -> String {
    let mut out = format!("[{v}] starting\n[{v}] [1/2] wait (exec)\n[{v}] [2/2] check (exec)\n");
    if failed {
        out.push_str(&format!(
            "[{v}]   check: failed: command exited with status 1\n"
        ));
    }
    for ext in ["md", "html", "json"] {
        out.push_str(&format!(
            "[{v}] report: [WS]/.runbook/runs/[RUN]/report.{ext}\n"
        ));
    }
    if failed {
        out.push_str(&format!(
            "[{v}] run [RUN] failed at step `check`: command exited with status 1\n\
             [{v}] fix the cause, then: runbook resume [RUN] --state-dir [WS]/.runbook\n\
             [{v}] failed: run [RUN] [T]\n"
        ));
    } else {
        out.push_str(&format!(
            "[{v}] run [RUN] succeeded\n[{v}] succeeded: run [RUN] [T]\n"
        ));
    }
    out
}

#[test]
fn a_fleet_stops_starting_runs_after_max_errors_and_resume_finishes_it() {
    let ws = Workspace::new();
    let file = ws.write("fleet.yaml", RUNBOOK);
    let marks = ws.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    // `a` ends at once and frees its slot for `c`, which fails while `b` still sleeps.
    std::fs::write(marks.join("b.delay"), "4").unwrap();
    std::fs::write(marks.join("c.broken"), "").unwrap();
    let state = ws.state_dir().display().to_string();
    let marks_var = format!("marks={}", marks.display());
    let values = ["a", "b", "c", "d", "e", "f"];
    let ran = ws
        .cmd(&[
            "run",
            &file.display().to_string(),
            "--for-each",
            "cache=a,b,c,d,e,f",
            "--var",
            &marks_var,
            "--max-concurrency",
            "2",
            "--max-errors",
            "1",
            "--state-dir",
            &state,
        ])
        .run();
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    let fleet = ran.first_line().to_string();
    assert_eq!(masked(&ws, &ran.stdout), "[FLEET]\n");
    assert_eq!(
        by_member(&ws, &ran, &values),
        format!(
            "{}{}{}\
             1 member failed (--max-errors 1): no new member starts; those running finish\n\
             fleet [FLEET] failed: 2 succeeded, 1 failed, 3 not_started\n\
             see: runbook show [FLEET] --state-dir [WS]/.runbook\n\
             fix the causes, then: runbook resume [FLEET] --state-dir [WS]/.runbook\n",
            member_lines("a", false),
            member_lines("b", false),
            member_lines("c", true),
        )
    );
    // Exactly the members started that SSM would have started: three runs, no more.
    let runs = std::fs::read_dir(ws.state_dir().join("runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 3);
    let show = ws
        .cmd(&["show", &fleet, "--state-dir", &state])
        .stdout_any()
        .check();
    assert_eq!(
        masked(&ws, &show.stdout),
        "fleet [FLEET]  (fleet-demo on local, for each cache)\n\
         status: failed (2 succeeded, 1 failed, 3 not_started)\n\
         started: [TIME]\n\
         max concurrency 2, max errors 1, approval by each run\n\
         \n\
         VALUE                    RUN                                          STATUS              DURATION  ERROR\n\
         a                        [RUN]                succeeded [T]\n\
         b                        [RUN]                succeeded [T]\n\
         c                        [RUN]                failed [T]\n\
         d                        -                                            not_started                -\n\
         e                        -                                            not_started                -\n\
         f                        -                                            not_started                -\n\
         \n\
         folder: [WS]/.runbook/fleets/[FLEET]\n"
    );
    let before = member_runs(&ws, &fleet);
    // `runs` lists the member runs, then the fleet; in JSON each run names its fleet.
    let runs = ws
        .cmd(&["runs", "--state-dir", &state])
        .stdout_any()
        .check();
    assert_eq!(
        masked(&ws, &runs.stdout),
        "ID                                           STATUS       PLATFORM STARTED                   RUNBOOK\n\
         [RUN]                succeeded    local    [TIME]      fleet-demo\n\
         [RUN]                succeeded    local    [TIME]      fleet-demo\n\
         [RUN]                failed       local    [TIME]      fleet-demo\n\
         \n\
         FLEET                                        STATUS       PLATFORM STARTED                   MEMBERS\n\
         [FLEET]          failed       local    [TIME]      2 succeeded, 1 failed, 3 not_started\n"
    );
    let runs = ws
        .cmd(&["runs", "--state-dir", &state, "--format", "json"])
        .stdout_any()
        .check();
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let mut listed: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["fleet"].as_str().unwrap()))
        .collect();
    let mut members: Vec<(&str, &str)> = before[..3]
        .iter()
        .map(|r| (r.as_deref().unwrap(), fleet.as_str()))
        .collect();
    listed.sort();
    members.sort();
    assert_eq!(listed, members);

    // The cause is fixed: resume resumes `c` and starts the three never started.
    std::fs::remove_file(marks.join("c.broken")).unwrap();
    let ran = ws.cmd(&["resume", &fleet, "--state-dir", &state]).run();
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, format!("{fleet}\n"));
    let resumed_c = "[c] resuming run [RUN]\n\
                     [c] [1/2] wait (done in an earlier attempt: skipped)\n\
                     [c] [2/2] check (exec)\n\
                     [c] report: [WS]/.runbook/runs/[RUN]/report.md\n\
                     [c] report: [WS]/.runbook/runs/[RUN]/report.html\n\
                     [c] report: [WS]/.runbook/runs/[RUN]/report.json\n\
                     [c] run [RUN] succeeded\n\
                     [c] succeeded: run [RUN] [T]\n";
    assert_eq!(
        by_member(&ws, &ran, &values),
        format!(
            "{resumed_c}{}{}{}fleet [FLEET] succeeded: 6 succeeded\n",
            member_lines("d", false),
            member_lines("e", false),
            member_lines("f", false),
        )
    );
    let after = member_runs(&ws, &fleet);
    // `a` and `b` were left alone, `c` went on in its own run, the others got theirs.
    assert_eq!(after[..3], before[..3]);
    assert!(before[3..].iter().all(Option::is_none));
    assert!(after.iter().all(Option::is_some));
    let runs = std::fs::read_dir(ws.state_dir().join("runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 6);
    let report = ws
        .cmd(&["report", &fleet, "--state-dir", &state, "--format", "md"])
        .stdout_any()
        .check();
    let row = |v: &str| format!("| {v} | [RUN] | succeeded | [T] | - | - | - | - | - | - |\n");
    assert_eq!(
        masked(&ws, &report.stdout),
        format!(
            "# fleet [FLEET]: fleet-demo on local, for each cache\n\
             \n\
             status: succeeded (6 succeeded)\n\
             \n\
             | VALUE | RUN | STATUS | DURATION | UNWRITABLE | UNREADABLE | DISCONNECTS | ERRORS | LOST WRITES | PARITY |\n\
             |---|---|---|---|---|---|---|---|---|---|\n\
             {}",
            values.map(row).concat()
        )
    );
    ws.cmd(&["resume", &fleet, "--state-dir", &state])
        .stderr(&format!(
            "every run of fleet {fleet} already succeeded: nothing to resume\n"
        ))
        .check();
}

/// The run id of each member, as `show --format json` lists them.
fn member_runs(ws: &Workspace, fleet: &str) -> Vec<Option<String>> {
    let state = ws.state_dir().display().to_string();
    let ran = ws
        .cmd(&["show", fleet, "--state-dir", &state, "--format", "json"])
        .stdout_any()
        .check();
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["run_id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_fleet_checks_every_member_before_starting_any() {
    let ws = Workspace::new();
    ws.write("fleet.yaml", RUNBOOK);
    ws.cmd(&[
        "run",
        "fleet.yaml",
        "--for-each",
        "cahce=a,b",
        "--var",
        "marks=m",
    ])
    .status(2)
    .stderr("error: --for-each: runbook `fleet-demo` has no param `cahce`; did you mean `cache`?\n")
    .check();
    ws.cmd(&[
        "run",
        "fleet.yaml",
        "--for-each",
        "cache=a,b",
        "--var",
        "cache=x",
        "--var",
        "marks=m",
    ])
    .status(2)
    .stderr("error: `cache` is given both by --var and by --for-each; drop the --var\n")
    .check();
    assert!(!ws.state_dir().exists(), "nothing may be written");
}

#[test]
fn a_wrong_fleet_field_is_shown_where_it_is() {
    let ws = Workspace::new();
    ws.write(
        "bad.yaml",
        "version: 1\nname: bad\nfleet: { approve: sometimes, aprove: once }\nsteps:\n  - id: nap\n    action: sleep\n    with: { duration: 1s }\n",
    );
    ws.cmd(&["plan", "bad.yaml"])
        .status(2)
        .stderr(
            "error: `approve` must be `each` or `once`
 --> bad.yaml:3:19
  |
3 | fleet: { approve: sometimes, aprove: once }
  |                   ^^^^^^^^^
  = help: `each`: every member of a fleet at its own approve steps; `once`: one approval for the whole fleet

error: unknown field `aprove` in `fleet`
 --> bad.yaml:3:30
  |
3 | fleet: { approve: sometimes, aprove: once }
  |                              ^^^^^^
  = help: did you mean `approve`?

2 errors in bad.yaml
",
        )
        .check();
}

#[test]
fn a_fleet_killed_with_its_members_is_resumed_where_each_stood() {
    use std::os::unix::process::CommandExt as _;
    let ws = Workspace::new();
    let file = ws.write("fleet.yaml", RUNBOOK);
    let marks = ws.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::write(marks.join("b.delay"), "60").unwrap();
    let state = ws.state_dir().display().to_string();
    let marks_var = format!("marks={}", marks.display());
    // The fleet and its members in a process group of their own, to be killed together.
    let mut fleet = std::process::Command::new(crate::support::runbook_bin())
        .current_dir(ws.path())
        .args([
            "run",
            &file.display().to_string(),
            "--for-each",
            "cache=a,b,c",
            "--var",
            &marks_var,
            "--state-dir",
            &state,
        ])
        .env_remove("RUNBOOK_STATE_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(fleet.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let id = first.trim().to_string();
    // Once `b` sleeps in its first step, everything dies at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let b_run = loop {
        let runs = member_runs(&ws, &id);
        if let Some(run) = &runs[1] {
            let show = ws.show(run);
            if show["steps"][0]["status"] == "running" {
                break run.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "member b never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let pgid = i32::try_from(fleet.id()).unwrap();
    // SAFETY: the process group of the fleet this test started.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    fleet.wait().unwrap();
    std::fs::remove_file(marks.join("b.delay")).unwrap();
    let ran = ws.cmd(&["resume", &id, "--state-dir", &state]).run();
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let after = member_runs(&ws, &id);
    assert_eq!(after[1].as_deref(), Some(b_run.as_str()));
    let show = ws
        .cmd(&["show", &id, "--state-dir", &state])
        .stdout_any()
        .check();
    assert_eq!(
        masked(&ws, &show.stdout),
        format!(
            "fleet [FLEET]  (fleet-demo on local, for each cache)\n\
             status: succeeded (3 succeeded)\n\
             started: [TIME]\n\
             max concurrency 1, max errors none, approval by each run\n\
             \n\
             VALUE                    RUN                                          STATUS              DURATION  ERROR\n\
             {}\n\
             folder: [WS]/.runbook/fleets/[FLEET]\n",
            ["a", "b", "c"]
                .map(|v| format!(
                    "{v}{}[RUN]{}succeeded [T]\n",
                    " ".repeat(24),
                    " ".repeat(16)
                ))
                .concat()
        )
    );
    // `b`'s first step, cut off by the kill, ran again; its sleep of a minute was ended.
    let b = ws.show(&b_run);
    assert_eq!(b["steps"][0]["attempts"], 2);
}

#[test]
fn a_fleet_report_shows_each_members_client_impact_and_parity() {
    use crate::support::{Engine, Server};
    let servers = [Server::start(Engine::Redis), Server::start(Engine::Redis)];
    let ws = Workspace::new();
    ws.write(
        "probed.yaml",
        r#"version: 1
name: probed
params:
  port: { description: the server of this run }
probe:
  endpoints: ["127.0.0.1:{{ params.port }}"]
  interval: 10ms
steps:
  - id: fill
    action: data.seed
    with: { endpoint: "127.0.0.1:{{ params.port }}", keys: 20, prefix: "fleet:" }
  - id: steady
    action: sleep
    with: { duration: 500ms }
  - id: parity
    action: data.verify
    with: { source: "127.0.0.1:{{ params.port }}", target: "127.0.0.1:{{ params.port }}" }
"#,
    );
    let ports = format!("port={},{}", servers[0].port, servers[1].port);
    let ran = ws
        .cmd(&[
            "run",
            "probed.yaml",
            "--for-each",
            &ports,
            "--max-concurrency",
            "2",
        ])
        .run();
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let fleet = ran.first_line().to_string();
    let report = ws
        .cmd(&["report", &fleet, "--format", "md"])
        .stdout_any()
        .check();
    let row = |s: &Server| {
        format!(
            "| {} | [RUN] | succeeded | [T] | [T] | [T] | 0 | 0 | 0 | equal (20 keys) |\n",
            s.port
        )
    };
    assert_eq!(
        masked(&ws, &report.stdout),
        format!(
            "# fleet [FLEET]: probed on local, for each port\n\
             \n\
             status: succeeded (2 succeeded)\n\
             \n\
             | VALUE | RUN | STATUS | DURATION | UNWRITABLE | UNREADABLE | DISCONNECTS | ERRORS | LOST WRITES | PARITY |\n\
             |---|---|---|---|---|---|---|---|---|---|\n\
             {}{}",
            row(&servers[0]),
            row(&servers[1])
        )
    );
    let json = ws
        .cmd(&["report", &fleet, "--format", "json"])
        .stdout_any()
        .check();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    for m in json["members"].as_array().unwrap() {
        assert_eq!(m["outcome"]["unwritable_s"], 0.0);
        assert_eq!(m["outcome"]["parity"]["equal"], true);
    }
}

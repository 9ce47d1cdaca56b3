//! `--state-dir s3://bucket/prefix` against moto's S3: two working folders with caches of
//! their own (two machines) share one prefix — one drives a run, the other lists it, is
//! refused by its lease, breaks the lease once its holder was killed and resumes the run —
//! and a journal written behind a run's back stops it (412) instead of mixing lines in.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::aws_support::{MOTO_ENV, Moto};
use crate::support::{Cmd, Workspace, free_port, runbook_bin, vary};

const BUCKET: &str = "team-state";

/// Goes on past its `wait` step only once the file `gate` exists.
const GATE: &str = r#"version: 1
name: gate
params:
  gate: { description: a file whose presence lets the run go on }
steps:
  - id: hello
    action: exec
    with: { command: "echo hello" }
  - id: wait
    action: exec
    with: { command: "until [ -e {{ params.gate }} ]; do sleep 0.05; done" }
"#;

/// One machine: a working folder with its own cache (where its working copy of the state
/// dir goes), reaching moto's S3.
struct Machine {
    ws: Workspace,
    url: String,
    endpoint: String,
}

impl Machine {
    fn new(moto: &Moto, prefix: &str) -> Machine {
        Machine {
            ws: Workspace::new(),
            url: format!("s3://{BUCKET}/{prefix}"),
            endpoint: moto.url(),
        }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--state-dir", &self.url, "--endpoint-url", &self.endpoint]);
        all
    }

    fn env(&self, command: &mut Command) {
        command
            .envs(MOTO_ENV.iter().copied())
            .env("XDG_CACHE_HOME", self.ws.path().join("cache"))
            .env("USER", "tester")
            .env("RUNBOOK_S3_LEASE", "6s");
    }

    /// A `runbook` command on this machine, with the shared state dir.
    fn cmd(&self, args: &[&str]) -> Cmd {
        let mut cmd = self.ws.cmd(&self.args(args));
        self.env(&mut cmd.command);
        cmd.filter(r"team-state-[0-9a-f]{12}", "[COPY]")
            .filter(vary::TIMESTAMP, "[TIME]")
    }

    /// `runbook ARGS` in the background, in a process group of its own.
    fn spawn(&self, args: &[&str]) -> Child {
        use std::os::unix::process::CommandExt as _;
        let mut command = Command::new(runbook_bin());
        command
            .current_dir(self.ws.path())
            .args(self.args(args))
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        self.env(&mut command);
        command.spawn().expect("start runbook")
    }

    fn show(&self, id: &str) -> serde_json::Value {
        let ran = self
            .cmd(&["show", id, "--format", "json"])
            .stdout_any()
            .check();
        serde_json::from_str(&ran.stdout).expect("show prints JSON")
    }

    /// Asks `show` until `until` holds of what it prints.
    fn wait_for(&self, id: &str, what: &str, until: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let show = self.show(id);
            if until(&show) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} never happened: {show}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Moto's S3 with the team's bucket, and a client of it.
struct Bucket {
    moto: Moto,
    runtime: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
}

impl Bucket {
    fn new() -> Bucket {
        let moto = Moto::start();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let s3 = moto.clients().s3;
        runtime
            .block_on(s3.create_bucket().bucket(BUCKET).send())
            .expect("create the bucket");
        Bucket { moto, runtime, s3 }
    }

    fn get(&self, key: &str) -> (Vec<u8>, String) {
        self.runtime.block_on(async {
            let out = self
                .s3
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            let etag = out.e_tag().unwrap().to_string();
            (out.body.collect().await.unwrap().to_vec(), etag)
        })
    }

    /// Writes `body` to `key` with `If-None-Match: *` or `If-Match: ETAG`; the HTTP status.
    fn put(&self, key: &str, body: &str, if_match: Option<&str>) -> u16 {
        self.runtime.block_on(async {
            let put = self
                .s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.as_bytes().to_vec().into());
            let put = match if_match {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            match put.send().await {
                Ok(_) => 200,
                Err(e) => e.raw_response().map_or(0, |r| r.status().as_u16()),
            }
        })
    }
}

/// Kills what a test left running, whatever happened: the runs' processes and, by opening
/// the gate, the commands they started.
struct Cleanup<'a> {
    gate: &'a Path,
    children: Vec<u32>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.gate, "");
        for pid in &self.children {
            // SAFETY: a process this test started (gone already, or still running).
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The run id `run` printed first.
fn run_id(child: &mut Child) -> String {
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    first.trim().to_string()
}

fn stderr_of(mut child: Child) -> (i32, String) {
    let status = child.wait().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
    (status.code().unwrap_or(-1), text)
}

#[test]
fn moto_refuses_a_second_create_and_a_write_on_an_old_version() {
    let bucket = Bucket::new();
    assert_eq!(bucket.put("k", "first", None), 200);
    assert_eq!(bucket.put("k", "second", None), 412);
    let (_, first) = bucket.get("k");
    assert_eq!(bucket.put("k", "third", Some(&first)), 200);
    assert_eq!(bucket.put("k", "fourth", Some(&first)), 412);
    assert_eq!(bucket.get("k").0, b"third");
}

#[test]
fn a_run_on_s3_is_seen_locked_and_resumed_from_another_machine_after_a_kill() {
    let bucket = Bucket::new();
    let (a, b) = (
        Machine::new(&bucket.moto, "team"),
        Machine::new(&bucket.moto, "team"),
    );
    a.ws.write("gate.yaml", GATE);
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("open");
    let gate_var = format!("gate={}", gate.display());
    let mut first = a.spawn(&["run", "gate.yaml", "--var", &gate_var]);
    let mut cleanup = Cleanup {
        gate: &gate,
        children: vec![first.id()],
    };
    let id = run_id(&mut first);
    b.wait_for(&id, "the wait step of the first run", |s| {
        s["steps"][1]["status"] == "running"
    });
    b.cmd(&["runs"])
        .stdout(&format!(
            "ID                                           STATUS       PLATFORM STARTED                   RUNBOOK\n\
             {id}                      running      local    [TIME]      gate\n"
        ))
        .check();
    // The lease names its holder: the first process.
    let lease: serde_json::Value =
        serde_json::from_slice(&bucket.get(&format!("team/runs/{id}/lease.json")).0).unwrap();
    let holder = format!("tester@{}:{}", hostname(), first.id());
    assert_eq!(lease["holder"], holder.as_str(), "{lease}");
    b.cmd(&["resume", &id])
        .status(1)
        .stderr(&format!(
            "error: run {id} is being driven by another process ({holder} since [TIME]; its lease runs until [TIME]); wait for it to finish, or stop that process first\n"
        ))
        .check();

    first.kill().unwrap(); // SIGKILL: its lease stays, and runs out.
    first.wait().unwrap();
    b.wait_for(&id, "the lease running out", |s| {
        s["status"] == "interrupted"
    });
    let stale = format!(
        "error: run {id} is locked by {holder} (since [TIME]), whose lease ran out at [TIME]: that process was stopped, or cannot reach S3 and may still be driving the run. Once you know it no longer runs, break the lock with `runbook unlock {id} --holder {holder} --state-dir s3://team-state/team`\n"
    );
    b.cmd(&["resume", &id]).status(1).stderr(&stale).check();
    b.cmd(&["resume", &id]).status(1).stderr(&stale).check();
    b.cmd(&["unlock", &id, "--holder", "someone@else:1"])
        .status(2)
        .stderr(&format!(
            "error: run {id} is locked by {holder}, not by someone@else:1: check that {holder} no longer runs, then name it with --holder\n"
        ))
        .check();
    b.cmd(&["unlock", &id, "--holder", &holder])
        .stdout(&format!(
            "run {id} unlocked: the lease of {holder} (since [TIME]) is broken\n\
             continue with: runbook resume {id} --state-dir s3://team-state/team\n"
        ))
        .check();

    // The second machine resumes; the first one sees it go.
    let resumed = b.spawn(&["resume", &id]);
    cleanup.children.push(resumed.id());
    a.wait_for(&id, "the resumed wait step", |s| {
        s["status"] == "running" && s["steps"][1]["attempts"] == 2
    });
    std::fs::write(&gate, "").unwrap();
    let (status, stderr) = stderr_of(resumed);
    assert_eq!(status, 0, "{stderr}");
    let copy = regex::Regex::new(r"team-state-[0-9a-f]{12}").unwrap();
    let stderr = copy.replace_all(&stderr, "[COPY]");
    let stderr = stderr.replace(&b.ws.path().display().to_string(), "[WS]");
    let reports = format!("[WS]/cache/runbook/s3/[COPY]/runs/{id}/report");
    assert_eq!(
        stderr,
        format!(
            "[1/2] hello (done in an earlier attempt: skipped)\n\
             [2/2] wait (exec)\n\
             report: {reports}.md\n\
             report: {reports}.html\n\
             report: {reports}.json\n\
             run {id} succeeded\n"
        )
    );
    // Both machines tell the same story, and the lease is given back.
    let shown = |m: &Machine| {
        let ran = m.cmd(&["show", &id]).stdout_any().check();
        let folder = ran.stdout.rfind("folder: ").unwrap();
        ran.stdout[..folder].to_string()
    };
    let on_a = shown(&a);
    assert_eq!(on_a, shown(&b));
    let finished = regex::Regex::new(vary::TIMESTAMP).unwrap();
    assert_eq!(
        finished.replace_all(&on_a, "[TIME]"),
        format!(
            "run {id}  (gate on local)\n\
             status: succeeded\n\
             started: [TIME]\n\
             finished: [TIME]\n\
             \n\
             STEP                     ACTION                 STATUS       ATTEMPTS  ERROR\n\
             hello                    exec                   succeeded           1  \n\
             wait                     exec                   succeeded           2  \n\
             \n"
        )
    );
    let runs = bucket.runtime.block_on(
        bucket
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(format!("team/runs/{id}/"))
            .send(),
    );
    let mut keys: Vec<String> = runs
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .map(|k| {
            k.trim_start_matches(&format!("team/runs/{id}/"))
                .to_string()
        })
        .collect();
    keys.sort();
    // The run's story, without the lease (given back) or this machine's lock.
    assert_eq!(
        keys,
        [
            "journal.head",
            "journal.jsonl",
            "report.html",
            "report.json",
            "report.md",
            "run.json",
            "runbook.yaml",
            "steps/hello/stderr",
            "steps/hello/stdout",
            "steps/wait/stderr",
            "steps/wait/stdout",
        ]
    );
    // The first machine's report is the one the second wrote.
    let report = a
        .cmd(&["report", &id, "--format", "json"])
        .stdout_any()
        .check();
    let copy_b = std::fs::read_to_string(
        b.ws.path()
            .join("cache/runbook/s3")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join(format!("runs/{id}/report.json")),
    )
    .unwrap();
    let parsed = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(parsed(&report.stdout)["run"], parsed(&copy_b)["run"]);
}

#[test]
fn a_journal_written_behind_the_runs_back_stops_it() {
    let bucket = Bucket::new();
    let a = Machine::new(&bucket.moto, "ci");
    a.ws.write("gate.yaml", GATE);
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("open");
    let gate_var = format!("gate={}", gate.display());
    let mut run = a.spawn(&["run", "gate.yaml", "--var", &gate_var]);
    let _cleanup = Cleanup {
        gate: &gate,
        children: vec![run.id()],
    };
    let id = run_id(&mut run);
    a.wait_for(&id, "the wait step", |s| {
        s["steps"][1]["status"] == "running"
    });
    // Another writer replaces the journal with its own story.
    let key = format!("ci/runs/{id}/journal.jsonl");
    let (journal, etag) = bucket.get(&key);
    let theirs = String::from_utf8(journal).unwrap();
    let theirs = theirs.lines().next().unwrap().to_string() + "\n";
    assert_eq!(bucket.put(&key, &theirs, Some(&etag)), 200);
    std::fs::write(&gate, "").unwrap();
    let (status, stderr) = stderr_of(run);
    let stderr = regex::Regex::new(r"team-state-[0-9a-f]{12}")
        .unwrap()
        .replace_all(&stderr, "[COPY]")
        .replace(&a.ws.path().display().to_string(), "[WS]");
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "[1/2] hello (exec)\n  hello: hello\n[2/2] wait (exec)\n\
             error: the run stopped: without its journal it could not be resumed safely: cannot write the journal [WS]/cache/runbook/s3/[COPY]/runs/{id}/journal.jsonl: s3://team-state/ci/runs/{id}/journal.jsonl was written by another process meanwhile (412 Precondition Failed): two processes drive run {id}; this one stops\n"
        )
    );
    // Nothing of the stopped run mixed into the other writer's journal.
    assert_eq!(bucket.get(&key).0, theirs.as_bytes());
}

#[test]
fn a_wrong_s3_state_dir_is_refused_before_anything_runs() {
    let bucket = Bucket::new();
    let m = Machine::new(&bucket.moto, "empty");
    m.cmd(&["runs"])
        .stderr("no runs in s3://team-state/empty\n")
        .check();
    let ws = Workspace::new();
    ws.cmd(&["runs", "--state-dir", "s3://"])
        .status(2)
        .stderr(
            "error: invalid value 's3://' for '--state-dir <DIR>': an S3 state dir names its bucket: s3://BUCKET or s3://BUCKET/PREFIX\n\nFor more information, try '--help'.\n",
        )
        .check();
    ws.cmd(&["runs"])
        .env("RUNBOOK_STATE_DIR", "s3://Team_State/runs")
        .status(2)
        .stderr(
            "error: invalid value 's3://Team_State/runs' for '--state-dir <DIR>': `Team_State` is not an S3 bucket name (3 to 63 lowercase letters, digits, `.` and `-`, a letter or digit first and last)\n\nFor more information, try '--help'.\n",
        )
        .check();
    let mut missing = ws.cmd(&[
        "runs",
        "--state-dir",
        "s3://no-such-bucket/runs",
        "--endpoint-url",
        &bucket.moto.url(),
    ]);
    missing.command.envs(MOTO_ENV.iter().copied());
    missing
        .status(2)
        .stderr("error: the bucket s3://no-such-bucket of the state dir s3://no-such-bucket/runs does not exist: create it, or give another --state-dir\n")
        .check();
    // Nothing listens there: the causes, one after the other, and what to do.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut unreachable = ws.cmd(&[
        "runs",
        "--state-dir",
        "s3://team-state/runs",
        "--endpoint-url",
        &closed,
    ]);
    unreachable.command.envs(MOTO_ENV.iter().copied());
    unreachable
        .status(1)
        .stderr("error: cannot reach the state dir s3://team-state/runs: s3:HeadBucket: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111); check the endpoint, the network and the AWS credentials, or give another --state-dir\n")
        .check();
    ws.cmd(&["unlock", "20261201-0759-gate-610e", "--holder", "a@b:1"])
        .status(2)
        .stderr("error: the state dir .runbook is a local folder, whose run locks are OS locks that end with their process: there is nothing to unlock\n")
        .check();
    m.ws.write("gate.yaml", GATE);
    m.cmd(&["run", "gate.yaml", "--for-each", "gate=x,y"])
        .status(2)
        .stderr("error: a fleet (--for-each) keeps its state in a local folder for now: give a local --state-dir, not s3://team-state/empty\n")
        .check();
}

/// Declares a secret the command prints.
const SECRET: &str = r#"version: 1
name: secret
params:
  token: { description: an API token, secret: true }
steps:
  - id: say
    action: exec
    with: { command: "echo token={{ params.token }}" }
"#;

#[test]
fn a_secret_never_reaches_s3() {
    let bucket = Bucket::new();
    let m = Machine::new(&bucket.moto, "secrets");
    m.ws.write("secret.yaml", SECRET);
    let ran = m
        .cmd(&["run", "secret.yaml", "--var", "token=Tk-93f1a7c0e2"])
        .stdout_any()
        .expect(0);
    let id = ran.first_line().to_string();
    let listed = bucket
        .runtime
        .block_on(
            bucket
                .s3
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("secrets/runs/{id}/"))
                .send(),
        )
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&format!("secrets/runs/{id}/steps/say/stdout").as_str()),
        "{keys:?}"
    );
    for key in keys {
        let (body, _) = bucket.get(key);
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("Tk-93f1a7c0e2"), "{key} holds the secret");
    }
    // What the command printed went up, masked.
    let (stdout, _) = bucket.get(&format!("secrets/runs/{id}/steps/say/stdout"));
    assert_eq!(String::from_utf8_lossy(&stdout), "token=***\n");
}

#[test]
fn a_journal_that_lost_lines_on_s3_is_repaired_from_another_machine() {
    let bucket = Bucket::new();
    let (a, b) = (
        Machine::new(&bucket.moto, "fix"),
        Machine::new(&bucket.moto, "fix"),
    );
    a.ws.write("gate.yaml", GATE);
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("open");
    std::fs::write(&gate, "").unwrap();
    let gate_var = format!("gate={}", gate.display());
    let ran = a.cmd(&["run", "gate.yaml", "--var", &gate_var]).expect(0);
    let id = ran.first_line().to_string();
    // The journal on S3 loses its last lines; its head still names the last one written.
    let key = format!("fix/runs/{id}/journal.jsonl");
    let (journal, _) = bucket.get(&key);
    let journal = String::from_utf8(journal).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    let kept = lines.len() - 3;
    let cut: String = lines[..kept].iter().map(|l| format!("{l}\n")).collect();
    let (_, etag) = bucket.get(&key);
    assert_eq!(bucket.put(&key, &cut, Some(&etag)), 200);
    let local = format!("[WS]/cache/runbook/s3/[COPY]/runs/{id}/journal.jsonl");
    let damage = format!(
        "the journal {local} ends at line {kept}, but {} lines were written (as journal.head records): its last lines were lost",
        lines.len()
    );
    b.cmd(&["show", &id])
        .status(1)
        .stderr(&format!(
            "error: run {id} cannot be trusted as it is (`runbook resume {id} --repair` says how it would be cut back to its last good line): {damage}\n"
        ))
        .check();
    b.cmd(&["resume", &id, "--repair", "--yes"])
        .filter(r"journal\.damaged-[0-9T.]+\.jsonl", "journal.damaged-[T].jsonl")
        .stdout(&format!(
            "{damage}\n\
             repair: take lines 1-{kept}, all that is left, as the whole journal; then step `wait` is not finished and run again on resume\n\
             done; the damaged journal is kept as [WS]/cache/runbook/s3/[COPY]/runs/{id}/journal.damaged-[T].jsonl\n\
             continue with: runbook resume {id}\n"
        ))
        .check();
    // The damaged journal is kept on S3 too.
    let listed = bucket
        .runtime
        .block_on(
            bucket
                .s3
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("fix/runs/{id}/journal.damaged-"))
                .send(),
        )
        .unwrap();
    let damaged: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(bucket.get(damaged[0]).0, cut.as_bytes());
    // The first machine finds the repaired journal on S3 and finishes the run.
    a.cmd(&["resume", &id]).expect(0);
    assert_eq!(a.show(&id)["status"], "succeeded");
    assert_eq!(b.show(&id)["status"], "succeeded");
}

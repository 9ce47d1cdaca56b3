//! What the integration tests share: real servers on free ports that stop when dropped,
//! a fluent way to run the `runbook` binary, and temporary working folders.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn runbook_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runbook"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Which server binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Redis,
    Valkey,
}

impl Engine {
    pub fn binary(self) -> String {
        let (var, name) = match self {
            Engine::Redis => ("RUNBOOK_REDIS_SERVER", "redis-server"),
            Engine::Valkey => ("RUNBOOK_VALKEY_SERVER", "valkey-server"),
        };
        std::env::var(var).unwrap_or_else(|_| name.to_string())
    }
}

/// A port a server listens on beside its client port.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Second {
    None,
    /// The cluster bus.
    Bus,
    /// TLS connections.
    Tls,
}

/// A real server on a free loopback port, killed when dropped.
pub struct Server {
    pub port: u16,
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    /// The TLS port, when started with [`Server::start_tls`].
    pub tls_port: Option<u16>,
    certs: Option<tempfile::TempDir>,
    /// The cluster bus port, when started with [`Server::start_cluster_node`].
    pub bus_port: Option<u16>,
}

impl Server {
    pub fn start(engine: Engine) -> Server {
        Server::start_with(engine, &[])
    }

    /// Starts a server with extra config directives (`["--requirepass", "x"]`).
    pub fn start_with(engine: Engine, extra: &[&str]) -> Server {
        Server::start_on_ports(engine, extra, Second::None)
    }

    /// Starts a cluster-mode node with no slots, its bus on a port of its own.
    pub fn start_cluster_node(engine: Engine) -> Server {
        let mode = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ];
        Server::start_on_ports(engine, &mode, Second::Bus)
    }

    /// Starts a server on free ports, trying fresh ones when another process took one
    /// first: the client port, and the `second` port if any.
    fn start_on_ports(engine: Engine, extra: &[&str], second: Second) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            port: 0,
            engine,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls_port: None,
            certs: None,
            bus_port: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            server.bus_port = (second == Second::Bus).then(free_port);
            server.tls_port = (second == Second::Tls).then(free_port);
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "could not start {engine:?}: see {}",
            server.dir.path().display()
        );
    }

    /// Starts a server that also serves TLS, with a self-signed certificate for
    /// `cache.example`, on [`Server::tls_port`] (clients are not asked for certificates).
    pub fn start_tls(engine: Engine, extra: &[&str]) -> Server {
        let certs = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=cache.example"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut args = vec![
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ];
        args.extend_from_slice(extra);
        let mut server = Server::start_on_ports(engine, &args, Second::Tls);
        server.certs = Some(certs);
        server
    }

    /// Starts the process again on the same port and data (after `stop`).
    pub fn restart(&mut self) {
        assert!(
            self.spawn(),
            "{:?} did not come back on port {}",
            self.engine,
            self.port
        );
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(self.engine.binary())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--logfile", "server.log"])
            .args(&self.extra)
            .args(
                self.bus_port
                    .iter()
                    .flat_map(|bus| ["--cluster-port".to_string(), bus.to_string()]),
            )
            .args(
                self.tls_port
                    .iter()
                    .flat_map(|tls| ["--tls-port".to_string(), tls.to_string()]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (run scripts/setup)",
                    self.engine.binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// Kills the process (SIGKILL): an abrupt outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (run scripts/setup)");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cluster of `shards` primaries on loopback, slots split evenly, in `cluster_state:ok`.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    pub fn start(engine: Engine, shards: u16) -> Cluster {
        let nodes: Vec<Server> = (0..shards)
            .map(|_| Server::start_cluster_node(engine))
            .collect();
        let per = 16384 / shards;
        for (i, node) in nodes.iter().enumerate() {
            let first = i as u16 * per;
            let last = if i as u16 == shards - 1 {
                16383
            } else {
                first + per - 1
            };
            let added = node.cli(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(added, "OK");
        }
        for node in nodes.iter().skip(1) {
            let met = nodes[0].cli(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &node.port.to_string(),
                &node.bus_port.expect("a cluster node").to_string(),
            ]);
            assert_eq!(met, "OK");
        }
        let want = format!("cluster_known_nodes:{shards}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| {
            let info = n.cli(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains(&want)
        }) {
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { nodes }
    }

    /// Keys held by each node, in node order.
    pub fn dbsizes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).parse().expect("DBSIZE is a number"))
            .collect()
    }
}

/// A temporary working folder with a state dir, where `runbook` commands run.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(".runbook")
    }

    /// Writes a file (a runbook, a vars file) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A `runbook` command in this folder.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        let mut command = Command::new(runbook_bin());
        command
            .current_dir(self.dir.path())
            .args(args)
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null());
        Cmd::new(command).replace(&self.dir.path().display().to_string(), "[WS]")
    }
}

/// Patterns of text that varies from run to run by right, for [`Cmd::filter`].
pub mod vary {
    /// A run id: `20261122-0300-demo-1a2b`.
    pub const RUN_ID: &str = r"\b\d{8}-\d{4}-[a-z0-9-]+?-[0-9a-f]{4}\b";
    /// An RFC 3339 time: `2026-11-22T03:00:00.123Z`.
    pub const TIMESTAMP: &str = r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})";
}

/// What a stream must hold.
enum Expected {
    /// Exactly this text, after the filters.
    Text(String),
    /// JSON equal to this value, after the filters.
    Json(serde_json::Value),
    /// Anything: output the test reads itself.
    Any,
}

/// A `runbook` invocation being built, and what it must print.
///
/// As in a compiler's UI tests, the streams are compared whole and are expected empty unless
/// said otherwise, and the exit status 0, so any stray line fails the test. What varies by
/// right (run ids, temporary paths, ports, times) is replaced by a placeholder first
/// ([`Cmd::replace`], [`Cmd::filter`]); the workspace's path always reads `[WS]`.
pub struct Cmd {
    pub command: Command,
    status: i32,
    stdout: Expected,
    stderr: Expected,
    filters: Vec<(regex::Regex, String)>,
}

/// What a finished invocation printed, and its status.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The first line of stdout: `run` prints the run id there.
    pub fn first_line(&self) -> &str {
        self.stdout.lines().next().unwrap_or_default()
    }
}

impl Cmd {
    fn new(command: Command) -> Cmd {
        Cmd {
            command,
            status: 0,
            stdout: Expected::Text(String::new()),
            stderr: Expected::Text(String::new()),
            filters: Vec::new(),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.command.env(k, v);
        self
    }

    /// The exit status it must end with (0 unless given).
    pub fn status(mut self, code: i32) -> Cmd {
        self.status = code;
        self
    }

    /// The whole of stdout (empty unless given).
    pub fn stdout(mut self, text: &str) -> Cmd {
        self.stdout = Expected::Text(text.to_string());
        self
    }

    /// Stdout is this JSON document.
    pub fn stdout_json(mut self, value: serde_json::Value) -> Cmd {
        self.stdout = Expected::Json(value);
        self
    }

    /// Stdout is read by the test itself (a JSON document it takes values from).
    pub fn stdout_any(mut self) -> Cmd {
        self.stdout = Expected::Any;
        self
    }

    /// The whole of stderr (empty unless given).
    pub fn stderr(mut self, text: &str) -> Cmd {
        self.stderr = Expected::Text(text.to_string());
        self
    }

    /// Reads `text` as `placeholder` in both streams before comparing.
    pub fn replace(self, text: &str, placeholder: &str) -> Cmd {
        self.filter(&regex::escape(text), placeholder)
    }

    /// Reads what matches the regular expression `pattern` as `placeholder` (which may
    /// refer to groups: `$1`) in both streams before comparing; see [`vary`].
    pub fn filter(mut self, pattern: &str, placeholder: &str) -> Cmd {
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("filter {pattern}: {e}"));
        self.filters.push((re, placeholder.to_string()));
        self
    }

    /// Runs without checking anything.
    pub fn run(mut self) -> Ran {
        output(&mut self.command)
    }

    /// Runs and asserts exit status `code` only, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Ran {
        let ran = self.run();
        assert_eq!(
            ran.status, code,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            ran.stdout, ran.stderr
        );
        ran
    }

    /// Runs and asserts the exit status and both whole streams, showing every difference
    /// at once. Returns what it printed, unfiltered.
    pub fn check(self) -> Ran {
        let Cmd {
            mut command,
            status,
            stdout,
            stderr,
            filters,
        } = self;
        let line = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let ran = output(&mut command);
        let filter = |text: &str| {
            filters.iter().fold(text.to_string(), |text, (re, with)| {
                re.replace_all(&text, with.as_str()).into_owned()
            })
        };
        let mut wrong = Vec::new();
        if ran.status != status {
            wrong.push(format!("exit status {} instead of {status}", ran.status));
        }
        for (name, expected, got) in [
            ("stdout", stdout, &ran.stdout),
            ("stderr", stderr, &ran.stderr),
        ] {
            if let Some(diff) = differs(&expected, &filter(got)) {
                wrong.push(format!("{name} (< expected, > printed):\n{diff}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{line}\n{}\n--- stdout\n{}\n--- stderr\n{}",
            wrong.join("\n"),
            ran.stdout,
            ran.stderr
        );
        ran
    }
}

fn output(command: &mut Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run runbook");
    Ran {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// How `got` differs from what was expected, if it does.
fn differs(expected: &Expected, got: &str) -> Option<String> {
    match expected {
        Expected::Any => None,
        Expected::Text(text) => {
            (text != got).then(|| pretty_assertions::StrComparison::new(text, got).to_string())
        }
        Expected::Json(value) => match serde_json::from_str::<serde_json::Value>(got) {
            Ok(parsed) if parsed == *value => None,
            Ok(parsed) => Some(pretty_assertions::Comparison::new(value, &parsed).to_string()),
            Err(e) => Some(format!("not JSON ({e})")),
        },
    }
}

impl Workspace {
    /// Starts `runbook` in the background; returns the process and the run id it printed first.
    pub fn spawn(&self, args: &[&str]) -> (Child, String) {
        use std::io::BufRead;
        let mut child = Command::new(runbook_bin())
            .current_dir(self.dir.path())
            .args(args)
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start runbook");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("the run id");
        (child, first.trim().to_string())
    }

    /// `runbook run FILE --yes` with `--var` for each of `vars`, in this workspace's state dir:
    /// what it printed and the run id it printed first.
    pub fn run_runbook(&self, file: &str, vars: &[&str]) -> (Ran, String) {
        let state = self.state_dir().display().to_string();
        let mut args = vec!["run", file, "--yes", "--state-dir", &state];
        for v in vars {
            args.extend(["--var", v]);
        }
        let ran = self.cmd(&args).run();
        let run_id = ran
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        (ran, run_id)
    }

    /// `runbook show RUN_ID --format json`, parsed.
    pub fn show(&self, id: &str) -> serde_json::Value {
        let ran = self
            .cmd(&["show", id, "--format", "json"])
            .stdout_any()
            .check();
        serde_json::from_str(&ran.stdout).expect("show prints JSON")
    }
}

/// Journals step `step` as started, as the executor does before it runs an action (and
/// the run as started first), so that what the step records follows from the journal.
pub fn start_step(journal: &runbook::journal::Journal, step: &str) {
    use runbook::journal::{Event, Phase, StepStatus};
    let replay = journal.replay();
    if replay.run().is_none() {
        journal
            .append(Event::RunStarted {
                run_id: "test-run".into(),
                runbook: "test".into(),
                file: "test.yaml".into(),
                digest: "sha256:00".into(),
                platform: "test".into(),
                params: Default::default(),
            })
            .expect("journal the start");
    }
    if replay
        .step(step)
        .is_some_and(|s| s.status == StepStatus::Running)
    {
        return;
    }
    journal
        .append(Event::StepStarted {
            step: step.into(),
            action: "test".into(),
            phase: Phase::Steps,
            attempt: 1,
            inputs: serde_json::Value::Null,
        })
        .expect("journal the step's start");
}

/// Journals that a new process took the run over, as `resume` does.
pub fn resume_run(journal: &runbook::journal::Journal) {
    journal
        .append(runbook::journal::Event::RunResumed {
            from: None,
            digest: "sha256:00".into(),
            allow_changed: false,
        })
        .expect("journal the resume");
}

#[test]
#[should_panic(expected = "stderr (< expected, > printed)")]
fn output_nobody_expected_fails_a_check() {
    Workspace::new()
        .cmd(&["plan", "missing.yaml"])
        .status(2)
        .check();
}

#[test]
fn filters_read_what_varies_as_placeholders() {
    let ws = Workspace::new();
    ws.write(
        "hi.yaml",
        "version: 1\nname: hi\nsteps:\n  - id: a\n    action: exec\n    with: { command: 'echo hi' }\n",
    );
    let ran = ws
        .cmd(&["run", "hi.yaml"])
        .filter(vary::RUN_ID, "[RUN]")
        .stdout("[RUN]\n")
        .stderr(indoc::indoc! {"
            [1/1] a (exec)
              a: hi
            report: .runbook/runs/[RUN]/report.md
            report: .runbook/runs/[RUN]/report.html
            report: .runbook/runs/[RUN]/report.json
            run [RUN] succeeded
        "})
        .check();
    ws.cmd(&["show", ran.first_line(), "--format", "json"])
        .filter(vary::RUN_ID, "[RUN]")
        .filter(vary::TIMESTAMP, "[TIME]")
        .stdout_json(serde_json::json!({
            "id": "[RUN]",
            "runbook": "hi",
            "platform": "local",
            "status": "succeeded",
            "started_at": "[TIME]",
            "finished_at": "[TIME]",
            "steps": [{
                "id": "a",
                "action": "exec",
                "phase": "steps",
                "status": "succeeded",
                "attempts": 1,
                "started_at": "[TIME]",
                "finished_at": "[TIME]",
                "error": null
            }]
        }))
        .check();
}

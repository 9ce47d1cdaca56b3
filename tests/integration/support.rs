//! What the integration tests share: real servers on free ports that stop when dropped,
//! a fluent way to run the `runbook` binary, and temporary working folders.

#![allow(dead_code)]

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
}

impl Server {
    pub fn start(engine: Engine) -> Server {
        Server::start_with(engine, &[])
    }

    /// Starts a server with extra config directives (`["--requirepass", "x"]`).
    pub fn start_with(engine: Engine, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            port: 0,
            engine,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls_port: None,
            certs: None,
        };
        for _ in 0..5 {
            server.port = free_port();
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
        let tls_port = free_port().to_string();
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut args = vec![
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ];
        args.extend_from_slice(extra);
        let mut server = Server::start_with(engine, &args);
        server.tls_port = tls_port.parse().ok();
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
        Cmd { command }
    }
}

/// A `runbook` invocation being built.
pub struct Cmd {
    pub command: Command,
}

/// What a finished invocation printed, and its status.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cmd {
    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.command.env(k, v);
        self
    }

    pub fn run(mut self) -> Ran {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command.output().expect("run runbook");
        Ran {
            status: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Runs and asserts exit status `code`, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Ran {
        let ran = self.run();
        assert_eq!(
            ran.status, code,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            ran.stdout, ran.stderr
        );
        ran
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

    /// `runbook show RUN_ID --format json`, parsed.
    pub fn show(&self, id: &str) -> serde_json::Value {
        let ran = self.cmd(&["show", id, "--format", "json"]).expect(0);
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

//! What the aws tests share: a real moto server on a free port (killed on drop), AWS
//! clients pointed at it or made of aws-smithy-mocks rules, and a run directory whose steps
//! run registered actions with a step context built as the executor builds it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticache::config::{Credentials, SharedCredentialsProvider};
use runbook::actions::{ActionError, ActionSpec, Outputs, StepCtx, lookup};
use runbook::endpoint::Resolver;
use runbook::journal::{Journal, Record};
use runbook::platform::Platform;
use runbook::platform::aws::{Aws, Clients, WaitSettings};
use runbook::progress::Progress;
use runbook::redact::Redactor;

use crate::support::free_port;

/// The environment a `runbook` process needs to reach moto and nothing else.
pub const MOTO_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

/// A moto server (`moto[server]`) on a free loopback port, stopped when dropped.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(MOTO_ENV.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run moto_server: {e} (run scripts/setup)"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Moto { port, child };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The SDK configuration of a client of this moto: static test credentials, no profile
    /// files, no instance metadata.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "moto",
            )))
            .build()
    }

    pub fn clients(&self) -> Clients {
        Clients::from_config(&self.sdk_config())
    }

    /// The official EC2 client, for fixtures (VPCs, security groups, instances) in moto.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config())
    }

    /// The aws target against this moto, polling fast.
    pub fn aws(&self) -> Aws {
        Aws::from_clients(self.clients()).with_wait(fast_waits())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits that poll every few milliseconds and give up after ten seconds.
pub fn fast_waits() -> WaitSettings {
    WaitSettings {
        first: Duration::from_millis(20),
        max: Duration::from_millis(100),
        deadline: Duration::from_secs(10),
    }
}

/// A run directory with a journal, for driving a target outside the executor.
pub struct RunDir {
    pub dir: tempfile::TempDir,
    pub journal: Arc<Journal>,
    pub progress: Progress,
    pub resolver: Resolver,
}

impl RunDir {
    pub fn new() -> RunDir {
        RunDir::with_resolver(Resolver::default())
    }

    pub fn with_resolver(resolver: Resolver) -> RunDir {
        RunDir::open(tempfile::tempdir().expect("temp dir"), resolver)
    }

    /// A run whose journal already holds `lines` (JSON records, one a line).
    pub fn with_journal(lines: &str) -> RunDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("journal.jsonl"), lines).expect("write journal");
        RunDir::open(dir, Resolver::default())
    }

    fn open(dir: tempfile::TempDir, resolver: Resolver) -> RunDir {
        let journal =
            Journal::open(&dir.path().join("journal.jsonl"), Redactor::default()).expect("journal");
        RunDir {
            dir,
            journal: Arc::new(journal),
            progress: Progress::hidden(),
            resolver,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The context a step called `step` of this run sees.
    pub fn ctx<'a>(&'a self, target: &'a dyn Platform, step: &'a str) -> StepCtx<'a> {
        crate::support::start_step(&self.journal, step);
        StepCtx {
            run_id: "test-run",
            run_dir: self.dir.path(),
            base_dir: self.dir.path(),
            step_id: step,
            platform: target,
            resolver: &self.resolver,
            journal: &self.journal,
            progress: &self.progress,
            assume_yes: true,
        }
    }

    /// Runs the registered action `action` with `inputs` as the step `step` of this run on
    /// `platform`, and checks its outputs against what the action declares.
    pub async fn step(
        &self,
        platform: &dyn Platform,
        step: &str,
        action: &str,
        inputs: serde_json::Value,
    ) -> Result<Outputs, ActionError> {
        let spec = lookup(action).unwrap_or_else(|| panic!("{action} is not registered"));
        let built = (spec.build)(inputs).unwrap_or_else(|e| panic!("inputs of {action}: {e}"));
        let out = built.run(&self.ctx(platform, step)).await?;
        assert_declared(spec, &out);
        Ok(out)
    }

    pub fn records(&self) -> Vec<Record> {
        runbook::journal::read(&self.path().join("journal.jsonl")).expect("journal reads back")
    }

    /// The notes journaled for `step`, in order.
    pub fn notes(&self, step: &str) -> Vec<String> {
        self.records()
            .into_iter()
            .filter_map(|r| match r.event {
                runbook::journal::Event::StepNote { step: s, message } if s == step => {
                    Some(message)
                }
                _ => None,
            })
            .collect()
    }
}

/// The outputs a step returned are exactly those its action declares (an open reply, like a
/// stack's, may add names of its own).
pub fn assert_declared(spec: &ActionSpec, out: &Outputs) {
    let undeclared: Vec<&String> = out.keys().filter(|k| !spec.outputs.accepts(k)).collect();
    assert!(
        undeclared.is_empty(),
        "{} returned outputs it does not declare: {undeclared:?}",
        spec.name
    );
    let missing: Vec<String> = spec
        .outputs
        .names()
        .into_iter()
        .filter(|n| !out.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} declares outputs it did not return: {missing:?}",
        spec.name
    );
}

//! The local target against real servers: the actions are built from the registry and run
//! with a step context made here, as the executor makes it, on the repository's own
//! CloudFormation templates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use runbook::actions::{Outputs, StepCtx, lookup};
use runbook::endpoint::Resolver;
use runbook::journal::Journal;
use runbook::platform::local::{Local, recorded_servers, stop_recorded};
use runbook::progress::Progress;
use runbook::redact::Redactor;
use serde_json::{Value, json};

use crate::aws_support::assert_declared;
use crate::support::{Engine, Server, Workspace, resume_run, start_step};

/// A rehearsal's run directory, journal and target. Stops every server it started when dropped.
pub(crate) struct Rehearsal {
    pub(crate) work: Workspace,
    run_id: String,
    journal: Arc<Journal>,
    target: Local,
}

impl Rehearsal {
    pub(crate) fn new() -> Rehearsal {
        let work = Workspace::new();
        let run_id = "20261122-0000-local-test".to_string();
        let run_dir = work.state_dir().join("runs").join(&run_id);
        std::fs::create_dir_all(&run_dir).unwrap();
        let journal =
            Arc::new(Journal::open(&run_dir.join("journal.jsonl"), Redactor::default()).unwrap());
        Rehearsal {
            work,
            run_id,
            journal,
            target: Local::new(),
        }
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.work.state_dir().join("runs").join(&self.run_id)
    }

    /// A new `runbook` process taking over the run: a fresh journal handle and target.
    fn reopen(&mut self) {
        self.journal = Arc::new(
            Journal::open(&self.run_dir().join("journal.jsonl"), Redactor::default()).unwrap(),
        );
        resume_run(&self.journal);
        self.target = Local::new();
    }

    pub(crate) async fn step(&self, action: &str, inputs: Value) -> Result<Outputs, String> {
        let spec = lookup(action).unwrap_or_else(|| panic!("{action} is registered"));
        let action = (spec.build)(inputs).map_err(|e| e.to_string())?;
        let resolver = Resolver::default();
        let progress = Progress::hidden();
        let run_dir = self.run_dir();
        start_step(&self.journal, "step");
        let ctx = StepCtx {
            run_id: &self.run_id,
            run_dir: &run_dir,
            base_dir: Path::new(env!("CARGO_MANIFEST_DIR")),
            step_id: "step",
            platform: &self.target,
            resolver: &resolver,
            journal: &self.journal,
            progress: &progress,
            assume_yes: true,
        };
        let out = action.run(&ctx).await.map_err(|e| e.message)?;
        assert_declared(spec, &out);
        Ok(out)
    }

    pub(crate) async fn ok(&self, action: &str, inputs: Value) -> Outputs {
        match self.step(action, inputs).await {
            Ok(out) => out,
            Err(e) => panic!("{action} failed: {e}"),
        }
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        let dir = self.run_dir();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(stop_recorded(&dir))
                .expect("journal")
        })
        .join()
        .expect("stopping the servers");
    }
}

/// `redis-cli -h host -p port args…` against a `host:port` endpoint.
pub(crate) fn cli(endpoint: &str, args: &[&str]) -> String {
    let (host, port) = endpoint.rsplit_once(':').expect("host:port");
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli (run scripts/setup)");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

pub(crate) fn info_field(endpoint: &str, section: &str, field: &str) -> Option<String> {
    cli(endpoint, &["INFO", section]).lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

pub(crate) fn out_str<'a>(out: &'a Outputs, key: &str) -> &'a str {
    out.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("output {key} in {out:?}"))
}

fn seed(endpoint: &str, keys: usize, prefix: &str) {
    for i in 0..keys {
        cli(
            endpoint,
            &["SET", &format!("{prefix}:{i}"), &format!("v{i}")],
        );
    }
}

#[tokio::test]
async fn local_online_migration_moves_the_data_and_promotes_the_target() {
    let r = Rehearsal::new();
    let stack = json!({"stack_name": "om", "template": "cloudformation/online-migration.yaml"});
    let out = r.ok("stack.deploy", stack.clone()).await;
    let source = out_str(&out, "RedisSourceEndpoint").to_string();
    let target = out_str(&out, "ValkeyPrimaryEndpoint").to_string();
    let group = out_str(&out, "ReplicationGroupId").to_string();
    assert_eq!(group, "om-valkey");
    assert_ne!(source, target);
    assert!(
        info_field(&source, "server", "valkey_version").is_none(),
        "the source runs Redis"
    );
    assert!(
        info_field(&target, "server", "valkey_version").is_some(),
        "the target runs Valkey"
    );

    seed(&source, 200, "k");
    let pre = r
        .ok(
            "migration.preflight",
            json!({"replication_group": group, "source": source}),
        )
        .await;
    assert_eq!(pre["ok"], true);
    assert_eq!(out_str(&pre, "source_engine"), "redis");
    r.ok(
        "migration.test",
        json!({"replication_group": group, "source": source}),
    )
    .await;
    let started = r
        .ok(
            "migration.start",
            json!({"replication_group": group, "source": source}),
        )
        .await;
    assert_eq!(out_str(&started, "status"), "migrating");
    assert_eq!(cli(&target, &["DBSIZE"]), "200");
    let write = cli(&target, &["SET", "x", "1"]);
    assert!(
        write.contains("READONLY"),
        "the target is read-only while migrating: {write}"
    );

    // A second start on a migrating group waits instead of failing (resume after a crash).
    r.ok(
        "migration.start",
        json!({"replication_group": group, "source": source}),
    )
    .await;
    cli(&source, &["SET", "live", "after-start"]);
    let done = r
        .ok("migration.complete", json!({"replication_group": group}))
        .await;
    assert_eq!(out_str(&done, "status"), "available");
    assert_eq!(cli(&target, &["GET", "live"]), "after-start");
    assert_eq!(
        info_field(&target, "replication", "role").as_deref(),
        Some("master")
    );
    assert_eq!(cli(&target, &["SET", "x", "1"]), "OK");
    // Completing again is a no-op, as after a resumed run.
    r.ok("migration.complete", json!({"replication_group": group}))
        .await;

    let deleted = r.ok("stack.delete", json!({"stack_name": "om"})).await;
    assert_eq!(
        Value::Object(deleted),
        json!({"stack_name": "om", "deleted": true})
    );
    assert_eq!(
        cli(&target, &["PING"]),
        "",
        "the servers are gone after stack.delete"
    );
}

#[tokio::test]
async fn local_deploy_is_found_again_by_a_new_process_and_heals_a_dead_node() {
    let mut r = Rehearsal::new();
    let stack = json!({"stack_name": "ec", "template": "cloudformation/engine-change.yaml",
        "parameters": {"ReplicationGroupId": "cache-a"}});
    let first = r.ok("stack.deploy", stack.clone()).await;
    let recorded = recorded_servers(&r.run_dir()).unwrap();
    assert_eq!(recorded.len(), 2, "a primary and a replica: {recorded:?}");

    r.reopen();
    let again = r.ok("stack.deploy", stack.clone()).await;
    assert_eq!(first, again);
    assert_eq!(
        recorded_servers(&r.run_dir()).unwrap().len(),
        2,
        "no new server for a deployed stack"
    );

    // kill -9 the replica: the next deploy restarts it on its port.
    let replica = &recorded[1];
    unsafe { libc::kill(replica.pid as i32, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let described = r
        .ok("group.describe", json!({"replication_group": "cache-a"}))
        .await;
    assert!(
        out_str(&described, "status").starts_with("unavailable"),
        "{described:?}"
    );
    r.ok("stack.deploy", stack).await;
    let described = r
        .ok("group.describe", json!({"replication_group": "cache-a"}))
        .await;
    assert_eq!(out_str(&described, "status"), "available");
    assert_eq!(recorded_servers(&r.run_dir()).unwrap().len(), 3);

    let metrics = r
        .ok(
            "metrics.capture",
            json!({"replication_group": "cache-a", "metrics": ["BytesUsedForCache", "CurrConnections", "CPUUtilization"]}),
        )
        .await;
    assert_eq!(metrics["group"], "cache-a");
    let series = metrics["metrics"].as_array().unwrap();
    let labels: Vec<(&str, &str)> = series
        .iter()
        .map(|s| (s["node"].as_str().unwrap(), s["metric"].as_str().unwrap()))
        .collect();
    assert_eq!(
        labels,
        [
            ("cache-a-001", "CurrConnections"),
            ("cache-a-001", "BytesUsedForCache"),
            ("cache-a-002", "CurrConnections"),
            ("cache-a-002", "BytesUsedForCache"),
        ],
        "one sample per node of each metric with a local equivalent (none for CPU)"
    );
    for s in series {
        assert_eq!(s["stat"], "Sample");
        assert_eq!(s["step"], "step");
        assert!(s["values"][0].as_f64().unwrap() >= 1.0, "{s}");
    }
}

#[tokio::test]
async fn local_engine_change_replaces_every_node_with_valkey_and_its_data() {
    let r = Rehearsal::new();
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "ec", "template": "cloudformation/engine-change.yaml",
                "parameters": {"ReplicationGroupId": "cache-b"}}),
        )
        .await;
    let primary = out_str(&out, "PrimaryEndpoint").to_string();
    seed(&primary, 100, "e");
    let before = r
        .ok("group.describe", json!({"replication_group": "cache-b"}))
        .await;
    assert_eq!(out_str(&before, "engine"), "redis");

    let after = r
        .ok(
            "engine.modify",
            json!({"replication_group": "cache-b", "engine": "valkey", "engine_version": "8.2"}),
        )
        .await;
    assert_eq!(out_str(&after, "engine"), "valkey");
    let old_replica = before["nodes"][1]["endpoint"].as_str().unwrap();
    assert_eq!(
        out_str(&after, "primary_endpoint"),
        old_replica,
        "the upgraded replica took over, as on ElastiCache"
    );
    assert_eq!(after["nodes"][1]["endpoint"], json!(primary));
    for node in after["nodes"].as_array().unwrap() {
        let endpoint = node["endpoint"].as_str().unwrap();
        assert!(
            info_field(endpoint, "server", "valkey_version").is_some(),
            "{endpoint} runs Valkey"
        );
        assert_eq!(
            cli(endpoint, &["DBSIZE"]),
            "100",
            "{endpoint} kept its data"
        );
    }
    let replica = after["nodes"][1]["endpoint"].as_str().unwrap();
    assert_eq!(
        info_field(replica, "replication", "role").as_deref(),
        Some("slave")
    );

    let back = r
        .step(
            "engine.modify",
            json!({"replication_group": "cache-b", "engine": "redis"}),
        )
        .await
        .unwrap_err();
    assert!(back.contains("not possible in place"), "{back}");
}

#[tokio::test]
async fn local_snapshot_restore_makes_a_valkey_group_from_a_redis_snapshot() {
    let r = Rehearsal::new();
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "sr", "template": "cloudformation/snapshot-restore.yaml",
                "parameters": {"ReplicationGroupId": "old-redis"}}),
        )
        .await;
    let primary = out_str(&out, "PrimaryEndpoint").to_string();
    seed(&primary, 150, "s");
    // Let the replica catch up: snapshots are taken from it.
    cli(&primary, &["WAIT", "1", "5000"]);
    let snap = r
        .ok(
            "snapshot.create",
            json!({"replication_group": "old-redis", "snapshot": "before"}),
        )
        .await;
    let version = out_str(&snap, "engine_version").to_string();
    assert_eq!(
        Value::Object(snap),
        json!({"snapshot": "before", "group": "old-redis", "status": "available", "engine": "redis", "engine_version": version})
    );
    assert!(r.run_dir().join("snapshots/before.rdb").exists());

    let restored = r
        .ok(
            "snapshot.restore",
            json!({"snapshot": "before", "replication_group": "new-valkey", "engine": "valkey"}),
        )
        .await;
    assert_eq!(out_str(&restored, "engine"), "valkey");
    let new_primary = out_str(&restored, "primary_endpoint");
    assert_eq!(cli(new_primary, &["DBSIZE"]), "150");
    assert_eq!(cli(new_primary, &["GET", "s:7"]), "v7");
    let replica = restored["nodes"][1]["endpoint"].as_str().unwrap();
    assert_eq!(cli(replica, &["DBSIZE"]), "150");

    let missing = r
        .step(
            "snapshot.restore",
            json!({"snapshot": "nope", "replication_group": "x", "engine": "valkey"}),
        )
        .await
        .unwrap_err();
    assert!(missing.contains("snapshot.create first"), "{missing}");
}

#[tokio::test]
async fn local_preflight_lists_every_unmet_prerequisite() {
    let r = Rehearsal::new();
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "pf", "template": "cloudformation/online-migration.yaml"}),
        )
        .await;
    let group = out_str(&out, "ReplicationGroupId").to_string();
    let source = Server::start_with(
        Engine::Redis,
        &["--protected-mode", "yes", "--databases", "32"],
    );
    let err = r
        .step(
            "migration.preflight",
            json!({"replication_group": group, "source": format!("127.0.0.1:{}", source.port)}),
        )
        .await
        .unwrap_err();
    assert!(err.contains("2 migration prerequisite(s) not met"), "{err}");
    assert!(err.contains("protected-mode is yes"), "{err}");
    assert!(err.contains("source has 32 databases, target 16"), "{err}");

    let locked = Server::start_with(Engine::Redis, &["--requirepass", "s3cret"]);
    let err = r
        .step(
            "migration.preflight",
            json!({"replication_group": group, "source": format!("127.0.0.1:{}", locked.port)}),
        )
        .await
        .unwrap_err();
    assert!(err.contains("requires AUTH"), "{err}");
}

#[test]
fn local_destroy_stops_the_servers_a_run_recorded() {
    let r = Rehearsal::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt.block_on(r.ok(
        "stack.deploy",
        json!({"stack_name": "d", "template": "cloudformation/engine-change.yaml",
            "parameters": {"ReplicationGroupId": "cache-d"}}),
    ));
    let primary = out_str(&out, "PrimaryEndpoint").to_string();
    assert_eq!(cli(&primary, &["PING"]), "PONG");
    let state_dir = r.work.state_dir();
    let state_dir = state_dir.to_str().unwrap();
    let ran = r
        .work
        .cmd(&["destroy", &r.run_id, "--state-dir", state_dir])
        .expect(0);
    assert!(ran.stdout.contains("2 server(s) stopped"), "{}", ran.stdout);
    assert_eq!(cli(&primary, &["PING"]), "");
    let ran = r
        .work
        .cmd(&["destroy", "no-such-run", "--state-dir", state_dir])
        .expect(2);
    assert!(
        ran.stderr.contains("there is no run `no-such-run`"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn local_migration_into_an_engine_that_cannot_load_the_source_fails_at_once() {
    let r = Rehearsal::new();
    r.ok(
        "stack.deploy",
        json!({"stack_name": "rdb", "template": "cloudformation/engine-change.yaml",
            "parameters": {"ReplicationGroupId": "old-redis"}}),
    )
    .await;
    let source = Server::start(Engine::Valkey);
    source.cli(&["SET", "a", "1"]);
    let started = std::time::Instant::now();
    let err = r
        .step(
            "migration.start",
            json!({"replication_group": "old-redis", "source": format!("127.0.0.1:{}", source.port)}),
        )
        .await
        .unwrap_err();
    assert!(err.contains("Can't handle RDB format version"), "{err}");
    assert!(err.contains("force: true"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The rollback path: a forced complete promotes the group again.
    let done = r
        .ok(
            "migration.complete",
            json!({"replication_group": "old-redis", "force": true}),
        )
        .await;
    assert_eq!(done["forced"], true);
    assert_eq!(out_str(&done, "status"), "available");
}

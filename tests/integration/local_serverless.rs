//! Serverless caches on the local platform: the shipped serverless runbooks and the S3 route
//! of snapshot-restore through the binary, and the migration's stop and restart through the
//! registered actions, on real servers (a cluster-mode valkey-server owning every slot).

use std::path::{Path, PathBuf};

use runbook::platform::local::Local;
use serde_json::{Value, json};

use crate::aws_support::RunDir;
use crate::support::{Ran, Workspace};

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// A run through the binary; `runbook destroy` stops its servers when dropped.
struct Rehearsal {
    ws: Workspace,
    run_id: String,
}

impl Rehearsal {
    fn run(runbook: &str, vars: &[&str]) -> (Rehearsal, Ran) {
        let ws = Workspace::new();
        let (ran, run_id) = ws.run_runbook(&repo(runbook), vars);
        (Rehearsal { ws, run_id }, ran)
    }

    fn journal(&self) -> Vec<Value> {
        let path = self.run_dir().join("journal.jsonl");
        std::fs::read_to_string(path)
            .expect("journal")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a journal line"))
            .collect()
    }

    fn run_dir(&self) -> PathBuf {
        self.ws.state_dir().join("runs").join(&self.run_id)
    }

    fn outputs(&self, id: &str) -> Value {
        self.journal()
            .into_iter()
            .rev()
            .find(|e| e["event"] == "step_succeeded" && e["step"] == id)
            .map(|e| e["outputs"].clone())
            .unwrap_or_else(|| panic!("step {id} did not succeed"))
    }

    /// The steps that succeeded, in order.
    fn succeeded(&self) -> Vec<String> {
        self.journal()
            .into_iter()
            .filter(|e| e["event"] == "step_succeeded")
            .map(|e| e["step"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        let state = self.ws.state_dir().display().to_string();
        self.ws
            .cmd(&["destroy", &self.run_id, "--state-dir", &state])
            .run();
    }
}

fn cli(endpoint: &str, args: &[&str]) -> String {
    let (host, port) = endpoint.rsplit_once(':').expect("host:port");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{name}:"))
            .map(|v| v.trim().to_string())
    })
}

#[test]
fn local_serverless_migration_runbook_runs_end_to_end() {
    let (r, ran) = Rehearsal::run("runbooks/serverless-migration.yaml", &["key_count=300"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(
        r.succeeded(),
        [
            "deploy",
            "before",
            "preflight",
            "seed",
            "prepare",
            "start",
            "verify",
            "cutover_ok",
            "complete",
            "verify_after"
        ]
    );
    let complete = r.outputs("complete");
    let endpoint = complete["endpoint"].as_str().unwrap().to_string();
    assert_eq!(
        complete,
        json!({
            "name": "serverless-migration-valkey",
            "status": "available",
            "engine": "valkey",
            "major_engine_version": "8",
            "full_engine_version": complete["full_engine_version"],
            "endpoint": endpoint,
            "reader_endpoint": endpoint,
            "url": format!("redis://{endpoint}"),
            "tls": false,
            "arn": "arn:aws:elasticache:local:000000000000:serverlesscache:serverless-migration-valkey",
            "migration_status": "completed",
            "forced": false,
        })
    );
    // After the cutover the cache is a cluster-mode node again, owning every slot, a primary.
    let cluster = cli(&endpoint, &["CLUSTER", "INFO"]);
    assert_eq!(field(&cluster, "cluster_state").as_deref(), Some("ok"));
    assert_eq!(
        field(&cluster, "cluster_slots_assigned").as_deref(),
        Some("16384")
    );
    assert_eq!(
        field(&cli(&endpoint, &["INFO", "replication"]), "role").as_deref(),
        Some("master")
    );
    assert_eq!(r.outputs("verify_after")["keys_checked"], 300);
    assert_eq!(
        r.outputs("verify_after")["mismatches"],
        json!({"missing_on_target": 0, "extra_on_target": 0, "type": 0, "value": 0, "ttl": 0, "stream": 0, "field_ttl": 0})
    );
}

/// The in-place engine change of a serverless cache, checked key by key against a cache
/// restored from the snapshot taken before it: both are cluster-mode nodes, so the check
/// routes by slot.
#[test]
fn local_serverless_engine_change_changes_the_engine_and_keeps_every_key() {
    let (r, ran) = Rehearsal::run("runbooks/serverless-engine-change.yaml", &["key_count=300"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let change = r.outputs("change_engine");
    assert_eq!(
        (
            change["engine"].as_str(),
            change["major_engine_version"].as_str(),
            change["status"].as_str()
        ),
        (Some("valkey"), Some("8"), Some("available"))
    );
    let endpoint = change["endpoint"].as_str().unwrap();
    assert!(
        field(&cli(endpoint, &["INFO", "server"]), "valkey_version").is_some(),
        "valkey-server serves the cache now"
    );
    assert_eq!(
        r.succeeded(),
        [
            "deploy",
            "before",
            "seed",
            "backup",
            "change_ok",
            "change_engine",
            "after",
            "restored",
            "verify",
            "drop_check"
        ]
    );
    let verified = r.outputs("verify");
    assert_eq!(
        (
            &verified["parity"],
            &verified["keys_checked"],
            &verified["mismatches"]
        ),
        (
            &json!(true),
            &json!(300),
            &json!({"missing_on_target": 0, "extra_on_target": 0, "type": 0, "value": 0, "ttl": 0, "stream": 0, "field_ttl": 0})
        )
    );
}

#[test]
fn local_snapshot_restore_goes_through_the_bucket_folder_on_the_s3_route() {
    let (r, ran) = Rehearsal::run(
        "runbooks/snapshot-restore.yaml",
        &["key_count=300", "route=s3", "bucket=rehearsal-bucket"],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let export = r.outputs("export");
    let snapshot = export["snapshot"].as_str().unwrap().to_string();
    let arn = format!("arn:aws:s3:::rehearsal-bucket/{snapshot}-0001.rdb");
    assert_eq!(
        export,
        json!({"snapshot": snapshot, "bucket": "rehearsal-bucket", "objects": [arn], "first_object": arn})
    );
    let object = r
        .run_dir()
        .join("s3/rehearsal-bucket")
        .join(format!("{snapshot}-0001.rdb"));
    assert!(std::fs::read(&object).unwrap().starts_with(b"REDIS"));
    assert!(
        !r.succeeded().contains(&"restore".to_string()),
        "the direct route is skipped"
    );
    // The seeded keys and the `freeze` step's key, written before the snapshot.
    assert_eq!(r.outputs("verify")["keys_checked"], 301);
    assert_eq!(r.outputs("import")["engine"], "valkey");
}

/// A three-shard group's export is one file a shard, and the group seeded from them is a
/// cluster of as many shards, in ElastiCache's slot split, holding every key.
#[test]
fn the_s3_route_of_three_shards_exports_a_file_a_shard_and_seeds_a_cluster_of_three() {
    let (r, ran) = Rehearsal::run(
        "runbooks/snapshot-restore.yaml",
        &[
            "key_count=300",
            "route=s3",
            "bucket=rehearsal-bucket",
            "shards=3",
        ],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let export = r.outputs("export");
    let snapshot = export["snapshot"].as_str().unwrap().to_string();
    let arns: Vec<String> = (1..=3)
        .map(|i| format!("arn:aws:s3:::rehearsal-bucket/{snapshot}-{i:04}.rdb"))
        .collect();
    assert_eq!(
        export,
        json!({"snapshot": snapshot, "bucket": "rehearsal-bucket", "objects": arns, "first_object": arns[0]})
    );
    let import = r.outputs("import");
    let layout: Vec<(&str, &str, usize)> = import["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["slots"].as_str().unwrap(),
                s["replicas"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        (&import["cluster_mode"], &import["engine"], layout),
        (
            &json!(true),
            &json!("valkey"),
            vec![
                ("0001", "0-5461", 1),
                ("0002", "5462-10922", 1),
                ("0003", "10923-16383", 1)
            ]
        )
    );
    let verified = r.outputs("verify");
    assert_eq!(
        (&verified["parity"], &verified["keys_checked"]),
        (&json!(true), &json!(300))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_sync_starts_again_only_with_clear_target_cache_data() {
    let run = RunDir::new();
    let local = Local::new();
    let template = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cloudformation/serverless-migration.yaml")
        .display()
        .to_string();
    let deploy = run
        .step(
            &local,
            "deploy",
            "stack.deploy",
            json!({"stack_name": "sl", "template": template}),
        )
        .await
        .expect("deploy");
    let (source, name) = (
        deploy["RedisSourceEndpoint"].as_str().unwrap().to_string(),
        deploy["ServerlessCacheName"].as_str().unwrap().to_string(),
    );
    let result = async {
        cli(&source, &["SET", "a", "1"]);
        let cache = json!({"serverless_cache": name});
        let out = run
            .step(
                &local,
                "prepare",
                "serverless.prepare_migration",
                json!({"serverless_cache": name, "source": source}),
            )
            .await
            .expect("prepare");
        assert_eq!(out["migration_status"], "prepared");
        let out = run
            .step(&local, "start", "serverless.start_migration", cache.clone())
            .await
            .expect("start");
        assert_eq!(out["migration_status"], "syncing");
        let endpoint = out["endpoint"].as_str().unwrap().to_string();
        assert_eq!(cli(&endpoint, &["GET", "a"]), "1");
        assert!(
            cli(&endpoint, &["SET", "b", "2"]).starts_with("READONLY"),
            "the syncing cache refuses writes"
        );

        let out = run
            .step(&local, "stop", "serverless.stop_migration", cache.clone())
            .await
            .expect("stop");
        assert_eq!(out["migration_status"], "stopped");
        cli(&source, &["SET", "a", "after-stop"]);
        assert_eq!(cli(&endpoint, &["GET", "a"]), "1", "the sync is paused");

        let err = run
            .step(&local, "restart", "serverless.start_migration", cache.clone())
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            format!("the sync of {name} was stopped: StartMigration needs clear_target_cache_data: true to start it again")
        );
        let err = run
            .step(&local, "complete-stopped", "serverless.complete_migration", cache.clone())
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            format!("the data sync of {name} is stopped, so the cache is not in sync; start it again with clear_target_cache_data: true, or complete with force: true")
        );
        cli(&endpoint, &["SET", "only-on-target", "x"]);
        let out = run
            .step(
                &local,
                "restart-clear",
                "serverless.start_migration",
                json!({"serverless_cache": name, "clear_target_cache_data": true}),
            )
            .await
            .expect("restart with clear");
        assert_eq!(out["migration_status"], "syncing");
        assert_eq!(cli(&endpoint, &["GET", "a"]), "after-stop");
        assert_eq!(cli(&endpoint, &["EXISTS", "only-on-target"]), "0");

        let out = run
            .step(
                &local,
                "complete",
                "serverless.complete_migration",
                json!({"serverless_cache": name, "force": true}),
            )
            .await
            .expect("forced complete");
        assert_eq!((out["migration_status"].as_str(), out["forced"].as_bool()), (Some("completed"), Some(true)));
        let err = run
            .step(&local, "stop-after", "serverless.stop_migration", cache.clone())
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            format!("InvalidServerlessCacheState: the migration of {name} is past its cutover; StopMigration is valid only while syncing")
        );
        assert!(cli(&endpoint, &["SET", "c", "3"]) == "OK", "writable after the cutover");
    }
    .await;
    run.step(
        &local,
        "delete",
        "stack.delete",
        json!({"stack_name": "sl"}),
    )
    .await
    .expect("delete the stack");
    result
}

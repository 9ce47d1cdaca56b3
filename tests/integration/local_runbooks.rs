//! The shipped runbooks, run end to end through the binary on the local target, then torn
//! down with `runbook destroy`; assertions look at the real servers and the journal.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Ran, Workspace};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A run in a workspace; `runbook destroy` stops its servers when dropped, whatever happened.
struct Rehearsal {
    ws: Workspace,
    run_id: String,
}

impl Rehearsal {
    /// Runs `runbook` (a path) with `--yes`, expecting exit status `code`.
    fn run(runbook: &str, vars: &[&str], code: i32) -> (Rehearsal, Ran) {
        let ws = Workspace::new();
        let (ran, run_id) = ws.run_runbook(runbook, vars);
        let rehearsal = Rehearsal { ws, run_id };
        assert_eq!(
            ran.status, code,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            ran.stdout, ran.stderr
        );
        (rehearsal, ran)
    }

    fn journal(&self) -> Vec<Value> {
        let path = self
            .ws
            .state_dir()
            .join("runs")
            .join(&self.run_id)
            .join("journal.jsonl");
        std::fs::read_to_string(path)
            .expect("journal")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a journal line"))
            .collect()
    }

    /// The outputs of the step `id` that succeeded last.
    fn outputs(&self, id: &str) -> Value {
        self.journal()
            .into_iter()
            .rev()
            .find(|e| e["event"] == "step_succeeded" && e["step"] == id)
            .map(|e| e["outputs"].clone())
            .unwrap_or_else(|| panic!("step {id} did not succeed"))
    }

    fn destroy(&self) -> Ran {
        let state = self.ws.state_dir().display().to_string();
        self.ws
            .cmd(&["destroy", &self.run_id, "--state-dir", &state])
            .run()
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        if !self.run_id.is_empty() {
            self.destroy();
        }
    }
}

/// `redis-cli` against a `host:port` endpoint.
fn cli(endpoint: &str, args: &[&str]) -> String {
    let (host, port) = endpoint.rsplit_once(':').expect("host:port");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// How many keys a server holds besides the probe's own (`runbook:probe:*`, written while
/// the runbook's probe watches the group).
fn data_keys(endpoint: &str) -> usize {
    cli(endpoint, &["--scan"])
        .lines()
        .filter(|k| !k.is_empty() && !k.starts_with("runbook:probe:"))
        .count()
}

fn info(endpoint: &str, section: &str, field: &str) -> Option<String> {
    cli(endpoint, &["INFO", section]).lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn local_online_migration_runbook_runs_end_to_end() {
    let path = repo("runbooks/online-migration.yaml").display().to_string();
    let (r, ran) = Rehearsal::run(&path, &["key_count=300"], 0);
    assert!(
        ran.stderr.contains("run ") && ran.stderr.contains("succeeded"),
        "{}",
        ran.stderr
    );
    let deploy = r.outputs("deploy");
    let source = text(&deploy, "RedisSourceEndpoint").to_string();
    let target = text(&deploy, "ValkeyPrimaryEndpoint").to_string();
    assert_eq!(
        info(&target, "replication", "role").as_deref(),
        Some("master"),
        "promoted"
    );
    assert!(info(&target, "server", "valkey_version").is_some());
    assert_eq!(data_keys(&target), data_keys(&source));
    assert_eq!(
        r.outputs("verify_after")["keys_checked"],
        301,
        "300 seeded + the live-sync key"
    );
    let memory = r.outputs("memory");
    for side in ["source", "target"] {
        let used = &memory["values"][side];
        assert!(used["used_memory"].as_u64().unwrap() > 0, "{memory}");
        assert!(used["used_memory_human"].is_string(), "{memory}");
    }

    let destroyed = r.destroy();
    assert!(
        destroyed.stdout.contains("3 server(s) stopped"),
        "{}",
        destroyed.stdout
    );
    assert_eq!(cli(&target, &["PING"]), "");
    assert_eq!(cli(&source, &["PING"]), "");
}

#[test]
fn local_engine_change_runbook_turns_every_node_into_valkey() {
    let path = repo("runbooks/engine-change.yaml").display().to_string();
    let (r, _) = Rehearsal::run(&path, &["key_count=300", "replication_group=ec-e2e"], 0);
    let before = r.outputs("before");
    let after = r.outputs("after");
    assert_eq!(text(&before, "engine"), "redis");
    assert_eq!(text(&after, "engine"), "valkey");
    // As on ElastiCache, the upgraded replica took over: the primary endpoint moved to it.
    assert_eq!(
        text(&after, "primary_endpoint"),
        text(&before["nodes"][1], "endpoint")
    );
    let nodes = after["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for node in nodes {
        let endpoint = text(node, "endpoint");
        assert!(
            info(endpoint, "server", "valkey_version").is_some(),
            "{endpoint} runs Valkey"
        );
        assert_eq!(data_keys(endpoint), 300, "{endpoint} kept the seeded keys");
    }
    assert_eq!(
        info(text(&nodes[1], "endpoint"), "replication", "role").as_deref(),
        Some("slave")
    );
}

#[test]
fn local_snapshot_restore_runbook_builds_a_valkey_group_with_the_same_keys() {
    let path = repo("runbooks/snapshot-restore.yaml").display().to_string();
    let (r, _) = Rehearsal::run(&path, &["key_count=300"], 0);
    let restored = r.outputs("restore");
    let primary = text(&restored, "primary_endpoint");
    assert_eq!(text(&restored, "engine"), "valkey");
    assert!(info(primary, "server", "valkey_version").is_some());
    // The seeded keys and the `freeze` step's key, written before the snapshot.
    assert_eq!(data_keys(primary), 301);
    assert_eq!(r.outputs("verify")["keys_checked"], 301);
}

/// The shards of a group's description: each one's slots, primary and replicas.
fn shards_of(described: &Value) -> Vec<(String, String, Vec<String>)> {
    described["shards"]
        .as_array()
        .unwrap_or_else(|| panic!("shards in {described}"))
        .iter()
        .map(|s| {
            (
                text(s, "slots").to_string(),
                text(s, "primary_endpoint").to_string(),
                s["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The slots ElastiCache gives three shards.
const THREE: [&str; 3] = ["0-5461", "5462-10922", "10923-16383"];

/// `slots → host:port` of each primary of the cluster `endpoint` belongs to.
fn cluster_primaries(endpoint: &str) -> std::collections::BTreeMap<String, String> {
    cli(endpoint, &["CLUSTER", "NODES"])
        .lines()
        .filter(|l| l.contains("master"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f[1].split('@').next().unwrap().to_string();
            (f[8..].join(","), addr)
        })
        .collect()
}

/// Issue 16: the online migration of three shards. Each target shard replicated from the
/// source shard with the same slots, and after the cutover the target is a cluster again
/// with every key of its source shard.
#[test]
fn local_online_migration_runbook_migrates_three_shards() {
    let path = repo("runbooks/online-migration.yaml").display().to_string();
    let (r, _) = Rehearsal::run(&path, &["key_count=300", "shards=3"], 0);
    let source = text(&r.outputs("deploy"), "RedisSourceEndpoint").to_string();
    let target = text(&r.outputs("deploy"), "ValkeyPrimaryEndpoint").to_string();
    let checks: Vec<(String, bool)> = r.outputs("preflight")["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "target_shard_count")
        .map(|c| (text(c, "detail").to_string(), c["ok"] == true))
        .collect();
    assert_eq!(
        checks,
        [(
            format!(
                "redis://{source} and valkey-migration-valkey have 3 shard(s) with the same slots (0001 0-5461; 0002 5462-10922; 0003 10923-16383)"
            ),
            true
        )]
    );
    let started = r.outputs("start_migration");
    assert_eq!(text(&started, "status"), "migrating");
    let completed = r.outputs("complete_migration");
    assert_eq!(text(&completed, "status"), "available");
    assert_eq!(completed["cluster_mode"], true);
    assert_eq!(text(&completed, "configuration_endpoint"), target);
    let sources = cluster_primaries(&source);
    let shards = shards_of(&completed);
    assert_eq!(
        shards.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        THREE
    );
    let mut total = 0;
    for (slots, primary, replicas) in &shards {
        assert_eq!(
            own_slots(primary),
            *slots,
            "{primary} serves its slots again"
        );
        assert_eq!(
            info(primary, "replication", "role").as_deref(),
            Some("master")
        );
        assert!(info(primary, "server", "valkey_version").is_some());
        let keys = data_keys(primary);
        assert_eq!(
            keys,
            data_keys(&sources[slots]),
            "{slots}: as on the source"
        );
        assert!(keys > 0, "{slots} holds keys");
        assert_eq!(data_keys(&replicas[0]), keys, "{}", replicas[0]);
        total += keys;
    }
    assert_eq!(total, 300);
    assert!(cli(&target, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
    assert_eq!(r.outputs("verify_after")["keys_checked"], 300);
    let skipped: Vec<String> = r
        .journal()
        .iter()
        .filter(|e| e["event"] == "step_skipped")
        .map(|e| text(e, "step").to_string())
        .collect();
    assert_eq!(skipped, ["live_sync", "verify"]);
    let destroyed = r.destroy();
    assert!(
        destroyed.stdout.contains("9 server(s) stopped"),
        "{}",
        destroyed.stdout
    );
}

/// The slots the node at `endpoint` serves, as its own CLUSTER NODES line says.
fn own_slots(endpoint: &str) -> String {
    cli(endpoint, &["CLUSTER", "NODES"])
        .lines()
        .find(|l| l.contains("myself"))
        .map(|l| l.split_whitespace().skip(8).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// Issue 16: the engine change of three shards, each failing over to its upgraded replica.
#[test]
fn local_engine_change_runbook_changes_three_shards_to_valkey() {
    let path = repo("runbooks/engine-change.yaml").display().to_string();
    let (r, _) = Rehearsal::run(
        &path,
        &["key_count=300", "shards=3", "replication_group=ec-three"],
        0,
    );
    let before = r.outputs("before");
    let after = r.outputs("after");
    assert_eq!(
        (text(&before, "engine"), text(&after, "engine")),
        ("redis", "valkey")
    );
    let (was, now) = (shards_of(&before), shards_of(&after));
    assert_eq!(was.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), THREE);
    let swapped: Vec<(String, String, Vec<String>)> = was
        .iter()
        .map(|(slots, primary, replicas)| {
            (slots.clone(), replicas[0].clone(), vec![primary.clone()])
        })
        .collect();
    assert_eq!(now, swapped, "each shard failed over to its replica");
    let mut total = 0;
    for (slots, primary, replicas) in &now {
        assert_eq!(own_slots(primary), *slots);
        for node in std::iter::once(primary).chain(replicas) {
            assert!(
                info(node, "server", "valkey_version").is_some(),
                "{node} runs Valkey"
            );
        }
        let keys = data_keys(primary);
        assert_eq!(data_keys(&replicas[0]), keys);
        total += keys;
    }
    assert_eq!(total, 300, "every seeded key is still there");
    // Each shard, and how: its nodes run both engines, whose failover votes do not count
    // reliably across them, so the takeover goes without the vote.
    let failovers: Vec<(String, String)> = r
        .journal()
        .iter()
        .filter(|e| e["step"] == "change_engine")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("failed over"))
        .map(|m| {
            let how = m.rsplit_once(" (").unwrap().1;
            (
                m.split(':').next().unwrap().to_string(),
                how.split_once("), now").unwrap().0.to_string(),
            )
        })
        .collect();
    let how = "writes paused until it had them all, CLUSTER FAILOVER TAKEOVER";
    assert_eq!(
        failovers,
        ["0001", "0002", "0003"].map(|s| (format!("ec-three shard {s}"), how.to_string()))
    );
}

/// Issue 16: a three-shard group's snapshot is one RDB per shard, restored into a Valkey
/// cluster of three shards with the same slots and keys.
#[test]
fn local_snapshot_restore_runbook_restores_three_shards() {
    let path = repo("runbooks/snapshot-restore.yaml").display().to_string();
    let (r, _) = Rehearsal::run(&path, &["key_count=300", "shards=3"], 0);
    let source = text(&r.outputs("deploy"), "PrimaryEndpoint").to_string();
    let restored = r.outputs("restore");
    assert_eq!(text(&restored, "engine"), "valkey");
    assert_eq!(restored["cluster_mode"], true);
    let sources = cluster_primaries(&source);
    let shards = shards_of(&restored);
    assert_eq!(
        shards.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        THREE
    );
    for (slots, primary, replicas) in &shards {
        assert_eq!(own_slots(primary), *slots);
        assert!(info(primary, "server", "valkey_version").is_some());
        assert_eq!(data_keys(primary), data_keys(&sources[slots]), "{slots}");
        assert_eq!(data_keys(&replicas[0]), data_keys(primary));
    }
    let snapshot = text(&r.outputs("snapshot"), "snapshot").to_string();
    let mut files: Vec<String> = std::fs::read_dir(
        r.ws.state_dir()
            .join("runs")
            .join(&r.run_id)
            .join("snapshots"),
    )
    .unwrap()
    .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
    files.sort();
    assert_eq!(
        files,
        ["0001", "0002", "0003"].map(|s| format!("{snapshot}-{s}.rdb"))
    );
    assert_eq!(r.outputs("verify")["keys_checked"], 300);
}

/// Issue 3, item 9: keys changed and deleted on the target before the parity check make the
/// run fail at `verify`, the rollback runs, and the journal names the keys.
#[test]
fn local_online_migration_fails_at_verify_when_the_target_drifts_and_rolls_back() {
    let original = std::fs::read_to_string(repo("runbooks/online-migration.yaml")).unwrap();
    let tamper = r#"  - id: tamper
    description: Change one key and delete another on the target, behind the replication's back.
    action: exec
    with:
      command: >-
        t="redis-cli -u redis://{{ steps.deploy.outputs.ValkeyPrimaryEndpoint }}";
        $t CONFIG SET replica-read-only no > /dev/null;
        gone=$($t --scan --pattern 'seed:*' | sort | sed -n 1p);
        changed=$($t --scan --pattern 'seed:*' | sort | sed -n 2p);
        $t DEL "$gone" > /dev/null; $t SET "$changed" tampered > /dev/null;
        echo "$gone $changed"

  - id: verify
"#;
    assert!(original.contains("  - id: verify\n"));
    let text_with_tamper = original.replacen("  - id: verify\n", tamper, 1).replace(
        "../cloudformation/",
        &format!("{}/", repo("cloudformation").display()),
    );
    let probe_ws = Workspace::new();
    let file = probe_ws.write("drift.yaml", &text_with_tamper);
    let (r, ran) = Rehearsal::run(&file.display().to_string(), &["key_count=200"], 1);

    let tampered = text(&r.outputs("tamper"), "stdout").to_string();
    let (gone, changed) = tampered.split_once(' ').expect("two keys");
    let journal = r.journal();
    let failure = journal
        .iter()
        .find(|e| e["event"] == "step_failed")
        .expect("a step failed");
    assert_eq!(failure["step"], "verify", "{failure}");
    let error = failure["error"].as_str().unwrap();
    assert!(
        error.contains(gone) && error.contains(changed),
        "the keys are named: {error}"
    );
    let rollback = journal
        .iter()
        .find(|e| e["event"] == "rollback_started")
        .expect("rollback started");
    assert_eq!(rollback["failed_step"], "verify");
    for step in ["abort", "restore", "point_back"] {
        r.outputs(step);
    }
    assert!(text(&r.outputs("point_back"), "stdout").contains("failed step: verify"));
    assert_eq!(r.outputs("abort")["forced"], true);
    let target = text(&r.outputs("deploy"), "ValkeyPrimaryEndpoint").to_string();
    assert_eq!(
        info(&target, "replication", "role").as_deref(),
        Some("master"),
        "migration stopped"
    );
    let restored = r.outputs("restore");
    assert!(text(&restored, "id").ends_with("-rollback"));
    assert!(ran.stderr.contains("verify"), "{}", ran.stderr);
}

/// A run killed (SIGKILL) in the middle of the engine change, between the replica and the
/// primary, resumes in a new process: the servers are found again, the changed replica is
/// left alone, and the run ends as an uninterrupted one would.
#[test]
fn local_engine_change_killed_between_nodes_resumes_and_finishes() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let ws = Workspace::new();
    let state = ws.state_dir().display().to_string();
    let path = repo("runbooks/engine-change.yaml").display().to_string();
    let mut child = std::process::Command::new(crate::support::runbook_bin())
        .current_dir(ws.path())
        .args(["run", &path, "--yes", "--state-dir", &state])
        .args([
            "--var",
            "key_count=300",
            "--var",
            "replication_group=ec-kill",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let r = Rehearsal {
        ws,
        run_id: first.trim().to_string(),
    };
    let journal =
        r.ws.state_dir()
            .join("runs")
            .join(&r.run_id)
            .join("journal.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains("ec-kill-002 serves: data loaded")
    {
        assert!(Instant::now() < deadline, "the replica was never changed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let resumed =
        r.ws.cmd(&["resume", &r.run_id, "--yes", "--state-dir", &state])
            .expect(0);
    assert!(
        resumed
            .stderr
            .contains("ec-kill-002 already runs as valkey"),
        "{}",
        resumed.stderr
    );
    let deploys = r
        .journal()
        .iter()
        .filter(|e| e["event"] == "step_started" && e["step"] == "rehearsal_group")
        .count();
    assert_eq!(deploys, 1, "the stack is not deployed again");
    let after = r.outputs("after");
    assert_eq!(text(&after, "engine"), "valkey");
    for node in after["nodes"].as_array().unwrap() {
        let endpoint = text(node, "endpoint");
        assert!(
            info(endpoint, "server", "valkey_version").is_some(),
            "{endpoint} runs Valkey"
        );
        assert_eq!(data_keys(endpoint), 300, "{endpoint} kept its data");
    }
}

#[test]
fn local_a_server_binary_that_is_not_there_is_named_with_how_to_install_it() {
    let ws = Workspace::new();
    let state = ws.state_dir().display().to_string();
    let path = repo("runbooks/engine-change.yaml").display().to_string();
    let ran = ws
        .cmd(&[
            "run",
            &path,
            "--yes",
            "--state-dir",
            &state,
            "--var",
            "key_count=10",
        ])
        .env("RUNBOOK_REDIS_SERVER", "/nonexistent/redis-server")
        .expect(1);
    assert!(
        ran.stderr
            .contains("RUNBOOK_REDIS_SERVER=/nonexistent/redis-server is not an executable file"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("apt-get install redis-server"),
        "{}",
        ran.stderr
    );
}

#[test]
fn local_plans_of_the_runbooks_show_the_server_operations_and_start_nothing() {
    let ws = Workspace::new();
    let state = ws.state_dir().display().to_string();
    for (file, expected) in [
        ("online-migration.yaml", "REPLICAOF <source> on the primary"),
        (
            "engine-change.yaml",
            "SHUTDOWN SAVE and start valkey-server on the same port and data, then fail over",
        ),
        ("snapshot-restore.yaml", "BGSAVE on a node of"),
    ] {
        let path = repo("runbooks").join(file).display().to_string();
        let ran = ws.cmd(&["plan", &path, "--state-dir", &state]).expect(0);
        assert!(ran.stdout.contains(expected), "{file}:\n{}", ran.stdout);
    }
    assert!(!ws.state_dir().join("runs").exists(), "plan made no run");
}

#[test]
fn local_cloudformation_templates_pass_cfn_lint() {
    let templates: Vec<PathBuf> = ["online-migration", "engine-change", "snapshot-restore"]
        .iter()
        .map(|t| repo(&format!("cloudformation/{t}.yaml")))
        .collect();
    let out = std::process::Command::new("cfn-lint")
        .args(&templates)
        .output()
        .expect("cfn-lint (run scripts/setup)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

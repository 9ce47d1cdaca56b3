//! The everyday-change runbooks rehearsed end to end on the local platform through the
//! binary: each change is checked on the real servers afterwards, and its step's probe
//! figures are read from the report.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::Workspace;

/// A finished rehearsal: its journal and report; `runbook destroy` when dropped.
struct Rehearsal {
    ws: Workspace,
    run_id: String,
}

impl Rehearsal {
    fn run(runbook: &str, vars: &[&str]) -> Rehearsal {
        let ws = Workspace::new();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("runbooks")
            .join(runbook)
            .display()
            .to_string();
        let (ran, run_id) = ws.run_runbook(&path, vars);
        let r = Rehearsal { ws, run_id };
        assert_eq!(
            ran.status, 0,
            "{runbook}\n--- stdout\n{}\n--- stderr\n{}",
            ran.stdout, ran.stderr
        );
        r
    }

    fn dir(&self) -> PathBuf {
        self.ws.state_dir().join("runs").join(&self.run_id)
    }

    fn outputs(&self, step: &str) -> Value {
        std::fs::read_to_string(self.dir().join("journal.jsonl"))
            .expect("journal")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a journal line"))
            .collect::<Vec<_>>()
            .into_iter()
            .rfind(|e| e["event"] == "step_succeeded" && e["step"] == step)
            .map(|e| e["outputs"].clone())
            .unwrap_or_else(|| panic!("step {step} did not succeed"))
    }

    fn report(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir().join("report.json")).expect("report.json"),
        )
        .expect("a json report")
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

fn role(endpoint: &str) -> String {
    cli(endpoint, &["INFO", "replication"])
        .lines()
        .find_map(|l| l.strip_prefix("role:").map(|r| r.trim().to_string()))
        .unwrap_or_default()
}

/// (node id, role, endpoint) of each node of a group's description.
fn nodes(group: &Value) -> Vec<(String, String, String)> {
    group["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["role"].as_str().unwrap().to_string(),
                n["endpoint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The report's row of step `id`.
fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("step {id} in the report"))
}

#[test]
fn a_failover_test_promotes_the_replica_and_the_probe_sees_it() {
    let r = Rehearsal::run("failover-test.yaml", &["key_count=200"]);
    let out = r.outputs("failover");
    let g = "failover-test";
    assert_eq!(
        (&out["old_primary"], &out["new_primary"], &out["node_group"]),
        (
            &Value::from(format!("{g}-001")),
            &Value::from(format!("{g}-002")),
            &Value::from("0001")
        )
    );
    let after = nodes(&r.outputs("after"));
    assert_eq!(
        after
            .iter()
            .map(|(id, role, _)| (id.as_str(), role.as_str()))
            .collect::<Vec<_>>(),
        [
            (&*format!("{g}-002"), "primary"),
            (&*format!("{g}-001"), "replica")
        ]
    );
    assert_eq!(role(&after[0].2), "master");
    assert_eq!(role(&after[1].2), "slave");
    assert_eq!(cli(&after[0].2, &["DBSIZE"]), cli(&after[1].2, &["DBSIZE"]));
    let preflight = r.outputs("preflight");
    let names: Vec<&str> = preflight["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["memory", "cpu", "connections", "evictions"]);
    let report = r.report();
    let failover = step(&report, "failover");
    assert!(
        failover["latency"]["errors"].as_u64().unwrap_or(0) > 0,
        "the probe saw the promotion: {failover}"
    );
    // The probe's `primary` moved to the new primary once the failover named it.
    let probed: Vec<(&str, String)> = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["endpoint"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        probed,
        [
            ("primary", format!("redis://{}", after[1].2)),
            ("primary", format!("redis://{}", after[0].2))
        ]
    );
}

#[test]
fn replicas_are_added_and_removed() {
    let up = Rehearsal::run("scale-replicas.yaml", &["key_count=100"]);
    let out = up.outputs("scale");
    assert_eq!(
        (&out["replicas_before"], &out["replicas"]),
        (&1.into(), &2.into())
    );
    let after = nodes(&up.outputs("after"));
    assert_eq!(
        after
            .iter()
            .map(|(_, role, _)| role.as_str())
            .collect::<Vec<_>>(),
        ["primary", "replica", "replica"]
    );
    assert_eq!(after[2].0, "scale-replicas-003");
    assert_eq!(role(&after[2].2), "slave");
    assert_eq!(cli(&after[2].2, &["DBSIZE"]), cli(&after[0].2, &["DBSIZE"]));

    let down = Rehearsal::run("scale-replicas.yaml", &["key_count=100", "replicas=0"]);
    let out = down.outputs("scale");
    assert_eq!(
        (&out["replicas_before"], &out["replicas"]),
        (&1.into(), &0.into())
    );
    let before = nodes(&down.outputs("before"));
    assert_eq!(nodes(&down.outputs("after")).len(), 1);
    assert_eq!(cli(&before[1].2, &["PING"]), "", "the replica stopped");
}

#[test]
fn a_node_type_change_replaces_the_replica_then_fails_over() {
    let r = Rehearsal::run("node-type-change.yaml", &["key_count=200"]);
    let out = r.outputs("change_node_type");
    assert_eq!(
        (&out["node_type_before"], &out["node_type"]),
        (&"cache.t4g.small".into(), &"cache.r7g.large".into())
    );
    let after = nodes(&out);
    assert_eq!(
        after
            .iter()
            .map(|(id, role, _)| (id.as_str(), role.as_str()))
            .collect::<Vec<_>>(),
        [
            ("node-type-change-002", "primary"),
            ("node-type-change-001", "replica")
        ]
    );
    assert_eq!(cli(&after[0].2, &["DBSIZE"]), cli(&after[1].2, &["DBSIZE"]));
}

#[test]
fn a_parameter_change_sets_the_memory_policy_on_every_node() {
    let r = Rehearsal::run(
        "parameter-change.yaml",
        &["key_count=100", "maxmemory_policy=volatile-lru"],
    );
    let out = r.outputs("change_parameters");
    assert_eq!(
        out,
        serde_json::json!({
            "replication_group": "parameter-change",
            "parameter_group": "parameter-change-params",
            "parameters": {"maxmemory-policy": "volatile-lru"},
            "changed": ["maxmemory-policy"],
            "apply_status": "in-sync",
        })
    );
    for (_, _, endpoint) in nodes(&r.outputs("after")) {
        assert_eq!(
            cli(&endpoint, &["CONFIG", "GET", "maxmemory-policy"]),
            "maxmemory-policy\nvolatile-lru"
        );
    }
    let report = r.report();
    assert_eq!(step(&report, "change_parameters")["latency"]["errors"], 0);
}

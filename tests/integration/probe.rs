//! The probe against real servers: a freeze, a write pause and a kill are each one
//! outage of their kind, measured within ± 2 intervals (± 5 ms at 1 ms) with every
//! scheduled tick counted; no fault means no outage; errors are classified; samples carry
//! the running step.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook::endpoint::{Endpoint, Resolver};
use runbook::probe::{ProbeConfig, RunProbe};
use serde_json::{Value, json};

use crate::support::{Cluster, Engine, Server, Workspace, runbook_bin};

const INTERVAL_MS: f64 = 10.0;

/// Waits until the probe has written its first event, so the fault lands mid-probe.
fn wait_for_probe(dir: &std::path::Path) {
    let events = dir.join("probe").join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::fs::metadata(&events).is_ok_and(|m| m.len() > 0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the probe wrote nothing to {}", events.display());
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// Runs `runbook probe --format json` against `url` for `duration` at `interval`, does
/// `fault` once the probe has run for 800 ms, and returns the report and what `fault` returned.
fn probe_through<T>(
    url: &str,
    interval: &str,
    duration: &str,
    fault: impl FnOnce() -> T,
) -> (Value, T) {
    let ws = Workspace::new();
    let out = ws.path().join("probe-out");
    let child = Command::new(runbook_bin())
        .current_dir(ws.path())
        .args(["probe", "--endpoint", url, "--duration", duration])
        .args(["--interval", interval, "--format", "json"])
        .args(["--out", &out.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runbook probe");
    wait_for_probe(&out);
    std::thread::sleep(Duration::from_millis(800));
    let found = fault();
    let output = child.wait_with_output().expect("probe output");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.join("report.md").is_file() && out.join("report-timeline.png").is_file());
    (json(&String::from_utf8_lossy(&output.stdout)), found)
}

/// Checks `value[field]` is within `tolerance` of `expected`, then sets it to `expected`,
/// so the whole object can be compared at once.
fn settle(value: &mut Value, field: &str, expected: f64, tolerance: f64) {
    let got = value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no number `{field}` in {value:#}"));
    assert!(
        (got - expected).abs() <= tolerance,
        "{field}: measured {got:.3}, real {expected:.3} (± {tolerance}) in {value:#}"
    );
    value[field] = expected.into();
}

/// The report's outages, with their times (checked separately) taken out.
fn outages_without_times(report: &Value) -> Vec<Value> {
    report["outages"]
        .as_array()
        .expect("outages")
        .iter()
        .map(|o| {
            let mut o = o.clone();
            let map = o.as_object_mut().unwrap();
            for key in ["start", "end", "duration_ms", "failed_requests"] {
                map.remove(key);
            }
            o
        })
        .collect()
}

/// Every scheduled tick is counted: as many requests of each operation as ticks, at least
/// as many ticks as `duration_ms` has room for, and no more than the probe's life has.
fn every_tick_counted(report: &Value, duration_ms: f64, interval_ms: f64) {
    let endpoint = &report["endpoints"][0];
    let ticks = endpoint["ticks"].as_u64().expect("ticks") as f64;
    let time = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(endpoint[k].as_str().expect("a time")).unwrap()
    };
    let lived_ms = (time("until") - time("from")).num_microseconds().unwrap() as f64 / 1000.0;
    assert!(
        ticks >= duration_ms / interval_ms - 2.0 && ticks <= lived_ms / interval_ms + 3.0,
        "{ticks} ticks in {lived_ms} ms of probing, {duration_ms} ms asked, every {interval_ms} ms"
    );
    for op in ["write", "read"] {
        assert_eq!(
            report["latency"][op]["requests"].as_f64(),
            Some(ticks),
            "{op}: {}",
            report["latency"][op]
        );
    }
}

/// Sends `DEBUG SLEEP seconds` and returns how long the server took to answer.
fn freeze(port: u16, seconds: u32) -> f64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let arg = seconds.to_string();
    let cmd = format!(
        "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${}\r\n{arg}\r\n",
        arg.len()
    );
    let sent = Instant::now();
    s.write_all(cmd.as_bytes()).expect("send DEBUG SLEEP");
    let mut reply = [0u8; 5];
    s.read_exact(&mut reply).expect("DEBUG SLEEP reply");
    assert_eq!(&reply, b"+OK\r\n");
    (Instant::now() - sent).as_secs_f64() * 1000.0
}

#[test]
fn a_frozen_server_is_one_stall_as_long_as_the_freeze_and_every_tick_counts() {
    let server = Server::start_with(Engine::Redis, &["--enable-debug-command", "yes"]);
    let port = server.port;
    let (report, real_ms) = probe_through(&server.url(), "10ms", "6s", || freeze(port, 1));
    eprintln!(
        "stall: measured {} ms, real {real_ms:.1} ms",
        report["outages"][0]["duration_ms"]
    );
    assert_eq!(
        outages_without_times(&report),
        vec![
            json!({"endpoint": server.url(), "name": null, "kind": "stall",
                    "ops": ["write", "read"], "step": "(between steps)", "cause": "timeout",
                    "clients": true})
        ]
    );
    let mut stall = report["outages"][0].clone();
    settle(&mut stall, "duration_ms", real_ms, 2.0 * INTERVAL_MS);
    every_tick_counted(&report, 6000.0, INTERVAL_MS);
    let mut outcome = report["outcome"].clone();
    settle(&mut outcome, "unwritable_s", real_ms / 1000.0, 0.02);
    settle(&mut outcome, "unreadable_s", real_ms / 1000.0, 0.02);
    settle(&mut outcome, "run_s", 6.0, 0.1);
    settle(&mut outcome, "probed_s", 6.0, 0.1);
    assert_eq!(
        outcome,
        json!({"succeeded": true, "status": "finished", "changed": [], "probed": "whole",
               "probed_s": 6.0, "run_s": 6.0, "probe_note": null,
               "unwritable_s": real_ms / 1000.0, "unreadable_s": real_ms / 1000.0,
               "disconnects": 0, "stalls": 1, "refusals": 0, "errors": 0, "lost_writes": 0,
               "cutover": null, "parity": null})
    );
}

#[test]
fn paused_writes_stall_the_writes_only() {
    let server = Server::start(Engine::Redis);
    let (report, ()) = probe_through(&server.url(), "10ms", "6s", || {
        assert_eq!(server.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]), "OK");
    });
    assert_eq!(
        outages_without_times(&report),
        vec![
            json!({"endpoint": server.url(), "name": null, "kind": "stall",
                    "ops": ["write"], "step": "(between steps)", "cause": "timeout",
                    "clients": true})
        ]
    );
    let mut stall = report["outages"][0].clone();
    eprintln!("pause: measured {} ms, real 3000 ms", stall["duration_ms"]);
    settle(&mut stall, "duration_ms", 3000.0, 2.0 * INTERVAL_MS);
    assert_eq!(
        report["latency"]["read"]["errors"], 0,
        "{}",
        report["latency"]
    );
    every_tick_counted(&report, 6000.0, INTERVAL_MS);
    let mut outcome = report["outcome"].clone();
    settle(&mut outcome, "unwritable_s", 3.0, 0.02);
    assert_eq!(outcome["unreadable_s"], 0.0);
    assert_eq!(
        (&outcome["disconnects"], &outcome["stalls"]),
        (&json!(0), &json!(1))
    );
}

/// Kills the server, restarts it on the same port after 1 s, and returns the real outage:
/// from the kill to the first moment the server answers a PING again, tried every
/// millisecond.
fn kill_for_a_second(server: &mut Server) -> f64 {
    let killed = Instant::now();
    server.stop();
    std::thread::sleep(Duration::from_millis(1000));
    let port = server.port;
    let watcher = std::thread::spawn(move || {
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut pong).is_ok() {
                    return Instant::now();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    server.restart();
    let up = watcher.join().expect("PING watcher");
    (up - killed).as_secs_f64() * 1000.0
}

fn a_kill_is_one_disconnect(interval: &str, interval_ms: f64, tolerance_ms: f64) {
    let mut server = Server::start(Engine::Redis);
    let url = server.url();
    let (report, real_ms) = probe_through(&url, interval, "4s", || kill_for_a_second(&mut server));
    let outages = outages_without_times(&report);
    assert_eq!(outages.len(), 1, "{:#}", report["outages"]);
    let cause = outages[0]["cause"].clone();
    assert!(
        matches!(cause.as_str(), Some("reset" | "refused")),
        "{cause}"
    );
    assert_eq!(
        outages[0],
        json!({"endpoint": url, "name": null, "kind": "disconnect", "ops": ["write", "read"],
               "step": "(between steps)", "cause": cause, "clients": true})
    );
    let mut d = report["outages"][0].clone();
    eprintln!(
        "kill at {interval}: measured {} ms, real {real_ms:.1} ms",
        d["duration_ms"]
    );
    settle(&mut d, "duration_ms", real_ms, tolerance_ms);
    assert!(d["start"].is_string() && d["end"].is_string(), "{d}");
    every_tick_counted(&report, 4000.0, interval_ms);
    // The server kept no data across the restart: the acknowledged sequence is gone.
    assert!(
        report["outcome"]["lost_writes"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["lost_writes"]
    );
    assert_eq!(report["outcome"]["disconnects"], 1);
}

#[test]
fn a_kill_is_a_disconnect_measured_within_two_intervals() {
    a_kill_is_one_disconnect("10ms", INTERVAL_MS, 2.0 * INTERVAL_MS);
}

/// Alone, the 1 ms probe measures a kill within 5 ms (docs/probe-and-report.md has the
/// figures); beside the rest of the suite on two cores, the probe's and the watcher's own
/// scheduling add up to ten more, which the test allows.
#[test]
fn at_a_one_millisecond_interval_a_kill_is_measured_within_milliseconds() {
    a_kill_is_one_disconnect("1ms", 1.0, 15.0);
}

#[test]
fn ten_seconds_without_a_fault_record_no_disconnect() {
    let server = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            &server.url(),
            "--duration",
            "10s",
            "--format",
            "json",
        ])
        .expect(0);
    let report = json(&ran.stdout);
    assert_eq!(
        report["outages"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["outages"]
    );
    assert_eq!(report["outcome"]["lost_writes"], 0);
    let writes = report["latency"]["write"]["requests"].as_u64().unwrap_or(0);
    // 10 s at 10 ms is 1000 ticks; allow for a slow start on a busy machine.
    assert!(writes >= 900, "{writes} writes");
    assert_eq!(report["latency"]["write"]["errors"], 0);
    let role = &report["connections"][0]["role"];
    assert_eq!(role, "master", "{}", report["connections"]);
}

#[test]
fn auth_works_and_a_wrong_password_is_classified_without_leaking() {
    let server = Server::start_with(Engine::Redis, &["--requirepass", "s3cret-pw"]);
    let ws = Workspace::new();
    let good = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port);
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            &good,
            "--duration",
            "1s",
            "--format",
            "json",
        ])
        .expect(0);
    let report = json(&ran.stdout);
    assert_eq!(
        report["outages"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["outages"]
    );
    assert!(report["latency"]["write"]["requests"].as_u64().unwrap_or(0) > 50);

    // An ACL user allowed only SET and GET on the probe's keys is enough.
    server.cli(&[
        "-a",
        "s3cret-pw",
        "--no-auth-warning",
        "ACL",
        "SETUSER",
        "prober",
        "on",
        ">acl-pw",
        "~runbook:probe:*",
        "+set",
        "+get",
    ]);
    let acl = format!("redis://prober:acl-pw@127.0.0.1:{}", server.port);
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            &acl,
            "--duration",
            "1s",
            "--format",
            "json",
        ])
        .expect(0);
    let report = json(&ran.stdout);
    assert_eq!(
        report["outages"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["outages"]
    );
    assert_eq!(report["latency"]["write"]["errors"], 0);
    assert!(!ran.stdout.contains("acl-pw"));

    let bad = format!("redis://:wrong-pw@127.0.0.1:{}", server.port);
    let out = ws.path().join("bad");
    let out_arg = out.display().to_string();
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            &bad,
            "--duration",
            "1s",
            "--format",
            "json",
            "--out",
            &out_arg,
        ])
        .expect(0);
    let report = json(&ran.stdout);
    assert!(
        report["errors_by_class"]["auth"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["errors_by_class"]
    );
    assert_eq!(report["outages"][0]["cause"], "auth");
    assert_eq!(report["outages"][0]["kind"], "disconnect");
    for text in [ran.stdout.clone(), ran.stderr.clone()]
        .into_iter()
        .chain(
            std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .filter_map(|f| std::fs::read_to_string(f.path()).ok()),
        )
        .chain(
            std::fs::read_dir(out.join("probe"))
                .unwrap()
                .flatten()
                .filter_map(|f| std::fs::read_to_string(f.path()).ok()),
        )
    {
        assert!(
            !text.contains("wrong-pw") && !text.contains("s3cret-pw"),
            "a password leaked"
        );
    }
}

#[test]
fn writes_to_a_replica_are_classified_readonly() {
    let primary = Server::start(Engine::Redis);
    let replica = Server::start(Engine::Redis);
    replica.cli(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    let ws = Workspace::new();
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            &replica.url(),
            "--duration",
            "1s",
            "--format",
            "json",
        ])
        .expect(0);
    let report = json(&ran.stdout);
    assert!(
        report["errors_by_class"]["readonly"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["errors_by_class"]
    );
    assert_eq!(report["connections"][0]["role"], "slave");
    // An expected refusal of the writes; reads keep working on a replica.
    assert_eq!(
        outages_without_times(&report),
        vec![
            json!({"endpoint": replica.url(), "name": null, "kind": "refusal",
                    "ops": ["write"], "step": "(between steps)", "cause": "readonly",
                    "clients": true})
        ]
    );
    assert_eq!(report["latency"]["read"]["errors"], 0);
    assert_eq!(report["outcome"]["refusals"], 1);
}

#[test]
fn samples_and_disconnects_carry_the_running_step() {
    let mut server = Server::start(Engine::Redis);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (step_tx, step_rx) = tokio::sync::watch::channel(Some("before".to_string()));
    let probe = rt.block_on(async {
        RunProbe::start(
            dir.path(),
            ProbeConfig::default(),
            Resolver::default(),
            step_rx,
        )
    });
    let endpoint = Endpoint::local(server.port);
    probe.watch(endpoint.clone());
    probe.watch(endpoint); // idempotent
    std::thread::sleep(Duration::from_millis(600));
    step_tx.send_replace(Some("restart".to_string()));
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    std::thread::sleep(Duration::from_millis(400));
    step_tx.send_replace(Some("after".to_string()));
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(probe.stop());

    let report = runbook::report::build(dir.path()).unwrap();
    assert_eq!(report.endpoints.len(), 1, "watching twice probes once");
    assert_eq!(report.outages.len(), 1, "{:#?}", report.outages);
    assert_eq!(report.outages[0].step, "restart");
    let events = std::fs::read_to_string(dir.path().join("probe/seconds.jsonl")).unwrap();
    for step in ["before", "restart", "after"] {
        assert!(
            events.contains(&format!("\"step\":\"{step}\"")),
            "no sample tagged {step}"
        );
    }
}

#[test]
fn tls_endpoints_are_probed_through_a_resolve_override() {
    let server = Server::start_tls(Engine::Redis, &[]);
    let tls_port = server.tls_port.expect("a TLS port");
    let ws = Workspace::new();
    let endpoint = format!("rediss://cache.example:{tls_port}");
    let resolve = format!("cache.example:{tls_port}=127.0.0.1:{tls_port}");
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            &endpoint,
            "--resolve",
            &resolve,
            "--duration",
            "1s",
            // A TLS handshake on a busy machine can take longer than the default 250 ms.
            "--timeout",
            "2s",
            "--format",
            "json",
        ])
        .expect(0);
    let report = json(&ran.stdout);
    assert_eq!(
        report["outages"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["outages"]
    );
    assert!(
        report["latency"]["write"]["requests"].as_u64().unwrap_or(0) > 50,
        "{}",
        report["latency"]
    );
    assert_eq!(
        report["connections"][0]["resolved"][0],
        format!("127.0.0.1:{tls_port}")
    );
    drop(server);
}

#[test]
fn bad_probe_flags_are_invalid_input() {
    let ws = Workspace::new();
    let ran = ws
        .cmd(&["probe", "--endpoint", "http://cache:6379"])
        .expect(2);
    assert!(ran.stderr.contains("redis://"), "{}", ran.stderr);
    let ran = ws
        .cmd(&["probe", "--endpoint", "127.0.0.1:6379", "--interval", "0ms"])
        .expect(2);
    assert!(ran.stderr.contains("--interval"), "{}", ran.stderr);
    let ran = ws
        .cmd(&[
            "probe",
            "--endpoint",
            "127.0.0.1:6379",
            "--duration",
            "soon",
        ])
        .expect(2);
    assert!(ran.stderr.contains("--duration"), "{}", ran.stderr);
}

#[test]
fn a_clients_plan_that_names_no_endpoint_or_step_is_invalid_input_with_its_place() {
    let ws = Workspace::new();
    ws.write(
        "clients.yaml",
        indoc::indoc! {r#"
            version: 1
            name: clients
            probe:
              endpoints:
                - { name: source, endpoint: "redis://127.0.0.1:6379" }
                - { name: target, endpoint: "redis://127.0.0.1:6380" }
                - { name: target, endpoint: "redis://127.0.0.1:6381", port: 1 }
              clients:
                - sorce
                - { endpoint: target, from: complete }
                - { endpoint: source }
                - { endpoint: source, from: first }
                - { endpoint: source, from: complet }
            steps:
              - id: first
                action: sleep
                with: { duration: 1ms }
              - id: complete
                action: sleep
                with: { duration: 1ms }
        "#},
    );
    ws.cmd(&["plan", "clients.yaml"])
        .status(2)
        .stderr(indoc::indoc! {r#"
            error: two probe endpoints are named `target`
             --> clients.yaml:7:15
              |
            7 |     - { name: target, endpoint: "redis://127.0.0.1:6381", port: 1 }
              |               ^^^^^^
              = help: give each endpoint its own name

            error: unknown field `port` in a probe endpoint
             --> clients.yaml:7:59
              |
            7 |     - { name: target, endpoint: "redis://127.0.0.1:6381", port: 1 }
              |                                                           ^^^^
              = help: known fields: name, endpoint

            error: no probe endpoint is named `sorce`
             --> clients.yaml:9:7
              |
            9 |     - sorce
              |       ^^^^^
              = help: did you mean `source`?

            error: only the first `clients` entry may leave out `from`
              --> clients.yaml:11:19
               |
            11 |     - { endpoint: source }
               |                   ^^^^^^
               = help: say from which step the clients use this endpoint: `from: <step id>`

            error: `first` does not come after the previous entry's step
              --> clients.yaml:12:33
               |
            12 |     - { endpoint: source, from: first }
               |                                 ^^^^^
               = help: list the moves of the clients in the order of the steps

            error: no step has the id `complet`
              --> clients.yaml:13:33
               |
            13 |     - { endpoint: source, from: complet }
               |                                 ^^^^^^^
               = help: did you mean `complete`?

            6 errors in clients.yaml
        "#})
        .check();
}

/// Issue 14: a probe that measured nothing does not give a clean bill of health.
#[test]
fn a_run_whose_probe_endpoints_are_all_invalid_says_nothing_was_measured() {
    let ws = Workspace::new();
    ws.write(
        "unprobed.yaml",
        indoc::indoc! {r#"
            version: 1
            name: unprobed
            probe:
              endpoints: ["{{ steps.where.outputs.stdout }}"]
            steps:
              - id: where
                action: exec
                with: { command: "echo http://nowhere" }
              - id: wait
                action: sleep
                with: { duration: 200ms }
        "#},
    );
    let ran = ws.cmd(&["run", "unprobed.yaml", "--yes"]).run();
    let id = ran.stdout.lines().next().unwrap_or_default().to_string();
    let dir = ws.state_dir().join("runs").join(&id);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let outcome = report["outcome"].clone();
    let run_s = outcome["run_s"].as_f64().unwrap_or(-1.0);
    assert!((0.2..10.0).contains(&run_s), "{outcome:#}");
    assert_eq!(
        outcome,
        json!({"succeeded": true, "status": "succeeded",
               "changed": ["where: exec"], "probed": "none", "probed_s": 0.0,
               "run_s": run_s,
               "probe_note": "no endpoint was probed (none of `probe.endpoints` had a value the probe could use): nothing was measured",
               "unwritable_s": null, "unreadable_s": null, "disconnects": 0, "stalls": 0,
               "refusals": 0, "errors": 0, "lost_writes": 0, "cutover": null, "parity": null})
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("- Time clients could not write: **not measured**\n- **Not measured:** no endpoint was probed"),
        "{md}"
    );
}

/// Adds a replica of `cluster`'s node `of` and waits until it has synced.
fn add_replica(cluster: &Cluster, of: usize) -> Server {
    let replica = Server::start_cluster_node(Engine::Redis);
    let met = cluster.nodes[0].cli(&[
        "CLUSTER",
        "MEET",
        "127.0.0.1",
        &replica.port.to_string(),
        &replica.bus_port.expect("a cluster node").to_string(),
    ]);
    assert_eq!(met, "OK");
    let primary_id = cluster.nodes[of].cli(&["CLUSTER", "MYID"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica.cli(&["CLUSTER", "REPLICATE", &primary_id]) != "OK" {
        assert!(
            Instant::now() < deadline,
            "the replica did not learn its primary"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
        || !cluster.nodes[0]
            .cli(&["CLUSTER", "SLOTS"])
            .contains(&replica.port.to_string())
    {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(100));
    }
    replica
}

/// A report's per-shard rows with the latency figures (checked separately) taken out.
fn shard_rows_without_latency(rows: &Value) -> Vec<Value> {
    rows.as_array()
        .expect("per-shard rows")
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("latency");
            r
        })
        .collect()
}

#[test]
fn a_failover_of_one_shard_of_three_is_a_short_outage_of_that_shard_only() {
    let cluster = Cluster::start(Engine::Redis, 3);
    let replica = add_replica(&cluster, 1);
    let url = cluster.nodes[0].url();
    let (report, ()) = probe_through(&url, "10ms", "5s", || {
        let answer = replica.cli(&["CLUSTER", "FAILOVER"]);
        assert_eq!(answer, "OK");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !replica.cli(&["ROLE"]).starts_with("master") {
            assert!(Instant::now() < deadline, "the replica did not take over");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let port = |n: &Server| format!("127.0.0.1:{}", n.port);
    let shards = ["0-5460", "5461-10921", "10922-16383"];
    // Writes wait out the failover on the old primary and are redirected; reads are too,
    // unless their lane follows the writes' redirection first, as a cluster client does.
    let mut outages = outages_without_times(&report);
    let ops = outages
        .first_mut()
        .and_then(|o| o.as_object_mut()?.remove("ops"));
    assert!(
        ops == Some(json!(["write"])) || ops == Some(json!(["write", "read"])),
        "{ops:?}"
    );
    assert_eq!(
        outages,
        vec![
            json!({"endpoint": url, "name": null, "shard": shards[1], "kind": "error",
                    "step": "(between steps)", "cause": "moved", "clients": true})
        ],
        "{:#}",
        report["outages"]
    );
    let outage = &report["outages"][0];
    assert!(outage["end"].is_string(), "the shard came back: {outage}");
    assert!(
        outage["duration_ms"].as_f64().unwrap() < 1000.0,
        "a failover is short: {outage}"
    );
    let errors = outage["failed_requests"].as_u64().unwrap();
    let whole = |errors: [u64; 3]| -> Vec<Value> {
        (0..3)
            .map(|i| {
                json!({"endpoint": url, "name": null, "shard": shards[i],
                       "primary": port(&cluster.nodes[i]),
                       "disconnected_s": 0.0, "disconnects": 0, "stalls": 0, "refusals": 0,
                       "errors": u64::from(errors[i] > 0)})
            })
            .collect()
    };
    assert_eq!(
        shard_rows_without_latency(&report["shards"]),
        whole([0, errors, 0])
    );
    let ticks = report["endpoints"][0]["ticks"].as_u64().unwrap();
    for (i, row) in report["shards"].as_array().unwrap().iter().enumerate() {
        let latency = &row["latency"];
        assert_eq!(latency["requests"], 2 * ticks, "shard {i}: {latency}");
        assert_eq!(
            latency["errors"],
            if i == 1 { errors } else { 0 },
            "shard {i}"
        );
    }
    // The only step of a standalone probe: its shards are the same as the run's.
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        shard_rows_without_latency(&steps[0]["shards"]),
        whole([0, errors, 0])
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("primary");
                r
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(steps[0]["latency"]["requests"], 6 * ticks);
    // The shard that failed over is probed on its new primary after the outage.
    let last = |op: &str| {
        report["connections"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|c| c["shard"] == shards[1] && c["op"] == op)
            .map(|c| (c["address"].clone(), c["role"].clone()))
    };
    for op in ["write", "read"] {
        assert_eq!(
            last(op),
            Some((json!(port(&replica)), json!("master"))),
            "{op}"
        );
    }
    assert_eq!(report["outcome"]["lost_writes"], 0);
    assert_eq!(report["format_version"], 3);
}

/// Starts migrating the slot of the probe's key on `from` to `to` and moves the key there,
/// as `redis-cli --cluster reshard` does, leaving the slot half way (`MIGRATING` and
/// `IMPORTING`): `from` answers `ASK` for the key from then on. Returns the slot.
fn migrate_probe_key(from: &Server, to: &Server) -> String {
    let keys = from.cli(&["KEYS", "runbook:probe:*"]);
    let key = keys.lines().collect::<Vec<_>>();
    assert_eq!(key.len(), 1, "one probe key per shard: {keys}");
    let slot = from.cli(&["CLUSTER", "KEYSLOT", key[0]]);
    let from_id = from.cli(&["CLUSTER", "MYID"]);
    let to_id = to.cli(&["CLUSTER", "MYID"]);
    assert_eq!(
        to.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
        "OK"
    );
    assert_eq!(
        from.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
        "OK"
    );
    let port = to.port.to_string();
    let migrated = from.cli(&["MIGRATE", "127.0.0.1", &port, key[0], "0", "5000"]);
    assert_eq!(migrated, "OK");
    slot
}

#[test]
fn a_slot_migration_is_followed_through_ask_and_fails_no_request() {
    let cluster = Cluster::start(Engine::Redis, 2);
    let url = cluster.nodes[0].url();
    let (from, to) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (report, slot) = probe_through(&url, "10ms", "3s", || migrate_probe_key(from, to));
    // Every request the source answered with ASK was answered at the importing node.
    assert_eq!(report["outages"], json!([]), "{:#}", report["outages"]);
    // Every tick of both shards counted, none failed.
    let ticks = report["endpoints"][0]["ticks"].as_u64().expect("ticks");
    assert!(ticks >= 298, "{ticks} ticks in 3 s at 10 ms");
    for op in ["write", "read"] {
        let latency = &report["latency"][op];
        assert_eq!(
            (&latency["requests"], &latency["errors"]),
            (&json!(2 * ticks), &json!(0)),
            "{op}"
        );
    }
    for row in report["shards"].as_array().expect("per-shard rows") {
        let latency = &row["latency"];
        assert_eq!(
            (&latency["requests"], &latency["errors"]),
            (&json!(2 * ticks), &json!(0)),
            "{row}"
        );
    }
    let port = |n: &Server| format!("127.0.0.1:{}", n.port);
    let rows: Vec<Value> = [("0-8191", from), ("8192-16383", to)]
        .into_iter()
        .map(|(shard, primary)| {
            json!({"endpoint": url, "name": null, "shard": shard, "primary": port(primary),
                   "disconnected_s": 0.0, "disconnects": 0, "stalls": 0, "refusals": 0,
                   "errors": 0})
        })
        .collect();
    assert_eq!(shard_rows_without_latency(&report["shards"]), rows);
    assert_eq!(report["outcome"]["lost_writes"], 0);
    // The writes went on at the importing node: the key lives there, not back on the source.
    let in_slot = |n: &Server| n.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]);
    assert_eq!((in_slot(from), in_slot(to)), ("0".into(), "1".into()));
}

#[test]
fn a_one_node_cluster_is_probed_as_one_shard() {
    let cluster = Cluster::start(Engine::Valkey, 1);
    let (report, ()) = probe_through(&cluster.nodes[0].url(), "10ms", "2s", || ());
    assert_eq!(report["outages"], json!([]));
    assert!(report.get("shards").is_none(), "{report:#}");
    every_tick_counted(&report, 2000.0, INTERVAL_MS);
    // The probe's keys live in the cluster's one shard.
    assert_eq!(cluster.dbsizes(), [1]);
}

/// Promotes `replica` in place of `primary` as the local platform does without cluster
/// mode: `REPLICAOF NO ONE` on the replica, then the old primary replicates from it.
fn swap(primary: &Server, replica: &Server) {
    assert_eq!(replica.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
    let port = replica.port.to_string();
    assert_eq!(primary.cli(&["REPLICAOF", "127.0.0.1", &port]), "OK");
}

#[test]
fn a_promotion_stops_the_old_primary_counting_and_an_announced_primary_takes_over() {
    let primary = Server::start(Engine::Redis);
    let port = primary.port.to_string();
    let replica = Server::start_with(Engine::Redis, &["--replicaof", "127.0.0.1", &port]);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_step_tx, step_rx) = tokio::sync::watch::channel(Some("failover".to_string()));
    let probe = rt.block_on(async {
        RunProbe::start(
            dir.path(),
            ProbeConfig::default(),
            Resolver::default(),
            step_rx,
        )
    });
    let name = Some("primary".to_string());
    probe.watch_named(Endpoint::local(primary.port), name.clone());
    std::thread::sleep(Duration::from_millis(800));
    swap(&primary, &replica);
    std::thread::sleep(Duration::from_millis(700));
    // The platform names the new primary: the probe moves there.
    probe.watch_named(Endpoint::local(replica.port), name);
    std::thread::sleep(Duration::from_millis(800));
    rt.block_on(probe.stop());

    let report = runbook::report::build(dir.path()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let outages = outages_without_times(&json);
    assert_eq!(
        outages,
        vec![
            json!({"endpoint": primary.url(), "name": "primary", "kind": "refusal",
                    "ops": ["write"], "step": "failover", "cause": "readonly",
                    "clients": false})
        ],
        "{:#}",
        json["outages"]
    );
    // The refusals of the old primary are not the clients': they follow the primary, which
    // was not probed from the demotion to the announcement.
    let o = &report.outcome;
    assert_eq!(
        (o.refusals, o.disconnects, o.stalls, o.errors),
        (0, 0, 0, 0)
    );
    assert_eq!(o.unwritable_s, Some(0.0));
    assert_eq!(json["outcome"]["probed"], "partly");
    let note = o.probe_note.clone().unwrap_or_default();
    let demoted = format!(
        "the probed primary became a replica (`{}` from ",
        primary.url()
    );
    assert!(note.contains(&demoted), "{note}");
    let gap = (o.run_s - o.probed_s) * 1000.0;
    assert!(
        (600.0..900.0).contains(&gap),
        "the new primary was unprobed for the 700 ms before it was named: {gap} ms"
    );
    let ends: Vec<(String, bool)> = report
        .endpoints
        .iter()
        .map(|e| (e.endpoint.clone(), e.until.is_some()))
        .collect();
    assert_eq!(ends, [(primary.url(), true), (replica.url(), true)]);
    assert!(
        report.endpoints[0].until
            < Some(report.endpoints[1].from + chrono::Duration::milliseconds(100))
    );
    assert_eq!(
        json["latency"]["write"]["errors"],
        json["outages"][0]["failed_requests"]
    );
}

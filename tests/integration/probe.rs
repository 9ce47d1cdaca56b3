//! The probe against real servers: a known outage is measured within ± 2 intervals, no
//! fault means no disconnect, errors are classified, samples carry the running step.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook::endpoint::{Endpoint, Resolver};
use runbook::probe::{ProbeConfig, RunProbe};
use serde_json::Value;

use crate::support::{Engine, Server, Workspace, runbook_bin};

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

#[test]
fn a_known_outage_is_measured_within_two_intervals() {
    let mut server = Server::start(Engine::Redis);
    let ws = Workspace::new();
    let out = ws.path().join("probe-out");
    let child = Command::new(runbook_bin())
        .current_dir(ws.path())
        .args([
            "probe",
            "--endpoint",
            &server.url(),
            "--duration",
            "4s",
            "--interval",
            "10ms",
        ])
        .args(["--format", "json", "--out", &out.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runbook probe");
    wait_for_probe(&out);
    std::thread::sleep(Duration::from_millis(800));

    let killed = Instant::now();
    server.stop();
    std::thread::sleep(Duration::from_millis(1000));
    // The real end of the outage: the first moment the port answers again, seen at 1 ms.
    let port = server.port;
    let watcher = std::thread::spawn(move || {
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    server.restart();
    let up = watcher.join().expect("port watcher");
    let real_ms = (up - killed).as_secs_f64() * 1000.0;

    let output = child.wait_with_output().expect("probe output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&stdout);
    let disconnects = report["disconnects"].as_array().expect("disconnects");
    assert_eq!(
        disconnects.len(),
        1,
        "one outage, one disconnect: {disconnects:#?}"
    );
    let d = &disconnects[0];
    let measured = d["duration_ms"].as_f64().expect("duration_ms");
    eprintln!("outage: measured {measured:.1} ms, real {real_ms:.1} ms");
    assert!(
        (measured - real_ms).abs() <= 2.0 * INTERVAL_MS,
        "measured {measured:.1} ms, real {real_ms:.1} ms"
    );
    assert!(d["start"].is_string() && d["end"].is_string(), "{d}");
    assert!(
        matches!(d["cause"].as_str(), Some("reset" | "refused")),
        "{d}"
    );
    // The server kept no data across the restart: the acknowledged sequence is gone.
    assert!(
        report["outcome"]["lost_writes"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["lost_writes"]
    );
    for op in ["write", "read"] {
        let s = &report["latency"][op];
        assert!(s["requests"].as_u64().unwrap_or(0) > 200, "{op}: {s}");
        assert!(s["p50_ms"].as_f64().unwrap_or(0.0) > 0.0, "{op}: {s}");
        assert!(s["p99_ms"].as_f64() >= s["p50_ms"].as_f64(), "{op}: {s}");
    }
    assert!(out.join("report.md").is_file() && out.join("report-timeline.png").is_file());
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
        report["disconnects"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["disconnects"]
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
        report["disconnects"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["disconnects"]
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
        report["disconnects"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["disconnects"]
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
    assert_eq!(report["disconnects"][0]["cause"], "auth");
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
    // Reads keep working on a replica.
    assert!(
        report["latency"]["read"]["requests"].as_u64()
            > report["latency"]["read"]["errors"].as_u64()
    );
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
    assert_eq!(report.disconnects.len(), 1, "{:#?}", report.disconnects);
    assert_eq!(report.disconnects[0].step, "restart");
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
        report["disconnects"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["disconnects"]
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

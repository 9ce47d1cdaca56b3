//! `runbook bench` and the `bench.run` action against real Redis and Valkey servers.

use std::sync::Arc;

use serde_json::Value;

use crate::support::{Cluster, Engine, Server, Workspace};

fn results(stdout: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    doc["results"].as_array().expect("a results array").clone()
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

#[test]
fn compares_redis_and_valkey_side_by_side() {
    let redis = Server::start(Engine::Redis);
    let valkey = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    let ran = ws
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--endpoint",
            &valkey.url(),
            "--label",
            "redis",
            "--label",
            "valkey",
            "--workload",
            "kv,lrange,zadd",
            "--workload",
            "mix",
            "--ratio",
            "1:3",
            "--requests",
            "2000",
            "--connections",
            "4",
            "--pipeline",
            "8",
            "--keyspace",
            "100",
            "--elements",
            "10",
            "--value-size",
            "32",
            "--format",
            "json",
        ])
        .expect(0);
    let rows = results(&ran.stdout);
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
            (s("workload"), s("op"), s("label"))
        })
        .collect();
    let mut expected = Vec::new();
    for (workload, ops) in [
        ("set", vec!["set"]),
        ("get", vec!["get"]),
        ("lrange", vec!["lrange"]),
        ("zadd", vec!["zadd"]),
        ("mix-1:3", vec!["set", "get"]),
    ] {
        for label in ["redis", "valkey"] {
            for op in &ops {
                expected.push((workload.to_string(), op.to_string(), label.to_string()));
            }
        }
    }
    assert_eq!(
        got, expected,
        "one result per workload, endpoint and operation, endpoints in turn"
    );
    for r in &rows {
        assert_eq!(num(r, "errors"), 0.0, "{r}");
        assert!(num(r, "ops_per_sec") > 0.0, "{r}");
        let (p50, p95, p99, max) = (
            num(r, "p50_ms"),
            num(r, "p95_ms"),
            num(r, "p99_ms"),
            num(r, "max_ms"),
        );
        assert!(0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max, "{r}");
        assert!(
            r["endpoint"]
                .as_str()
                .unwrap()
                .starts_with("redis://127.0.0.1:"),
            "{r}"
        );
    }
    let single = rows.iter().filter(|r| r["workload"] != "mix-1:3");
    assert!(
        single.clone().all(|r| num(r, "requests") == 2000.0),
        "exactly --requests per single-op phase"
    );
    for label in ["redis", "valkey"] {
        let mix: f64 = rows
            .iter()
            .filter(|r| r["workload"] == "mix-1:3" && r["label"] == label)
            .map(|r| num(r, "requests"))
            .sum();
        assert_eq!(mix, 2000.0, "the mix splits --requests between SET and GET");
        let sets = rows
            .iter()
            .find(|r| r["workload"] == "mix-1:3" && r["label"] == label && r["op"] == "set")
            .unwrap();
        assert!(
            (300.0..700.0).contains(&num(sets, "requests")),
            "about a quarter SETs at 1:3: {sets}"
        );
    }
    for server in [&redis, &valkey] {
        assert_eq!(
            server.cli(&["LLEN", "bench:list:000000000042"]),
            "10",
            "lrange reads prepared lists"
        );
        assert_eq!(
            server.cli(&["STRLEN", "bench:000000000042"]),
            "32",
            "get reads prepared values"
        );
        let zcard: u64 = server
            .cli(&["ZCARD", "bench:zset:000000000042"])
            .parse()
            .unwrap_or(0);
        assert!(
            (1..=10).contains(&zcard),
            "zadd cycles through --elements members: {zcard}"
        );
    }
}

#[test]
fn text_output_puts_endpoints_side_by_side() {
    let redis = Server::start(Engine::Redis);
    let valkey = Server::start(Engine::Valkey);
    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--endpoint",
            &valkey.url(),
            "--workload",
            "get",
            "--requests",
            "500",
            "--connections",
            "2",
        ])
        .expect(0);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", ran.stdout);
    assert!(
        lines[0].contains("ops/s") && lines[0].contains("p99 ms") && lines[0].contains("vs first")
    );
    assert!(
        lines[1].contains(&redis.url()) && lines[1].ends_with("1.00x"),
        "{}",
        ran.stdout
    );
    assert!(lines[2].contains(&valkey.url()), "{}", ran.stdout);
}

#[test]
fn error_replies_are_counted_and_fail_the_command() {
    let redis = Server::start(Engine::Redis);
    redis.cli(&["SET", "bench:list:000000000000", "not a list"]);
    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--workload",
            "lpush",
            "--keyspace",
            "1",
            "--requests",
            "50",
            "--pipeline",
            "5",
            "--connections",
            "2",
            "--format",
            "json",
        ])
        .expect(1);
    let rows = results(&ran.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(num(&rows[0], "errors"), 50.0);
    assert_eq!(num(&rows[0], "requests"), 0.0);
    assert!(
        rows[0]["first_error"]
            .as_str()
            .unwrap()
            .starts_with("WRONGTYPE"),
        "{}",
        rows[0]
    );
}

#[test]
fn duration_bounds_a_phase() {
    let valkey = Server::start(Engine::Valkey);
    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &valkey.url(),
            "--workload",
            "hset",
            "--duration",
            "300ms",
            "--connections",
            "2",
            "--format",
            "json",
        ])
        .expect(0);
    let rows = results(&ran.stdout);
    assert!(num(&rows[0], "requests") > 0.0, "{}", rows[0]);
    let fields: u64 = valkey
        .cli(&["HLEN", "bench:hash:000000000001"])
        .parse()
        .unwrap_or(0);
    let keys: u64 = valkey.cli(&["DBSIZE"]).parse().unwrap();
    assert!(
        keys > 0 && fields <= 100,
        "hset cycles through --elements fields: {fields}"
    );
}

#[test]
fn passwords_are_used_but_never_shown() {
    let redis = Server::start_with(Engine::Redis, &["--requirepass", "s3cret-pw"]);
    let ws = Workspace::new();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port);
    let ran = ws
        .cmd(&[
            "bench",
            "--endpoint",
            &url,
            "--requests",
            "200",
            "--connections",
            "2",
            "--format",
            "json",
        ])
        .expect(0);
    assert!(!ran.stdout.contains("s3cret") && !ran.stderr.contains("s3cret"));
    assert_eq!(
        results(&ran.stdout)[0]["endpoint"],
        format!("redis://:***@127.0.0.1:{}", redis.port)
    );

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}", redis.port);
    let ran = ws
        .cmd(&["bench", "--endpoint", &wrong, "--requests", "10"])
        .expect(1);
    assert!(ran.stderr.contains("refused the login"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("wrong-pw"), "{}", ran.stderr);
}

#[test]
fn tls_endpoints_are_benchmarked_through_a_resolve_override() {
    let server = Server::start_tls(Engine::Redis, &["--requirepass", "tls-pw"]);
    let tls_port = server.tls_port.expect("a TLS port");
    let ws = Workspace::new();
    let url = format!("rediss://:tls-pw@cache.example:{tls_port}");
    let resolve = format!("cache.example:{tls_port}=127.0.0.1:{tls_port}");
    let ran = ws
        .cmd(&[
            "bench",
            "--endpoint",
            &url,
            "--resolve",
            &resolve,
            "--workload",
            "kv,hgetall",
            "--requests",
            "500",
            "--connections",
            "3",
            "--pipeline",
            "4",
            "--keyspace",
            "50",
            "--elements",
            "5",
            "--format",
            "json",
        ])
        .expect(0);
    let shown = format!("rediss://:***@cache.example:{tls_port}");
    let got: Vec<(String, String, String, f64, f64)> = results(&ran.stdout)
        .iter()
        .map(|r| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
            (
                s("workload"),
                s("op"),
                s("endpoint"),
                num(r, "requests"),
                num(r, "errors"),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, f64, f64)> = ["set", "get", "hgetall"]
        .into_iter()
        .map(|op| (op.into(), op.into(), shown.clone(), 500.0, 0.0))
        .collect();
    assert_eq!(got, expected);
    assert!(!ran.stdout.contains("tls-pw") && !ran.stderr.contains("tls-pw"));
    // What went over TLS arrived: the prepared hashes are there, seen on the plain port.
    let auth = ["-a", "tls-pw", "--no-auth-warning"];
    assert_eq!(
        server.cli(&[&auth[..], &["HLEN", "bench:hash:000000000007"]].concat()),
        "5"
    );

    // Without the override the self-signed certificate is refused, and said so once.
    let direct = format!("rediss://127.0.0.1:{tls_port}");
    let ran = ws
        .cmd(&["bench", "--endpoint", &direct, "--requests", "10"])
        .expect(1);
    assert_eq!(ran.stdout, "");
    assert_eq!(
        ran.stderr,
        format!(
            "error: cannot connect to {direct}: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))\n"
        )
    );
}

#[test]
fn bad_settings_exit_2_with_what_to_do() {
    let ws = Workspace::new();
    let cases: [(&[&str], &str); 5] = [
        (&["--workload", "gets"], "`gets` is not a workload"),
        (&["--pipeline", "0"], "--pipeline 0 is out of range"),
        (
            &["--label", "a", "--label", "b"],
            "2 labels for 1 endpoints",
        ),
        (
            &["--workload", "mix", "--ratio", "ten"],
            "not a SET:GET ratio",
        ),
        (&["--duration", "0s"], "--duration must be longer than 0"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["bench", "--endpoint", "127.0.0.1:1"];
        args.extend_from_slice(extra);
        let ran = ws.cmd(&args).expect(2);
        assert!(ran.stderr.contains(message), "{args:?}: {}", ran.stderr);
    }
    let ran = ws
        .cmd(&["bench", "--endpoint", "127.0.0.1:1", "--requests", "5"])
        .expect(1);
    assert!(
        ran.stderr.contains("cannot connect to redis://127.0.0.1:1"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn bench_run_action_outputs_results_for_the_report() {
    use runbook::actions::{Effect, StepCtx, lookup};

    let redis = Server::start(Engine::Redis);
    let valkey = Server::start(Engine::Valkey);
    let spec = lookup("bench.run").expect("bench.run is registered");
    assert!(spec.outputs.accepts("results"));
    let action = (spec.build)(serde_json::json!({
        "endpoints": [redis.url(), format!("127.0.0.1:{}", valkey.port)],
        "labels": ["redis", "valkey"],
        "workloads": ["set", "smembers"],
        "requests": "300",
        "connections": 3,
        "pipeline": 4,
        "keyspace": 20,
        "elements": 5
    }))
    .expect("valid inputs");
    assert_eq!(action.effect(), Effect::Changes);
    assert!(
        (spec.build)(serde_json::json!({ "endpoints": [], "colour": "red" })).is_err(),
        "unknown inputs are rejected"
    );

    let ws = Workspace::new();
    let journal = Arc::new(
        runbook::journal::Journal::open(&ws.path().join("journal.jsonl"), Default::default())
            .expect("journal"),
    );
    let ctx = StepCtx {
        run_id: "r1",
        run_dir: ws.path(),
        base_dir: ws.path(),
        step_id: "bench",
        platform: &runbook::platform::local::Local::new(),
        resolver: &Default::default(),
        journal: &journal,
        progress: &runbook::progress::Progress::hidden(),
        assume_yes: false,
    };
    let outputs = action.run(&ctx).await.expect("the benchmark runs");
    let rows = outputs["results"].as_array().expect("results");
    assert_eq!(rows.len(), 4);
    for (row, (op, label)) in rows.iter().zip([
        ("set", "redis"),
        ("set", "valkey"),
        ("smembers", "redis"),
        ("smembers", "valkey"),
    ]) {
        assert_eq!(
            (row["op"].as_str(), row["label"].as_str()),
            (Some(op), Some(label))
        );
        for field in [
            "endpoint",
            "ops_per_sec",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "errors",
        ] {
            assert!(!row[field].is_null(), "{field} in {row}");
        }
        assert_eq!(row["requests"], 300);
    }
    assert!(outputs["table"].as_str().unwrap().contains("smembers"));
    assert_eq!(valkey.cli(&["SCARD", "bench:set:000000000019"]), "5");

    let bad = (spec.build)(
        serde_json::json!({ "endpoints": [redis.url()], "requests": 5, "duration": "1s" }),
    )
    .unwrap();
    let err = bad.run(&ctx).await.unwrap_err();
    assert!(
        !err.transient && err.message.contains("not both"),
        "{}",
        err.message
    );
}

#[test]
fn benchmark_template_passes_cfn_lint_and_outputs_both_endpoints() {
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudformation/benchmark.yaml");
    let out = std::process::Command::new("cfn-lint")
        .arg(&template)
        .output()
        .expect("cfn-lint (run scripts/setup)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&template).unwrap();
    for needle in [
        "Engine: redis",
        "Engine: valkey",
        "  RedisEndpoint:",
        "  ValkeyEndpoint:",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    assert_eq!(
        text.matches("Type: AWS::ElastiCache::ReplicationGroup")
            .count(),
        2
    );
}

const BENCH_RUNBOOK: &str = r#"version: 1
name: bench-pair
params:
  redis: {}
  valkey: {}
  password: { secret: true }
steps:
  - id: bench
    action: bench.run
    with:
      endpoints: ["redis://:{{ params.password }}@{{ params.redis }}", "{{ params.valkey }}"]
      labels: [redis, valkey]
      workloads: [get, zrange]
      requests: 400
      connections: 2
      pipeline: 4
      keyspace: 10
      elements: 5
  - id: check
    action: assert
    with:
      that: "{{ steps.bench.outputs.results | length == 4 and steps.bench.outputs.results[3].label == 'valkey' and steps.bench.outputs.results[3].requests == 400 }}"
      message: bench.run did not give one result per operation and endpoint
"#;

#[test]
fn bench_run_runs_as_a_runbook_step_without_leaking_the_password() {
    let redis = Server::start_with(Engine::Redis, &["--requirepass", "pa55-w0rd"]);
    let valkey = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    ws.write("bench.yaml", BENCH_RUNBOOK);
    let redis_at = format!("127.0.0.1:{}", redis.port);
    let valkey_at = format!("127.0.0.1:{}", valkey.port);
    let ran = ws
        .cmd(&[
            "run",
            "bench.yaml",
            "--var",
            &format!("redis={redis_at}"),
            "--var",
            &format!("valkey={valkey_at}"),
            "--var",
            "password=pa55-w0rd",
        ])
        .expect(0);
    assert!(!ran.stderr.contains("pa55-w0rd") && !ran.stdout.contains("pa55-w0rd"));
    assert_eq!(valkey.cli(&["ZCARD", "bench:zset:000000000009"]), "5");
    let mut pending = vec![ws.state_dir()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !text.contains("pa55-w0rd"),
                "{} holds the password",
                path.display()
            );
        }
    }
}

#[test]
fn benchmark_runbook_deploys_both_engines_compares_them_and_tears_down() {
    let ws = Workspace::new();
    let runbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/benchmark.yaml");
    let state = ws.state_dir().display().to_string();
    let ran = ws
        .cmd(&[
            "run",
            &runbook.display().to_string(),
            "--yes",
            "--state-dir",
            &state,
            "--var",
            "requests=500",
            "--var",
            "connections=2",
            "--var",
            "keyspace=50",
            "--var",
            "structure_keyspace=20",
            "--var",
            "rate=500",
            "--var",
            "burst=500:300ms:1s",
            "--var",
            "sustained_duration=2s",
            "--var",
            "persistence=aof-everysec",
        ])
        .run();
    let run_id = ran
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let journal = std::fs::read_to_string(
        ws.state_dir()
            .join("runs")
            .join(&run_id)
            .join("journal.jsonl"),
    )
    .unwrap_or_default();
    // Whatever happened, leave no server behind.
    ws.cmd(&["destroy", &run_id, "--state-dir", &state]).run();
    assert_eq!(
        ran.status, 0,
        "--- stdout\n{}\n--- stderr\n{}",
        ran.stdout, ran.stderr
    );

    let outputs = |step: &str| -> Value {
        journal
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["step"] == step && e["outputs"].is_object())
            .map(|e| e["outputs"].clone())
            .next_back()
            .unwrap_or_else(|| panic!("no outputs of {step} in\n{journal}"))
    };
    let kv = outputs("key_value")["results"].as_array().unwrap().clone();
    let ds = outputs("data_structures")["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(kv.len(), 8, "set, get and the mix's two ops on two engines");
    assert_eq!(ds.len(), 16, "eight data-structure ops on two engines");
    let sustained = outputs("sustained")["results"].as_array().unwrap().clone();
    for r in kv.iter().chain(&ds).chain(&sustained) {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(num(r, "ops_per_sec") > 0.0, "{r}");
        // The runbook's `persistence`, set on the local servers as the benchmark ran.
        assert_eq!(
            (&r["persistence"], &r["persistence_config"]),
            (
                &Value::from("aof-everysec"),
                &serde_json::json!({"appendonly": "yes", "appendfsync": "everysec", "save": ""})
            ),
            "{r}"
        );
    }
    let labels: Vec<&str> = kv
        .iter()
        .take(2)
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["redis", "valkey"]);
    assert_eq!(names(&sustained), [set("redis"), set("valkey")]);
    for r in &sustained {
        // 500/s for 2 s and 500/s more in [1 s, 1.3 s).
        assert_eq!(r["scheduled"], 1150, "{r}");
        assert_eq!(r["burst"]["inside"]["scheduled"], 300, "{r}");
    }

    // The run's report sets the engines side by side in charts: each step's bars, and the
    // open-loop phase over time.
    let run_dir = ws.state_dir().join("runs").join(&run_id);
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    let charts: Vec<&str> = md.lines().filter(|l| l.starts_with("![")).collect();
    assert_eq!(
        charts,
        [
            "![key_value: throughput, p50 and p99 per workload, engines side by side](report-bench-1.png)",
            "![data_structures: throughput, p50 and p99 per workload, engines side by side](report-bench-2.png)",
            "![sustained: throughput, p50 and p99 per workload, engines side by side](report-bench-3.png)",
            "![sustained: set (aof-everysec), ops/s and p99 over time, one line per engine](report-bench-4.png)",
        ]
    );
    for i in 1..=4 {
        let png = std::fs::read(run_dir.join(format!("report-bench-{i}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "chart {i} is a PNG");
    }
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<figure class=\"chart\"><svg").count(),
        4,
        "the same charts inline in the HTML report"
    );
    assert!(
        ran.stderr.contains("teardown"),
        "the stack is deleted in finally: {}",
        ran.stderr
    );
}

/// On aws the parameter group decides persistence: the runbook refuses the param before it
/// deploys anything.
#[test]
fn benchmark_runbook_refuses_persistence_on_aws_before_deploying() {
    let moto = crate::aws_support::Moto::start();
    let ws = Workspace::new();
    let runbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/benchmark.yaml");
    let state = ws.state_dir().display().to_string();
    let mut cmd = ws.cmd(&[
        "run",
        &runbook.display().to_string(),
        "--state-dir",
        &state,
        "--platform",
        "aws",
        "--endpoint-url",
        &moto.url(),
        "--var",
        "persistence=aof-always",
        "--yes",
    ]);
    for (k, v) in crate::aws_support::MOTO_ENV {
        cmd = cmd.env(k, v);
    }
    let ran = cmd.expect(1);
    let refusal = "persistence `aof-always` is set with CONFIG SET, which ElastiCache refuses: on aws the parameter group decides (no append-only file on current engines; RDB is a snapshot). Run without `persistence`, or deploy the groups with the parameter groups to compare (docs/bench.md, The cost of persistence)";
    let run_id = ran.stdout.lines().next().unwrap_or_default().trim();
    let last = ran.stderr.lines().rev().nth(1).unwrap_or_default();
    assert_eq!(
        last,
        format!("run {run_id} failed at step `persistence_on_aws`: {refusal}"),
        "{}",
        ran.stderr
    );
    let journal = std::fs::read_to_string(
        ws.state_dir()
            .join("runs")
            .join(run_id)
            .join("journal.jsonl"),
    )
    .unwrap();
    let started: Vec<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["step"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        started,
        ["persistence_on_aws", "teardown"],
        "nothing deployed"
    );
}

#[test]
fn a_cluster_is_benchmarked_on_every_shard_without_redirections() {
    for engine in [Engine::Redis, Engine::Valkey] {
        let cluster = Cluster::start(engine, 3);
        let ws = Workspace::new();
        // Any node will do: the others are found from its slot map.
        let ran = ws
            .cmd(&[
                "bench",
                "--endpoint",
                &cluster.nodes[1].url(),
                "--workload",
                "kv,hgetall",
                "--requests",
                "3000",
                "--connections",
                "6",
                "--pipeline",
                "4",
                "--keyspace",
                "50",
                "--elements",
                "5",
                "--format",
                "json",
            ])
            .expect(0);
        let rows = results(&ran.stdout);
        let got: Vec<(String, u64, u64, Value)> = rows
            .iter()
            .map(|r| {
                (
                    r["op"].as_str().unwrap_or_default().to_string(),
                    r["requests"].as_u64().unwrap_or_default(),
                    r["errors"].as_u64().unwrap_or_default(),
                    r["first_error"].clone(),
                )
            })
            .collect();
        let clean = |op: &str| (op.to_string(), 3000, 0, Value::Null);
        assert_eq!(
            got,
            vec![clean("set"), clean("get"), clean("hgetall")],
            "{engine:?}"
        );
        // Each shard holds its own 50 strings and 50 hashes: every shard was loaded.
        assert_eq!(cluster.dbsizes(), vec![100, 100, 100], "{engine:?}");
    }
}

/// The `(workload, op, label)` of a SET result on `label`.
fn set(label: &str) -> (String, String, String) {
    ("set".to_string(), "set".to_string(), label.to_string())
}

/// `(workload, op, label)` of each result, in order.
fn names(rows: &[Value]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
            (s("workload"), s("op"), s("label"))
        })
        .collect()
}

#[test]
fn an_open_loop_holds_its_rate_and_shows_bursts_beside_the_sustained_load() {
    let redis = Server::start(Engine::Redis);
    let valkey = Server::start(Engine::Valkey);
    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--endpoint",
            &valkey.url(),
            "--label",
            "redis",
            "--label",
            "valkey",
            "--workload",
            "set",
            "--rate",
            "2000",
            "--burst",
            "4000:500ms:1s",
            "--duration",
            "3s",
            "--connections",
            "4",
            "--keyspace",
            "100",
            "--format",
            "json",
        ])
        .expect(0);
    let rows = results(&ran.stdout);
    assert_eq!(names(&rows), vec![set("redis"), set("valkey")]);
    // 2000/s for 3 s, and 4000/s more in [1 s, 1.5 s) and [2 s, 2.5 s).
    let burst_buckets = [10, 11, 12, 13, 14, 20, 21, 22, 23, 24];
    let expected_targets: Vec<f64> = (0..30)
        .map(|i| {
            if burst_buckets.contains(&i) {
                6000.0
            } else {
                2000.0
            }
        })
        .collect();
    for r in &rows {
        assert_eq!(r["scheduled"], 10_000, "{r}");
        assert_eq!(num(r, "target_ops_per_sec").round(), 3333.0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        let achieved = num(r, "ops_per_sec") / num(r, "target_ops_per_sec");
        assert!(
            (0.9..=1.1).contains(&achieved),
            "rate held within 10 %: {r}"
        );
        let (p50, p99, p999, max) = (
            num(r, "p50_ms"),
            num(r, "p99_ms"),
            num(r, "p999_ms"),
            num(r, "max_ms"),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max, "{r}");

        let b = &r["burst"];
        let window = |w: &Value| {
            (
                num(w, "seconds"),
                w["scheduled"].clone(),
                w["errors"].clone(),
            )
        };
        assert_eq!(
            window(&b["inside"]),
            (1.0, Value::from(6000), Value::from(0))
        );
        assert_eq!(
            window(&b["outside"]),
            (2.0, Value::from(4000), Value::from(0))
        );
        assert_eq!(num(&b["inside"], "target_ops_per_sec"), 6000.0);
        assert_eq!(num(&b["outside"], "target_ops_per_sec"), 2000.0);

        let timeline = &r["timeline"];
        assert_eq!(timeline["bucket_ms"], 100);
        let points = timeline["points"].as_array().unwrap();
        let targets: Vec<f64> = points
            .iter()
            .map(|p| num(p, "target_ops_per_sec").round())
            .collect();
        assert_eq!(
            targets, expected_targets,
            "the schedule, stretch by stretch"
        );
        let answered: f64 = points.iter().map(|p| num(p, "ops_per_sec") * 0.1).sum();
        assert_eq!(answered.round(), num(r, "requests"), "the timeline adds up");
    }
    assert_eq!(
        ran.stdout.matches("\"inside\"").count(),
        2,
        "one burst figure per engine"
    );
}

#[test]
fn a_burst_needs_a_rate_and_a_well_formed_spec() {
    let ws = Workspace::new();
    let run = |extra: &[&str]| {
        let mut args = vec!["bench", "--endpoint", "127.0.0.1:1"];
        args.extend_from_slice(extra);
        ws.cmd(&args).expect(2)
    };
    let ran = run(&["--rate", "100", "--burst", "100:2s"]);
    assert_eq!(ran.stdout, "");
    assert!(
        ran.stderr.contains(
            "`100:2s` is not a burst: it needs three parts (write RATE:DURATION:EVERY, e.g. 50000:2s:10s)"
        ),
        "{}",
        ran.stderr
    );
    let ran = run(&["--burst", "100:1s:2s"]);
    assert!(
        ran.stderr.contains("--rate <OPS>"),
        "a burst without a rate: {}",
        ran.stderr
    );
    let ran = run(&["--rate", "0"]);
    assert!(
        ran.stderr
            .contains("--rate 0 must be above 0 requests per second"),
        "{}",
        ran.stderr
    );
}

#[test]
fn each_persistence_mode_is_applied_in_turn_and_the_servers_own_put_back() {
    // Settings of the servers' own, which the benchmark must leave as it found them.
    let redis = Server::start_with(Engine::Redis, &["--save", "900 1", "--appendfsync", "no"]);
    let valkey = Server::start_with(Engine::Valkey, &["--appendonly", "yes"]);
    let config = |server: &Server| {
        ["appendonly", "appendfsync", "save"]
            .map(|p| server.cli(&["CONFIG", "GET", p]))
            .join(" ")
    };
    let (redis_own, valkey_own) = (config(&redis), config(&valkey));
    assert_eq!(redis_own, "appendonly\nno appendfsync\nno save\n900 1");
    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--endpoint",
            &valkey.url(),
            "--label",
            "redis",
            "--label",
            "valkey",
            "--workload",
            "set",
            "--persistence",
            "off,rdb",
            "--persistence",
            "aof-everysec,aof-always",
            "--rate",
            "500",
            "--duration",
            "1500ms",
            "--connections",
            "2",
            "--keyspace",
            "100",
            "--format",
            "json",
        ])
        .expect(0);
    let rows = results(&ran.stdout);
    let got: Vec<(String, String, Value, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["persistence"].as_str().unwrap_or_default().to_string(),
                r["label"].as_str().unwrap_or_default().to_string(),
                r["persistence_config"].clone(),
                r["errors"] == 0 && r["requests"] == 750,
            )
        })
        .collect();
    let applied = |appendonly: &str, appendfsync: &str| serde_json::json!({ "appendonly": appendonly, "appendfsync": appendfsync, "save": "" });
    let mut expected = Vec::new();
    for (mode, appendonly, appendfsync) in [
        ("off", "no", "everysec"),
        ("rdb", "no", "everysec"),
        ("aof-everysec", "yes", "everysec"),
        ("aof-always", "yes", "always"),
    ] {
        for label in ["redis", "valkey"] {
            expected.push((
                mode.to_string(),
                label.to_string(),
                applied(appendonly, appendfsync),
                true,
            ));
        }
    }
    assert_eq!(got, expected, "each mode, as the servers reported it");
    for r in &rows {
        let saves = r["saves"].as_u64();
        if r["persistence"] == "rdb" {
            assert!(
                saves.is_some_and(|n| n >= 1),
                "snapshots during the load: {r}"
            );
        } else {
            assert_eq!(saves, None, "{r}");
        }
    }
    assert_eq!(config(&redis), redis_own);
    assert_eq!(config(&valkey), valkey_own);
    assert!(
        redis.dir.path().join("dump.rdb").exists(),
        "the rdb mode saved to disk"
    );
}

#[test]
fn an_unknown_persistence_mode_is_refused_before_anything_runs() {
    let ran = Workspace::new()
        .cmd(&["bench", "--endpoint", "127.0.0.1:1", "--persistence", "aof"])
        .expect(2);
    assert_eq!(ran.stdout, "");
    assert_eq!(
        ran.stderr,
        "error: `aof` is not a persistence mode; use off, rdb, aof-everysec or aof-always\n"
    );
}

/// Read latencies off the machine, so they run after the rest, one at a time (`scripts/test`).
mod alone {
    use super::*;

    /// The rows of a benchmark of SETs at 1000/s for 9 s on a Redis and a Valkey it starts,
    /// with `event` (restart, failover) a third of the way in.
    fn sustained(event: &str) -> Vec<Value> {
        let ran = Workspace::new()
            .cmd(&[
                "bench",
                "--local",
                "redis",
                "--local",
                "valkey",
                "--workload",
                "set",
                "--rate",
                "1000",
                "--duration",
                "9s",
                "--connections",
                "2",
                "--keyspace",
                "100",
                "--recovery",
                event,
                "--format",
                "json",
            ])
            .expect(0);
        let rows = results(&ran.stdout);
        assert_eq!(names(&rows), vec![set("redis"), set("valkey")]);
        rows
    }

    #[test]
    fn a_restart_under_a_sustained_rate_reports_the_time_back_to_the_level_before() {
        let rows = sustained("restart");
        for r in &rows {
            let rec = &r["recovery"];
            assert_eq!(rec["event"], "restart", "{r}");
            assert_eq!(
                num(rec, "window_s"),
                1.0,
                "a sixth of the phase, at most 1 s"
            );
            let (event, back) = (num(rec, "event_s"), num(rec, "back_s"));
            assert!(
                3.0 <= event && event < back,
                "a third into the phase: {rec}"
            );
            let recovered = num(rec, "recovered_s");
            assert!(recovered >= event - 0.1, "{rec}");
            assert!((num(rec, "recovery_s") - (recovered - event)).abs() < 1e-9);
            assert_eq!(
                r["errors"], rec["errors_after"],
                "only the restart failed requests: {r}"
            );
            assert!(
                num(rec, "errors_after") > 0.0,
                "the restart was felt: {rec}"
            );

            // The same story in the timeline: the failures between the event and the recovery,
            // none in the window that counts as recovered.
            let points = r["timeline"]["points"].as_array().unwrap();
            let errors_in = |from: f64, to: f64| -> f64 {
                points
                    .iter()
                    .filter(|p| (from - 1e-9..to - 1e-9).contains(&num(p, "t_s")))
                    .map(|p| num(p, "errors"))
                    .sum()
            };
            assert_eq!(errors_in(0.0, 10.0), num(r, "errors"));
            assert_eq!(errors_in(recovered, recovered + 1.0), 0.0, "{r}");
            assert_eq!(
                errors_in(event - 0.1, recovered),
                num(r, "errors"),
                "every failure lies between the event and the recovery: {r}"
            );
            let before = num(rec, "before_ops_per_sec");
            assert!((900.0..=1100.0).contains(&before), "{rec}");
            assert!(
                num(rec, "p99_limit_ms") >= num(rec, "before_p99_ms") + 1.0,
                "held to the worst window before, with its slack: {rec}"
            );

            // The server the benchmark started is gone with it.
            let port = r["endpoint"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u16>()
                .unwrap();
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        }
    }

    #[test]
    fn a_failover_under_a_sustained_rate_is_followed_to_the_new_primary() {
        let rows = sustained("failover");
        for r in &rows {
            let rec = &r["recovery"];
            assert_eq!(rec["event"], "failover", "{r}");
            let (event, back) = (num(rec, "event_s"), num(rec, "back_s"));
            assert!(
                3.0 <= event && event < back,
                "FAILOVER a third into the phase, the replica primary after it: {rec}"
            );
            if let Some(recovered) = rec["recovered_s"].as_f64() {
                assert!(recovered >= event - 0.1, "{rec}");
                assert!((num(rec, "recovery_s") - (recovered - event)).abs() < 1e-9);
            }
            assert_eq!(
                r["errors"], rec["errors_after"],
                "only the failover failed requests: {r}"
            );
            assert!(
                num(rec, "errors_after") > 0.0,
                "the failover was felt: {rec}"
            );
            assert!(
                r["first_error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("READONLY")),
                "writes to the demoted primary were refused: {r}"
            );
            assert_eq!(r["scheduled"], 9000, "every request counted: {r}");

            // The clients followed the new primary: nothing failed before the event, and the
            // last two seconds, on the new primary, were all answered.
            let points = r["timeline"]["points"].as_array().unwrap();
            let sum_in = |field: &str, from: f64, to: f64| -> f64 {
                points
                    .iter()
                    .filter(|p| (from - 1e-9..to - 1e-9).contains(&num(p, "t_s")))
                    .map(|p| num(p, field))
                    .sum()
            };
            assert_eq!(sum_in("errors", 0.0, event - 0.1), 0.0, "{r}");
            assert_eq!(sum_in("errors", 7.0, 9.0), 0.0, "{r}");
            let answered = sum_in("ops_per_sec", 7.0, 9.0) * 0.1;
            assert_eq!(answered.round(), 2000.0, "{r}");
        }
    }
}

#[test]
fn a_restart_or_failover_is_refused_on_a_server_the_benchmark_did_not_start() {
    let redis = Server::start(Engine::Redis);
    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--rate",
            "100",
            "--duration",
            "1s",
            "--recovery",
            "restart",
        ])
        .expect(2);
    assert_eq!(ran.stdout, "");
    assert_eq!(
        ran.stderr,
        format!(
            "error: --recovery shuts the server down and starts it again, which the benchmark does only to servers it started itself: {} is not one (benchmark --local redis / --local valkey instead)\n",
            redis.url()
        )
    );
    assert_eq!(redis.cli(&["PING"]), "PONG", "and it was left alone");

    let ran = Workspace::new()
        .cmd(&[
            "bench",
            "--endpoint",
            &redis.url(),
            "--rate",
            "100",
            "--duration",
            "1s",
            "--recovery",
            "failover",
        ])
        .expect(2);
    assert_eq!(
        ran.stderr,
        format!(
            "error: --recovery promotes the server's replica, which the benchmark does only to servers it started itself: {} is not one (benchmark --local redis / --local valkey instead)\n",
            redis.url()
        )
    );
    assert_eq!(redis.cli(&["ROLE"]).lines().next(), Some("master"));
}

#[tokio::test]
async fn bench_run_takes_a_rate_a_burst_and_persistence_modes() {
    use runbook::actions::{StepCtx, lookup};

    let redis = Server::start(Engine::Redis);
    let spec = lookup("bench.run").expect("bench.run is registered");
    let build = |with: Value| (spec.build)(with).expect("valid inputs");
    let action = build(serde_json::json!({
        "endpoints": [redis.url()],
        "labels": ["redis"],
        "workloads": ["set"],
        "rate": "400",
        "burst": "400:200ms:500ms",
        "duration": "1s",
        "persistence": ["off", "aof-always"],
        "connections": 2,
        "keyspace": 10
    }));
    let ws = Workspace::new();
    let journal = Arc::new(
        runbook::journal::Journal::open(&ws.path().join("journal.jsonl"), Default::default())
            .expect("journal"),
    );
    let ctx = StepCtx {
        run_id: "r1",
        run_dir: ws.path(),
        base_dir: ws.path(),
        step_id: "bench",
        platform: &runbook::platform::local::Local::new(),
        resolver: &Default::default(),
        journal: &journal,
        progress: &runbook::progress::Progress::hidden(),
        assume_yes: false,
    };
    let outputs = action.run(&ctx).await.expect("the benchmark runs");
    let rows = outputs["results"].as_array().expect("results");
    // 400/s for 1 s and 400/s more in [500 ms, 700 ms).
    let got: Vec<(Value, Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["persistence"].clone(),
                r["scheduled"].clone(),
                r["burst"]["inside"]["scheduled"].clone(),
                r["persistence_config"]["appendfsync"].clone(),
            )
        })
        .collect();
    let row = |mode: &str, fsync: &str| {
        (
            Value::from(mode),
            Value::from(480),
            Value::from(160),
            Value::from(fsync),
        )
    };
    assert_eq!(
        got,
        vec![row("off", "everysec"), row("aof-always", "always")]
    );
    assert!(outputs["table"].as_str().unwrap().contains("in target/s"));
    assert_eq!(
        redis.cli(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );

    let bad = build(serde_json::json!({ "endpoints": [redis.url()], "burst": "1:1s:2s" }));
    let err = bad.run(&ctx).await.unwrap_err();
    assert_eq!(err.message, "`burst` adds to `rate`: give `rate` too");
}

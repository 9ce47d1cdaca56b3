//! `runbook verify`: parity after a real Redis → Valkey replication, and every mismatch
//! class caught on real servers.

use std::time::{Duration, Instant};

use crate::support::{Engine, Server, Workspace};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn info_field(server: &Server, name: &str) -> Option<String> {
    server.cli(&["INFO", "replication"]).lines().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{name}:"))
            .map(str::to_string)
    })
}

/// Makes `replica` replicate `primary` and waits until it has everything.
fn replicate(primary: &Server, replica: &Server) {
    replica.cli(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = info_field(replica, "master_link_status").as_deref() == Some("up");
        let wanted = info_field(primary, "master_repl_offset");
        if up && wanted.is_some() && wanted == info_field(replica, "slave_repl_offset") {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `count` elements to a big key with one command per 500.
fn big_key(server: &Server, command: &str, key: &str, count: usize) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    for start in (0..count).step_by(500) {
        let mut cmd = redis::cmd(command);
        cmd.arg(key);
        for i in start..(start + 500).min(count) {
            match command {
                "HSET" => cmd.arg(format!("field{i}")).arg(format!("value{i}")),
                "ZADD" => cmd.arg(i as f64 / 3.0).arg(format!("member{i}")),
                _ => cmd.arg(format!("element{i}")),
            };
        }
        cmd.query::<()>(&mut conn).unwrap();
    }
}

fn seed(ws: &Workspace, server: &Server, keys: &str) {
    ws.cmd(&[
        "seed",
        "--endpoint",
        &server.url(),
        "--keys",
        keys,
        "--types",
        "string,hash,list,set,zset,stream",
        "--ttl-share",
        "0.3",
    ])
    .expect(0);
}

fn verify(
    ws: &Workspace,
    source: &Server,
    target: &Server,
    extra: &[&str],
    code: i32,
) -> serde_json::Value {
    let (source_url, target_url) = (source.url(), target.url());
    let mut args = vec![
        "verify",
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    json(&ws.cmd(&args).expect(code).stdout)
}

/// How many times `server` was sent `command` since its statistics were reset.
fn calls(server: &Server, command: &str) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[test]
fn the_target_pass_asks_the_source_only_about_keys_it_did_not_see() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    seed(&ws, &source, "3000");
    replicate(&source, &target);
    target.cli(&["REPLICAOF", "NO", "ONE"]);
    // One SCAN page a side, and no re-check rounds: the calls counted are the passes'.
    let once = ["--batch", "100000", "--rounds", "1"];

    source.cli(&["CONFIG", "RESETSTAT"]);
    let r = verify(&ws, &source, &target, &once, 0);
    assert_eq!(
        (r["parity"].clone(), r["keys_checked"].clone()),
        (true.into(), 3000.into())
    );
    assert_eq!(calls(&source, "exists"), 0, "{r:#}");

    for key in ["only:target:1", "only:target:2", "only:target:3"] {
        target.cli(&["SET", key, "x"]);
    }
    source.cli(&["CONFIG", "RESETSTAT"]);
    let r = verify(&ws, &source, &target, &once, 1);
    assert_eq!(r["mismatches"]["extra_on_target"], 3, "{r:#}");
    // The three unknown keys in one multi-key EXISTS, which falls short, then one by one;
    // none of the 3,000 keys the source pass saw.
    assert_eq!(calls(&source, "exists"), 4, "{r:#}");
}

#[test]
fn parity_after_redis_replicates_to_valkey_and_valkey_is_promoted() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    seed(&ws, &source, "3000");
    big_key(&source, "HSET", "big:hash", 4500);
    big_key(&source, "SADD", "big:set", 4500);
    big_key(&source, "ZADD", "big:zset", 4500);
    big_key(&source, "RPUSH", "big:list", 4500);
    source.cli(&["SET", "runbook:probe:seq", "41"]);
    source.cli(&["SET", "ElastiCacheMasterReplicationTimestamp", "1"]);
    replicate(&source, &target);
    target.cli(&["REPLICAOF", "NO", "ONE"]);

    let r = verify(&ws, &source, &target, &[], 0);
    assert_eq!(r["parity"], true, "{r:#}");
    assert_eq!(r["keys_checked"], 3004);
    assert_eq!(r["skipped"], 2);
    assert_eq!(r["by_type"]["hash"], 501);
    assert_eq!(r["by_type"]["stream"], 500);
    for class in [
        "missing_on_target",
        "extra_on_target",
        "type",
        "value",
        "ttl",
    ] {
        assert_eq!(r["mismatches"][class], 0, "{class} in {r:#}");
    }
    assert_eq!(r["examples"], serde_json::json!([]));
    assert!(r["keys_per_sec"].as_f64().unwrap() > 0.0);

    // One element of a big key differs: the chunked digest notices it.
    target.cli(&["HSET", "big:hash", "field4321", "changed"]);
    target.cli(&["LSET", "big:list", "3999", "changed"]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(r["mismatches"]["value"], 2, "{r:#}");
    let keys: Vec<&str> = r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["big:hash", "big:list"]);
}

#[test]
fn every_mismatch_class_is_caught_and_expiring_keys_are_not_missing() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    // Seeding is deterministic: both sides get the same data.
    seed(&ws, &source, "500");
    seed(&ws, &target, "500");
    target.cli(&["DEL", "seed:string:000000000001"]);
    target.cli(&["SET", "only:on:target", "x"]);
    target.cli(&["DEL", "seed:set:000000000002"]);
    target.cli(&["RPUSH", "seed:set:000000000002", "a"]);
    target.cli(&["HSET", "seed:hash:000000000003", "f0", "changed"]);
    target.cli(&["ZADD", "seed:zset:000000000004", "12345.5", "m0:x"]);
    source.cli(&["SET", "plain", "v"]);
    target.cli(&["SET", "plain", "v", "EX", "3600"]);
    // About to expire on the source and already gone from the target: expired, not missing.
    source.cli(&["SET", "expiring", "v", "PX", "4000"]);
    // The probe's keys differ freely.
    source.cli(&["SET", "runbook:probe:seq", "1"]);
    target.cli(&["SET", "runbook:probe:seq", "2"]);
    target.cli(&["SET", "runbook:probe:other", "2"]);

    // The two seedings ran a moment apart, so their TTLs differ by that moment.
    let r = verify(
        &ws,
        &source,
        &target,
        &["--rounds", "1", "--ttl-tolerance", "5s"],
        1,
    );
    let m = &r["mismatches"];
    // Every source key and the one only the target has, by type: the two counts agree.
    assert_eq!(r["keys_checked"], 503, "{r:#}");
    let by_type: u64 = r["by_type"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_type, 503, "{r:#}");
    assert_eq!(m["missing_on_target"], 1, "{r:#}");
    assert_eq!(m["extra_on_target"], 1, "{r:#}");
    assert_eq!(m["type"], 1, "{r:#}");
    assert_eq!(m["value"], 2, "{r:#}");
    assert_eq!(m["ttl"], 1, "{r:#}");
    assert_eq!(r["persistent"], 6);
    assert_eq!(r["expired"], 1, "{r:#}");
    assert_eq!(r["parity"], false);
    let classes: Vec<(String, String)> = r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (key, class) in [
        ("seed:string:000000000001", "missing_on_target"),
        ("only:on:target", "extra_on_target"),
        ("seed:set:000000000002", "type"),
        ("seed:hash:000000000003", "value"),
        ("seed:zset:000000000004", "value"),
        ("plain", "ttl"),
    ] {
        assert!(
            classes.contains(&(key.to_string(), class.to_string())),
            "{key} {class} in {classes:?}"
        );
    }

    // The text form leads with the verdict and names the keys; --examples caps them.
    let text = ws
        .cmd(&[
            "verify",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--rounds",
            "1",
            "--ttl-tolerance",
            "5s",
            "--examples",
            "2",
        ])
        .expect(1)
        .stdout;
    assert!(text.starts_with("MISMATCH: "), "{text}");
    let examples = text
        .lines()
        .filter(|l| l.starts_with("    ") && l.contains(" persistent "));
    assert_eq!(examples.count(), 2, "{text}");
}

#[test]
fn a_key_fixed_during_the_check_is_transient_and_a_lasting_one_persistent() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    seed(&ws, &source, "200");
    seed(&ws, &target, "200");
    source.cli(&["SET", "late", "arrives"]);
    source.cli(&["SET", "never", "arrives"]);
    let port = target.port;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_connection().unwrap();
        redis::cmd("SET")
            .arg("late")
            .arg("arrives")
            .query::<()>(&mut conn)
            .unwrap();
    });
    let r = verify(
        &ws,
        &source,
        &target,
        &[
            "--rounds",
            "3",
            "--recheck-delay",
            "2s",
            "--ttl-tolerance",
            "10s",
        ],
        1,
    );
    writer.join().unwrap();
    assert_eq!(r["transient"], 1, "{r:#}");
    assert_eq!(r["transient_mismatches"]["missing_on_target"], 1, "{r:#}");
    assert_eq!(r["persistent"], 1, "{r:#}");
    assert_eq!(r["mismatches"]["missing_on_target"], 1, "{r:#}");
    assert_eq!(r["rounds"], 3);
    let examples = r["examples"].as_array().unwrap();
    assert!(examples.contains(
        &serde_json::json!({"db": 0, "key": "never", "key_bytes": 5, "class": "missing_on_target", "persistent": true})
    ));
    assert!(examples.contains(
        &serde_json::json!({"db": 0, "key": "late", "key_bytes": 4, "class": "missing_on_target", "persistent": false})
    ));
}

#[test]
fn tls_passwords_and_database_numbers_reach_the_right_keys() {
    let source = Server::start_with(Engine::Valkey, &["--requirepass", "src-secret"]);
    let target = Server::start_tls(Engine::Redis, &["--requirepass", "dst-secret"]);
    let tls_port = target.tls_port.expect("a TLS port");
    let ws = Workspace::new();
    let source_url = format!("redis://:src-secret@127.0.0.1:{}/2", source.port);
    for url in [
        source_url.clone(),
        format!("redis://:dst-secret@127.0.0.1:{}/2", target.port),
    ] {
        ws.cmd(&["seed", "--endpoint", &url, "--keys", "400"])
            .expect(0);
    }
    // Only database 2 is compared: a key elsewhere is not extra.
    let auth = ["-a", "dst-secret", "--no-auth-warning"];
    target.cli(&[&auth[..], &["SET", "db0:only", "x"]].concat());
    let changed = [
        "-n",
        "2",
        "SET",
        "seed:string:000000000007",
        "changed",
        "KEEPTTL",
    ];
    target.cli(&[&auth[..], &changed].concat());

    let resolve = format!("cache.example:{tls_port}=127.0.0.1:{tls_port}");
    let verify_tls = |password: &str, code: i32| {
        let target_url = format!("rediss://:{password}@cache.example:{tls_port}/2");
        ws.cmd(&[
            "verify",
            "--source",
            &source_url,
            "--target",
            &target_url,
            "--resolve",
            &resolve,
            "--rounds",
            "1",
            "--format",
            "json",
        ])
        .expect(code)
    };
    let ran = verify_tls("dst-secret", 1);
    let r = json(&ran.stdout);
    assert_eq!(r["keys_checked"], 400, "{r:#}");
    assert_eq!(r["mismatches"]["value"], 1, "{r:#}");
    assert_eq!(r["mismatches"]["extra_on_target"], 0, "{r:#}");
    assert_eq!(r["examples"][0]["key"], "seed:string:000000000007");
    for secret in ["src-secret", "dst-secret"] {
        assert!(!ran.stdout.contains(secret), "{}", ran.stdout);
        assert!(!ran.stderr.contains(secret), "{}", ran.stderr);
    }

    // A wrong password is refused, named as such, and not echoed.
    let ran = verify_tls("guess", 1);
    assert!(
        ran.stderr.contains("cannot connect to the target")
            && ran.stderr.matches("WRONGPASS").count() == 1,
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("guess"), "{}", ran.stderr);
}

#[test]
fn bad_input_exits_2_and_an_unreachable_server_exits_1() {
    let ws = Workspace::new();
    let ran = ws
        .cmd(&[
            "verify",
            "--source",
            "nope://h:1",
            "--target",
            "127.0.0.1:1",
        ])
        .expect(2);
    assert!(
        ran.stderr.contains("--source") && ran.stderr.contains("redis://"),
        "{}",
        ran.stderr
    );
    let ran = ws
        .cmd(&[
            "verify",
            "--source",
            "127.0.0.1:1",
            "--target",
            "127.0.0.1:2",
            "--ttl-tolerance",
            "soon",
        ])
        .expect(2);
    assert!(ran.stderr.contains("--ttl-tolerance"), "{}", ran.stderr);
    let closed = crate::support::free_port().to_string();
    let ran = ws
        .cmd(&[
            "verify",
            "--source",
            &format!("redis://:hunter2@127.0.0.1:{closed}"),
            "--target",
            "127.0.0.1:1",
        ])
        .expect(1);
    assert!(
        ran.stderr.contains("cannot connect to the source"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("hunter2"), "{}", ran.stderr);
}

const PARITY_RUNBOOK: &str = r#"version: 1
name: parity
params:
  source: {}
  target: {}
  fail: { default: true }
steps:
  - id: seed_source
    action: data.seed
    with: { endpoint: "{{ params.source }}", keys: 300, types: [string, hash, stream] }
  - id: seed_target
    action: data.seed
    with: { endpoint: "{{ params.target }}", keys: 300, types: [string, hash, stream] }
  - id: drift
    action: exec
    with: { command: "redis-cli -u {{ params.target }} DEL seed:string:000000000004" }
  - id: parity
    action: data.verify
    with:
      source: "{{ params.source }}"
      target: "{{ params.target }}"
      rounds: 1
      ttl_tolerance: 10s
      fail_on_mismatch: "{{ params.fail }}"
  - id: counted
    action: assert
    with:
      that: "{{ steps.parity.outputs.mismatches.missing_on_target == 1 and steps.parity.outputs.keys_checked == 300 }}"
"#;

#[test]
fn the_data_actions_seed_and_verify_inside_a_runbook() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    ws.write("parity.yaml", PARITY_RUNBOOK);
    let vars = [
        "--var".to_string(),
        format!("source={}", source.url()),
        "--var".to_string(),
        format!("target={}", target.url()),
    ];
    let mut args = vec!["run", "parity.yaml"];
    args.extend(vars.iter().map(String::as_str));
    let ran = ws.cmd(&args).expect(1);
    assert!(
        ran.stderr
            .contains("seed:string:000000000004 in db 0 (missing_on_target)"),
        "{}",
        ran.stderr
    );
    assert_eq!(source.cli(&["DBSIZE"]), "300");

    args.extend(["--var", "fail=false"]);
    ws.cmd(&args).expect(0);
}

/// `(db, key, class)` of every example.
fn examples(r: &serde_json::Value) -> Vec<(i64, String, String)> {
    r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["db"].as_i64().unwrap(),
                e["key"].as_str().unwrap().to_string(),
                e["class"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_database_is_compared_and_named() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    for server in [&source, &target] {
        let ran = ws
            .cmd(&[
                "seed",
                "--endpoint",
                &server.url(),
                "--keys",
                "300",
                "--ttl-share",
                "0",
                "--db",
                "0",
                "--db",
                "3",
                "--db",
                "15",
                "--format",
                "json",
            ])
            .expect(0);
        let s = json(&ran.stdout);
        assert_eq!(
            (s["keys"].clone(), s["databases"].clone()),
            (900.into(), serde_json::json!([0, 3, 15]))
        );
    }
    assert_eq!(target.cli(&["-n", "15", "DBSIZE"]), "300");
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 0);
    let counted: Vec<(i64, u64)> = r["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["db"].as_i64().unwrap(),
                d["keys_checked"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counted, [(0, 300), (3, 300), (15, 300)], "{r:#}");
    assert_eq!(r["keys_checked"], 900);

    // The same key name tampered in two databases: each is caught in its own.
    target.cli(&["-n", "3", "HSET", "seed:hash:000000000002", "f1", "changed"]);
    target.cli(&["-n", "15", "DEL", "seed:hash:000000000002"]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(
        examples(&r),
        [
            (3, "seed:hash:000000000002".to_string(), "value".to_string()),
            (
                15,
                "seed:hash:000000000002".to_string(),
                "missing_on_target".to_string()
            ),
        ],
        "{r:#}"
    );
    let db = |n: usize| r["databases"][n].clone();
    assert_eq!(db(0)["persistent"], 0, "{r:#}");
    assert_eq!(db(1)["mismatches"]["value"], 1, "{r:#}");
    assert_eq!(db(2)["mismatches"]["missing_on_target"], 1, "{r:#}");
    assert_eq!(db(2)["keys_checked"], 300, "{r:#}");
    // --db restricts the check: database 0 alone is in parity.
    let r = verify(&ws, &source, &target, &["--rounds", "1", "--db", "0"], 0);
    assert_eq!(r["databases"].as_array().unwrap().len(), 1, "{r:#}");

    // A database only the source uses is a failure, not `0 keys checked`.
    let empty = Server::start(Engine::Valkey);
    source.cli(&["FLUSHALL"]);
    source.cli(&["-n", "3", "SET", "only:in:db3", "v"]);
    let r = verify(&ws, &source, &empty, &["--rounds", "1"], 1);
    assert_eq!(
        examples(&r),
        [(
            3,
            "only:in:db3".to_string(),
            "missing_on_target".to_string()
        )]
    );
    assert_eq!(r["keys_checked"], 1);
    let text = ws
        .cmd(&[
            "verify",
            "--source",
            &source.url(),
            "--target",
            &empty.url(),
            "--rounds",
            "1",
        ])
        .expect(1)
        .stdout;
    let shown: Vec<&str> = text.lines().skip(3).collect();
    assert_eq!(
        shown,
        [
            "  by type: string 1",
            "  persistent: missing on target 1, extra on target 0, type 0, value 0, ttl 0, stream 0, field ttl 0",
            "  expired during the check 0, skipped 0, rounds 1",
            "  by database: db3 1 (1 persistent)",
            "  examples:",
            "    missing_on_target  persistent db3   only:in:db3",
        ],
        "{text}"
    );
}

#[test]
fn a_never_copied_key_is_missing_however_its_ttl_runs_out_during_the_rounds() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    // Never copied: 3.5 s of TTL, gone from the source by the second round 5 s later.
    source.cli(&["SET", "never:copied", "v", "PX", "3500"]);
    // Copied, then expired on the target a moment early: its TTL ends within the tolerance.
    source.cli(&["SET", "about:to:expire", "v", "PX", "1500"]);
    let r = verify(
        &ws,
        &source,
        &target,
        &["--rounds", "2", "--recheck-delay", "5s"],
        1,
    );
    assert_eq!(
        (
            r["expired"].clone(),
            r["mismatches"].clone(),
            r["transient"].clone()
        ),
        (
            1.into(),
            serde_json::json!({"missing_on_target": 1, "extra_on_target": 0, "type": 0, "value": 0, "ttl": 0, "stream": 0, "field_ttl": 0}),
            0.into()
        ),
        "{r:#}"
    );
    assert_eq!(
        examples(&r),
        [(
            0,
            "never:copied".to_string(),
            "missing_on_target".to_string()
        )]
    );
}

/// What `redis-cli` answers to `line` typed at its prompt (read from stdin).
fn typed(server: &Server, line: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("redis-cli")
        .args(["-p", &server.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli");
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn example_keys_are_shown_losslessly_and_can_be_pasted_into_redis_cli() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    let long = format!("long:{}:end", "k".repeat(200));
    let client = redis::Client::open(source.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    for key in [&b"bin:\xfe"[..], b"bin:\xff", b"two words", long.as_bytes()] {
        redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    let keys: Vec<(String, u64)> = r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["key_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            (r#""bin:\xfe""#.to_string(), 5),
            (r#""bin:\xff""#.to_string(), 5),
            (long.clone(), 209),
            (r#""two words""#.to_string(), 9),
        ]
    );
    for (key, _) in &keys {
        assert_eq!(typed(&source, &format!("STRLEN {key}")), "1", "{key}");
    }
    let text = ws
        .cmd(&[
            "verify",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--rounds",
            "1",
        ])
        .expect(1)
        .stdout;
    let shown: Vec<&str> = text.lines().skip(7).collect();
    assert_eq!(
        shown,
        [
            r#"    missing_on_target  persistent db0   "bin:\xfe""#.to_string(),
            r#"    missing_on_target  persistent db0   "bin:\xff""#.to_string(),
            format!(
                "    missing_on_target  persistent db0   long:{}…kkkkkkkkkkkk:end (209 bytes)",
                "k".repeat(51)
            ),
            r#"    missing_on_target  persistent db0   "two words""#.to_string(),
        ],
        "{text}"
    );
}

#[test]
fn a_byte_changed_in_the_middle_of_a_50_mb_string_is_caught() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    let value: Vec<u8> = (0..50 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    for server in [&source, &target] {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        redis::cmd("SET")
            .arg("big:string")
            .arg(&value)
            .query::<()>(&mut conn)
            .unwrap();
        redis::cmd("SET")
            .arg("small")
            .arg("v")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 0);
    assert_eq!(r["keys_checked"], 2, "{r:#}");
    target.cli(&["SETRANGE", "big:string", "26214400", "!"]);
    assert_eq!(target.cli(&["STRLEN", "big:string"]), "52428800");
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(
        examples(&r),
        [(0, "big:string".to_string(), "value".to_string())]
    );
}

#[test]
fn max_rate_holds_the_keys_read_per_second() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    for server in [&source, &target] {
        ws.cmd(&[
            "seed",
            "--endpoint",
            &server.url(),
            "--keys",
            "6000",
            "--types",
            "string",
            "--ttl-share",
            "0",
        ])
        .expect(0);
    }
    // 6000 keys at 2000 keys/s: the last batch (of 100) cannot start before 2.95 s.
    let r = verify(&ws, &source, &target, &["--max-rate", "2000"], 0);
    assert_eq!(r["keys_checked"], 6000, "{r:#}");
    let elapsed = r["elapsed_ms"].as_u64().unwrap();
    assert!(elapsed >= 2950, "{elapsed} ms");
    let rate = r["keys_per_sec"].as_f64().unwrap();
    assert!(rate <= 2200.0, "{rate} keys/s");

    // Seeding holds its cap the same way: 3000 keys at 1500 keys/s, batches of 75.
    let started = Instant::now();
    let ran = ws
        .cmd(&[
            "seed",
            "--endpoint",
            &source.url(),
            "--keys",
            "3000",
            "--max-rate",
            "1500",
            "--format",
            "json",
        ])
        .expect(0);
    let s = json(&ran.stdout);
    assert!(started.elapsed() >= Duration::from_millis(1950));
    assert!(s["keys_per_sec"].as_f64().unwrap() <= 1650.0, "{s:#}");
}

#[test]
fn read_from_replica_reads_each_side_from_its_replica() {
    let source = Server::start(Engine::Redis);
    let source_replica = Server::start_with(Engine::Valkey, &["--replica-read-only", "no"]);
    let target = Server::start(Engine::Valkey);
    let target_replica = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    seed(&ws, &source, "300");
    seed(&ws, &target, "300");
    replicate(&source, &source_replica);
    replicate(&target, &target_replica);
    // Only the source's replica has this key: reading from it shows it.
    source_replica.cli(&["SET", "only:on:the:replica", "v"]);

    let r = verify(
        &ws,
        &source,
        &target,
        &["--rounds", "1", "--ttl-tolerance", "10s"],
        0,
    );
    assert_eq!(r["read_from"]["source"], source.url(), "{r:#}");
    let r = verify(
        &ws,
        &source,
        &target,
        &[
            "--rounds",
            "1",
            "--ttl-tolerance",
            "10s",
            "--read-from",
            "replica",
        ],
        1,
    );
    assert_eq!(
        r["read_from"],
        serde_json::json!({"source": source_replica.url(), "target": target_replica.url()}),
        "{r:#}"
    );
    assert_eq!(
        examples(&r),
        [(
            0,
            "only:on:the:replica".to_string(),
            "missing_on_target".to_string()
        )]
    );
    // A server without a replica is named, and nothing is read from its primary instead.
    let alone = Server::start(Engine::Valkey);
    let ran = ws
        .cmd(&[
            "verify",
            "--source",
            &source.url(),
            "--target",
            &alone.url(),
            "--read-from",
            "replica",
        ])
        .expect(1);
    assert!(
        ran.stderr.contains(&format!(
            "the target {} has no online replica to read from",
            alone.url()
        )),
        "{}",
        ran.stderr
    );
}

const DATA_ACTIONS_RUNBOOK: &str = r#"version: 1
name: data-actions
params:
  source: {}
  target: {}
steps:
  - id: sync
    action: data.sync_check
    with: { source: "{{ params.source }}", target: "{{ params.target }}", deadline: 5s }
  - id: memory
    action: data.info
    with:
      endpoints: ["{{ params.source }}", "{{ params.target }}"]
      labels: [source, target]
      fields: [used_memory, role, no_such_field]
  - id: checked
    action: assert
    with:
      that: "{{ steps.sync.outputs.key == 'runbook:sync-check' and steps.memory.outputs.values.source.role == 'master' and steps.memory.outputs.values.target.role == 'slave' }}"
"#;

#[test]
fn sync_check_and_info_read_live_replication_without_a_shell() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    replicate(&source, &target);
    let ws = Workspace::new();
    ws.write("data.yaml", DATA_ACTIONS_RUNBOOK);
    let vars = |target: &Server| {
        vec![
            "run".to_string(),
            "data.yaml".into(),
            "--var".into(),
            format!("source={}", source.url()),
            "--var".into(),
            format!("target={}", target.url()),
        ]
    };
    let args = vars(&target);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.cmd(&args).expect(0);
    assert_eq!(target.cli(&["EXISTS", "runbook:sync-check"]), "1");

    // A target that does not replicate: the step fails naming both ends and the deadline.
    let alone = Server::start(Engine::Valkey);
    let args = vars(&alone);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = ws.cmd(&args).expect(1);
    assert!(
        ran.stderr.contains(&format!(
            "the key runbook:sync-check written to the source {} did not reach the target {} within 5s: is the migration replicating?",
            source.url(),
            alone.url()
        )),
        "{}",
        ran.stderr
    );
}

#[test]
fn function_libraries_are_compared_by_name_and_code() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    let lib = |name: &str, body: &str| {
        format!(
            "#!lua name={name}\nredis.register_function('{name}_f', function() return {body} end)"
        )
    };
    source.cli(&["FUNCTION", "LOAD", &lib("kept", "1")]);
    source.cli(&["FUNCTION", "LOAD", &lib("lost", "2")]);
    source.cli(&["FUNCTION", "LOAD", &lib("changed", "3")]);
    target.cli(&["FUNCTION", "LOAD", &lib("kept", "1")]);
    target.cli(&["FUNCTION", "LOAD", &lib("changed", "4")]);
    target.cli(&["FUNCTION", "LOAD", &lib("added", "5")]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(
        r["functions"],
        serde_json::json!({"checked": true, "parity": false, "source": 3, "target": 3,
            "missing_on_target": ["lost"], "extra_on_target": ["added"], "different": ["changed"]}),
        "{r:#}"
    );
    assert_eq!(r["persistent"], 0);
    for name in ["lost", "changed", "added"] {
        target.cli(&["FUNCTION", "DELETE", name]);
    }
    target.cli(&["FUNCTION", "LOAD", &lib("lost", "2")]);
    target.cli(&["FUNCTION", "LOAD", &lib("changed", "3")]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 0);
    assert_eq!(r["functions"]["parity"], true, "{r:#}");
}

/// What a report lists of its examples, whole: key, class, detail, persistence.
fn example_details(r: &serde_json::Value) -> serde_json::Value {
    serde_json::Value::Array(
        r["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::json!([e["key"], e["class"], e["detail"], e["persistent"]]))
            .collect(),
    )
}

#[test]
fn stream_groups_consumers_and_pending_entries_are_compared() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    // Nine streams of 8 entries, each with group g1 whose consumer c1 holds 1-1..1-4.
    for server in [&source, &target] {
        ws.cmd(&[
            "seed",
            "--endpoint",
            &server.url(),
            "--keys",
            "9",
            "--types",
            "stream",
            "--ttl-share",
            "0",
        ])
        .expect(0);
    }
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 0);
    assert_eq!(
        (&r["parity"], &r["keys_checked"], &r["by_type"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(9),
            &serde_json::json!({"stream": 9})
        ),
        "{r:#}"
    );

    let key = |n: usize| format!("seed:stream:{n:012}");
    let on_target = |n: usize, args: &[&str]| {
        let k = key(n);
        let mut full = vec![args[0]];
        if args[0] == "XGROUP" {
            full.push(args[1]);
            full.push(&k);
            full.extend_from_slice(&args[2..]);
        } else {
            full.push(&k);
            full.extend_from_slice(&args[1..]);
        }
        target.cli(&full)
    };
    on_target(0, &["XADD", "5-1", "f", "v"]);
    on_target(0, &["XDEL", "5-1"]);
    on_target(1, &["XGROUP", "SETID", "g1", "1-6"]);
    on_target(2, &["XGROUP", "SETID", "g1", "1-4", "ENTRIESREAD", "3"]);
    on_target(3, &["XGROUP", "DESTROY", "g1"]);
    on_target(4, &["XGROUP", "CREATE", "g2", "$"]);
    on_target(5, &["XGROUP", "CREATECONSUMER", "g1", "c2"]);
    on_target(6, &["XACK", "g1", "1-1"]);
    on_target(7, &["XCLAIM", "g1", "c1", "0", "1-2"]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(
        r["mismatches"],
        serde_json::json!({"missing_on_target": 0, "extra_on_target": 0, "type": 0, "value": 0,
            "ttl": 0, "stream": 8, "field_ttl": 0}),
        "{r:#}"
    );
    let expected: Vec<serde_json::Value> = [
        (0, "last-generated-id 1-8 vs 5-1"),
        (1, "group `g1` last-delivered-id 1-4 vs 1-6"),
        (2, "group `g1` entries-read 4 vs 3"),
        (3, "group `g1` missing on target"),
        (4, "group `g2` only on target"),
        (5, "group `g1` consumer `c2` only on target"),
        (6, "group `g1` consumer `c1` pending 4 vs 3"),
        (7, "group `g1` pending entry 1-2 delivery count 1 vs 2"),
    ]
    .into_iter()
    .map(|(n, detail)| serde_json::json!([key(n), "stream", detail, true]))
    .collect();
    assert_eq!(example_details(&r), serde_json::Value::Array(expected));

    // The text names the difference under its key.
    let text = ws
        .cmd(&[
            "verify",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--rounds",
            "1",
            "--examples",
            "1",
        ])
        .expect(1)
        .stdout;
    let examples: Vec<&str> = text.lines().skip_while(|l| *l != "  examples:").collect();
    assert_eq!(
        examples,
        [
            "  examples:",
            "    stream             persistent db0   seed:stream:000000000000",
            "      last-generated-id 1-8 vs 5-1",
        ],
        "{text}"
    );
}

#[test]
fn a_pending_list_longer_than_one_read_is_compared_to_its_end() {
    let source = Server::start(Engine::Redis);
    let target = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    // 1,100 entries, all delivered to c1 of group g: the stream's first read (1,000 a
    // group) does not list them all, so the rest are paged.
    for server in [&source, &target] {
        server.cli(&[
            "EVAL",
            "for i = 1, 1100 do redis.call('XADD', KEYS[1], i .. '-1', 'f', 'v') end",
            "1",
            "s",
        ]);
        server.cli(&["XGROUP", "CREATE", "s", "g", "0"]);
        server.cli(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2000",
            "STREAMS",
            "s",
            ">",
        ]);
    }
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 0);
    assert_eq!(
        (&r["parity"], &r["by_type"]),
        (&serde_json::json!(true), &serde_json::json!({"stream": 1})),
        "{r:#}"
    );
    target.cli(&["XCLAIM", "s", "g", "c1", "0", "1050-1"]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(
        example_details(&r),
        serde_json::json!([[
            "s",
            "stream",
            "group `g` pending entry 1050-1 delivery count 1 vs 2",
            true
        ]]),
        "{r:#}"
    );
}

#[test]
fn per_field_hash_ttls_are_compared_where_both_sides_have_them() {
    let source = Server::start(Engine::Valkey);
    let target = Server::start(Engine::Valkey);
    let old = Server::start(Engine::Redis);
    let ws = Workspace::new();
    for server in [&source, &target, &old] {
        for key in ["h:same", "h:lost", "h:longer", "h:added"] {
            server.cli(&["HSET", key, "a", "1", "b", "2"]);
        }
    }
    for server in [&source, &target] {
        server.cli(&["HEXPIRE", "h:same", "3600", "FIELDS", "1", "a"]);
    }
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 0);
    assert_eq!(
        (&r["parity"], &r["notes"], &r["examples"]),
        (
            &serde_json::json!(true),
            &serde_json::json!([]),
            &serde_json::json!([])
        ),
        "{r:#}"
    );

    source.cli(&["HEXPIRE", "h:lost", "3600", "FIELDS", "1", "a"]);
    source.cli(&["HEXPIRE", "h:longer", "3600", "FIELDS", "1", "b"]);
    target.cli(&["HEXPIRE", "h:longer", "7200", "FIELDS", "1", "b"]);
    target.cli(&["HEXPIRE", "h:added", "3600", "FIELDS", "1", "b"]);
    let r = verify(&ws, &source, &target, &["--rounds", "1"], 1);
    assert_eq!(
        r["mismatches"],
        serde_json::json!({"missing_on_target": 0, "extra_on_target": 0, "type": 0, "value": 0,
            "ttl": 0, "stream": 0, "field_ttl": 3}),
        "{r:#}"
    );
    assert_eq!(
        example_details(&r),
        serde_json::json!([
            ["h:added", "field_ttl", "field `b` TTL none vs 3600s", true],
            [
                "h:longer",
                "field_ttl",
                "field `b` TTL 3600s vs 7200s",
                true
            ],
            ["h:lost", "field_ttl", "field `a` TTL 3600s vs none", true],
        ])
    );

    // Redis 7.0 has no field TTLs: the check says so once, and does not fail for it.
    let r = verify(&ws, &old, &target, &["--rounds", "1"], 0);
    assert_eq!(
        (&r["parity"], &r["notes"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(["field TTLs not compared: source lacks HPTTL"])
        ),
        "{r:#}"
    );
}

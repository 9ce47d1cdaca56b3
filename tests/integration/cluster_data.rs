//! The data plane on cluster-mode endpoints: seed and verify given any node of a real
//! Redis or Valkey cluster find every shard, route each key by its slot, and compare
//! clusters with clusters and with standalone servers.

use serde_json::{Value, json};

use crate::support::{Cluster, Engine, Server, Workspace};

fn seed(ws: &Workspace, url: &str) {
    ws.cmd(&[
        "seed",
        "--endpoint",
        url,
        "--keys",
        "3000",
        "--types",
        "string,hash,list,set,zset,stream",
        "--ttl-share",
        "0",
    ])
    .expect(0);
}

fn verify(ws: &Workspace, source: &str, target: &str, code: i32) -> Value {
    verify_with(ws, source, target, &[], code)
}

fn verify_with(ws: &Workspace, source: &str, target: &str, extra: &[&str], code: i32) -> Value {
    let mut args = vec![
        "verify", "--source", source, "--target", target, "--format", "json",
    ];
    args.extend_from_slice(extra);
    let ran = ws.cmd(&args).expect(code);
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
}

/// What a report says of each side's shards: the node read, its slots, its keys.
fn shards(report: &Value, side: &str) -> Vec<(String, Value, u64)> {
    report["shards"][side]
        .as_array()
        .unwrap_or_else(|| panic!("no {side} shards in {report:#}"))
        .iter()
        .map(|s| {
            (
                s["read"].as_str().unwrap_or_default().to_string(),
                s["slots"].clone(),
                s["keys"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn expected_shards(cluster: &Cluster) -> Vec<(String, Value, u64)> {
    let ranges = [
        json!([[0, 5460]]),
        json!([[5461, 10921]]),
        json!([[10922, 16383]]),
    ];
    cluster
        .nodes
        .iter()
        .zip(ranges)
        .zip(cluster.dbsizes())
        .map(|((node, slots), keys)| (node.url(), slots, keys))
        .collect()
}

fn examples(report: &Value) -> Vec<(String, String)> {
    report["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap_or_default().to_string(),
                e["class"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_routes_every_key_by_slot_between_clusters_and_standalone_servers() {
    let redis = Cluster::start(Engine::Redis, 3);
    let valkey = Cluster::start(Engine::Valkey, 3);
    let single = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    // Any node will do: seed and verify read the slot map from it.
    let (source, target) = (redis.nodes[2].url(), valkey.nodes[1].url());
    seed(&ws, &source);
    seed(&ws, &target);
    seed(&ws, &single.url());
    let sizes = redis.dbsizes();
    assert_eq!(sizes.iter().sum::<u64>(), 3000);
    assert!(sizes.iter().all(|&n| n > 500), "{sizes:?}");
    assert_eq!(valkey.dbsizes(), sizes);

    let both = verify(&ws, &source, &target, 0);
    assert_eq!(
        (&both["parity"], &both["keys_checked"], &both["persistent"]),
        (&json!(true), &json!(3000), &json!(0)),
        "{both:#}"
    );
    assert_eq!(shards(&both, "source"), expected_shards(&redis));
    assert_eq!(shards(&both, "target"), expected_shards(&valkey));

    for (from, to) in [
        (single.url(), target.clone()),
        (source.clone(), single.url()),
    ] {
        let r = verify(&ws, &from, &to, 0);
        assert_eq!(
            (&r["parity"], &r["keys_checked"]),
            (&json!(true), &json!(3000)),
            "{from} → {to}: {r:#}"
        );
    }

    // One key deleted from every target shard, one key only the target has.
    let mut tampered = Vec::new();
    for node in &valkey.nodes {
        let key = node.cli(&["RANDOMKEY"]);
        assert_eq!(node.cli(&["DEL", &key]), "1");
        tampered.push((key, "missing_on_target".to_string()));
    }
    let extra = "{seed:string:000000000001}:extra";
    let owner = valkey
        .nodes
        .iter()
        .find(|n| n.cli(&["SET", extra, "x"]) == "OK")
        .expect("one node owns the extra key's slot");
    assert_eq!(owner.cli(&["GET", extra]), "x");
    tampered.push((extra.to_string(), "extra_on_target".to_string()));
    tampered.sort();
    let caught = verify(&ws, &source, &target, 1);
    assert_eq!(
        (&caught["parity"], &caught["persistent"]),
        (&json!(false), &json!(4))
    );
    let mut got = examples(&caught);
    got.sort();
    assert_eq!(got, tampered);
}

#[test]
fn seed_and_verify_follow_a_slot_migrated_between_shards_before_and_during_the_check() {
    let source = Server::start(Engine::Redis);
    let target = Cluster::start(Engine::Valkey, 2);
    let ws = Workspace::new();
    // 600 keys in one slot, and 600 over every slot, on both sides.
    for url in [source.url(), target.nodes[0].url()] {
        for prefix in ["{moving}:", "seed:"] {
            ws.cmd(&[
                "seed",
                "--endpoint",
                &url,
                "--keys",
                "600",
                "--prefix",
                prefix,
                "--types",
                "string,hash,list,set,zset,stream",
                "--ttl-share",
                "0",
            ])
            .expect(0);
        }
    }
    let slot = target.nodes[0].cli(&["CLUSTER", "KEYSLOT", "{moving}"]);
    let held = |n: &Server| n.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]);
    let (from, to) = match held(&target.nodes[0]).as_str() {
        "0" => (&target.nodes[1], &target.nodes[0]),
        _ => (&target.nodes[0], &target.nodes[1]),
    };
    assert_eq!(held(from), "600");
    let id = |n: &Server| n.cli(&["CLUSTER", "MYID"]);
    assert_eq!(
        to.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(from)]),
        "OK"
    );
    assert_eq!(
        from.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(to)]),
        "OK"
    );
    let port = to.port.to_string();
    let migrate = |n: usize| {
        let keys = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, &n.to_string()]);
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.lines());
        assert_eq!(from.cli(&args), "OK");
    };
    migrate(300);
    // Seeding again writes each key where the cluster says: a migrated one, or one its DEL
    // removed from the migrating node, at the importing node after ASKING.
    ws.cmd(&[
        "seed",
        "--endpoint",
        &target.nodes[0].url(),
        "--keys",
        "600",
        "--prefix",
        "{moving}:",
        "--types",
        "string,hash,list,set,zset,stream",
        "--ttl-share",
        "0",
    ])
    .expect(0);
    let count = |n: &Server| held(n).parse::<u64>().expect("a count");
    assert_eq!(count(from) + count(to), 600);
    let at_to = count(to);
    assert!(at_to >= 300, "{at_to} keys at the importing node");

    // Half the slot's keys are at the importing node: each is asked there (ASK).
    let r = verify(&ws, &source.url(), &target.nodes[0].url(), 0);
    assert_eq!(
        (&r["parity"], &r["keys_checked"], &r["redirections"]),
        (
            &json!(true),
            &json!(1200),
            &json!({"moved": 0, "ask": at_to})
        ),
        "{r:#}"
    );

    // The slot moves for good while a slow check runs: the rest of it follows MOVED.
    let (source_url, target_url) = (source.url(), target.nodes[0].url());
    let r = std::thread::scope(|s| {
        let check =
            s.spawn(|| verify_with(&ws, &source_url, &target_url, &["--max-rate", "300"], 0));
        std::thread::sleep(std::time::Duration::from_millis(1000));
        migrate(300);
        for node in [to, from] {
            assert_eq!(
                node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &id(to)]),
                "OK"
            );
        }
        check.join().expect("the check ran")
    });
    assert_eq!(held(to), "600");
    assert_eq!(
        (&r["parity"], &r["keys_checked"]),
        (&json!(true), &json!(1200)),
        "{r:#}"
    );
    assert!(r["redirections"]["moved"].as_u64() > Some(0), "{r:#}");
}

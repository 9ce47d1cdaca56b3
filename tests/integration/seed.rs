//! `runbook seed`: deterministic data of every type, counts that match the server.

use crate::support::{Engine, Server, Workspace};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn seeds_every_type_with_ttls_and_the_same_data_twice() {
    let redis = Server::start(Engine::Redis);
    let valkey = Server::start(Engine::Valkey);
    let ws = Workspace::new();
    let args = |url: &str| {
        vec![
            "seed".to_string(),
            "--endpoint".into(),
            url.to_string(),
            "--keys".into(),
            "1200".into(),
            "--types".into(),
            "string,hash,list,set,zset,stream".into(),
            "--ttl-share".into(),
            "0.25".into(),
            "--format".into(),
            "json".into(),
        ]
    };
    let run = |url: &str| {
        let a = args(url);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        json(&ws.cmd(&a).expect(0).stdout)
    };
    let first = run(&redis.url());
    assert_eq!(first["keys"], 1200);
    for t in ["string", "hash", "list", "set", "zset", "stream"] {
        assert_eq!(first["by_type"][t], 200, "{t} in {first}");
    }
    assert_eq!(redis.cli(&["DBSIZE"]), "1200");
    assert_eq!(redis.cli(&["TYPE", "seed:zset:000000000003"]), "zset");
    assert_eq!(redis.cli(&["HLEN", "seed:hash:000000000007"]), "8");
    assert_eq!(redis.cli(&["XLEN", "seed:stream:000000000199"]), "8");
    assert_eq!(redis.cli(&["STRLEN", "seed:string:000000000000"]), "32");
    let with_ttl = first["with_ttl"].as_u64().unwrap();
    assert!((200..400).contains(&with_ttl), "{with_ttl} keys with a TTL");
    let expiring: u64 = redis
        .cli(&["INFO", "keyspace"])
        .split("expires=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("keyspace line");
    assert_eq!(expiring, with_ttl);

    // Seeding again writes the same data (nothing appended), on either engine.
    let again = run(&redis.url());
    assert_eq!(again["by_type"], first["by_type"]);
    assert_eq!(redis.cli(&["DBSIZE"]), "1200");
    assert_eq!(redis.cli(&["LLEN", "seed:list:000000000005"]), "8");
    run(&valkey.url());
    let ran = ws
        .cmd(&[
            "verify",
            "--source",
            &redis.url(),
            "--target",
            &valkey.url(),
            "--format",
            "json",
            "--rounds",
            "1",
        ])
        .expect(0);
    assert_eq!(json(&ran.stdout)["keys_checked"], 1200);
}

#[test]
fn bad_seed_input_exits_2_and_says_what_to_do() {
    let ws = Workspace::new();
    let ran = ws
        .cmd(&["seed", "--endpoint", "http://127.0.0.1:1", "--keys", "10"])
        .expect(2);
    assert!(ran.stderr.contains("redis://"), "{}", ran.stderr);
    let ran = ws
        .cmd(&[
            "seed",
            "--endpoint",
            "127.0.0.1:1",
            "--keys",
            "10",
            "--ttl-share",
            "2",
        ])
        .expect(2);
    assert!(ran.stderr.contains("between 0 and 1"), "{}", ran.stderr);
    let ran = ws
        .cmd(&[
            "seed",
            "--endpoint",
            "127.0.0.1:1",
            "--keys",
            "10",
            "--types",
            "string,bitmap",
        ])
        .expect(2);
    assert!(
        ran.stderr.contains("unknown type `bitmap`"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_read_only_replica_refuses_seeding_with_exit_1() {
    let primary = Server::start(Engine::Redis);
    let replica = Server::start(Engine::Valkey);
    replica.cli(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    let ws = Workspace::new();
    let ran = ws
        .cmd(&["seed", "--endpoint", &replica.url(), "--keys", "10"])
        .expect(1);
    assert!(
        ran.stderr.to_lowercase().contains("read only replica"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.len() < 300,
        "one refusal is enough: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

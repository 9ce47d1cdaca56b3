//! Sharded and secured replication groups on the local platform: real clusters of server
//! processes from CloudFormation templates, refusals of what ElastiCache refuses, TLS and
//! AUTH, and the engine change in AWS's node sequence; and the same description shape from
//! the aws platform.

use std::process::Command;

use runbook::platform::local::recorded_servers;
use serde_json::{Value, json};

use crate::aws_mocks::target;
use crate::aws_support::{RunDir, fast_waits};
use crate::local_platform::{Rehearsal, cli, info_field, out_str};

/// A template of one replication group, `Cache`, with `properties` (YAML, indented by six).
const TEMPLATE: &str = r#"AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Shards:
    Type: String
    Default: "3"
  Replicas:
    Type: String
    Default: "1"
  Clusters:
    Type: String
    Default: "2"
  Token:
    Type: String
    NoEcho: true
    Default: ""
Resources:
  Cache:
    Type: AWS::ElastiCache::ReplicationGroup
    Properties:
      ReplicationGroupId: !Sub "${AWS::StackName}-cache"
      ReplicationGroupDescription: a group to rehearse on
      Engine: redis
      AutomaticFailoverEnabled: true
"#;

fn template(r: &Rehearsal, name: &str, properties: &str, outputs: &str) -> String {
    r.work
        .write(name, &format!("{TEMPLATE}{properties}Outputs:\n{outputs}"))
        .display()
        .to_string()
}

const SHARDED: &str =
    "      NumNodeGroups: !Ref Shards\n      ReplicasPerNodeGroup: !Ref Replicas\n";
const CONFIGURATION: &str = "  ConfigurationEndpoint:\n    Value: !Sub \"${Cache.ConfigurationEndPoint.Address}:${Cache.ConfigurationEndPoint.Port}\"\n";

/// `redis-cli -c` (following MOVED) against a cluster node.
fn cluster_cli(endpoint: &str, args: &[&str]) -> String {
    let (host, port) = endpoint.rsplit_once(':').unwrap();
    let out = Command::new("redis-cli")
        .args(["-c", "-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// The slots the node at `endpoint` serves, as its own CLUSTER NODES line says.
fn own_slots(endpoint: &str) -> String {
    cli(endpoint, &["CLUSTER", "NODES"])
        .lines()
        .find(|l| l.contains("myself"))
        .map(|l| l.split_whitespace().skip(8).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn endpoints(described: &Value) -> Vec<String> {
    described["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["endpoint"].as_str().unwrap().to_string())
        .collect()
}

fn redis_version(endpoint: &str) -> String {
    info_field(endpoint, "server", "redis_version").unwrap()
}

#[tokio::test]
async fn a_three_shard_group_is_a_real_cluster_with_elasticache_s_slot_split() {
    let r = Rehearsal::new();
    let path = template(&r, "sharded.yaml", SHARDED, CONFIGURATION);
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "c3", "template": path}),
        )
        .await;
    let configuration = out_str(&out, "ConfigurationEndpoint").to_string();
    let described = Value::Object(
        r.ok("group.describe", json!({"replication_group": "c3-cache"}))
            .await,
    );
    let e = endpoints(&described);
    assert_eq!(e.len(), 6, "three shards of a primary and a replica");
    assert_eq!(configuration, e[0]);
    let version = redis_version(&e[0]);
    let node = |i: usize, id: &str, role: &str| json!({"id": id, "role": role, "endpoint": e[i]});
    assert_eq!(
        described,
        json!({
            "id": "c3-cache", "status": "available", "engine": "redis",
            "engine_version": version, "primary_endpoint": configuration,
            "nodes": [
                node(0, "c3-cache-0001-001", "primary"), node(1, "c3-cache-0001-002", "replica"),
                node(2, "c3-cache-0002-001", "primary"), node(3, "c3-cache-0002-002", "replica"),
                node(4, "c3-cache-0003-001", "primary"), node(5, "c3-cache-0003-002", "replica"),
            ],
            "cluster_mode": true, "configuration_endpoint": configuration,
            "shards": [
                {"id": "0001", "slots": "0-5461", "primary_endpoint": e[0], "replicas": [e[1]]},
                {"id": "0002", "slots": "5462-10922", "primary_endpoint": e[2], "replicas": [e[3]]},
                {"id": "0003", "slots": "10923-16383", "primary_endpoint": e[4], "replicas": [e[5]]},
            ],
            "tls": false, "auth": false,
        })
    );
    // What the servers themselves say.
    for (i, slots) in [(0, "0-5461"), (2, "5462-10922"), (4, "10923-16383")] {
        assert_eq!(own_slots(&e[i]), slots, "{}", e[i]);
        let replica = &e[i + 1];
        assert_eq!(
            info_field(replica, "replication", "role").as_deref(),
            Some("slave")
        );
        assert_eq!(
            info_field(replica, "replication", "master_port"),
            e[i].rsplit_once(':').map(|(_, p)| p.to_string())
        );
        for endpoint in [&e[i], replica] {
            let port: u16 = endpoint.rsplit_once(':').unwrap().1.parse().unwrap();
            assert!(port < 55536, "{endpoint}: its bus port is port + 10000");
        }
    }
    let info = cli(&configuration, &["CLUSTER", "INFO"]);
    for line in [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_known_nodes:6",
        "cluster_size:3",
    ] {
        assert!(info.lines().any(|l| l.trim() == line), "{line} in {info}");
    }
    for i in 0..30 {
        assert_eq!(
            cluster_cli(&configuration, &["SET", &format!("k{i}"), "v"]),
            "OK"
        );
    }
    let per_shard: Vec<u64> = [0, 2, 4]
        .iter()
        .map(|&i| cli(&e[i], &["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(per_shard.iter().sum::<u64>(), 30, "{per_shard:?}");
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "every shard holds keys: {per_shard:?}"
    );

    assert_eq!(recorded_servers(&r.run_dir()).unwrap().len(), 6);
    let deleted = r.ok("stack.delete", json!({"stack_name": "c3"})).await;
    assert_eq!(
        Value::Object(deleted),
        json!({"stack_name": "c3", "deleted": true})
    );
    for endpoint in &e {
        assert_eq!(cli(endpoint, &["PING"]), "", "{endpoint} is stopped");
    }
}

#[tokio::test]
async fn values_elasticache_refuses_are_refused_with_the_allowed_range() {
    let r = Rehearsal::new();
    let sharded = template(&r, "sharded.yaml", SHARDED, CONFIGURATION);
    let clusters = template(
        &r,
        "clusters.yaml",
        "      NumCacheClusters: !Ref Clusters\n",
        "  Id:\n    Value: !Ref Cache\n",
    );
    let cases = [
        (
            &sharded,
            "Shards",
            "501",
            "Resources.Cache.Properties.NumNodeGroups: 501 is out of range; ElastiCache allows 1 to 500",
        ),
        (
            &sharded,
            "Shards",
            "0",
            "Resources.Cache.Properties.NumNodeGroups: 0 is out of range; ElastiCache allows 1 to 500",
        ),
        (
            &sharded,
            "Shards",
            "abc",
            "Resources.Cache.Properties.NumNodeGroups: `abc` is not a whole number; ElastiCache allows 1 to 500",
        ),
        (
            &sharded,
            "Replicas",
            "6",
            "Resources.Cache.Properties.ReplicasPerNodeGroup: 6 is out of range; ElastiCache allows 0 to 5",
        ),
        (
            &clusters,
            "Clusters",
            "7",
            "Resources.Cache.Properties.NumCacheClusters: 7 is out of range; ElastiCache allows 1 to 6",
        ),
        (
            &clusters,
            "Clusters",
            "two",
            "Resources.Cache.Properties.NumCacheClusters: `two` is not a whole number; ElastiCache allows 1 to 6",
        ),
    ];
    for (path, param, value, message) in cases {
        let err = r
            .step(
                "stack.deploy",
                json!({"stack_name": "bad", "template": path, "parameters": {param: value}}),
            )
            .await
            .unwrap_err();
        assert_eq!(err, message, "{param}={value}");
    }
    assert!(
        recorded_servers(&r.run_dir()).unwrap().is_empty(),
        "nothing was started"
    );
}

/// Every node of `described` runs Valkey, and each replica holds what its primary holds.
fn assert_on_valkey_with(described: &Value, keys: u64) {
    let mut total = 0;
    for shard in described["shards"].as_array().unwrap() {
        let primary = shard["primary_endpoint"].as_str().unwrap();
        let size: u64 = cli(primary, &["DBSIZE"]).parse().unwrap();
        total += size;
        assert_eq!(
            info_field(primary, "replication", "role").as_deref(),
            Some("master")
        );
        for replica in shard["replicas"].as_array().unwrap() {
            let replica = replica.as_str().unwrap();
            assert_eq!(
                info_field(replica, "replication", "role").as_deref(),
                Some("slave")
            );
            assert_eq!(cli(replica, &["DBSIZE"]), size.to_string(), "{replica}");
        }
    }
    assert_eq!(total, keys);
    for endpoint in endpoints(described) {
        assert!(
            info_field(&endpoint, "server", "valkey_version").is_some(),
            "{endpoint} runs Valkey"
        );
    }
}

/// Each shard's primary afterwards is its replica before, and the other way round.
fn assert_failed_over(before: &Value, after: &Value) {
    let pairs = |v: &Value| -> Vec<(String, Vec<Value>)> {
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["primary_endpoint"].as_str().unwrap().to_string(),
                    s["replicas"].as_array().unwrap().clone(),
                )
            })
            .collect()
    };
    let expected: Vec<(String, Vec<Value>)> = pairs(before)
        .into_iter()
        .map(|(primary, replicas)| {
            (
                replicas[0].as_str().unwrap().to_string(),
                vec![json!(primary)],
            )
        })
        .collect();
    assert_eq!(pairs(after), expected);
}

#[tokio::test]
async fn the_engine_change_of_a_three_shard_cluster_fails_each_shard_over_to_valkey() {
    let r = Rehearsal::new();
    let path = template(&r, "sharded.yaml", SHARDED, CONFIGURATION);
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "ce", "template": path}),
        )
        .await;
    let configuration = out_str(&out, "ConfigurationEndpoint").to_string();
    for i in 0..60 {
        cluster_cli(&configuration, &["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let before = Value::Object(
        r.ok("group.describe", json!({"replication_group": "ce-cache"}))
            .await,
    );
    for shard in before["shards"].as_array().unwrap() {
        cli(
            shard["primary_endpoint"].as_str().unwrap(),
            &["WAIT", "1", "5000"],
        );
    }
    let after = Value::Object(
        r.ok(
            "engine.modify",
            json!({"replication_group": "ce-cache", "engine": "valkey"}),
        )
        .await,
    );
    assert_eq!(after["engine"], "valkey");
    assert_eq!(after["status"], "available");
    assert_eq!(after["configuration_endpoint"], json!(configuration));
    assert_failed_over(&before, &after);
    assert_on_valkey_with(&after, 60);
    for i in 0..60 {
        assert_eq!(
            cluster_cli(&configuration, &["GET", &format!("k{i}")]),
            format!("v{i}")
        );
    }
    assert!(cli(&configuration, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
}

#[tokio::test]
async fn the_engine_change_of_one_shard_with_a_replica_swaps_to_the_upgraded_replica() {
    let r = Rehearsal::new();
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "one", "template": "cloudformation/engine-change.yaml",
                "parameters": {"ReplicationGroupId": "cache-one"}}),
        )
        .await;
    let primary = out_str(&out, "PrimaryEndpoint").to_string();
    for i in 0..50 {
        cli(&primary, &["SET", &format!("k{i}"), "v"]);
    }
    let before = Value::Object(
        r.ok("group.describe", json!({"replication_group": "cache-one"}))
            .await,
    );
    assert_eq!(before["cluster_mode"], false);
    assert_eq!(before["configuration_endpoint"], Value::Null);
    assert_eq!(before["shards"][0]["slots"], "0-16383");
    let after = Value::Object(
        r.ok(
            "engine.modify",
            json!({"replication_group": "cache-one", "engine": "valkey"}),
        )
        .await,
    );
    assert_failed_over(&before, &after);
    assert_eq!(
        after["primary_endpoint"],
        before["shards"][0]["replicas"][0]
    );
    assert_on_valkey_with(&after, 50);
    let new_primary = after["primary_endpoint"].as_str().unwrap();
    assert_eq!(cli(new_primary, &["SET", "after", "1"]), "OK");
}

const TOKEN: &str = "rehearsal-token-0123456789";

#[tokio::test]
async fn a_group_with_in_transit_encryption_and_an_auth_token_serves_tls_and_auth_only() {
    let r = Rehearsal::new();
    let path = template(
        &r,
        "secured.yaml",
        &format!("{SHARDED}      TransitEncryptionEnabled: true\n      AuthToken: !Ref Token\n"),
        CONFIGURATION,
    );
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "sec", "template": path,
                "parameters": {"Shards": "2", "Token": TOKEN}}),
        )
        .await;
    let configuration = out_str(&out, "ConfigurationEndpoint").to_string();
    let described = Value::Object(
        r.ok("group.describe", json!({"replication_group": "sec-cache"}))
            .await,
    );
    assert_eq!(
        (&described["tls"], &described["auth"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(described["shards"].as_array().unwrap().len(), 2);
    let (host, port) = configuration.rsplit_once(':').unwrap();
    let tls_cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["--tls", "--insecure", "-h", host, "-p", port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    assert_eq!(tls_cli(&["-a", TOKEN, "--no-auth-warning", "PING"]), "PONG");
    assert!(tls_cli(&["PING"]).starts_with("NOAUTH"), "AUTH is required");
    assert_eq!(cli(&configuration, &["PING"]), "", "no plain-text port");
    let info = tls_cli(&["-a", TOKEN, "--no-auth-warning", "CLUSTER", "INFO"]);
    assert!(info.contains("cluster_state:ok"), "{info}");
    for file in ["local-state.json", "journal.jsonl"] {
        let text = std::fs::read_to_string(r.run_dir().join(file)).unwrap();
        assert!(!text.contains(TOKEN), "{file} holds no token");
    }

    let refused = template(
        &r,
        "plain-token.yaml",
        "      NumCacheClusters: 1\n      AuthToken: !Ref Token\n",
        "  Id:\n    Value: !Ref Cache\n",
    );
    let err = r
        .step(
            "stack.deploy",
            json!({"stack_name": "tok", "template": refused, "parameters": {"Token": TOKEN}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Resources.Cache.Properties.AuthToken: ElastiCache takes an AUTH token only with TransitEncryptionEnabled: true"
    );
}

/// `value` with every string, number and boolean replaced by its type: what two platforms
/// must agree on.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

#[tokio::test]
async fn aws_describes_a_sharded_secured_group_in_the_shape_local_does() {
    use aws_sdk_elasticache::Client;
    use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
    use aws_sdk_elasticache::types::{Endpoint, NodeGroup, NodeGroupMember, ReplicationGroup};
    use aws_smithy_mocks::mock;

    let host = |id: &str| format!("{id}.orders.abc123.use1.cache.amazonaws.com");
    let member = move |id: &str| {
        NodeGroupMember::builder()
            .cache_cluster_id(id)
            .read_endpoint(Endpoint::builder().address(host(id)).port(6379).build())
            .build()
    };
    let shard = move |id: &str, slots: &str| {
        NodeGroup::builder()
            .node_group_id(id)
            .slots(slots)
            .node_group_members(member(&format!("orders-{id}-001")))
            .node_group_members(member(&format!("orders-{id}-002")))
            .build()
    };
    let describe = mock!(Client::describe_replication_groups).then_output(move || {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(
                ReplicationGroup::builder()
                    .replication_group_id("orders")
                    .status("available")
                    .engine("valkey")
                    .cluster_enabled(true)
                    .transit_encryption_enabled(true)
                    .auth_token_enabled(true)
                    .configuration_endpoint(
                        Endpoint::builder()
                            .address("clustercfg.orders.abc123.use1.cache.amazonaws.com")
                            .port(6379)
                            .build(),
                    )
                    .node_groups(shard("0001", "0-8191"))
                    .node_groups(shard("0002", "8192-16383"))
                    .build(),
            )
            .build()
    });
    let clusters = crate::aws_mocks::no_clusters();
    let aws = target(&[&describe, &clusters], fast_waits());
    let run = RunDir::new();
    let out = Value::Object(
        run.step(
            &aws,
            "describe",
            "group.describe",
            json!({"replication_group": "orders"}),
        )
        .await
        .unwrap(),
    );
    let endpoint = |id: &str| format!("{}:6379", host(id));
    let node = |id: &str, role: &str| json!({"id": id, "role": role, "endpoint": endpoint(id)});
    let configuration = "clustercfg.orders.abc123.use1.cache.amazonaws.com:6379";
    assert_eq!(
        out,
        json!({
            "id": "orders", "status": "available", "engine": "valkey", "engine_version": "",
            "primary_endpoint": configuration,
            "nodes": [
                node("orders-0001-001", "primary"), node("orders-0001-002", "replica"),
                node("orders-0002-001", "primary"), node("orders-0002-002", "replica"),
            ],
            "cluster_mode": true, "configuration_endpoint": configuration,
            "shards": [
                {"id": "0001", "slots": "0-8191", "primary_endpoint": endpoint("orders-0001-001"), "replicas": [endpoint("orders-0001-002")]},
                {"id": "0002", "slots": "8192-16383", "primary_endpoint": endpoint("orders-0002-001"), "replicas": [endpoint("orders-0002-002")]},
            ],
            "tls": true, "auth": true,
        })
    );

    let r = Rehearsal::new();
    let path = template(&r, "sharded.yaml", SHARDED, CONFIGURATION);
    r.ok(
        "stack.deploy",
        json!({"stack_name": "sh", "template": path, "parameters": {"Shards": "2"}}),
    )
    .await;
    let local = Value::Object(
        r.ok("group.describe", json!({"replication_group": "sh-cache"}))
            .await,
    );
    assert_eq!(shape(&local), shape(&out));
    assert_eq!(local["shards"].as_array().unwrap().len(), 2);
}

/// A self-hosted source of `SourceShards` shards and a target of `TargetShards`.
const MIGRATION: &str = r#"AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  SourceShards:
    Type: String
    Default: "2"
  TargetShards:
    Type: String
    Default: "3"
  SourcePort:
    Type: Number
    Default: 6379
Resources:
  Source:
    Type: AWS::EC2::Instance
    Metadata:
      Runbook:
        Engine: redis
        PortParameter: SourcePort
        Shards: !Ref SourceShards
  Target:
    Type: AWS::ElastiCache::ReplicationGroup
    Properties:
      ReplicationGroupId: !Sub "${AWS::StackName}-target"
      ReplicationGroupDescription: migration target
      Engine: valkey
      NumNodeGroups: !Ref TargetShards
      ReplicasPerNodeGroup: 0
      MultiAZEnabled: true
Outputs:
  Source:
    Value: !Join [":", [!GetAtt Source.PrivateIp, !Ref SourcePort]]
"#;

/// Issue 16: two sides sharded differently are refused by preflight, test and start, each
/// naming both layouts, and nothing is changed.
#[tokio::test]
async fn a_migration_between_differently_sharded_sides_is_refused_naming_both() {
    let r = Rehearsal::new();
    let path = r
        .work
        .write("migration.yaml", MIGRATION)
        .display()
        .to_string();
    let out = r
        .ok(
            "stack.deploy",
            json!({"stack_name": "mm", "template": path}),
        )
        .await;
    let source = out_str(&out, "Source").to_string();
    let why = format!(
        "the source redis://{source} has 2 shard(s) (0-8191; 8192-16383) and mm-target has 3 (0001 0-5461; 0002 5462-10922; 0003 10923-16383); an online migration needs as many shards on both sides, each with the same slots"
    );
    let request = json!({"replication_group": "mm-target", "source": source});
    for action in ["migration.test", "migration.start"] {
        let err = r.step(action, request.clone()).await.unwrap_err();
        assert_eq!(err, why, "{action}");
    }
    let err = r
        .step("migration.preflight", request.clone())
        .await
        .unwrap_err();
    assert!(
        err.starts_with("1 migration prerequisite(s) not met: target_shard_count: "),
        "{err}"
    );
    assert!(err.ends_with(&why), "{err}");
    let described = Value::Object(
        r.ok("group.describe", json!({"replication_group": "mm-target"}))
            .await,
    );
    assert_eq!(described["status"], "available", "not migrating");
    for node in endpoints(&described) {
        assert!(cli(&node, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
    }
}

/// Issue 16: a cluster's snapshot restores into as many shards; another count is refused.
#[tokio::test]
async fn a_cluster_snapshot_restores_into_as_many_shards_only() {
    let r = Rehearsal::new();
    let path = r
        .work
        .write("migration.yaml", MIGRATION)
        .display()
        .to_string();
    r.ok(
        "stack.deploy",
        json!({"stack_name": "sn", "template": path}),
    )
    .await;
    r.ok(
        "snapshot.create",
        json!({"replication_group": "sn-target", "snapshot": "three"}),
    )
    .await;
    let err = r
        .step(
            "snapshot.restore",
            json!({"snapshot": "three", "replication_group": "again", "engine": "valkey", "shards": 2}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "snapshot three holds 3 shard(s) (0001 0-5461; 0002 5462-10922; 0003 10923-16383); a restore makes a group of as many, so ask for shards: 3"
    );
    let restored = Value::Object(
        r.ok(
            "snapshot.restore",
            json!({"snapshot": "three", "replication_group": "again", "engine": "valkey", "replicas": 0}),
        )
        .await,
    );
    let slots: Vec<&str> = restored["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slots"].as_str().unwrap())
        .collect();
    assert_eq!(slots, ["0-5461", "5462-10922", "10923-16383"]);
    assert!(
        cli(
            restored["configuration_endpoint"].as_str().unwrap(),
            &["CLUSTER", "INFO"]
        )
        .contains("cluster_state:ok")
    );
}

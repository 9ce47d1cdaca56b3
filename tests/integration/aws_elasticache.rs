//! The aws target against a replication group made in moto: describe, the engine change
//! (ModifyReplicationGroup, then the wait for `available`), snapshots and the
//! migration preflight's security-group path through EC2.

use runbook::endpoint::Resolver;
use runbook::platform::Platform;
use runbook::platform::contract::{CheckMigrationTarget, TargetChecks};
use serde_json::json;

use crate::aws_support::{Moto, RunDir};
use crate::support::{Engine, Server};

async fn create_group(moto: &Moto, id: &str, multi_az: bool) {
    moto.clients()
        .elasticache
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description("runbook test group")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(multi_az)
        .multi_az_enabled(multi_az)
        .send()
        .await
        .expect("CreateReplicationGroup in moto");
}

#[tokio::test]
async fn the_engine_change_modifies_the_group_once_and_reports_it() {
    let moto = Moto::start();
    create_group(&moto, "cache-a", true).await;
    let aws = moto.aws();
    let run = RunDir::new();

    let before = run
        .step(
            &aws,
            "describe",
            "group.describe",
            json!({"replication_group": "cache-a"}),
        )
        .await
        .expect("describe");
    assert_eq!(before["engine"], "redis");
    assert_eq!(before["status"], "available");
    assert!(
        before["primary_endpoint"]
            .as_str()
            .unwrap()
            .ends_with(":6379")
    );
    assert_eq!(before["nodes"][0]["role"], "primary");

    let inputs = json!({"replication_group": "cache-a", "engine": "valkey"});
    let after = run
        .step(&aws, "engine", "engine.modify", inputs.clone())
        .await
        .expect("engine change");
    assert_eq!(after["engine"], "valkey");
    let stored = moto
        .clients()
        .elasticache
        .describe_replication_groups()
        .replication_group_id("cache-a")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.replication_groups()[0].engine(), Some("valkey"));
    assert!(
        run.notes("engine")
            .iter()
            .any(|n| n.contains("ModifyReplicationGroup accepted"))
    );

    // Resumed after the change: observed as done, not sent again.
    run.step(&aws, "engine-again", "engine.modify", inputs)
        .await
        .expect("again");
    let notes = run.notes("engine-again");
    assert!(
        notes.iter().any(|n| n.contains("nothing to change")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_missing_group_is_a_clear_failure() {
    let moto = Moto::start();
    let aws = moto.aws();
    let run = RunDir::new();
    let err = run
        .step(
            &aws,
            "describe",
            "group.describe",
            json!({"replication_group": "nope"}),
        )
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("replication group `nope` does not exist"),
        "{}",
        err.message
    );
    assert!(err.message.contains("--region"), "{}", err.message);
}

#[tokio::test]
async fn a_snapshot_is_taken_once() {
    let moto = Moto::start();
    create_group(&moto, "cache-s", true).await;
    let aws = moto.aws();
    let run = RunDir::new();
    let inputs = json!({"replication_group": "cache-s", "snapshot": "before-valkey"});
    let out = run
        .step(&aws, "snap", "snapshot.create", inputs.clone())
        .await
        .expect("snapshot");
    assert_eq!(out["snapshot"], "before-valkey");
    assert_eq!(out["group"], "cache-s");
    assert_eq!(out["status"], "available");
    run.step(&aws, "snap-again", "snapshot.create", inputs)
        .await
        .expect("again");
    assert!(
        run.notes("snap-again")
            .iter()
            .any(|n| n.contains("already exists"))
    );
}

#[tokio::test]
async fn the_preflight_finds_the_security_group_that_lets_the_cache_reach_the_source() {
    let moto = Moto::start();
    create_group(&moto, "cache-m", true).await;
    create_group(&moto, "cache-single-az", false).await;
    let ec2 = moto.ec2();
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.40.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.40.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let open_sg = ec2
        .create_security_group()
        .group_name("source-open")
        .description("source reachable")
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&open_sg)
        .ip_protocol("tcp")
        .from_port(6379)
        .to_port(6379)
        .cidr_ip("10.40.0.0/16")
        .send()
        .await
        .unwrap();
    let closed_sg = ec2
        .create_security_group()
        .group_name("source-closed")
        .description("source unreachable")
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    for (ip, sg) in [("10.40.1.10", &open_sg), ("10.40.1.11", &closed_sg)] {
        ec2.run_instances()
            .image_id("ami-12c6146b")
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet_id)
            .private_ip_address(ip)
            .security_group_ids(sg)
            .send()
            .await
            .unwrap();
    }
    // The source itself is a real server, reached through --resolve as through a tunnel.
    let source = Server::start(Engine::Redis);
    let resolver = Resolver::parse(&[
        format!("10.40.1.10:6379=127.0.0.1:{}", source.port),
        format!("10.40.1.11:6379=127.0.0.1:{}", source.port),
    ])
    .unwrap();
    let run = RunDir::with_resolver(resolver);
    let aws = moto.aws();
    // Not an action of its own (`migration.preflight` asks it): the typed reply is what
    // the contract checks here.
    let platform: &dyn Platform = &aws;
    let check = |step: &'static str, group: &str, host: &str| {
        let request = CheckMigrationTarget {
            replication_group: group.into(),
            source: format!("{host}:6379"),
        };
        let run = &run;
        async move {
            platform
                .serve(&run.ctx(platform, step), &request)
                .await
                .expect("the checks are made")
        }
    };
    let ok = |checks: &TargetChecks, name: &str| {
        checks
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
            .ok
    };

    let good = check("pre", "cache-m", "10.40.1.10").await;
    assert!(good.checks.iter().all(|c| c.ok), "{good:?}");
    let sg = good
        .checks
        .iter()
        .find(|c| c.name == "security_group_allows_target")
        .unwrap();
    assert!(sg.detail.contains("10.40.0.0/16"), "{sg:?}");
    assert!(ok(&good, "target_shard_count"));

    let closed = check("pre2", "cache-m", "10.40.1.11").await;
    assert!(!ok(&closed, "security_group_allows_target"), "{closed:?}");

    let single = check("pre3", "cache-single-az", "10.40.1.10").await;
    assert!(!ok(&single, "target_multi_az"), "{single:?}");
}

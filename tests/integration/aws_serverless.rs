//! The serverless and S3 operations on the aws platform, through the registered actions.
//! moto (5.2) has no serverless API and no CopySnapshot, so those calls are
//! aws-smithy-mocks answering as ElastiCache does; moto serves what it does model: the
//! snapshots a preflight reads and the replication group seeded from `SnapshotArns`.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::complete_migration::CompleteMigrationOutput;
use aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput;
use aws_sdk_elasticache::operation::describe_serverless_caches::DescribeServerlessCachesOutput;
use aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_elasticache::operation::modify_serverless_cache::ModifyServerlessCacheOutput;
use aws_sdk_elasticache::operation::prepare_migration::PrepareMigrationOutput;
use aws_sdk_elasticache::operation::start_migration::StartMigrationOutput;
use aws_sdk_elasticache::types::{
    DataTieringStatus, Endpoint as CacheEndpoint, MigrationSummary, ServerlessCache, Snapshot,
};
use aws_smithy_mocks::{Rule, mock};
use serde_json::{Value, json};

use crate::aws_mocks::{aws_error, target};
use crate::aws_support::{Moto, RunDir, fast_waits};
use crate::support::Workspace;

const CACHE: &str = "orders-valkey";
const ENDPOINT: &str = "orders-valkey-abc123.serverless.use1.cache.amazonaws.com";

fn cache(status: &str, engine: &str, migration: Option<&str>) -> ServerlessCache {
    let mut c = ServerlessCache::builder()
        .serverless_cache_name(CACHE)
        .status(status)
        .engine(engine)
        .major_engine_version(if engine == "valkey" { "8" } else { "7" })
        .full_engine_version(if engine == "valkey" { "8.1.1" } else { "7.1" })
        .arn(format!(
            "arn:aws:elasticache:us-east-1:123456789012:serverlesscache:{CACHE}"
        ))
        .endpoint(
            CacheEndpoint::builder()
                .address(ENDPOINT)
                .port(6379)
                .build(),
        )
        .reader_endpoint(
            CacheEndpoint::builder()
                .address(ENDPOINT)
                .port(6380)
                .build(),
        );
    if let Some(m) = migration {
        c = c.migration(MigrationSummary::builder().status(m).build());
    }
    c.build()
}

/// DescribeServerlessCaches answering each of `states` once, the last one from then on.
fn described(states: &'static [(&'static str, &'static str, Option<&'static str>)]) -> Rule {
    let out = |i: usize| {
        let (status, engine, migration) = states[i];
        move || {
            DescribeServerlessCachesOutput::builder()
                .serverless_caches(cache(status, engine, migration))
                .build()
        }
    };
    let mut rule = mock!(Client::describe_serverless_caches).sequence();
    for i in 0..states.len() - 1 {
        rule = rule.output(out(i));
    }
    rule.output(out(states.len() - 1)).repeatedly().build()
}

fn no_events() -> Rule {
    crate::aws_mocks::events(&[])
}

fn expected(status: &str, engine: &str, migration: &str) -> Value {
    json!({
        "name": CACHE,
        "status": status,
        "engine": engine,
        "major_engine_version": if engine == "valkey" { "8" } else { "7" },
        "full_engine_version": if engine == "valkey" { "8.1.1" } else { "7.1" },
        "endpoint": format!("{ENDPOINT}:6379"),
        "reader_endpoint": format!("{ENDPOINT}:6380"),
        "url": format!("rediss://{ENDPOINT}:6379"),
        "tls": true,
        "arn": format!("arn:aws:elasticache:us-east-1:123456789012:serverlesscache:{CACHE}"),
        "migration_status": migration,
    })
}

#[tokio::test]
async fn prepare_start_and_complete_wait_for_their_states_and_are_not_repeated() {
    let run = RunDir::new();
    let describe = described(&[
        ("available", "valkey", None),
        ("available", "valkey", Some("preparing")),
        ("available", "valkey", Some("prepared")),
    ]);
    let prepare = mock!(Client::prepare_migration)
        .match_requests(|r| {
            r.serverless_cache_name() == Some(CACHE)
                && r.customer_node_endpoint_list().len() == 1
                && r.customer_node_endpoint_list()[0].address() == Some("10.0.1.5")
                && r.source_authentication_configuration()
                    .and_then(|a| a.secret_manager_config())
                    .and_then(|s| s.secret_arn())
                    == Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:src")
        })
        .then_output(|| PrepareMigrationOutput::builder().build());
    let evts = no_events();
    let aws = target(&[&describe, &prepare, &evts], fast_waits());
    let inputs = json!({
        "serverless_cache": CACHE,
        "source": "10.0.1.5:6379",
        "source_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:src",
    });
    let out = run
        .step(
            &aws,
            "prepare",
            "serverless.prepare_migration",
            inputs.clone(),
        )
        .await
        .expect("prepare");
    assert_eq!(
        Value::Object(out),
        expected("available", "valkey", "prepared")
    );
    assert_eq!(prepare.num_calls(), 1);
    // Resumed: the migration is prepared already.
    run.step(
        &aws,
        "prepare-again",
        "serverless.prepare_migration",
        inputs,
    )
    .await
    .expect("resumed prepare");
    assert_eq!(prepare.num_calls(), 1);

    let describe = described(&[
        ("available", "valkey", Some("prepared")),
        ("available", "valkey", Some("starting")),
        ("available", "valkey", Some("syncing")),
    ]);
    let start = mock!(Client::start_migration)
        .match_requests(|r| {
            r.serverless_cache_name() == Some(CACHE)
                && r.auto_cutover() == Some(false)
                && r.clear_target_cache_data() == Some(true)
                && r.replication_group_id().is_none()
        })
        .then_output(|| StartMigrationOutput::builder().build());
    let aws = target(&[&describe, &start, &evts], fast_waits());
    let out = run
        .step(
            &aws,
            "start",
            "serverless.start_migration",
            json!({"serverless_cache": CACHE, "clear_target_cache_data": true}),
        )
        .await
        .expect("start");
    assert_eq!(
        Value::Object(out),
        expected("available", "valkey", "syncing")
    );
    assert_eq!(start.num_calls(), 1);
    assert_eq!(
        run.notes("start"),
        [
            "StartMigration accepted for orders-valkey".to_string(),
            "waiting for the data sync of orders-valkey: status available, migration starting"
                .to_string(),
        ]
    );

    let describe = described(&[
        ("available", "valkey", Some("syncing")),
        ("modifying", "valkey", Some("cutting-over")),
        ("available", "valkey", Some("completed")),
    ]);
    let complete = mock!(Client::complete_migration)
        .match_requests(|r| r.serverless_cache_name() == Some(CACHE) && r.force() == Some(false))
        .then_output(|| CompleteMigrationOutput::builder().build());
    let aws = target(&[&describe, &complete, &evts], fast_waits());
    let out = run
        .step(
            &aws,
            "complete",
            "serverless.complete_migration",
            json!({"serverless_cache": CACHE}),
        )
        .await
        .expect("complete");
    let mut want = expected("available", "valkey", "completed");
    want["forced"] = json!(false);
    assert_eq!(Value::Object(out), want);
    assert_eq!(complete.num_calls(), 1);
}

#[tokio::test]
async fn a_stop_during_the_cutover_is_a_clear_fatal_failure() {
    let run = RunDir::new();
    let describe = described(&[("modifying", "valkey", Some("cutting-over"))]);
    let stop = mock!(Client::stop_migration)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "InvalidServerlessCacheStateFault",
                "Serverless cache orders-valkey is in cutover.",
            )),
        )
        .repeatedly()
        .build();
    let evts = no_events();
    let aws = target(&[&describe, &stop, &evts], fast_waits());
    let err = run
        .step(
            &aws,
            "stop",
            "serverless.stop_migration",
            json!({"serverless_cache": CACHE}),
        )
        .await
        .unwrap_err();
    assert_eq!(stop.num_calls(), 1, "a refused stop is not retried");
    assert!(!err.transient);
    assert_eq!(
        err.message,
        "elasticache:StopMigration was refused in the serverless cache's current state (InvalidServerlessCacheStateFault: Serverless cache orders-valkey is in cutover.); StopMigration is refused during the cutover, other changes while the cache is not `available`: describe it, wait, then resume the run"
    );
}

#[tokio::test]
async fn an_aws_side_failure_is_transient() {
    let run = RunDir::new();
    let describe = described(&[("available", "redis", None)]);
    let modify = mock!(Client::modify_serverless_cache)
        .sequence()
        .http_status(503, Some(aws_error("ServiceUnavailable", "Try again.")))
        .repeatedly()
        .build();
    let evts = no_events();
    let aws = target(&[&describe, &modify, &evts], fast_waits());
    let err = run
        .step(
            &aws,
            "engine",
            "serverless.modify_engine",
            json!({"serverless_cache": CACHE, "engine": "valkey", "major_engine_version": "8"}),
        )
        .await
        .unwrap_err();
    assert!(err.transient, "{}", err.message);
    assert_eq!(modify.num_calls(), 3, "the SDK retried a 5xx");
}

#[tokio::test]
async fn the_engine_change_waits_until_the_cache_runs_valkey() {
    let run = RunDir::new();
    let describe = described(&[
        ("available", "redis", None),
        ("modifying", "redis", None),
        ("available", "valkey", None),
    ]);
    let modify = mock!(Client::modify_serverless_cache)
        .match_requests(|r| r.engine() == Some("valkey") && r.major_engine_version() == Some("8"))
        .then_output(|| ModifyServerlessCacheOutput::builder().build());
    let evts = no_events();
    let aws = target(&[&describe, &modify, &evts], fast_waits());
    let out = run
        .step(
            &aws,
            "engine",
            "serverless.modify_engine",
            json!({"serverless_cache": CACHE, "engine": "valkey", "major_engine_version": "8"}),
        )
        .await
        .expect("engine change");
    assert_eq!(Value::Object(out), expected("available", "valkey", ""));
    assert_eq!(modify.num_calls(), 1);
}

#[tokio::test]
async fn a_node_based_snapshot_goes_to_s3_and_moto_seeds_a_group_from_it() {
    // CopySnapshot is not in moto: mocked, with the snapshot exporting, then available.
    let run = RunDir::new();
    let snap = |status: &'static str| {
        move || {
            DescribeSnapshotsOutput::builder()
                .snapshots(
                    Snapshot::builder()
                        .snapshot_name("before")
                        .snapshot_status(status)
                        .engine("redis")
                        .engine_version("7.1")
                        .num_node_groups(1)
                        .data_tiering(DataTieringStatus::Disabled)
                        .build(),
                )
                .build()
        }
    };
    let describe = mock!(Client::describe_snapshots)
        .sequence()
        .output(snap("available"))
        .output(snap("exporting"))
        .output(snap("available"))
        .repeatedly()
        .build();
    let copy = mock!(Client::copy_snapshot)
        .match_requests(|r| {
            r.source_snapshot_name() == Some("before")
                && r.target_snapshot_name() == Some("before")
                && r.target_bucket() == Some("orders-snapshots")
        })
        .then_output(|| CopySnapshotOutput::builder().build());
    let aws = target(&[&describe, &copy], fast_waits());
    let out = run
        .step(
            &aws,
            "export",
            "snapshot.export",
            json!({"snapshot": "before", "bucket": "orders-snapshots"}),
        )
        .await
        .expect("export");
    assert_eq!(
        Value::Object(out),
        json!({
            "snapshot": "before",
            "bucket": "orders-snapshots",
            "objects": ["arn:aws:s3:::orders-snapshots/before-0001.rdb"],
            "first_object": "arn:aws:s3:::orders-snapshots/before-0001.rdb",
        })
    );
    assert_eq!(copy.num_calls(), 1);

    // moto: a real snapshot for the preflight, and the group seeded from SnapshotArns.
    let moto = Moto::start();
    let ec = moto.clients().elasticache;
    ec.create_replication_group()
        .replication_group_id("redis-source")
        .replication_group_description("the source")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(1)
        .send()
        .await
        .expect("CreateReplicationGroup in moto");
    ec.create_snapshot()
        .replication_group_id("redis-source")
        .snapshot_name("before")
        .send()
        .await
        .expect("CreateSnapshot in moto");
    let aws = moto.aws();
    let checks = run
        .step(
            &aws,
            "preflight",
            "snapshot.preflight",
            json!({"snapshot": "before", "bucket": "orders-snapshots", "engine": "valkey", "engine_version": "8.2"}),
        )
        .await
        .expect("preflight");
    let names: Vec<(&str, bool)> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("snapshot_available", true),
            ("data_tiering", true),
            ("rdb_version", true),
            ("bucket", true)
        ]
    );
    let err = run
        .step(
            &aws,
            "preflight-bad",
            "snapshot.preflight",
            json!({"snapshot": "before", "bucket": "Orders_Snapshots", "engine": "valkey"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "S3 preflight: bucket failed: `Orders_Snapshots` is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"
    );
    let group = run
        .step(
            &aws,
            "import",
            "snapshot.import",
            json!({
                "snapshot_arns": ["arn:aws:s3:::orders-snapshots/before-0001.rdb"],
                "replication_group": "valkey-from-s3",
                "engine": "valkey",
                "engine_version": "8.2",
            }),
        )
        .await
        .expect("import");
    assert_eq!(
        (
            group["id"].as_str(),
            group["engine"].as_str(),
            group["status"].as_str()
        ),
        (Some("valkey-from-s3"), Some("valkey"), Some("available"))
    );
}

/// `plan --platform aws` of the serverless runbook names the migration's API calls, in order.
#[test]
fn the_serverless_runbook_plans_prepare_start_and_complete_migration_on_aws() {
    let ws = Workspace::new();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runbooks/serverless-migration.yaml")
        .display()
        .to_string();
    let ran = ws
        .cmd(&["plan", &path, "--platform", "aws", "--format", "json"])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .run();
    assert_eq!((ran.status, ran.stderr.as_str()), (0, ""));
    let plan: Value = serde_json::from_str(&ran.stdout).expect("a json plan");
    let calls = |section: &str| -> Vec<String> {
        plan[section]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["operations"].as_array().cloned().unwrap_or_default())
            .filter_map(|o| o["name"].as_str().map(str::to_string))
            .filter(|n| n.ends_with("Migration"))
            .collect()
    };
    assert_eq!(
        calls("steps"),
        [
            "elasticache:PrepareMigration",
            "elasticache:StartMigration",
            "elasticache:CompleteMigration"
        ]
    );
    assert_eq!(
        calls("rollback"),
        ["elasticache:StopMigration", "elasticache:CompleteMigration"]
    );
}

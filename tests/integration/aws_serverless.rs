//! The serverless and S3 operations on the aws platform, through the registered actions.
//! moto (5.2) has no serverless API and no CopySnapshot, so those calls are
//! aws-smithy-mocks answering as ElastiCache does; moto serves what it does model: the
//! snapshots a preflight reads, the buckets and RDB files it checks (S3), and the
//! replication group seeded from `SnapshotArns`.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::complete_migration::CompleteMigrationOutput;
use aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput;
use aws_sdk_elasticache::operation::create_serverless_cache::CreateServerlessCacheOutput;
use aws_sdk_elasticache::operation::describe_serverless_caches::DescribeServerlessCachesOutput;
use aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_elasticache::operation::export_serverless_cache_snapshot::ExportServerlessCacheSnapshotOutput;
use aws_sdk_elasticache::operation::modify_serverless_cache::ModifyServerlessCacheOutput;
use aws_sdk_elasticache::operation::prepare_migration::PrepareMigrationOutput;
use aws_sdk_elasticache::operation::start_migration::StartMigrationOutput;
use aws_sdk_elasticache::types::{
    DataTieringStatus, Endpoint as CacheEndpoint, MigrationSummary, ServerlessCache, Snapshot,
};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, ObjectCannedAcl};
use aws_smithy_mocks::{Rule, mock};
use serde_json::{Value, json};

use crate::aws_mocks::{aws_error, target, target_over};
use crate::aws_support::{Moto, RunDir, fast_waits};
use crate::support::Workspace;

const CACHE: &str = "orders-valkey";
/// ElastiCache's canonical user, to which a bucket's ACL grants access.
const ELASTICACHE: &str = "540804c33a284a299d2547575ce1010f2312ef3da9b3a053c8bc45bf233e4353";

/// How a test bucket lets ElastiCache in.
enum Grant {
    /// READ, WRITE and READ_ACP to ElastiCache's canonical user.
    Acl,
    /// A bucket policy for the snapshot service principal.
    Policy,
    None,
}

/// A bucket in moto, in `region` (us-east-1 by default), granting ElastiCache `grant`.
async fn bucket(s3: &aws_sdk_s3::Client, name: &str, region: Option<&str>, grant: Grant) {
    let mut create = s3.create_bucket().bucket(name);
    if let Some(region) = region {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    create.send().await.expect("CreateBucket in moto");
    let id = format!("id={ELASTICACHE}");
    match grant {
        Grant::Acl => {
            s3.put_bucket_acl()
                .bucket(name)
                .grant_read(&id)
                .grant_write(&id)
                .grant_read_acp(&id)
                .send()
                .await
                .expect("PutBucketAcl in moto");
        }
        Grant::Policy => {
            let policy = json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "us-east-1.elasticache-snapshot.amazonaws.com"},
                "Action": ["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:GetBucketAcl"],
                "Resource": [format!("arn:aws:s3:::{name}"), format!("arn:aws:s3:::{name}/*")],
            }]});
            s3.put_bucket_policy()
                .bucket(name)
                .policy(policy.to_string())
                .send()
                .await
                .expect("PutBucketPolicy in moto");
        }
        Grant::None => {}
    }
}
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
    let s3 = moto.clients().s3;
    bucket(&s3, "orders-snapshots", None, Grant::Acl).await;
    bucket(&s3, "policy-snapshots", None, Grant::Policy).await;
    bucket(&s3, "eu-snapshots", Some("eu-west-1"), Grant::Acl).await;
    bucket(&s3, "closed-snapshots", None, Grant::None).await;
    let aws = moto.aws();
    let preflight = |bucket: &'static str| {
        let (run, aws) = (&run, &aws);
        async move {
            run.step(
                aws,
                &format!("preflight-{bucket}"),
                "snapshot.preflight",
                json!({"snapshot": "before", "bucket": bucket, "engine": "valkey", "engine_version": "8.2"}),
            )
            .await
        }
    };
    let checks = |bucket: &str, grant: &str| {
        json!({"checks": [
            {"name": "snapshot_available", "ok": true, "detail": "status available"},
            {"name": "data_tiering", "ok": true, "detail": "off"},
            {"name": "rdb_version", "ok": true, "detail": "valkey 8.2 loads an RDB of redis 7.1"},
            {"name": "bucket", "ok": true, "detail": format!("s3://{bucket} is a bucket name")},
            {"name": "bucket_region", "ok": true, "detail": format!("s3://{bucket} is in us-east-1")},
            {"name": "bucket_grant", "ok": true, "detail": grant},
        ]})
    };
    assert_eq!(
        Value::Object(preflight("orders-snapshots").await.expect("preflight")),
        checks(
            "orders-snapshots",
            "the bucket ACL grants ElastiCache's canonical user access"
        )
    );
    assert_eq!(
        Value::Object(preflight("policy-snapshots").await.expect("preflight")),
        checks(
            "policy-snapshots",
            "the bucket policy allows ElastiCache's service principal s3:PutObject"
        )
    );
    let refusals = [
        preflight("eu-snapshots").await.unwrap_err().message,
        preflight("closed-snapshots").await.unwrap_err().message,
        preflight("no-such-snapshots").await.unwrap_err().message,
        preflight("Orders_Snapshots").await.unwrap_err().message,
    ];
    assert_eq!(
        refusals,
        [
            "S3 preflight: bucket_region failed: s3://eu-snapshots is in eu-west-1, ElastiCache here is in us-east-1: ElastiCache uses only a bucket in its own region".to_string(),
            format!("S3 preflight: bucket_grant failed: s3://closed-snapshots grants ElastiCache neither READ, WRITE and READ_ACP in its ACL (canonical user {ELASTICACHE}) nor s3:PutObject in the bucket policy (principal REGION.elasticache-snapshot.amazonaws.com): add one (docs/aws-permissions.md)"),
            "the bucket s3://no-such-snapshots does not exist: create it in the snapshot's region first".to_string(),
            "S3 preflight: bucket failed: `Orders_Snapshots` is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)".to_string(),
        ]
    );

    // Seeding checks the RDB file itself: there, and readable by ElastiCache.
    let import = |step: &'static str| {
        let (run, aws) = (&run, &aws);
        async move {
            run.step(
                aws,
                step,
                "snapshot.import",
                json!({
                    "snapshot_arns": ["arn:aws:s3:::orders-snapshots/before-0001.rdb"],
                    "replication_group": "valkey-from-s3",
                    "engine": "valkey",
                    "engine_version": "8.2",
                }),
            )
            .await
        }
    };
    let missing = import("import-missing").await.unwrap_err().message;
    // `private` as S3 makes every new object (moto, without it, shows the bucket's ACL).
    s3.put_object()
        .bucket("orders-snapshots")
        .key("before-0001.rdb")
        .acl(ObjectCannedAcl::Private)
        .body(b"REDIS0011".to_vec().into())
        .send()
        .await
        .expect("PutObject in moto");
    let unreadable = import("import-unreadable").await.unwrap_err().message;
    assert_eq!(
        [missing, unreadable],
        [
            "arn:aws:s3:::orders-snapshots/before-0001.rdb does not exist: the RDB file must be in S3 before a cache is seeded from it".to_string(),
            format!("S3 check: bucket_grant failed: s3://orders-snapshots/before-0001.rdb grants ElastiCache neither READ in its object ACL (canonical user {ELASTICACHE}) nor s3:GetObject in the bucket policy (principal REGION.elasticache-snapshot.amazonaws.com): add one (docs/aws-permissions.md)"),
        ]
    );
    s3.put_object_acl()
        .bucket("orders-snapshots")
        .key("before-0001.rdb")
        .grant_read(format!("id={ELASTICACHE}"))
        .send()
        .await
        .expect("PutObjectAcl in moto");
    let group = import("import").await.expect("import");
    assert_eq!(
        (
            group["id"].as_str(),
            group["engine"].as_str(),
            group["status"].as_str()
        ),
        (Some("valkey-from-s3"), Some("valkey"), Some("available"))
    );
}

/// `plan --platform aws` of the serverless runbook: every AWS call and wait of every step
/// and rollback step, in order, with the parameters it shows (PrepareMigration,
/// StartMigration and CompleteMigration among them); data-plane operations are left to the
/// tests of their actions.
#[test]
fn the_serverless_runbook_plans_prepare_start_and_complete_migration_on_aws() {
    let ws = Workspace::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/runbooks/serverless-migration.yaml");
    let ran = ws
        .cmd(&["plan", &path, "--platform", "aws", "--format", "json"])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .run();
    assert_eq!((ran.status, ran.stderr.as_str()), (0, ""));
    let plan: Value = serde_json::from_str(&ran.stdout.replace(root, "ROOT")).expect("a json plan");
    let calls = |section: &str| -> Vec<String> {
        let mut lines = Vec::new();
        for step in plan[section].as_array().unwrap() {
            lines.push(format!(
                "{} {} {}",
                step["id"].as_str().unwrap(),
                step["action"].as_str().unwrap(),
                step["effect"].as_str().unwrap(),
            ));
            for op in step["operations"].as_array().unwrap() {
                match op["kind"].as_str().unwrap() {
                    "aws" => lines.push(format!(
                        "  {} {}{}",
                        op["name"].as_str().unwrap(),
                        op["params"],
                        if op["destructive"] == true {
                            " destructive"
                        } else {
                            ""
                        }
                    )),
                    "wait" => lines.push(format!("  wait {}", op["name"].as_str().unwrap())),
                    _ => {}
                }
            }
        }
        lines
    };
    let cache = "⟨steps.deploy.outputs.ServerlessCacheName⟩";
    let describe =
        format!("  elasticache:DescribeServerlessCaches {{\"ServerlessCacheName\":\"{cache}\"}}");
    let events = format!(
        "  elasticache:DescribeEvents {{\"SourceIdentifier\":\"{cache}\",\"SourceType\":\"serverless-cache\"}}"
    );
    let template = "ROOT/runbooks/../cloudformation/serverless-migration.yaml";
    assert_eq!(
        calls("steps"),
        [
            "deploy stack.deploy changes".to_string(),
            "  cloudformation:DescribeStacks {\"StackName\":\"serverless-migration\"}".into(),
            format!("  cloudformation:CreateStack {{\"StackName\":\"serverless-migration\",\"TemplateBody\":\"{template}\",\"Parameters\":{{}},\"Capabilities\":[\"CAPABILITY_IAM\",\"CAPABILITY_NAMED_IAM\"],\"when\":\"the stack does not exist\"}}"),
            format!("  cloudformation:CreateChangeSet {{\"StackName\":\"serverless-migration\",\"ChangeSetType\":\"UPDATE\",\"TemplateBody\":\"{template}\",\"Parameters\":{{}},\"when\":\"the stack exists\"}}"),
            "  cloudformation:DescribeChangeSet {\"when\":\"the stack exists\"}".into(),
            "  cloudformation:ExecuteChangeSet {\"when\":\"the change set has changes (may replace resources it lists)\"}".into(),
            "  wait until serverless-migration is CREATE_COMPLETE or UPDATE_COMPLETE".into(),
            "  cloudformation:DescribeStackEvents {\"StackName\":\"serverless-migration\"}".into(),
            "before serverless.describe observes".into(),
            describe.clone(),
            "preflight assert observes".into(),
            "seed data.seed changes".into(),
            "prepare serverless.prepare_migration changes".into(),
            describe.clone(),
            format!("  elasticache:PrepareMigration {{\"ServerlessCacheName\":\"{cache}\",\"CustomerNodeEndpointList\":[\"⟨steps.deploy.outputs.RedisSourceEndpoint⟩\"],\"when\":\"no migration is prepared yet\"}}"),
            format!("  wait until {cache} is `available` with its migration prepared"),
            events.clone(),
            "start serverless.start_migration destructive".into(),
            describe.clone(),
            format!("  elasticache:StartMigration {{\"ServerlessCacheName\":\"{cache}\",\"AutoCutover\":false,\"ClearTargetCacheData\":false,\"when\":\"the data sync does not run yet\"}} destructive"),
            format!("  wait until the data sync of {cache} runs"),
            events.clone(),
            "verify data.verify observes".into(),
            "cutover_ok approve observes".into(),
            "complete serverless.complete_migration changes".into(),
            describe.clone(),
            format!("  elasticache:CompleteMigration {{\"ServerlessCacheName\":\"{cache}\",\"Force\":false,\"when\":\"the migration is not complete yet\"}}"),
            format!("  wait until {cache} is `available` and its migration complete"),
            events.clone(),
            "verify_after data.verify observes".into(),
        ]
    );
    assert_eq!(
        calls("rollback"),
        [
            "stop_sync serverless.stop_migration changes".to_string(),
            describe.clone(),
            format!(
                "  elasticache:StopMigration {{\"ServerlessCacheName\":\"{cache}\",\"when\":\"the data sync runs (refused during the cutover)\"}}"
            ),
            format!("  wait until the data sync of {cache} is stopped"),
            events.clone(),
            "abort serverless.complete_migration destructive".into(),
            describe,
            format!(
                "  elasticache:CompleteMigration {{\"ServerlessCacheName\":\"{cache}\",\"Force\":true,\"when\":\"the migration is not complete yet\"}} destructive"
            ),
            format!("  wait until {cache} is `available` and its migration complete"),
            events,
            "point_back exec changes".into(),
        ]
    );
}

/// A serverless export and a cache seeded from S3 check the bucket and the RDB file in
/// moto's S3 first, and ElastiCache is never asked when they would not do.
#[tokio::test]
async fn serverless_s3_steps_check_the_bucket_before_asking_elasticache() {
    let moto = Moto::start();
    bucket(&moto.clients().s3, "closed-snapshots", None, Grant::None).await;
    let export = mock!(Client::export_serverless_cache_snapshot)
        .then_output(|| ExportServerlessCacheSnapshotOutput::builder().build());
    let create = mock!(Client::create_serverless_cache)
        .then_output(|| CreateServerlessCacheOutput::builder().build());
    let describe = mock!(Client::describe_serverless_caches)
        .then_output(|| DescribeServerlessCachesOutput::builder().build());
    let aws = target_over(&[&export, &create, &describe], fast_waits(), moto.clients());
    let run = RunDir::new();
    let refused = [
        run.step(
            &aws,
            "export",
            "serverless.export_snapshot",
            json!({"snapshot": "nightly", "bucket": "closed-snapshots"}),
        )
        .await
        .unwrap_err()
        .message,
        run.step(
            &aws,
            "create",
            "serverless.create",
            json!({
                "serverless_cache": "from-s3",
                "engine": "valkey",
                "snapshot_arns": ["arn:aws:s3:::closed-snapshots/nightly-0001.rdb"],
            }),
        )
        .await
        .unwrap_err()
        .message,
    ];
    assert_eq!(
        refused,
        [
            format!("S3 check: bucket_grant failed: s3://closed-snapshots grants ElastiCache neither READ, WRITE and READ_ACP in its ACL (canonical user {ELASTICACHE}) nor s3:PutObject in the bucket policy (principal REGION.elasticache-snapshot.amazonaws.com): add one (docs/aws-permissions.md)"),
            "arn:aws:s3:::closed-snapshots/nightly-0001.rdb does not exist: the RDB file must be in S3 before a cache is seeded from it".to_string(),
        ]
    );
    assert_eq!((export.num_calls(), create.num_calls()), (0, 0));
}

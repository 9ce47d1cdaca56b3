//! The ElastiCache calls moto does not have (StartMigration, TestMigration,
//! CompleteMigration, DescribeEvents) and the failure paths (throttling, a busy group, a
//! wait past its deadline), with aws-smithy-mocks underneath real SDK clients. Data-plane
//! parts stay real: the caught-up check reads INFO from real replicating servers.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::complete_migration::CompleteMigrationOutput;
use aws_sdk_elasticache::operation::describe_cache_clusters::DescribeCacheClustersOutput;
use aws_sdk_elasticache::operation::describe_events::DescribeEventsOutput;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::operation::start_migration::StartMigrationOutput;
use aws_sdk_elasticache::operation::test_migration::TestMigrationOutput;
use aws_sdk_elasticache::types::{
    Endpoint as CacheEndpoint, Event, NodeGroup, NodeGroupMember, ReplicationGroup,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use runbook::endpoint::Resolver;
use runbook::platform::aws::{Aws, Clients, WaitSettings};
use serde_json::{Value, json};

use crate::aws_support::{RunDir, fast_waits};
use crate::support::{Engine, Server};

pub(crate) const GROUP: &str = "orders";
pub(crate) const PRIMARY: &str = "master.orders.abc123.use1.cache.amazonaws.com";

pub(crate) fn group(status: &str, engine: &str) -> ReplicationGroup {
    ReplicationGroup::builder()
        .replication_group_id(GROUP)
        .status(status)
        .engine(engine)
        .member_clusters("orders-001")
        .node_groups(
            NodeGroup::builder()
                .node_group_id("0001")
                .primary_endpoint(CacheEndpoint::builder().address(PRIMARY).port(6379).build())
                .node_group_members(
                    NodeGroupMember::builder()
                        .cache_cluster_id("orders-001")
                        .current_role("primary")
                        .read_endpoint(
                            CacheEndpoint::builder()
                                .address("orders-001.orders.abc123.use1.cache.amazonaws.com")
                                .port(6379)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build()
}

pub(crate) fn described(
    status: &'static str,
    engine: &'static str,
) -> impl Fn() -> DescribeReplicationGroupsOutput {
    move || {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(group(status, engine))
            .build()
    }
}

/// DescribeCacheClusters with nothing to say (no engine version known).
pub(crate) fn no_clusters() -> Rule {
    mock!(Client::describe_cache_clusters)
        .then_output(|| DescribeCacheClustersOutput::builder().build())
}

pub(crate) fn events(messages: &'static [&'static str]) -> Rule {
    // Dated once: the same event asked for in a later second is still the same event.
    let now = chrono::Utc::now().timestamp();
    mock!(Client::describe_events).then_output(move || {
        let mut out = DescribeEventsOutput::builder();
        for (i, m) in messages.iter().enumerate() {
            out = out.events(
                Event::builder()
                    .source_identifier(GROUP)
                    .message(*m)
                    .date(DateTime::from_secs(now - 10 + i as i64))
                    .build(),
            );
        }
        out.build()
    })
}

/// An ElastiCache error response as AWS sends it.
pub(crate) fn aws_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    )
}

/// The aws target over an ElastiCache client made of `rules`; the other clients point at
/// a closed loopback port and are never called here.
pub(crate) fn target(rules: &[&Rule], wait: WaitSettings) -> Aws {
    target_over(rules, wait, closed_clients())
}

/// Clients of a closed loopback port: a call through one fails at once.
pub(crate) fn closed_clients() -> Clients {
    let unused = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    Clients::from_config(&unused)
}

/// The aws target over an ElastiCache client made of `rules` and the other `clients`
/// (moto's, for the services moto models).
pub(crate) fn target_over(rules: &[&Rule], wait: WaitSettings, mut clients: Clients) -> Aws {
    clients.elasticache = mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, rules, |c| c
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
        ));
    Aws::from_clients(clients).with_wait(wait)
}

/// The inputs of a migration step of the group from the source `10.0.1.5:6379`.
fn migration() -> Value {
    json!({"replication_group": GROUP, "source": "10.0.1.5:6379"})
}

#[tokio::test]
async fn start_migration_waits_for_migrating_and_a_finished_sync_and_is_not_repeated() {
    // The group's primary is a real server replicating from a real source, reached
    // through --resolve as a tunnel would.
    let source = Server::start(Engine::Redis);
    let replica = Server::start(Engine::Valkey);
    source.cli(&["SET", "k", "v"]);
    replica.cli(&["REPLICAOF", "127.0.0.1", &source.port.to_string()]);
    let resolver =
        Resolver::parse(&[format!("{PRIMARY}:6379=127.0.0.1:{}", replica.port)]).unwrap();
    let run = RunDir::with_resolver(resolver);

    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .output(described("available", "valkey"))
        .output(described("modifying", "valkey"))
        .output(described("migrating", "valkey"))
        .repeatedly()
        .build();
    let start = mock!(Client::start_migration)
        .match_requests(|r| {
            r.replication_group_id() == Some(GROUP)
                && r.customer_node_endpoint_list()
                    .iter()
                    .any(|e| e.address() == Some("10.0.1.5") && e.port() == Some(6379))
        })
        .then_output(|| {
            StartMigrationOutput::builder()
                .replication_group(group("modifying", "valkey"))
                .build()
        });
    let evts = events(&["Migration started for replication group orders"]);
    let clusters = no_clusters();
    let aws = target(&[&describe, &start, &evts, &clusters], fast_waits());
    let out = run
        .step(&aws, "start", "migration.start", migration())
        .await
        .expect("start migration");
    assert_eq!(start.num_calls(), 1);
    assert_eq!(out["status"], "migrating");
    let offset = out["replication"]["offset"].as_u64().unwrap();
    assert_eq!(
        out["replication"],
        json!({"checked": true, "master_link_status": "up", "master_host": "127.0.0.1", "offset": offset})
    );
    let notes = run.notes("start");
    assert!(
        notes.iter().any(|n| n.contains("status modifying")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("Migration started for replication group orders")),
        "{notes:?}"
    );

    // Resumed: the group already migrates, so StartMigration is not called again.
    run.step(&aws, "start-resumed", "migration.start", migration())
        .await
        .expect("resumed start");
    assert_eq!(start.num_calls(), 1);
    assert!(
        run.notes("start-resumed")
            .iter()
            .any(|n| n.contains("already migrating"))
    );
}

#[tokio::test]
async fn test_migration_fails_on_a_failed_test_event() {
    let run = RunDir::new();
    let describe =
        mock!(Client::describe_replication_groups).then_output(described("available", "valkey"));
    let test = mock!(Client::test_migration)
        .match_requests(|r| r.customer_node_endpoint_list().len() == 1)
        .then_output(|| {
            TestMigrationOutput::builder()
                .replication_group(group("available", "valkey"))
                .build()
        });
    let evts = events(&[
        "Test migration started for replication group orders",
        "Test migration failed for replication group orders: cannot connect to 10.0.1.5:6379",
    ]);
    let clusters = no_clusters();
    let aws = target(&[&describe, &test, &evts, &clusters], fast_waits());
    let err = run
        .step(&aws, "test", "migration.test", migration())
        .await
        .unwrap_err();
    assert_eq!(test.num_calls(), 1);
    assert!(
        err.message.contains("cannot connect to 10.0.1.5:6379"),
        "{}",
        err.message
    );
    assert!(
        run.notes("test")
            .iter()
            .any(|n| n.contains("Test migration started"))
    );
}

#[tokio::test]
async fn test_migration_passes_with_its_events_as_outputs() {
    let run = RunDir::new();
    let describe =
        mock!(Client::describe_replication_groups).then_output(described("available", "valkey"));
    let test = mock!(Client::test_migration).then_output(|| {
        TestMigrationOutput::builder()
            .replication_group(group("available", "valkey"))
            .build()
    });
    let evts = events(&["Test migration succeeded for replication group orders"]);
    let clusters = no_clusters();
    let aws = target(&[&describe, &test, &evts, &clusters], fast_waits());
    let out = run
        .step(&aws, "test", "migration.test", migration())
        .await
        .expect("test migration");
    assert_eq!(
        out["events"],
        json!(["Test migration succeeded for replication group orders"])
    );
    assert_eq!(out["status"], "available");
}

#[tokio::test]
async fn complete_migration_sends_force_and_waits_for_available() {
    let run = RunDir::new();
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .output(described("migrating", "valkey"))
        .output(described("modifying", "valkey"))
        .output(described("available", "valkey"))
        .repeatedly()
        .build();
    let complete = mock!(Client::complete_migration)
        .match_requests(|r| r.replication_group_id() == Some(GROUP) && r.force() == Some(true))
        .then_output(|| {
            CompleteMigrationOutput::builder()
                .replication_group(group("modifying", "valkey"))
                .build()
        });
    let evts = events(&["Complete migration to replication group orders completed"]);
    let clusters = no_clusters();
    let aws = target(&[&describe, &complete, &evts, &clusters], fast_waits());
    let inputs = json!({"replication_group": GROUP, "force": true});
    let out = run
        .step(&aws, "complete", "migration.complete", inputs.clone())
        .await
        .expect("complete");
    assert_eq!(complete.num_calls(), 1);
    assert_eq!(out["status"], "available");
    assert_eq!(out["forced"], true);
    let notes = run.notes("complete");
    assert!(notes.iter().any(|n| n.contains("(forced)")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("completed")), "{notes:?}");
    // Resumed after it finished: nothing left to complete.
    run.step(&aws, "again", "migration.complete", inputs)
        .await
        .expect("again");
    assert_eq!(complete.num_calls(), 1);
}

#[tokio::test]
async fn throttling_through_every_retry_is_a_transient_failure_naming_the_call() {
    let run = RunDir::new();
    let describe =
        mock!(Client::describe_replication_groups).then_output(described("available", "valkey"));
    let start = mock!(Client::start_migration)
        .sequence()
        .http_status(400, Some(aws_error("Throttling", "Rate exceeded")))
        .repeatedly()
        .build();
    let evts = events(&[]);
    let clusters = no_clusters();
    let aws = target(&[&describe, &start, &evts, &clusters], fast_waits());
    let err = run
        .step(&aws, "start", "migration.start", migration())
        .await
        .unwrap_err();
    assert_eq!(start.num_calls(), 3, "the SDK retried a throttled call");
    assert!(err.transient);
    assert!(
        err.message.contains("elasticache:StartMigration"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("Throttling: Rate exceeded"),
        "{}",
        err.message
    );
    // The journal stays readable for a resume.
    assert!(run.records().iter().all(|r| r.seq > 0));
}

#[tokio::test]
async fn a_busy_group_refuses_the_engine_change_with_what_to_do() {
    let run = RunDir::new();
    let describe =
        mock!(Client::describe_replication_groups).then_output(described("snapshotting", "redis"));
    let modify = mock!(Client::modify_replication_group)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "InvalidReplicationGroupState",
                "Replication group orders is not in available state.",
            )),
        )
        .repeatedly()
        .build();
    let clusters = no_clusters();
    let aws = target(&[&describe, &modify, &clusters], fast_waits());
    let err = run
        .step(
            &aws,
            "engine",
            "engine.modify",
            json!({"replication_group": GROUP, "engine": "valkey", "engine_version": "8.0"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        modify.num_calls(),
        1,
        "a refused change is not retried by the SDK"
    );
    assert!(!err.transient);
    assert!(
        err.message.contains("elasticache:ModifyReplicationGroup"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("not in available state"),
        "{}",
        err.message
    );
    assert!(err.message.contains("resume the run"), "{}", err.message);
}

#[tokio::test]
async fn a_wait_past_its_deadline_stops_with_a_message_and_a_resume_picks_it_up() {
    let run = RunDir::new();
    let short = WaitSettings {
        first: Duration::from_millis(10),
        max: Duration::from_millis(50),
        deadline: Duration::from_millis(300),
    };
    let describe =
        mock!(Client::describe_replication_groups).then_output(described("modifying", "redis"));
    let modify = mock!(Client::modify_replication_group).then_output(|| {
        aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput::builder().build()
    });
    let evts = events(&["Replication group orders engine change to valkey in progress"]);
    let clusters = no_clusters();
    let inputs = json!({"replication_group": GROUP, "engine": "valkey"});
    let aws = target(&[&describe, &modify, &evts, &clusters], short);
    let err = run
        .step(&aws, "engine", "engine.modify", inputs.clone())
        .await
        .unwrap_err();
    assert!(err.transient);
    assert!(err.message.contains("gave up waiting"), "{}", err.message);
    assert!(
        err.message.contains("last status: status modifying"),
        "{}",
        err.message
    );
    assert!(err.message.contains("runbook resume"), "{}", err.message);
    assert_eq!(
        modify.num_calls(),
        0,
        "a group already modifying is waited for, not modified again"
    );
    assert!(
        run.notes("engine")
            .iter()
            .any(|n| n.contains("engine change to valkey in progress"))
    );

    // The resumed step observes the finished change and does not modify again.
    let describe =
        mock!(Client::describe_replication_groups).then_output(described("available", "valkey"));
    let modify_again = mock!(Client::modify_replication_group).then_output(|| {
        aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput::builder().build()
    });
    let evts = events(&[]);
    let aws = target(&[&describe, &modify_again, &evts, &clusters], short);
    let out = run
        .step(&aws, "engine", "engine.modify", inputs)
        .await
        .expect("resumed");
    assert_eq!(out["engine"], "valkey");
    assert_eq!(modify_again.num_calls(), 0);
}

#[tokio::test]
async fn a_stack_that_rolls_back_fails_with_its_failed_resources() {
    use aws_sdk_cloudformation::Client as Cf;
    use aws_sdk_cloudformation::operation::create_stack::CreateStackOutput;
    use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_sdk_cloudformation::types::{ResourceStatus, Stack, StackEvent, StackStatus};

    let stack = |status: StackStatus| {
        move || {
            DescribeStacksOutput::builder()
                .stacks(
                    Stack::builder()
                        .stack_name("cache")
                        .stack_id("arn:aws:cloudformation:us-east-1:123456789012:stack/cache/1")
                        .stack_status(status.clone())
                        .build(),
                )
                .build()
        }
    };
    let describe = mock!(Cf::describe_stacks)
        .sequence()
        .http_status(
            400,
            Some(
                "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id cache does not exist</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
                    .into(),
            ),
        )
        .output(stack(StackStatus::CreateInProgress))
        .output(stack(StackStatus::RollbackComplete))
        .repeatedly()
        .build();
    let create = mock!(Cf::create_stack)
        .match_requests(|r| {
            r.stack_name() == Some("cache")
                && r.template_body().is_some_and(|b| b.contains("Resources"))
        })
        .then_output(|| {
            CreateStackOutput::builder()
                .stack_id("arn:stack/cache/1")
                .build()
        });
    let events = mock!(Cf::describe_stack_events).then_output(|| {
        let now = DateTime::from_secs(chrono::Utc::now().timestamp());
        DescribeStackEventsOutput::builder()
            .stack_events(
                StackEvent::builder()
                    .event_id("e2")
                    .logical_resource_id("RedisGroup")
                    .resource_type("AWS::ElastiCache::ReplicationGroup")
                    .resource_status(ResourceStatus::CreateFailed)
                    .resource_status_reason("Cache subnet group cache-subnets does not exist")
                    .timestamp(now)
                    .build(),
            )
            .stack_events(
                StackEvent::builder()
                    .event_id("e1")
                    .logical_resource_id("cache")
                    .resource_type("AWS::CloudFormation::Stack")
                    .resource_status(ResourceStatus::CreateInProgress)
                    .timestamp(now)
                    .build(),
            )
            .build()
    });
    let mut aws_clients = {
        let unused = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        Clients::from_config(&unused)
    };
    aws_clients.cloudformation = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        &[&describe, &create, &events]
    );
    let aws = Aws::from_clients(aws_clients).with_wait(fast_waits());
    let run = RunDir::new();
    std::fs::write(run.path().join("cache.yaml"), "Resources: {}\n").unwrap();
    let err = run
        .step(
            &aws,
            "deploy",
            "stack.deploy",
            json!({"stack_name": "cache", "template": "cache.yaml"}),
        )
        .await
        .unwrap_err();
    assert_eq!(create.num_calls(), 1);
    assert!(
        err.message
            .contains("stack cache ended in ROLLBACK_COMPLETE"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("RedisGroup AWS::ElastiCache::ReplicationGroup CREATE_FAILED: Cache subnet group cache-subnets does not exist"),
        "{}",
        err.message
    );
    let notes = run.notes("deploy");
    assert!(
        notes.iter().any(|n| n.contains("CREATE_FAILED")),
        "{notes:?}"
    );
}

/// A cluster-mode group `orders` of two shards (`0001` 0-8191, `0002` 8192-16383), one
/// node each, at `orders-000N-001…:6379`.
fn sharded(status: &'static str) -> impl Fn() -> DescribeReplicationGroupsOutput {
    move || {
        let shard = |id: &str, slots: &str| {
            NodeGroup::builder()
                .node_group_id(id)
                .slots(slots)
                .node_group_members(
                    NodeGroupMember::builder()
                        .cache_cluster_id(format!("orders-{id}-001"))
                        .read_endpoint(
                            CacheEndpoint::builder()
                                .address(shard_host(id))
                                .port(6379)
                                .build(),
                        )
                        .build(),
                )
                .build()
        };
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(
                ReplicationGroup::builder()
                    .replication_group_id(GROUP)
                    .status(status)
                    .engine("valkey")
                    .cluster_enabled(true)
                    .configuration_endpoint(
                        CacheEndpoint::builder()
                            .address("clustercfg.orders.abc123.use1.cache.amazonaws.com")
                            .port(6379)
                            .build(),
                    )
                    .node_groups(shard("0001", "0-8191"))
                    .node_groups(shard("0002", "8192-16383"))
                    .build(),
            )
            .build()
    }
}

/// ElastiCache as it answers a restore of a three-shard snapshot into `orders` (not there
/// yet, then the cluster-mode group) and a describe of it.
pub(crate) fn sharded_platform() -> Aws {
    use aws_sdk_elasticache::operation::create_replication_group::CreateReplicationGroupOutput;
    use aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_elasticache::types::Snapshot;

    let snapshot = mock!(Client::describe_snapshots).then_output(|| {
        DescribeSnapshotsOutput::builder()
            .snapshots(Snapshot::builder().num_node_groups(3).build())
            .build()
    });
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .http_status(
            404,
            Some(aws_error(
                "ReplicationGroupNotFoundFault",
                "Replication group orders not found.",
            )),
        )
        .output(sharded("available"))
        .repeatedly()
        .build();
    let create = mock!(Client::create_replication_group)
        .match_requests(|r| r.num_node_groups() == Some(3))
        .then_output(|| CreateReplicationGroupOutput::builder().build());
    let evts = events(&[]);
    let clusters = no_clusters();
    target(
        &[&snapshot, &describe, &create, &evts, &clusters],
        fast_waits(),
    )
}

fn shard_host(id: &str) -> String {
    format!("orders-{id}-001.orders.abc123.use1.cache.amazonaws.com")
}

/// Issue 16: StartMigration on a cluster-mode target is followed on every shard's primary:
/// with one shard out of reach (no tunnel to it) the sync is reported unchecked.
#[tokio::test]
async fn start_migration_of_a_sharded_target_follows_every_shard() {
    let source = Server::start(Engine::Redis);
    let replica = Server::start(Engine::Valkey);
    replica.cli(&["REPLICAOF", "127.0.0.1", &source.port.to_string()]);
    let closed = crate::support::free_port();
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .output(sharded("available"))
        .output(sharded("migrating"))
        .repeatedly()
        .build();
    let start =
        mock!(Client::start_migration).then_output(|| StartMigrationOutput::builder().build());
    let evts = events(&[]);
    let clusters = no_clusters();
    let aws = target(&[&describe, &start, &evts, &clusters], fast_waits());

    let both = RunDir::with_resolver(
        Resolver::parse(&[
            format!("{}:6379=127.0.0.1:{}", shard_host("0001"), replica.port),
            format!("{}:6379=127.0.0.1:{}", shard_host("0002"), replica.port),
        ])
        .unwrap(),
    );
    let out = both
        .step(&aws, "start", "migration.start", migration())
        .await
        .expect("start migration");
    assert_eq!(out["replication"]["checked"], true, "{out:?}");
    assert_eq!(out["shards"].as_array().unwrap().len(), 2);

    let one = RunDir::with_resolver(
        Resolver::parse(&[
            format!("{}:6379=127.0.0.1:{}", shard_host("0001"), replica.port),
            format!("{}:6379=127.0.0.1:{closed}", shard_host("0002")),
        ])
        .unwrap(),
    );
    let out = one
        .step(&aws, "start", "migration.start", migration())
        .await
        .expect("start migration");
    assert_eq!(out["replication"]["checked"], false, "{out:?}");
    let unreached: Vec<String> = one
        .notes("start")
        .into_iter()
        .filter(|n| n.starts_with("cannot reach"))
        .collect();
    assert_eq!(unreached.len(), 1, "{unreached:?}");
    assert!(
        unreached[0].starts_with(&format!("cannot reach redis://{}:6379", shard_host("0002"))),
        "{unreached:?}"
    );
}

/// Issue 16: ElastiCache's refusal of a source it cannot migrate from names the
/// shard-count prerequisite.
#[tokio::test]
async fn a_refused_start_migration_names_the_shard_prerequisite() {
    let run = RunDir::new();
    let describe = mock!(Client::describe_replication_groups).then_output(sharded("available"));
    let start = mock!(Client::start_migration)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "InvalidParameterValue",
                "The source and target do not have the same number of shards.",
            )),
        )
        .repeatedly()
        .build();
    let clusters = no_clusters();
    let aws = target(&[&describe, &start, &clusters], fast_waits());
    let err = run
        .step(&aws, "start", "migration.start", migration())
        .await
        .unwrap_err();
    assert!(!err.transient);
    assert_eq!(
        err.message,
        "elasticache:StartMigration failed: InvalidParameterValue: The source and target do not have the same number of shards.; an online migration needs orders to have as many shards as the source, each with the same slots (migration.preflight's target_shard_count compares them), and the source endpoint without TLS or AUTH"
    );
}

/// Issue 16: a snapshot of three node groups restores into three, each with its slots; a
/// restore into another count is refused before any call.
#[tokio::test]
async fn a_cluster_snapshot_restores_into_as_many_node_groups_on_aws() {
    use aws_sdk_elasticache::operation::create_replication_group::CreateReplicationGroupOutput;
    use aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_elasticache::types::{NodeGroupConfiguration, NodeSnapshot, Snapshot};

    let run = RunDir::new();
    let slots = ["0-5461", "5462-10922", "10923-16383"];
    let snapshot = mock!(Client::describe_snapshots).then_output(move || {
        let mut s = Snapshot::builder()
            .snapshot_name("before")
            .num_node_groups(3)
            .cache_node_type("cache.t4g.small");
        for (i, slots) in slots.iter().enumerate() {
            s = s.node_snapshots(
                NodeSnapshot::builder()
                    .node_group_id(format!("{:04}", i + 1))
                    .node_group_configuration(
                        NodeGroupConfiguration::builder().slots(*slots).build(),
                    )
                    .build(),
            );
        }
        DescribeSnapshotsOutput::builder()
            .snapshots(s.build())
            .build()
    });
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .http_status(
            404,
            Some(aws_error(
                "ReplicationGroupNotFoundFault",
                "Replication group orders not found.",
            )),
        )
        .times(2)
        .output(sharded("available"))
        .repeatedly()
        .build();
    let create = mock!(Client::create_replication_group)
        .match_requests(move |r| {
            let configs: Vec<(Option<&str>, Option<&str>, Option<i32>)> = r
                .node_group_configuration()
                .iter()
                .map(|c| (c.node_group_id(), c.slots(), c.replica_count()))
                .collect();
            r.num_node_groups() == Some(3)
                && r.replicas_per_node_group() == Some(1)
                && r.num_cache_clusters().is_none()
                && r.cache_parameter_group_name() == Some("default.valkey8.cluster.on")
                && configs
                    == [
                        (Some("0001"), Some(slots[0]), Some(1)),
                        (Some("0002"), Some(slots[1]), Some(1)),
                        (Some("0003"), Some(slots[2]), Some(1)),
                    ]
        })
        .then_output(|| CreateReplicationGroupOutput::builder().build());
    let evts = events(&[]);
    let clusters = no_clusters();
    let aws = target(
        &[&snapshot, &describe, &create, &evts, &clusters],
        fast_waits(),
    );
    let restore = |shards: u32| {
        json!({"snapshot": "before", "replication_group": GROUP, "engine": "valkey",
            "engine_version": "8.2", "replicas": 1, "shards": shards})
    };
    let err = run
        .step(&aws, "wrong", "snapshot.restore", restore(2))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "snapshot before holds 3 shard(s); a restore makes a group of as many, so ask for shards: 3"
    );
    assert_eq!(create.num_calls(), 0);
    let out = run
        .step(&aws, "restore", "snapshot.restore", restore(3))
        .await
        .expect("restore");
    assert_eq!(create.num_calls(), 1, "NumNodeGroups and the slots sent");
    assert_eq!(out["cluster_mode"], true);
}

/// A group seeded from three RDB files in S3 is a cluster of three node groups, one file
/// each, over ElastiCache's even slot split; the files are checked in moto's S3 first.
#[tokio::test]
async fn three_rdb_files_in_s3_seed_a_cluster_of_three_node_groups_on_aws() {
    use aws_sdk_elasticache::operation::create_replication_group::CreateReplicationGroupOutput;

    let moto = crate::aws_support::Moto::start();
    let s3 = moto.clients().s3;
    s3.create_bucket()
        .bucket("orders-snapshots")
        .send()
        .await
        .expect("CreateBucket in moto");
    let arns: Vec<String> = (1..=3)
        .map(|i| format!("arn:aws:s3:::orders-snapshots/before-{i:04}.rdb"))
        .collect();
    for i in 1..=3 {
        s3.put_object()
            .bucket("orders-snapshots")
            .key(format!("before-{i:04}.rdb"))
            .grant_read("id=540804c33a284a299d2547575ce1010f2312ef3da9b3a053c8bc45bf233e4353")
            .body(b"REDIS0011".to_vec().into())
            .send()
            .await
            .expect("PutObject in moto");
    }
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .http_status(
            404,
            Some(aws_error(
                "ReplicationGroupNotFoundFault",
                "Replication group orders not found.",
            )),
        )
        .output(sharded("available"))
        .repeatedly()
        .build();
    let sent = arns.clone();
    let create = mock!(Client::create_replication_group)
        .match_requests(move |r| {
            let configs: Vec<(Option<&str>, Option<&str>, Option<i32>)> = r
                .node_group_configuration()
                .iter()
                .map(|c| (c.node_group_id(), c.slots(), c.replica_count()))
                .collect();
            r.snapshot_arns() == sent.as_slice()
                && r.num_node_groups() == Some(3)
                && r.replicas_per_node_group() == Some(1)
                && r.num_cache_clusters().is_none()
                && r.automatic_failover_enabled() == Some(true)
                && r.cache_parameter_group_name() == Some("default.valkey8.cluster.on")
                && configs
                    == [
                        (Some("0001"), Some("0-5461"), Some(1)),
                        (Some("0002"), Some("5462-10922"), Some(1)),
                        (Some("0003"), Some("10923-16383"), Some(1)),
                    ]
        })
        .then_output(|| CreateReplicationGroupOutput::builder().build());
    let evts = events(&[]);
    let clusters = no_clusters();
    let aws = crate::aws_mocks::target_over(
        &[&describe, &create, &evts, &clusters],
        fast_waits(),
        moto.clients(),
    );
    let out = RunDir::new()
        .step(
            &aws,
            "import",
            "snapshot.import",
            json!({"snapshot_arns": arns, "replication_group": GROUP, "engine": "valkey",
                "engine_version": "8.2", "replicas": 1}),
        )
        .await
        .expect("import");
    assert_eq!(create.num_calls(), 1, "NumNodeGroups and the slots sent");
    assert_eq!(out["cluster_mode"], true);
}

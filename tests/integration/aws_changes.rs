//! The everyday changes on aws through the registered actions. moto has
//! ModifyReplicationGroup with CacheNodeType and CloudWatch's GetMetricData; TestFailover,
//! IncreaseReplicaCount / DecreaseReplicaCount and the cache parameter group calls it lacks
//! are aws-smithy-mocks answering as ElastiCache does.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::describe_cache_clusters::DescribeCacheClustersOutput;
use aws_sdk_elasticache::operation::describe_cache_parameters::DescribeCacheParametersOutput;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::operation::increase_replica_count::IncreaseReplicaCountOutput;
use aws_sdk_elasticache::operation::modify_cache_parameter_group::ModifyCacheParameterGroupOutput;
use aws_sdk_elasticache::operation::test_failover::TestFailoverOutput;
use aws_sdk_elasticache::types::{
    CacheCluster, CacheParameterGroupStatus, Endpoint as CacheEndpoint, NodeGroup, NodeGroupMember,
    Parameter, ReplicationGroup,
};
use aws_smithy_mocks::{Rule, mock};
use runbook::platform::aws::Aws;
use serde_json::json;

use crate::aws_mocks::{GROUP, PRIMARY, events, target};
use crate::aws_support::{Moto, RunDir, fast_waits};

/// The group `orders` in one node group whose members are `members` (node numbers), the
/// first of them its primary.
fn group(members: &[u32]) -> ReplicationGroup {
    let mut ng = NodeGroup::builder()
        .node_group_id("0001")
        .primary_endpoint(CacheEndpoint::builder().address(PRIMARY).port(6379).build());
    let mut g = ReplicationGroup::builder()
        .replication_group_id(GROUP)
        .status("available")
        .engine("redis")
        .cache_node_type("cache.t4g.small");
    for (i, m) in members.iter().enumerate() {
        let id = format!("orders-{m:03}");
        g = g.member_clusters(&id);
        ng = ng.node_group_members(
            NodeGroupMember::builder()
                .cache_cluster_id(&id)
                .current_role(if i == 0 { "primary" } else { "replica" })
                .read_endpoint(
                    CacheEndpoint::builder()
                        .address(format!("{id}.orders.abc123.use1.cache.amazonaws.com"))
                        .port(6379)
                        .build(),
                )
                .build(),
        );
    }
    g.node_groups(ng.build()).build()
}

fn described(members: &'static [u32]) -> impl Fn() -> DescribeReplicationGroupsOutput {
    move || {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(group(members))
            .build()
    }
}

/// DescribeCacheClusters: every node uses `parameter_group`, in `apply_status`.
fn clusters(parameter_group: &'static str, apply_status: &'static str) -> Rule {
    mock!(Client::describe_cache_clusters).then_output(move || {
        DescribeCacheClustersOutput::builder()
            .cache_clusters(
                CacheCluster::builder()
                    .cache_cluster_id("orders-001")
                    .engine_version("7.1.0")
                    .cache_parameter_group(
                        CacheParameterGroupStatus::builder()
                            .cache_parameter_group_name(parameter_group)
                            .parameter_apply_status(apply_status)
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

fn policy(value: &'static str) -> impl Fn() -> DescribeCacheParametersOutput {
    move || {
        DescribeCacheParametersOutput::builder()
            .parameters(
                Parameter::builder()
                    .parameter_name("maxmemory-policy")
                    .parameter_value(value)
                    .build(),
            )
            .build()
    }
}

/// The aws platform one of the mocked changes runs on, for the shipped runbooks' shapes.
pub(crate) fn platform(action: &str) -> Aws {
    let evts = events(&["Finished recovery for cache nodes 0001"]);
    match action {
        "group.failover" => {
            let describe = mock!(Client::describe_replication_groups)
                .sequence()
                .output(described(&[1, 2]))
                .output(described(&[2, 1]))
                .repeatedly()
                .build();
            let failover =
                mock!(Client::test_failover).then_output(|| TestFailoverOutput::builder().build());
            let clusters = clusters("p", "in-sync");
            target(&[&describe, &failover, &evts, &clusters], fast_waits())
        }
        "group.modify_replicas" => {
            let describe = mock!(Client::describe_replication_groups)
                .sequence()
                .output(described(&[1, 2]))
                .output(described(&[1, 2, 3]))
                .repeatedly()
                .build();
            let increase = mock!(Client::increase_replica_count)
                .then_output(|| IncreaseReplicaCountOutput::builder().build());
            let clusters = clusters("p", "in-sync");
            target(&[&describe, &increase, &evts, &clusters], fast_waits())
        }
        _ => {
            let describe =
                mock!(Client::describe_replication_groups).then_output(described(&[1, 2]));
            let params = mock!(Client::describe_cache_parameters)
                .sequence()
                .output(policy("noeviction"))
                .output(policy("allkeys-lru"))
                .repeatedly()
                .build();
            let modify = mock!(Client::modify_cache_parameter_group)
                .then_output(|| ModifyCacheParameterGroupOutput::builder().build());
            let clusters = clusters("parameter-change-params", "in-sync");
            target(
                &[&describe, &params, &modify, &evts, &clusters],
                fast_waits(),
            )
        }
    }
}

#[tokio::test]
async fn a_failover_test_calls_test_failover_once_and_waits_for_the_new_primary() {
    let run = RunDir::new();
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .output(described(&[1, 2]))
        .output(described(&[1, 2]))
        .output(described(&[2, 1]))
        .repeatedly()
        .build();
    let failover = mock!(Client::test_failover)
        .match_requests(|r| {
            r.replication_group_id() == Some(GROUP) && r.node_group_id() == Some("0001")
        })
        .then_output(|| TestFailoverOutput::builder().build());
    let evts = events(&["Failover to replica node orders-002 completed"]);
    let clusters = clusters("p", "in-sync");
    let aws = target(&[&describe, &failover, &evts, &clusters], fast_waits());
    let out = run
        .step(
            &aws,
            "failover",
            "group.failover",
            json!({"replication_group": GROUP}),
        )
        .await
        .expect("failover");
    assert_eq!(failover.num_calls(), 1);
    assert_eq!(
        (
            &out["status"],
            &out["node_group"],
            &out["old_primary"],
            &out["new_primary"]
        ),
        (
            &json!("available"),
            &json!("0001"),
            &json!("orders-001"),
            &json!("orders-002")
        )
    );
    let notes = run.notes("failover");
    assert!(
        notes
            .iter()
            .any(|n| n.ends_with("Failover to replica node orders-002 completed")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_group_without_a_replica_is_not_failed_over() {
    let run = RunDir::new();
    let describe = mock!(Client::describe_replication_groups).then_output(described(&[1]));
    let failover =
        mock!(Client::test_failover).then_output(|| TestFailoverOutput::builder().build());
    let aws = target(&[&describe, &failover], fast_waits());
    let err = run
        .step(
            &aws,
            "failover",
            "group.failover",
            json!({"replication_group": GROUP}),
        )
        .await
        .expect_err("no replica");
    assert_eq!(
        err.message,
        "node group 0001 of orders has no replica to promote; add one first (group.modify_replicas)"
    );
    assert_eq!(failover.num_calls(), 0);
}

#[tokio::test]
async fn a_parameter_change_sets_only_what_differs_and_moves_the_group_onto_the_parameter_group() {
    let run = RunDir::new();
    let describe = mock!(Client::describe_replication_groups).then_output(described(&[1, 2]));
    let params = mock!(Client::describe_cache_parameters)
        .sequence()
        .output(policy("noeviction"))
        .output(policy("volatile-lru"))
        .repeatedly()
        .build();
    let modify = mock!(Client::modify_cache_parameter_group)
        .match_requests(|r| {
            r.cache_parameter_group_name() == Some("ops")
                && r.parameter_name_values().len() == 1
                && r.parameter_name_values()[0].parameter_value() == Some("volatile-lru")
        })
        .then_output(|| ModifyCacheParameterGroupOutput::builder().build());
    let clusters = mock!(Client::describe_cache_clusters)
        .sequence()
        .output(|| {
            DescribeCacheClustersOutput::builder()
                .cache_clusters(
                    CacheCluster::builder()
                        .cache_parameter_group(
                            CacheParameterGroupStatus::builder()
                                .cache_parameter_group_name("default.redis7")
                                .parameter_apply_status("in-sync")
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
        .times(2)
        .output(|| {
            DescribeCacheClustersOutput::builder()
                .cache_clusters(
                    CacheCluster::builder()
                        .cache_parameter_group(
                            CacheParameterGroupStatus::builder()
                                .cache_parameter_group_name("ops")
                                .parameter_apply_status("in-sync")
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
        .repeatedly()
        .build();
    let move_group = mock!(Client::modify_replication_group)
        .match_requests(|r| r.cache_parameter_group_name() == Some("ops"))
        .then_output(|| {
            aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput::builder().build()
        });
    let evts = events(&[]);
    let aws = target(
        &[&describe, &params, &modify, &clusters, &move_group, &evts],
        fast_waits(),
    );
    let out = run
        .step(
            &aws,
            "params",
            "parameters.modify",
            json!({"replication_group": GROUP, "parameter_group": "ops", "parameters": {"maxmemory-policy": "volatile-lru"}}),
        )
        .await
        .expect("parameters");
    assert_eq!(
        serde_json::Value::Object(out),
        json!({
            "replication_group": GROUP,
            "parameter_group": "ops",
            "parameters": {"maxmemory-policy": "volatile-lru"},
            "changed": ["maxmemory-policy"],
            "apply_status": "in-sync",
        })
    );
    assert_eq!((modify.num_calls(), move_group.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_default_parameter_group_is_refused_before_any_call() {
    let run = RunDir::new();
    let aws = target(&[], fast_waits());
    let err = run
        .step(
            &aws,
            "params",
            "parameters.modify",
            json!({"replication_group": GROUP, "parameter_group": "default.redis7", "parameters": {"maxmemory-policy": "volatile-lru"}}),
        )
        .await
        .expect_err("a default group");
    assert_eq!(
        err.message,
        "`default.redis7` is a default parameter group, which ElastiCache does not let anyone change; create a custom one (AWS::ElastiCache::ParameterGroup) and name it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_type_change_runs_against_moto_and_is_not_repeated() {
    let moto = Moto::start();
    let ec = moto.clients().elasticache;
    ec.create_replication_group()
        .replication_group_id("sizes")
        .replication_group_description("node type change")
        .engine("redis")
        .cache_node_type("cache.t4g.small")
        .num_cache_clusters(2)
        .send()
        .await
        .expect("CreateReplicationGroup in moto");
    let run = RunDir::new();
    let aws = moto.aws();
    let inputs = json!({"replication_group": "sizes", "node_type": "cache.r7g.large"});
    let out = run
        .step(&aws, "size", "group.modify_node_type", inputs.clone())
        .await
        .expect("node type");
    assert_eq!(
        (&out["node_type_before"], &out["node_type"], &out["status"]),
        (
            &json!("cache.t4g.small"),
            &json!("cache.r7g.large"),
            &json!("available")
        )
    );
    let again = run
        .step(&aws, "size-again", "group.modify_node_type", inputs)
        .await
        .expect("node type again");
    assert_eq!(again["node_type_before"], "cache.r7g.large");
    assert!(
        run.notes("size-again")
            .iter()
            .any(|n| n == "sizes is already on cache.r7g.large: nothing to change"),
        "{:?}",
        run.notes("size-again")
    );
}

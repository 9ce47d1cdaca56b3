//! ElastiCache snapshots: a backup before a risky step, and a new group made from one
//! (seed 004's way to cut downtime: a Valkey group from a Redis group's snapshot).

use aws_sdk_elasticache::operation::create_replication_group::builders::CreateReplicationGroupFluentBuilder;
use aws_sdk_elasticache::types::{NodeGroupConfiguration, Snapshot};

use super::group::{AVAILABLE, describe_call, events_call, find, info, status, wait_group};
use super::wait::{self, Events, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{CreateSnapshot, GroupInfo, RestoreSnapshot, SnapshotInfo};

#[async_trait::async_trait]
impl Handles<CreateSnapshot> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &CreateSnapshot) -> Vec<Operation> {
        let (group, snapshot) = (&request.replication_group, &request.snapshot);
        vec![
            Operation::new("aws", "elasticache:DescribeSnapshots").param("SnapshotName", snapshot),
            Operation::new("aws", "elasticache:CreateSnapshot")
                .param("ReplicationGroupId", group)
                .param("SnapshotName", snapshot)
                .param("when", "no snapshot of that name exists"),
            Operation::wait(format!("until snapshot {snapshot} is `{AVAILABLE}`")),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CreateSnapshot,
    ) -> Result<SnapshotInfo, ActionError> {
        create_snapshot(self, ctx, &request.replication_group, &request.snapshot).await
    }
}

#[async_trait::async_trait]
impl Handles<RestoreSnapshot> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &RestoreSnapshot) -> Vec<Operation> {
        let (group, snapshot) = (&request.replication_group, &request.snapshot);
        let mut call = Operation::new("aws", "elasticache:CreateReplicationGroup")
            .param("ReplicationGroupId", group)
            .param("SnapshotName", snapshot)
            .param("Engine", &request.engine);
        let wait = match request.shards.filter(|&n| n > 1) {
            Some(n) => {
                call = call
                    .param("NumNodeGroups", n)
                    .param("ReplicasPerNodeGroup", request.replicas)
                    .param(
                        "NodeGroupConfiguration",
                        "each node group's id and slots, as the snapshot's",
                    );
                format!("until {group} is `{AVAILABLE}`, each of its {n} node groups")
            }
            None => {
                call = call.param("NumCacheClusters", request.replicas + 1);
                format!("until {group} is `{AVAILABLE}`")
            }
        };
        if let Some(v) = &request.engine_version {
            call = call.param("EngineVersion", v);
        }
        vec![
            describe_call(group),
            Operation::new("aws", "elasticache:DescribeSnapshots").param("SnapshotName", snapshot),
            call.param("when", "the group does not exist yet"),
            Operation::wait(wait),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &RestoreSnapshot,
    ) -> Result<GroupInfo, ActionError> {
        restore_snapshot(self, ctx, request).await
    }
}

/// A new group's nodes: `replicas` + 1 nodes without cluster mode for one node group, or
/// the node groups `shards` (id, slots) with `replicas` each under a cluster-mode
/// parameter group of the engine.
pub(super) fn node_layout(
    call: CreateReplicationGroupFluentBuilder,
    shards: &[(String, Option<String>)],
    replicas: u32,
    engine: &str,
    version: Option<&str>,
) -> CreateReplicationGroupFluentBuilder {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    if shards.len() <= 1 {
        return call.num_cache_clusters(count(replicas as usize + 1));
    }
    let configs = shards
        .iter()
        .map(|(id, slots)| {
            NodeGroupConfiguration::builder()
                .node_group_id(id)
                .set_slots(slots.clone())
                .replica_count(count(replicas as usize))
                .build()
        })
        .collect();
    call.num_node_groups(count(shards.len()))
        .replicas_per_node_group(count(replicas as usize))
        .set_node_group_configuration(Some(configs))
        .set_cache_parameter_group_name(version.and_then(|v| {
            let major = v.split('.').next().filter(|m| !m.is_empty())?;
            Some(format!("default.{engine}{major}.cluster.on"))
        }))
}

/// The node groups a snapshot holds, each with its slots when it says them: from its node
/// snapshots, or as many as `NumNodeGroups` says (empty: one group, no cluster mode).
fn node_groups(snapshot: &Snapshot) -> Vec<(String, Option<String>)> {
    let mut groups: Vec<(String, Option<String>)> = Vec::new();
    for node in snapshot.node_snapshots() {
        let Some(id) = node.node_group_id() else {
            continue;
        };
        if !groups.iter().any(|(g, _)| g == id) {
            let slots = node
                .node_group_configuration()
                .and_then(|c| c.slots())
                .map(str::to_string);
            groups.push((id.to_string(), slots));
        }
    }
    let declared = snapshot
        .num_node_groups()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    if groups.len() < declared {
        groups = (1..=declared).map(|i| (format!("{i:04}"), None)).collect();
    }
    if groups.len() == 1 {
        groups.clear();
    }
    groups
}

pub(super) async fn find_snapshot(
    aws: &Aws,
    snapshot: &str,
) -> Result<Option<Snapshot>, ActionError> {
    let result = aws
        .clients
        .elasticache
        .describe_snapshots()
        .snapshot_name(snapshot)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.snapshots.unwrap_or_default().into_iter().next()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_snapshot_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("elasticache:DescribeSnapshots", e)),
    }
}

/// elasticache:CreateSnapshot (unless a snapshot of that name exists), then waits for it.
async fn create_snapshot(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    snapshot: &str,
) -> Result<SnapshotInfo, ActionError> {
    match find_snapshot(aws, snapshot).await? {
        Some(existing) => {
            let of = existing.replication_group_id().unwrap_or_default();
            if of != group {
                return Err(ActionError::fatal(format!(
                    "a snapshot named `{snapshot}` already exists, of `{of}` rather than `{group}`; choose another name"
                )));
            }
            ctx.note(format!(
                "snapshot {snapshot} already exists: not taking it again"
            ));
        }
        None => {
            aws.clients
                .elasticache
                .create_snapshot()
                .replication_group_id(group)
                .snapshot_name(snapshot)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:CreateSnapshot", e))?;
            ctx.note(format!("CreateSnapshot accepted: {snapshot} of {group}"));
        }
    }
    let events = Events::new(&aws.clients.elasticache, group, &aws.events_unsupported);
    let done = wait::until(
        ctx,
        &aws.wait,
        &format!("snapshot {snapshot}"),
        Some(&events),
        || async {
            let s = find_snapshot(aws, snapshot).await?.ok_or_else(|| {
                ActionError::fatal(format!(
                    "snapshot {snapshot} disappeared while it was being taken"
                ))
            })?;
            Ok(match s.snapshot_status().unwrap_or("unknown") {
                AVAILABLE => Poll::Done(s),
                "failed" => Poll::Failed(format!("snapshot {snapshot} failed")),
                other => Poll::Pending(format!("status {other}")),
            })
        },
    )
    .await?;
    Ok(SnapshotInfo {
        snapshot: snapshot.to_string(),
        group: group.to_string(),
        status: done.snapshot_status().unwrap_or_default().to_string(),
        engine: done.engine().unwrap_or_default().to_string(),
        engine_version: done.engine_version().unwrap_or_default().to_string(),
    })
}

/// A new group from a snapshot (elasticache:CreateReplicationGroup with SnapshotName),
/// unless the group exists already; waits for `available`.
async fn restore_snapshot(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    request: &RestoreSnapshot,
) -> Result<GroupInfo, ActionError> {
    let (snapshot, group, engine) = (
        &request.snapshot,
        &request.replication_group,
        &request.engine,
    );
    let (version, replicas) = (request.engine_version.as_deref(), request.replicas);
    if find(aws, group).await?.is_some() {
        ctx.note(format!("{group} already exists: not restoring it again"));
    } else {
        let source = find_snapshot(aws, snapshot)
            .await?
            .ok_or_else(|| ActionError::fatal(format!("snapshot `{snapshot}` does not exist")))?;
        let shards = node_groups(&source);
        let held = shards.len().max(1);
        if let Some(asked) = request.shards
            && asked as usize != held
        {
            return Err(ActionError::fatal(format!(
                "snapshot {snapshot} holds {held} shard(s); a restore makes a group of as many, so ask for shards: {held}"
            )));
        }
        let replicated = replicas > 0;
        let call = aws
            .clients
            .elasticache
            .create_replication_group()
            .replication_group_id(group)
            .replication_group_description(format!("restored from snapshot {snapshot}"))
            .snapshot_name(snapshot)
            .engine(engine)
            .set_engine_version(version.map(str::to_string))
            .set_cache_node_type(source.cache_node_type().map(str::to_string))
            .set_cache_subnet_group_name(source.cache_subnet_group_name().map(str::to_string))
            .automatic_failover_enabled(replicated || held > 1)
            .multi_az_enabled(replicated);
        // A cluster's snapshot restores into as many node groups with the same slots.
        node_layout(call, &shards, replicas, engine, version)
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:CreateReplicationGroup", e))?;
        ctx.note(format!(
            "CreateReplicationGroup accepted: {group} from snapshot {snapshot} ({held} shard(s))"
        ));
    }
    let done = wait_group(
        aws,
        ctx,
        group,
        &format!("{group} to be `{AVAILABLE}`"),
        |g| status(g) == AVAILABLE,
    )
    .await?;
    info(aws, &done).await
}

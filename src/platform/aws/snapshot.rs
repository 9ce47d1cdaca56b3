//! ElastiCache snapshots: a backup before a risky step, and a new group made from one
//! (seed 004's way to cut downtime: a Valkey group from a Redis group's snapshot).

use aws_sdk_elasticache::types::Snapshot;

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
            Operation::new(
                "wait",
                format!("until snapshot {snapshot} is `{AVAILABLE}`"),
            ),
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
            .param("Engine", &request.engine)
            .param("NumCacheClusters", request.replicas + 1);
        if let Some(v) = &request.engine_version {
            call = call.param("EngineVersion", v);
        }
        vec![
            describe_call(group),
            Operation::new("aws", "elasticache:DescribeSnapshots").param("SnapshotName", snapshot),
            call.param("when", "the group does not exist yet"),
            Operation::new("wait", format!("until {group} is `{AVAILABLE}`")),
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
        let replicated = replicas > 0;
        aws.clients
            .elasticache
            .create_replication_group()
            .replication_group_id(group)
            .replication_group_description(format!("restored from snapshot {snapshot}"))
            .snapshot_name(snapshot)
            .engine(engine)
            .set_engine_version(version.map(str::to_string))
            .set_cache_node_type(source.cache_node_type().map(str::to_string))
            .set_cache_subnet_group_name(source.cache_subnet_group_name().map(str::to_string))
            .num_cache_clusters(i32::try_from(replicas + 1).unwrap_or(i32::MAX))
            .automatic_failover_enabled(replicated)
            .multi_az_enabled(replicated)
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:CreateReplicationGroup", e))?;
        ctx.note(format!(
            "CreateReplicationGroup accepted: {group} from snapshot {snapshot}"
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

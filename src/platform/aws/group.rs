//! ElastiCache replication groups: describe one, delete one, and what the other
//! operations share (finding a group, its description, waiting for it to settle).

use aws_sdk_elasticache::types::{NodeGroup, ReplicationGroup};

use super::wait::{self, Events, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    DeleteGroup, DescribeGroup, GroupDeleted, GroupInfo, NodeInfo, ShardInfo,
};

/// The status of a group that takes changes.
pub const AVAILABLE: &str = "available";
/// The status of a group replicating from a self-hosted source.
pub const MIGRATING: &str = "migrating";

/// elasticache:DescribeReplicationGroups of `group`, as `plan` lists it.
pub fn describe_call(group: &str) -> Operation {
    Operation::new("aws", "elasticache:DescribeReplicationGroups")
        .param("ReplicationGroupId", group)
}

/// elasticache:DescribeCacheClusters of the group's first member (its engine version).
pub fn clusters_call() -> Operation {
    Operation::new("aws", "elasticache:DescribeCacheClusters")
        .param("CacheClusterId", "<first member>")
}

/// elasticache:DescribeEvents of `group`, read while a wait lasts.
pub fn events_call(group: &str) -> Operation {
    Operation::new("aws", "elasticache:DescribeEvents")
        .param("SourceIdentifier", group)
        .param("SourceType", "replication-group")
}

#[async_trait::async_trait]
impl Handles<DescribeGroup> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &DescribeGroup) -> Vec<Operation> {
        vec![describe_call(&request.replication_group), clusters_call()]
    }

    async fn call(
        &self,
        _: &StepCtx<'_>,
        request: &DescribeGroup,
    ) -> Result<GroupInfo, ActionError> {
        info(self, &describe(self, &request.replication_group).await?).await
    }
}

#[async_trait::async_trait]
impl Handles<DeleteGroup> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &DeleteGroup) -> Vec<Operation> {
        let group = &request.replication_group;
        vec![
            describe_call(group),
            Operation::new("aws", "elasticache:DeleteReplicationGroup")
                .param("ReplicationGroupId", group)
                .param("when", "the group exists")
                .destructive(),
            Operation::wait(format!("until {group} is gone")),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DeleteGroup,
    ) -> Result<GroupDeleted, ActionError> {
        let group = &request.replication_group;
        Ok(GroupDeleted {
            replication_group: group.clone(),
            deleted: delete_group(self, ctx, group).await?,
        })
    }
}

/// The group, or `None` when it does not exist.
pub async fn find(aws: &Aws, group: &str) -> Result<Option<ReplicationGroup>, ActionError> {
    let result = aws
        .clients
        .elasticache
        .describe_replication_groups()
        .replication_group_id(group)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out
            .replication_groups
            .unwrap_or_default()
            .into_iter()
            .next()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_replication_group_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("elasticache:DescribeReplicationGroups", e)),
    }
}

/// The group; an error that says so when it does not exist.
pub async fn describe(aws: &Aws, group: &str) -> Result<ReplicationGroup, ActionError> {
    find(aws, group).await?.ok_or_else(|| {
        ActionError::fatal(format!(
            "replication group `{group}` does not exist in this account and region (check --profile, --region and the group id)"
        ))
    })
}

pub fn status(group: &ReplicationGroup) -> &str {
    group.status().unwrap_or("unknown")
}

/// The group's first node as ElastiCache describes it (its engine version and security groups
/// are per node); none when the group has no node yet or the node is gone.
pub async fn first_node(
    aws: &Aws,
    group: &ReplicationGroup,
) -> Result<Option<aws_sdk_elasticache::types::CacheCluster>, ActionError> {
    let Some(member) = group.member_clusters().first() else {
        return Ok(None);
    };
    let result = aws
        .clients
        .elasticache
        .describe_cache_clusters()
        .cache_cluster_id(member)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.cache_clusters().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_cache_cluster_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("elasticache:DescribeCacheClusters", e)),
    }
}

/// The engine version the group's nodes run, when ElastiCache says (it is per node).
pub async fn engine_version(
    aws: &Aws,
    group: &ReplicationGroup,
) -> Result<Option<String>, ActionError> {
    Ok(first_node(aws, group)
        .await?
        .and_then(|c| c.engine_version().map(str::to_string)))
}

/// `host:port` of an ElastiCache endpoint.
fn host_port(endpoint: Option<&aws_sdk_elasticache::types::Endpoint>) -> String {
    endpoint
        .and_then(|e| {
            e.address()
                .map(|a| format!("{a}:{}", e.port().unwrap_or(6379)))
        })
        .unwrap_or_default()
}

/// The index of a node group's primary among its members.
fn primary_member(group: &NodeGroup) -> usize {
    group
        .node_group_members()
        .iter()
        .position(|m| m.current_role() == Some("primary"))
        .unwrap_or(0)
}

/// The shard of a node group: its primary is the member ElastiCache calls primary (in
/// cluster mode no member has a role: the first is its primary), the others its replicas.
fn shard(group: &NodeGroup) -> ShardInfo {
    let members = group.node_group_members();
    let primary = primary_member(group);
    ShardInfo {
        id: group.node_group_id().unwrap_or("0001").to_string(),
        slots: group.slots().unwrap_or("0-16383").to_string(),
        primary_endpoint: match group.primary_endpoint() {
            Some(e) => host_port(Some(e)),
            None => members
                .get(primary)
                .map(|m| host_port(m.read_endpoint()))
                .unwrap_or_default(),
        },
        replicas: members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != primary)
            .map(|(_, m)| host_port(m.read_endpoint()))
            .collect(),
    }
}

/// The group as the contract describes it.
pub async fn info(aws: &Aws, group: &ReplicationGroup) -> Result<GroupInfo, ActionError> {
    let primary = group.configuration_endpoint().or_else(|| {
        group
            .node_groups()
            .first()
            .and_then(|g| g.primary_endpoint())
    });
    let nodes = group
        .node_groups()
        .iter()
        .flat_map(|g| {
            let primary = primary_member(g);
            g.node_group_members()
                .iter()
                .enumerate()
                .map(move |(i, m)| NodeInfo {
                    id: m.cache_cluster_id().unwrap_or_default().to_string(),
                    role: if i == primary { "primary" } else { "replica" }.to_string(),
                    endpoint: host_port(m.read_endpoint()),
                })
        })
        .collect();
    let configuration_endpoint = group.configuration_endpoint().map(|e| host_port(Some(e)));
    Ok(GroupInfo {
        id: group.replication_group_id().unwrap_or_default().to_string(),
        status: status(group).to_string(),
        engine: group.engine().unwrap_or_default().to_string(),
        engine_version: engine_version(aws, group).await?.unwrap_or_default(),
        primary_endpoint: host_port(primary),
        nodes,
        cluster_mode: group
            .cluster_enabled()
            .unwrap_or(configuration_endpoint.is_some()),
        configuration_endpoint,
        shards: group.node_groups().iter().map(shard).collect(),
        tls: group.transit_encryption_enabled().unwrap_or(false),
        auth: group.auth_token_enabled().unwrap_or(false) || !group.user_group_ids().is_empty(),
    })
}

/// Waits until `done` says the group has settled; `failed` statuses end the wait.
pub async fn wait_group(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    what: &str,
    done: impl Fn(&ReplicationGroup) -> bool,
) -> Result<ReplicationGroup, ActionError> {
    let events = Events::new(&aws.clients.elasticache, group, &aws.events_unsupported);
    wait::until(ctx, &aws.wait, what, Some(&events), || async {
        let g = describe(aws, group).await?;
        let s = status(&g);
        if done(&g) {
            Ok(Poll::Done(g))
        } else if s.ends_with("failed") || s == "incompatible-network" {
            Ok(Poll::Failed(format!("the group's status is `{s}`")))
        } else {
            Ok(Poll::Pending(format!("status {s}")))
        }
    })
    .await
}

/// elasticache:DeleteReplicationGroup (unless it is gone), then waits until it is gone;
/// false when there was nothing to delete.
async fn delete_group(aws: &Aws, ctx: &StepCtx<'_>, group: &str) -> Result<bool, ActionError> {
    let existed = match find(aws, group).await? {
        None => {
            ctx.note(format!("{group} does not exist: nothing to delete"));
            false
        }
        Some(g) if status(&g) == "deleting" => {
            ctx.note(format!("{group} is already being deleted"));
            true
        }
        Some(_) => {
            aws.clients
                .elasticache
                .delete_replication_group()
                .replication_group_id(group)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:DeleteReplicationGroup", e))?;
            ctx.note(format!("DeleteReplicationGroup accepted for {group}"));
            true
        }
    };
    wait::until(
        ctx,
        &aws.wait,
        &format!("{group} to be deleted"),
        None,
        || async {
            Ok(match find(aws, group).await? {
                None => Poll::Done(()),
                Some(g) => Poll::Pending(format!("status {}", status(&g))),
            })
        },
    )
    .await?;
    Ok(existed)
}

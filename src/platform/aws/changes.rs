//! The everyday changes of a replication group (seed 002) through ElastiCache's own calls:
//! TestFailover, IncreaseReplicaCount / DecreaseReplicaCount, ModifyReplicationGroup with
//! CacheNodeType, ModifyCacheParameterGroup (and the group's CacheParameterGroupName), each
//! observed first so a resumed step does only what is missing, and waited for with the
//! group's events shown. The health check reads CloudWatch over a window before a change
//! and after it.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_elasticache::types::{CacheCluster, ParameterNameValue, ReplicationGroup};

use super::group::{
    AVAILABLE, clusters_call, describe, describe_call, events_call, info, status, wait_group,
};
use super::wait::{self, Events, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    CheckHealth, FailedOver, FailoverGroup, Health, HealthFigures, ModifyNodeType,
    ModifyParameters, ModifyReplicas, NodeTypeModified, ParametersModified, ReplicasModified,
};

/// What every node reports once it applies its parameter group's values.
const IN_SYNC: &str = "in-sync";

#[async_trait::async_trait]
impl Handles<FailoverGroup> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &FailoverGroup) -> Vec<Operation> {
        let group = &request.replication_group;
        vec![
            describe_call(group),
            clusters_call(),
            Operation::new("aws", "elasticache:TestFailover")
                .param("ReplicationGroupId", group)
                .param("NodeGroupId", request.node_group())
                .destructive(),
            Operation::wait(format!(
                "until {group} is `{AVAILABLE}` with another primary in node group {}",
                request.node_group()
            )),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &FailoverGroup,
    ) -> Result<FailedOver, ActionError> {
        let group = &request.replication_group;
        let node_group = request.node_group();
        let current = settled(self, ctx, group).await?;
        let (old, members) = primary_of(&current, node_group)?;
        if members < 2 {
            return Err(ActionError::fatal(format!(
                "node group {node_group} of {group} has no replica to promote; add one first (group.modify_replicas)"
            )));
        }
        self.clients
            .elasticache
            .test_failover()
            .replication_group_id(group)
            .node_group_id(node_group)
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:TestFailover", e))?;
        ctx.note(format!(
            "TestFailover accepted for node group {node_group} of {group} (primary {})",
            if old.is_empty() { "not named" } else { &old }
        ));
        let what = format!("{group} to be `{AVAILABLE}` with a new primary in {node_group}");
        let done = wait_group(self, ctx, group, &what, |g| {
            status(g) == AVAILABLE
                && primary_of(g, node_group).is_ok_and(|(p, _)| p.is_empty() || p != old)
        })
        .await?;
        let (new, _) = primary_of(&done, node_group)?;
        Ok(FailedOver {
            group: info(self, &done).await?,
            node_group: node_group.to_string(),
            old_primary: old,
            new_primary: new,
        })
    }
}

#[async_trait::async_trait]
impl Handles<ModifyReplicas> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyReplicas) -> Vec<Operation> {
        let group = &request.replication_group;
        let call = |name: &str, when: &str| {
            Operation::new("aws", format!("elasticache:{name}"))
                .param("ReplicationGroupId", group)
                .param("NewReplicaCount", request.replicas)
                .param("ApplyImmediately", true)
                .param("when", when)
        };
        vec![
            describe_call(group),
            call("IncreaseReplicaCount", "a shard has fewer replicas"),
            call("DecreaseReplicaCount", "a shard has more replicas").destructive(),
            Operation::wait(format!(
                "until {group} is `{AVAILABLE}` with {} replica(s) per shard",
                request.replicas
            )),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyReplicas,
    ) -> Result<ReplicasModified, ActionError> {
        let wanted = request.checked()?;
        let group = &request.replication_group;
        let current = settled(self, ctx, group).await?;
        let before = replicas(&current);
        let count = i32::try_from(wanted).unwrap_or(i32::MAX);
        let ec = &self.clients.elasticache;
        if before == wanted && most_replicas(&current) == wanted {
            ctx.note(format!("{group} already has {wanted} replica(s) per shard"));
        } else if before < wanted {
            ec.increase_replica_count()
                .replication_group_id(group)
                .new_replica_count(count)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:IncreaseReplicaCount", e))?;
            ctx.note(format!(
                "IncreaseReplicaCount accepted: {group} from {before} to {wanted} replica(s)"
            ));
        } else {
            ec.decrease_replica_count()
                .replication_group_id(group)
                .new_replica_count(count)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:DecreaseReplicaCount", e))?;
            ctx.note(format!(
                "DecreaseReplicaCount accepted: {group} from {before} to {wanted} replica(s)"
            ));
        }
        let what = format!("{group} to be `{AVAILABLE}` with {wanted} replica(s) per shard");
        let done = wait_group(self, ctx, group, &what, |g| {
            status(g) == AVAILABLE && replicas(g) == wanted && most_replicas(g) == wanted
        })
        .await?;
        Ok(ReplicasModified {
            group: info(self, &done).await?,
            replicas_before: before,
            replicas: wanted,
        })
    }
}

#[async_trait::async_trait]
impl Handles<ModifyNodeType> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyNodeType) -> Vec<Operation> {
        let group = &request.replication_group;
        vec![
            describe_call(group),
            Operation::new("aws", "elasticache:ModifyReplicationGroup")
                .param("ReplicationGroupId", group)
                .param("CacheNodeType", &request.node_type)
                .param("ApplyImmediately", true)
                .param("when", "the group is on another node type")
                .destructive(),
            Operation::wait(format!(
                "until {group} is `{AVAILABLE}` on {}",
                request.node_type
            )),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyNodeType,
    ) -> Result<NodeTypeModified, ActionError> {
        let group = &request.replication_group;
        let wanted = request.node_type.as_str();
        let current = describe(self, group).await?;
        let before = current.cache_node_type().unwrap_or_default().to_string();
        if status(&current) == "modifying" {
            ctx.note(format!("{group} is already being modified: waiting for it"));
        } else if before == wanted {
            ctx.note(format!("{group} is already on {wanted}: nothing to change"));
        } else {
            self.clients
                .elasticache
                .modify_replication_group()
                .replication_group_id(group)
                .cache_node_type(wanted)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:ModifyReplicationGroup", e))?;
            ctx.note(format!(
                "ModifyReplicationGroup accepted: {group} from {before} to {wanted}"
            ));
        }
        let what = format!("{group} to be `{AVAILABLE}` on {wanted}");
        let done = wait_group(self, ctx, group, &what, |g| {
            status(g) == AVAILABLE && g.cache_node_type() == Some(wanted)
        })
        .await?;
        Ok(NodeTypeModified {
            group: info(self, &done).await?,
            node_type_before: before,
            node_type: wanted.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Handles<ModifyParameters> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyParameters) -> Vec<Operation> {
        let group = &request.replication_group;
        let p = &request.parameter_group;
        vec![
            Operation::new("aws", "elasticache:DescribeCacheParameters")
                .param("CacheParameterGroupName", p),
            Operation::new("aws", "elasticache:ModifyCacheParameterGroup")
                .param("CacheParameterGroupName", p)
                .param("ParameterNameValues", &request.parameters)
                .param("when", "a value differs"),
            describe_call(group),
            Operation::new("aws", "elasticache:DescribeCacheClusters")
                .param("CacheClusterId", "<each member>"),
            Operation::new("aws", "elasticache:ModifyReplicationGroup")
                .param("ReplicationGroupId", group)
                .param("CacheParameterGroupName", p)
                .param("ApplyImmediately", true)
                .param("when", "the group's nodes use another parameter group"),
            Operation::wait(format!(
                "until every node of {group} uses {p} and is `{IN_SYNC}`"
            )),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyParameters,
    ) -> Result<ParametersModified, ActionError> {
        request.checked()?;
        let group = &request.replication_group;
        let p = &request.parameter_group;
        let had = parameters(self, p, &request.parameters).await?;
        let changed: Vec<String> = request
            .parameters
            .iter()
            .filter(|(name, value)| had.get(*name) != Some(*value))
            .map(|(name, _)| name.clone())
            .collect();
        if changed.is_empty() {
            ctx.note(format!("{p} already has these values"));
        } else {
            let values = changed.iter().map(|name| {
                ParameterNameValue::builder()
                    .parameter_name(name)
                    .parameter_value(&request.parameters[name])
                    .build()
            });
            self.clients
                .elasticache
                .modify_cache_parameter_group()
                .cache_parameter_group_name(p)
                .set_parameter_name_values(Some(values.collect()))
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:ModifyCacheParameterGroup", e))?;
            ctx.note(format!(
                "ModifyCacheParameterGroup accepted: {p} {}",
                changed
                    .iter()
                    .map(|n| format!(
                        "{n} {} -> {}",
                        had.get(n).map_or("(unset)", String::as_str),
                        request.parameters[n]
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let current = settled(self, ctx, group).await?;
        let members = nodes(self, &current).await?;
        if members
            .iter()
            .any(|c| parameter_group(c).is_some_and(|(name, _)| name != *p))
        {
            self.clients
                .elasticache
                .modify_replication_group()
                .replication_group_id(group)
                .cache_parameter_group_name(p)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:ModifyReplicationGroup", e))?;
            ctx.note(format!(
                "ModifyReplicationGroup accepted: {group} now uses {p}"
            ));
        }
        let what = format!("every node of {group} to use {p} and be `{IN_SYNC}`");
        let events = Events::new(&self.clients.elasticache, group, &self.events_unsupported);
        wait::until(ctx, &self.wait, &what, Some(&events), || async {
            let g = describe(self, group).await?;
            let members = nodes(self, &g).await?;
            let states: Vec<(String, String)> = members
                .iter()
                .map(|c| parameter_group(c).unwrap_or_default())
                .collect();
            if let Some(c) = members
                .iter()
                .find(|c| parameter_group(c).is_some_and(|(_, s)| s == "pending-reboot"))
            {
                return Ok(Poll::Failed(format!(
                    "{} applies the values only after a reboot (pending-reboot); reboot its nodes (elasticache:RebootCacheCluster) in a maintenance window, then resume the run",
                    c.cache_cluster_id().unwrap_or_default()
                )));
            }
            Ok(
                if status(&g) == AVAILABLE
                    && states.iter().all(|(name, s)| name == p && s == IN_SYNC)
                {
                    Poll::Done(())
                } else {
                    Poll::Pending(format!(
                        "status {}, nodes {}",
                        status(&g),
                        states
                            .iter()
                            .map(|(name, s)| format!("{name} {s}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                },
            )
        })
        .await?;
        Ok(ParametersModified {
            replication_group: group.clone(),
            parameter_group: p.clone(),
            parameters: parameters(self, p, &request.parameters).await?,
            changed,
            apply_status: IN_SYNC.into(),
        })
    }
}

#[async_trait::async_trait]
impl Handles<CheckHealth> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &CheckHealth) -> Vec<Operation> {
        vec![
            describe_call(&request.replication_group),
            Operation::new("aws", "cloudwatch:GetMetricData")
                .param("Namespace", "AWS/ElastiCache")
                .param("MetricNames", HEALTH_METRICS.map(|(m, _)| m))
                .param("Dimensions", "CacheClusterId=<each node>, CacheNodeId=0001")
                .param("Period", PERIOD_SECS)
                .param("window", crate::duration::format(request.window))
                .param("max_memory_percent", request.max_memory_percent)
                .param("max_cpu_percent", request.max_cpu_percent)
                .param("max_connections", request.max_connections)
                .param("max_evictions", request.max_evictions),
        ]
    }

    async fn call(&self, _: &StepCtx<'_>, request: &CheckHealth) -> Result<Health, ActionError> {
        let g = info(self, &describe(self, &request.replication_group).await?).await?;
        let end = chrono::Utc::now();
        let start = end - chrono::TimeDelta::from_std(request.window).unwrap_or_default();
        let queries: Vec<MetricDataQuery> = g
            .nodes
            .iter()
            .flat_map(|n| HEALTH_METRICS.iter().map(move |m| (n, m)))
            .enumerate()
            .map(|(i, (n, (metric, stat)))| {
                MetricDataQuery::builder()
                    .id(format!("m{i}"))
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace("AWS/ElastiCache")
                                    .metric_name(*metric)
                                    .dimensions(
                                        Dimension::builder()
                                            .name("CacheClusterId")
                                            .value(&n.id)
                                            .build(),
                                    )
                                    .dimensions(
                                        Dimension::builder()
                                            .name("CacheNodeId")
                                            .value("0001")
                                            .build(),
                                    )
                                    .build(),
                            )
                            .period(PERIOD_SECS)
                            .stat(*stat)
                            .build(),
                    )
                    .return_data(true)
                    .build()
            })
            .collect();
        let mut figures = HealthFigures::default();
        let (mut series, mut with_data) = (0, 0);
        super::metrics::metric_results(self, queries, (start, end), None, |index, result| {
            series += 1;
            let values = result.values();
            if !values.is_empty() {
                with_data += 1;
            }
            let highest = values.iter().copied().fold(0.0, f64::max);
            match HEALTH_METRICS[index % HEALTH_METRICS.len()].0 {
                "DatabaseMemoryUsagePercentage" => {
                    figures.memory_percent = figures.memory_percent.max(highest)
                }
                "EngineCPUUtilization" => figures.cpu_percent = figures.cpu_percent.max(highest),
                "CurrConnections" => figures.connections = figures.connections.max(highest as u64),
                _ => figures.evictions += values.iter().sum::<f64>() as u64,
            }
        })
        .await?;
        request.judge(
            figures,
            &format!(
                "the highest per-minute value in CloudWatch over the last {} ({with_data} of {series} series had data points)",
                crate::duration::format(request.window)
            ),
        )
    }
}

/// ElastiCache publishes its metrics per minute.
const PERIOD_SECS: i32 = 60;

/// The metrics of the health check and the statistic each is read with.
const HEALTH_METRICS: [(&str, &str); 4] = [
    ("DatabaseMemoryUsagePercentage", "Maximum"),
    ("EngineCPUUtilization", "Maximum"),
    ("CurrConnections", "Maximum"),
    ("Evictions", "Sum"),
];

/// The group once it is `available` (waited for when a change is still under way).
async fn settled(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
) -> Result<ReplicationGroup, ActionError> {
    let current = describe(aws, group).await?;
    if status(&current) == AVAILABLE {
        return Ok(current);
    }
    let what = format!("{group} to be `{AVAILABLE}` before the change");
    wait_group(aws, ctx, group, &what, |g| status(g) == AVAILABLE).await
}

/// The cache cluster id of node group `node_group`'s primary (empty when ElastiCache names
/// no role, as in cluster mode) and how many members it has.
fn primary_of(group: &ReplicationGroup, node_group: &str) -> Result<(String, usize), ActionError> {
    let ng = group
        .node_groups()
        .iter()
        .find(|g| g.node_group_id().unwrap_or("0001") == node_group)
        .ok_or_else(|| {
            let known: Vec<&str> = group
                .node_groups()
                .iter()
                .map(|g| g.node_group_id().unwrap_or("0001"))
                .collect();
            ActionError::fatal(format!(
                "{} has no node group {node_group} (its node groups: {})",
                group.replication_group_id().unwrap_or_default(),
                known.join(", ")
            ))
        })?;
    let members = ng.node_group_members();
    let primary = members
        .iter()
        .find(|m| m.current_role() == Some("primary"))
        .and_then(|m| m.cache_cluster_id())
        .unwrap_or_default();
    Ok((primary.to_string(), members.len()))
}

/// The fewest replicas of any node group.
fn replicas(group: &ReplicationGroup) -> u32 {
    group
        .node_groups()
        .iter()
        .map(|g| g.node_group_members().len().saturating_sub(1) as u32)
        .min()
        .unwrap_or(0)
}

/// The most replicas of any node group.
fn most_replicas(group: &ReplicationGroup) -> u32 {
    group
        .node_groups()
        .iter()
        .map(|g| g.node_group_members().len().saturating_sub(1) as u32)
        .max()
        .unwrap_or(0)
}

/// Every member of the group as ElastiCache describes it (its parameter group is per node).
async fn nodes(aws: &Aws, group: &ReplicationGroup) -> Result<Vec<CacheCluster>, ActionError> {
    let mut nodes = Vec::new();
    for member in group.member_clusters() {
        let out = aws
            .clients
            .elasticache
            .describe_cache_clusters()
            .cache_cluster_id(member)
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:DescribeCacheClusters", e))?;
        nodes.extend(out.cache_clusters().iter().cloned());
    }
    Ok(nodes)
}

/// A node's parameter group and whether it applies it (`in-sync`, `applying`,
/// `pending-reboot`).
fn parameter_group(node: &CacheCluster) -> Option<(String, String)> {
    node.cache_parameter_group().map(|p| {
        (
            p.cache_parameter_group_name()
                .unwrap_or_default()
                .to_string(),
            p.parameter_apply_status().unwrap_or_default().to_string(),
        )
    })
}

/// The values of the parameters `asked` in parameter group `p`; one it does not have is an
/// error that names it.
async fn parameters(
    aws: &Aws,
    p: &str,
    asked: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ActionError> {
    let mut found = BTreeMap::new();
    let mut pages = aws
        .clients
        .elasticache
        .describe_cache_parameters()
        .cache_parameter_group_name(p)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("elasticache:DescribeCacheParameters", e))?;
        for param in page.parameters() {
            if let Some(name) = param.parameter_name()
                && asked.contains_key(name)
            {
                found.insert(
                    name.to_string(),
                    param.parameter_value().unwrap_or_default().to_string(),
                );
            }
        }
    }
    if let Some(missing) = asked.keys().find(|n| !found.contains_key(*n)) {
        return Err(ActionError::fatal(format!(
            "the parameter group {p} has no parameter `{missing}`; see DescribeCacheParameters for the names it takes"
        )));
    }
    Ok(found)
}

//! The target-side checks to pass before an online migration starts.
//!
//! StartMigration fails late and unclearly when a prerequisite is missing (and a failed
//! full sync leaves the target empty), so the `migration.preflight` action checks the
//! source over the Redis protocol and asks the target for the rest: here, the ElastiCache
//! group (available, Multi-AZ, no in-transit encryption, as many shards as the source with
//! the same slots) and
//! an EC2 security-group path from the cache's nodes to the source's port.

use std::time::Duration;

use aws_sdk_elasticache::types::{MultiAzStatus, ReplicationGroup};

use super::Aws;
use super::group::{clusters_call, describe, describe_call};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::Handles;
use crate::platform::contract::{Check, CheckMigrationTarget, TargetChecks};
use crate::resp::cluster::Topology;

#[async_trait::async_trait]
impl Handles<CheckMigrationTarget> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &CheckMigrationTarget) -> Vec<Operation> {
        let mut ops = vec![describe_call(&request.replication_group), clusters_call()];
        if let Ok(source) = Endpoint::parse(&request.source) {
            ops.push(
                Operation::new("redis", "INFO cluster, CLUSTER INFO").param("endpoint", &source),
            );
            ops.push(
                Operation::new("aws", "ec2:DescribeInstances")
                    .param("Filters", format!("private-ip-address={}", source.host)),
            );
        }
        ops.push(
            Operation::new("aws", "ec2:DescribeSecurityGroups")
                .param("GroupIds", "<the source instance's groups>"),
        );
        ops
    }

    /// Every target-side check, passed or not: failing the step is the caller's decision,
    /// so it can list the source's failures too.
    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CheckMigrationTarget,
    ) -> Result<TargetChecks, ActionError> {
        let source = request.source()?;
        let group = &request.replication_group;
        let g = describe(self, group).await?;
        let mut checks = group_checks(&g, group);
        checks.push(shard_check(ctx, &g, group, &source).await);
        checks.extend(security_group_checks(self, &g, std::slice::from_ref(&source)).await?);
        Ok(TargetChecks { checks })
    }
}

fn group_checks(g: &ReplicationGroup, group: &str) -> Vec<Check> {
    let status = g.status().unwrap_or("unknown");
    vec![
        Check::new(
            "target_available",
            status == "available",
            format!("{group} is {status}"),
        ),
        Check::new(
            "target_multi_az",
            g.multi_az() == Some(&MultiAzStatus::Enabled),
            format!(
                "Multi-AZ is {}",
                g.multi_az().map(|m| m.as_str()).unwrap_or("not reported")
            ),
        ),
        Check::new(
            "target_in_transit_encryption_off",
            g.transit_encryption_enabled() != Some(true),
            format!(
                "in-transit encryption is {}",
                if g.transit_encryption_enabled() == Some(true) {
                    "on"
                } else {
                    "off"
                }
            ),
        ),
    ]
}

/// The group has as many shards as the source, each with the slots of one of the source's:
/// one shard owning every slot, unless the source runs in cluster mode.
async fn shard_check(
    ctx: &StepCtx<'_>,
    g: &ReplicationGroup,
    group: &str,
    source: &Endpoint,
) -> Check {
    const NAME: &str = "target_shard_count";
    let mut target: Vec<String> = g
        .node_groups()
        .iter()
        .map(|n| n.slots().unwrap_or("0-16383").to_string())
        .collect();
    if target.is_empty() {
        target.push("0-16383".into());
    }
    let topology =
        match crate::resp::Conn::connect(ctx.resolver, source, Duration::from_secs(5)).await {
            Ok(mut conn) => Topology::of(&mut conn, source).await.ok(),
            Err(_) => None,
        };
    let Some(topology) = topology else {
        return Check::new(
            NAME,
            target.len() == 1 && g.cluster_enabled() != Some(true),
            format!(
                "{group} has {} shard(s); the source could not be asked, a single shard is expected",
                target.len()
            ),
        );
    };
    let mut from: Vec<String> = topology
        .shards
        .iter()
        .map(|s| {
            s.slots
                .iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let detail = format!(
        "{} has {} shard(s) ({}), {group} has {} ({})",
        source.host_port(),
        from.len(),
        from.join("; "),
        target.len(),
        target.join("; ")
    );
    from.sort();
    target.sort();
    Check::new(NAME, from == target, detail)
}

/// Whether the source's EC2 security groups let the cache's nodes in on the source port.
/// A source that is not an EC2 instance of this account cannot be checked: that passes
/// with a detail saying what to check by hand.
async fn security_group_checks(
    aws: &Aws,
    g: &ReplicationGroup,
    sources: &[Endpoint],
) -> Result<Vec<Check>, ActionError> {
    const NAME: &str = "security_group_allows_target";
    let cache_groups = cache_security_groups(aws, g).await?;
    let mut checks = Vec::new();
    for source in sources {
        let by_hand = format!(
            "make sure the source's security group allows TCP {} from the cache's nodes",
            source.port
        );
        if source.host.parse::<std::net::IpAddr>().is_err() {
            checks.push(Check::new(
                NAME,
                true,
                format!("not checked: the source is given by name; {by_hand}"),
            ));
            continue;
        }
        let group_ids = aws
            .clients
            .ec2
            .security_groups_of_instance(&source.host)
            .await
            .map_err(|e| ec2_error("ec2:DescribeInstances", e))?;
        if group_ids.is_empty() {
            checks.push(Check::new(
                NAME,
                true,
                format!(
                    "not checked: no EC2 instance has the private address {}; {by_hand}",
                    source.host
                ),
            ));
            continue;
        }
        let rules = aws
            .clients
            .ec2
            .inbound_rules(&group_ids)
            .await
            .map_err(|e| ec2_error("ec2:DescribeSecurityGroups", e))?;
        let port = i32::from(source.port);
        let allowed: Vec<String> = rules
            .iter()
            .filter(|rule| rule.allows_tcp(port))
            .flat_map(|rule| {
                let from_groups = rule
                    .source_groups()
                    .filter(|id| cache_groups.is_empty() || cache_groups.iter().any(|c| c == id))
                    .map(|id| format!("group {id}"));
                let from_cidrs = rule.cidrs().map(|c| format!("CIDR {c}"));
                from_groups.chain(from_cidrs).collect::<Vec<_>>()
            })
            .collect();
        checks.push(Check::new(
            NAME,
            !allowed.is_empty(),
            if allowed.is_empty() {
                format!(
                    "no inbound rule of {} allows TCP {port} from the cache's security groups ({})",
                    group_ids.join(", "),
                    if cache_groups.is_empty() {
                        "not reported".to_string()
                    } else {
                        cache_groups.join(", ")
                    }
                )
            } else {
                format!(
                    "{} allows TCP {port} from {}",
                    group_ids.join(", "),
                    allowed.join(", ")
                )
            },
        ));
    }
    Ok(checks)
}

/// A failed EC2 call as a step failure, transient where trying again may pass.
fn ec2_error(operation: &str, err: super::ec2::Ec2Error) -> ActionError {
    let transient = err.is_transient();
    let message = format!("{operation} failed: {:#}", anyhow::Error::new(err));
    if transient {
        ActionError::transient(message)
    } else {
        ActionError::fatal(message)
    }
}

/// The VPC security groups of the group's nodes (empty when ElastiCache does not say).
async fn cache_security_groups(
    aws: &Aws,
    g: &ReplicationGroup,
) -> Result<Vec<String>, ActionError> {
    Ok(super::group::first_node(aws, g)
        .await?
        .map(|c| {
            c.security_groups()
                .iter()
                .filter_map(|s| s.security_group_id().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

//! ElastiCache replication groups: observe, migrate, change the engine, snapshot, restore.
//!
//! Every operation reads the group first and does only what is missing (a migration
//! already running is waited for, an engine already changed is left alone), then waits
//! for the group to settle while ElastiCache's own events are shown as they come.

use std::time::Duration;

use aws_sdk_elasticache::types::{CustomerNodeEndpoint, ReplicationGroup, Snapshot};

use super::wait::{self, Events, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, Outputs, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::{ControlOp, GroupInfo, NodeInfo};

/// The status of a group that takes changes.
const AVAILABLE: &str = "available";
/// The status of a group replicating from a self-hosted source.
const MIGRATING: &str = "migrating";

/// The AWS API operations `op` leads to, in order, for `plan`.
pub fn explain(op: &ControlOp) -> Vec<Operation> {
    let describe = |group: &str| {
        Operation::new("aws", "elasticache:DescribeReplicationGroups")
            .param("ReplicationGroupId", group)
    };
    let events = |group: &str| {
        Operation::new("aws", "elasticache:DescribeEvents")
            .param("SourceIdentifier", group)
            .param("SourceType", "replication-group")
    };
    let wait_for = |what: String| Operation::new("wait", what);
    match op {
        ControlOp::DescribeGroup { group } => vec![
            describe(group),
            Operation::new("aws", "elasticache:DescribeCacheClusters")
                .param("CacheClusterId", "<first member>"),
        ],
        ControlOp::TestMigration { group, sources } => vec![
            describe(group),
            Operation::new("aws", "elasticache:TestMigration")
                .param("ReplicationGroupId", group)
                .param("CustomerNodeEndpointList", node_endpoints_param(sources)),
            wait_for(format!(
                "until {group} is `{AVAILABLE}` again; a failed test event fails the step"
            )),
            events(group),
        ],
        ControlOp::StartMigration { group, sources } => vec![
            describe(group),
            Operation::new("aws", "elasticache:StartMigration")
                .param("ReplicationGroupId", group)
                .param("CustomerNodeEndpointList", node_endpoints_param(sources))
                .param(
                    "when",
                    format!("{group} is `{AVAILABLE}` (skipped when already `{MIGRATING}`)"),
                )
                .destructive(),
            wait_for(format!("until {group} is `{MIGRATING}`")),
            events(group),
            Operation::new("redis", "INFO replication")
                .param(
                    "on",
                    "the group's primary endpoint (through --resolve if given)",
                )
                .param(
                    "until",
                    "master_link_status:up and master_sync_in_progress:0",
                ),
        ],
        ControlOp::CompleteMigration { group, force } => {
            let call = Operation::new("aws", "elasticache:CompleteMigration")
                .param("ReplicationGroupId", group)
                .param("Force", force)
                .param(
                    "when",
                    format!("{group} is `{MIGRATING}` (skipped when already `{AVAILABLE}`)"),
                );
            vec![
                describe(group),
                if *force { call.destructive() } else { call },
                wait_for(format!("until {group} is `{AVAILABLE}`")),
                events(group),
            ]
        }
        ControlOp::ModifyEngine {
            group,
            engine,
            engine_version,
            parameter_group,
        } => {
            let mut call = Operation::new("aws", "elasticache:ModifyReplicationGroup")
                .param("ReplicationGroupId", group)
                .param("Engine", engine);
            if let Some(v) = engine_version {
                call = call.param("EngineVersion", v);
            }
            if let Some(p) = parameter_group {
                call = call.param("CacheParameterGroupName", p);
            }
            vec![
                describe(group),
                Operation::new("aws", "elasticache:DescribeCacheClusters")
                    .param("CacheClusterId", "<first member>"),
                call.param("ApplyImmediately", true)
                    .param("when", "the group does not run this engine and version yet")
                    .destructive(),
                wait_for(format!("until {group} is `{AVAILABLE}` on {engine}")),
                events(group),
            ]
        }
        ControlOp::CreateSnapshot { group, snapshot } => vec![
            Operation::new("aws", "elasticache:DescribeSnapshots").param("SnapshotName", snapshot),
            Operation::new("aws", "elasticache:CreateSnapshot")
                .param("ReplicationGroupId", group)
                .param("SnapshotName", snapshot)
                .param("when", "no snapshot of that name exists"),
            wait_for(format!("until snapshot {snapshot} is `{AVAILABLE}`")),
            events(group),
        ],
        ControlOp::RestoreSnapshot {
            snapshot,
            group,
            engine,
            engine_version,
            replicas,
        } => {
            let mut call = Operation::new("aws", "elasticache:CreateReplicationGroup")
                .param("ReplicationGroupId", group)
                .param("SnapshotName", snapshot)
                .param("Engine", engine)
                .param("NumCacheClusters", replicas + 1);
            if let Some(v) = engine_version {
                call = call.param("EngineVersion", v);
            }
            vec![
                describe(group),
                Operation::new("aws", "elasticache:DescribeSnapshots")
                    .param("SnapshotName", snapshot),
                call.param("when", "the group does not exist yet"),
                wait_for(format!("until {group} is `{AVAILABLE}`")),
                events(group),
            ]
        }
        ControlOp::DeleteGroup { group } => vec![
            describe(group),
            Operation::new("aws", "elasticache:DeleteReplicationGroup")
                .param("ReplicationGroupId", group)
                .param("when", "the group exists")
                .destructive(),
            wait_for(format!("until {group} is gone")),
        ],
        _ => Vec::new(),
    }
}

/// `host:port` of each source, as `plan` shows them (no credentials: migration allows none).
fn node_endpoints_param(sources: &[Endpoint]) -> Vec<serde_json::Value> {
    sources
        .iter()
        .map(|s| serde_json::json!({ "Address": s.host, "Port": s.port }))
        .collect()
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

fn status(group: &ReplicationGroup) -> &str {
    group.status().unwrap_or("unknown")
}

/// The engine version the group's nodes run, when ElastiCache says (it is per node).
async fn engine_version(
    aws: &Aws,
    group: &ReplicationGroup,
) -> Result<Option<String>, ActionError> {
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
        Ok(out) => Ok(out
            .cache_clusters()
            .first()
            .and_then(|c| c.engine_version())
            .map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_cache_cluster_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("elasticache:DescribeCacheClusters", e)),
    }
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

/// The group as actions' outputs carry it.
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
        .flat_map(|g| g.node_group_members())
        .map(|m| NodeInfo {
            id: m.cache_cluster_id().unwrap_or_default().to_string(),
            role: m.current_role().unwrap_or("replica").to_string(),
            endpoint: host_port(m.read_endpoint()),
        })
        .collect();
    Ok(GroupInfo {
        id: group.replication_group_id().unwrap_or_default().to_string(),
        status: status(group).to_string(),
        engine: group.engine().unwrap_or_default().to_string(),
        engine_version: engine_version(aws, group).await?.unwrap_or_default(),
        primary_endpoint: host_port(primary),
        nodes,
    })
}

/// A [`GroupInfo`] as step outputs.
pub fn outputs(info: &GroupInfo) -> Outputs {
    match serde_json::to_value(info) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Outputs::new(),
    }
}

/// Waits until `done` says the group has settled; `failed` statuses end the wait.
async fn wait_group(
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

fn customer_endpoints(sources: &[Endpoint]) -> Result<Vec<CustomerNodeEndpoint>, ActionError> {
    if sources.is_empty() {
        return Err(ActionError::fatal(
            "no source endpoint given: the migration needs the self-hosted primary's host:port",
        ));
    }
    if let Some(s) = sources.iter().find(|s| s.tls || s.password.is_some()) {
        return Err(ActionError::fatal(format!(
            "source {s} uses TLS or AUTH; online migration needs a source with neither"
        )));
    }
    Ok(sources
        .iter()
        .map(|s| {
            CustomerNodeEndpoint::builder()
                .address(&s.host)
                .port(i32::from(s.port))
                .build()
        })
        .collect())
}

/// elasticache:TestMigration, then the group's verdict from its events.
pub async fn test_migration(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    sources: &[Endpoint],
) -> Result<Outputs, ActionError> {
    let endpoints = customer_endpoints(sources)?;
    let current = describe(aws, group).await?;
    let events = Events::new(&aws.clients.elasticache, group, &aws.events_unsupported);
    if status(&current) == AVAILABLE {
        aws.clients
            .elasticache
            .test_migration()
            .replication_group_id(group)
            .set_customer_node_endpoint_list(Some(endpoints))
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:TestMigration", e))?;
        ctx.note(format!("TestMigration started for {group}"));
    } else {
        ctx.note(format!(
            "{group} is `{}`: waiting for the test already running",
            status(&current)
        ));
    }
    let messages = std::sync::Mutex::new(Vec::new());
    let settled = wait::until(
        ctx,
        &aws.wait,
        &format!("the migration test of {group}"),
        None,
        || async {
            let new = events.pump(ctx).await;
            messages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(new);
            let g = describe(aws, group).await?;
            Ok(match status(&g) {
                AVAILABLE => Poll::Done(g),
                s => Poll::Pending(format!("status {s}")),
            })
        },
    )
    .await?;
    let mut messages = messages.into_inner().unwrap_or_else(|e| e.into_inner());
    messages.extend(events.pump(ctx).await);
    if let Some(failure) = messages
        .iter()
        .find(|m| m.to_ascii_lowercase().contains("fail"))
    {
        return Err(ActionError::fatal(format!(
            "the migration test of {group} failed: {failure}"
        )));
    }
    let mut out = outputs(&info(aws, &settled).await?);
    out.insert("events".into(), messages.into());
    Ok(out)
}

/// elasticache:StartMigration (unless already migrating), then waits until the group
/// replicates from the source and has finished its full sync.
pub async fn start_migration(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    sources: &[Endpoint],
) -> Result<Outputs, ActionError> {
    let endpoints = customer_endpoints(sources)?;
    let mut current = describe(aws, group).await?;
    if !matches!(status(&current), AVAILABLE | MIGRATING) {
        current = wait_group(
            aws,
            ctx,
            group,
            &format!("{group} to be `{AVAILABLE}`"),
            |g| matches!(status(g), AVAILABLE | MIGRATING),
        )
        .await?;
    }
    if status(&current) == MIGRATING {
        ctx.note(format!(
            "{group} is already migrating: not starting it again"
        ));
    } else {
        aws.clients
            .elasticache
            .start_migration()
            .replication_group_id(group)
            .set_customer_node_endpoint_list(Some(endpoints))
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:StartMigration", e))?;
        ctx.note(format!(
            "StartMigration accepted: {group} now replicates from {}",
            sources
                .iter()
                .map(Endpoint::host_port)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let migrating = wait_group(
        aws,
        ctx,
        group,
        &format!("{group} to be `{MIGRATING}`"),
        |g| status(g) == MIGRATING,
    )
    .await?;
    let info = info(aws, &migrating).await?;
    let mut out = outputs(&info);
    out.insert("replication".into(), caught_up(aws, ctx, &info).await?);
    Ok(out)
}

/// Waits, over the data plane, until the group's primary has a live link to the source
/// and no full sync in progress. An unreachable endpoint (no tunnel) is noted, not fatal:
/// the group's status already says it migrates.
async fn caught_up(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    info: &GroupInfo,
) -> Result<serde_json::Value, ActionError> {
    let Ok(endpoint) = Endpoint::parse(&info.primary_endpoint) else {
        return Ok(serde_json::json!({ "checked": false, "why": "no primary endpoint" }));
    };
    let timeout = Duration::from_secs(5);
    let conn = match ctx.resolver.connect(&endpoint, timeout).await {
        Ok(conn) => conn,
        Err(e) => {
            ctx.note(format!(
                "cannot reach {endpoint} to follow the sync ({e}); pass --resolve {}=ADDR:PORT through a tunnel to follow it",
                endpoint.host_port()
            ));
            return Ok(serde_json::json!({ "checked": false, "why": e.to_string() }));
        }
    };
    let endpoint = &endpoint;
    let fields = wait::until(
        ctx,
        &aws.wait,
        &format!("{endpoint} to finish its sync"),
        None,
        || {
            let mut conn = conn.clone();
            async move {
                let text: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| {
                        ActionError::transient(format!("INFO replication on {endpoint}: {e}"))
                    })?;
                let field = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                        .map(|v| v.trim().to_string())
                };
                let link = field("master_link_status").unwrap_or_else(|| "none".into());
                let syncing = field("master_sync_in_progress").unwrap_or_else(|| "0".into());
                Ok(if link == "up" && syncing == "0" {
                    Poll::Done(serde_json::json!({
                        "checked": true,
                        "master_link_status": link,
                        "master_host": field("master_host"),
                        "slave_repl_offset": field("slave_repl_offset"),
                    }))
                } else {
                    Poll::Pending(format!(
                        "master_link_status {link}, sync in progress {syncing}"
                    ))
                })
            }
        },
    )
    .await?;
    Ok(fields)
}

/// elasticache:CompleteMigration (unless already complete), then waits for `available`.
pub async fn complete_migration(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    force: bool,
) -> Result<Outputs, ActionError> {
    let current = describe(aws, group).await?;
    match status(&current) {
        MIGRATING => {
            aws.clients
                .elasticache
                .complete_migration()
                .replication_group_id(group)
                .force(force)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:CompleteMigration", e))?;
            ctx.note(format!(
                "CompleteMigration accepted for {group}{}",
                if force { " (forced)" } else { "" }
            ));
        }
        AVAILABLE => ctx.note(format!(
            "{group} is `{AVAILABLE}` and not migrating: the migration is already complete"
        )),
        other => ctx.note(format!("{group} is `{other}`: waiting for it to finish")),
    }
    let done = wait_group(
        aws,
        ctx,
        group,
        &format!("{group} to be `{AVAILABLE}`"),
        |g| status(g) == AVAILABLE,
    )
    .await?;
    Ok(outputs(&info(aws, &done).await?))
}

/// `valkey 8.2`, or `valkey` when the version is not known.
fn engine_and_version(engine: &str, version: Option<&str>) -> String {
    match version.filter(|v| !v.is_empty()) {
        Some(v) => format!("{engine} {v}"),
        None => engine.to_string(),
    }
}

/// True when the group runs `engine` (and `version`, when given and known).
fn runs(engine_now: &str, version_now: Option<&str>, engine: &str, version: Option<&str>) -> bool {
    engine_now.eq_ignore_ascii_case(engine)
        && match (version, version_now) {
            (Some(want), Some(have)) => have == want || have.starts_with(&format!("{want}.")),
            _ => true,
        }
}

/// elasticache:ModifyReplicationGroup to another engine (unless it already runs it),
/// then waits for `available` on the new engine.
pub async fn modify_engine(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    engine: &str,
    version: Option<&str>,
    parameter_group: Option<&str>,
) -> Result<Outputs, ActionError> {
    let current = describe(aws, group).await?;
    let version_now = engine_version(aws, &current).await?;
    let engine_now = current.engine().unwrap_or_default();
    let state = status(&current);
    if state == AVAILABLE && runs(engine_now, version_now.as_deref(), engine, version) {
        ctx.note(format!(
            "{group} already runs {}: nothing to change",
            engine_and_version(engine_now, version_now.as_deref())
        ));
    } else if state == "modifying" {
        ctx.note(format!("{group} is already being modified: waiting for it"));
    } else {
        aws.clients
            .elasticache
            .modify_replication_group()
            .replication_group_id(group)
            .engine(engine)
            .set_engine_version(version.map(str::to_string))
            .set_cache_parameter_group_name(parameter_group.map(str::to_string))
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:ModifyReplicationGroup", e))?;
        ctx.note(format!(
            "ModifyReplicationGroup accepted: {group} from {} to {}",
            engine_and_version(engine_now, version_now.as_deref()),
            engine_and_version(engine, version)
        ));
    }
    let what = format!("{group} to be `{AVAILABLE}` on {engine}");
    let done = wait_group(aws, ctx, group, &what, |g| {
        status(g) == AVAILABLE && g.engine().is_none_or(|e| e.eq_ignore_ascii_case(engine))
    })
    .await?;
    let info = info(aws, &done).await?;
    if !runs(
        &info.engine,
        Some(&info.engine_version)
            .filter(|v| !v.is_empty())
            .map(String::as_str),
        engine,
        version,
    ) {
        return Err(ActionError::fatal(format!(
            "{group} is `{AVAILABLE}` but runs {}, not {}",
            engine_and_version(&info.engine, Some(&info.engine_version)),
            engine_and_version(engine, version)
        )));
    }
    Ok(outputs(&info))
}

async fn find_snapshot(aws: &Aws, snapshot: &str) -> Result<Option<Snapshot>, ActionError> {
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
pub async fn create_snapshot(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    snapshot: &str,
) -> Result<Outputs, ActionError> {
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
    let mut out = Outputs::new();
    out.insert("snapshot".into(), snapshot.into());
    out.insert("group".into(), group.into());
    out.insert(
        "status".into(),
        done.snapshot_status().unwrap_or_default().into(),
    );
    out.insert(
        "engine_version".into(),
        done.engine_version().unwrap_or_default().into(),
    );
    Ok(out)
}

/// A new group from a snapshot (elasticache:CreateReplicationGroup with SnapshotName),
/// unless the group exists already; waits for `available`.
pub async fn restore_snapshot(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    snapshot: &str,
    group: &str,
    engine: &str,
    version: Option<&str>,
    replicas: u32,
) -> Result<Outputs, ActionError> {
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
    Ok(outputs(&info(aws, &done).await?))
}

/// elasticache:DeleteReplicationGroup (unless it is gone), then waits until it is gone.
pub async fn delete_group(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
) -> Result<Outputs, ActionError> {
    match find(aws, group).await? {
        None => ctx.note(format!("{group} does not exist: nothing to delete")),
        Some(g) if status(&g) == "deleting" => {
            ctx.note(format!("{group} is already being deleted"))
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
        }
    }
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
    let mut out = Outputs::new();
    out.insert("deleted".into(), group.into());
    Ok(out)
}

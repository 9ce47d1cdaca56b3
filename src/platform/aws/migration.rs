//! ElastiCache's online migration from a self-hosted Redis OSS: TestMigration,
//! StartMigration (then following the sync over the data plane, shard by shard in a
//! cluster), CompleteMigration. ElastiCache checks itself that the target is sharded like
//! the source; its refusal is shown with what to do.

use std::time::Duration;

use aws_sdk_elasticache::types::CustomerNodeEndpoint;

use super::group::{
    AVAILABLE, MIGRATING, describe, describe_call, events_call, info, status, wait_group,
};
use super::wait::{self, Events, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::Handles;
use crate::platform::contract::{
    CompleteMigration, GroupInfo, MigrationCompleted, MigrationStarted, MigrationTested,
    Replication, StartMigration, TestMigration,
};

#[async_trait::async_trait]
impl Handles<TestMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &TestMigration) -> Vec<Operation> {
        let group = &request.replication_group;
        vec![
            describe_call(group),
            Operation::new("aws", "elasticache:TestMigration")
                .param("ReplicationGroupId", group)
                .param(
                    "CustomerNodeEndpointList",
                    node_endpoints_param(&request.source),
                ),
            Operation::wait(format!(
                "until {group} is `{AVAILABLE}` again; a failed test event fails the step"
            )),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &TestMigration,
    ) -> Result<MigrationTested, ActionError> {
        test_migration(self, ctx, &request.replication_group, &[request.source()?]).await
    }
}

#[async_trait::async_trait]
impl Handles<StartMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &StartMigration) -> Vec<Operation> {
        let group = &request.replication_group;
        vec![
            describe_call(group),
            Operation::new("aws", "elasticache:StartMigration")
                .param("ReplicationGroupId", group)
                .param(
                    "CustomerNodeEndpointList",
                    node_endpoints_param(&request.source),
                )
                .param(
                    "when",
                    format!("{group} is `{AVAILABLE}` (skipped when already `{MIGRATING}`)"),
                )
                .destructive(),
            Operation::wait(format!("until {group} is `{MIGRATING}`")),
            events_call(group),
            Operation::wait("per shard: INFO replication")
                .param(
                    "on",
                    "each shard's primary endpoint (the group's primary endpoint without cluster mode), through --resolve if given",
                )
                .param(
                    "until",
                    "master_link_status:up and master_sync_in_progress:0",
                ),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &StartMigration,
    ) -> Result<MigrationStarted, ActionError> {
        start_migration(self, ctx, &request.replication_group, &[request.source()?]).await
    }
}

#[async_trait::async_trait]
impl Handles<CompleteMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &CompleteMigration) -> Vec<Operation> {
        let group = &request.replication_group;
        let call = Operation::new("aws", "elasticache:CompleteMigration")
            .param("ReplicationGroupId", group)
            .param("Force", request.force)
            .param(
                "when",
                format!("{group} is `{MIGRATING}` (skipped when already `{AVAILABLE}`)"),
            );
        vec![
            describe_call(group),
            if request.force {
                call.destructive()
            } else {
                call
            },
            Operation::wait(format!("until {group} is `{AVAILABLE}`")),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CompleteMigration,
    ) -> Result<MigrationCompleted, ActionError> {
        complete_migration(self, ctx, &request.replication_group, request.force).await
    }
}

/// `host:port` of the source, as `plan` shows it (no credentials: migration allows none);
/// nothing when the source is not an endpoint yet (it fails at run time).
/// `CustomerNodeEndpointList` as a plan shows it; a source known only at run time
/// (`⟨steps.…⟩`) is shown as written, not parsed as a host.
pub(super) fn node_endpoints_param(source: &str) -> Vec<serde_json::Value> {
    if source.contains('⟨') {
        return vec![source.into()];
    }
    Endpoint::parse(source)
        .iter()
        .map(|s| serde_json::json!({ "Address": s.host, "Port": s.port }))
        .collect()
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

/// A refused TestMigration or StartMigration; a refused parameter (ElastiCache's answer to
/// a target not sharded like the source, among others) says what to check.
fn migration_error<E>(
    operation: &str,
    group: &str,
    err: aws_sdk_elasticache::error::SdkError<E, aws_sdk_elasticache::config::http::HttpResponse>,
) -> ActionError
where
    E: aws_sdk_elasticache::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_string);
    let mut failed = sdk_error(operation, err);
    if matches!(
        code.as_deref(),
        Some("InvalidParameterValue" | "InvalidParameterCombination")
    ) {
        failed.message = format!(
            "{}; an online migration needs {group} to have as many shards as the source, each with the same slots (migration.preflight's target_shard_count compares them), and the source endpoint without TLS or AUTH",
            failed.message
        );
    }
    failed
}

/// elasticache:TestMigration, then the group's verdict from its events.
async fn test_migration(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    sources: &[Endpoint],
) -> Result<MigrationTested, ActionError> {
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
            .map_err(|e| migration_error("elasticache:TestMigration", group, e))?;
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
    Ok(MigrationTested {
        group: info(aws, &settled).await?,
        events: messages,
    })
}

/// elasticache:StartMigration (unless already migrating), then waits until the group
/// replicates from the source and has finished its full sync.
async fn start_migration(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    sources: &[Endpoint],
) -> Result<MigrationStarted, ActionError> {
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
            .map_err(|e| migration_error("elasticache:StartMigration", group, e))?;
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
    let group = info(aws, &migrating).await?;
    let replication = caught_up(aws, ctx, &group).await?;
    Ok(MigrationStarted { group, replication })
}

/// Waits, over the data plane, until each shard's primary (the group's primary without
/// cluster mode) has a live link to the source and no full sync in progress; returns the
/// first shard's. An unreachable endpoint (no tunnel) is noted, not fatal: the group's
/// status already says it migrates.
async fn caught_up(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    info: &GroupInfo,
) -> Result<Replication, ActionError> {
    let primaries: Vec<(String, &str)> = if info.cluster_mode && !info.shards.is_empty() {
        info.shards
            .iter()
            .map(|s| (format!("shard {}", s.id), s.primary_endpoint.as_str()))
            .collect()
    } else {
        vec![(info.id.clone(), info.primary_endpoint.as_str())]
    };
    let mut first = None;
    for (name, primary) in primaries {
        let replication = shard_caught_up(aws, ctx, &name, primary).await?;
        if !replication.checked {
            return Ok(replication);
        }
        first.get_or_insert(replication);
    }
    Ok(first.unwrap_or_else(|| Replication::unchecked("no primary endpoint")))
}

/// [`caught_up`] for one primary, `name` in the notes.
async fn shard_caught_up(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    name: &str,
    primary: &str,
) -> Result<Replication, ActionError> {
    let Ok(endpoint) = Endpoint::parse(primary) else {
        return Ok(Replication::unchecked(format!(
            "no primary endpoint for {name}"
        )));
    };
    let timeout = Duration::from_secs(5);
    let conn = match ctx.resolver.connect(&endpoint, timeout).await {
        Ok(conn) => conn,
        Err(e) => {
            ctx.note(format!(
                "cannot reach {endpoint} to follow the sync ({e}); pass --resolve {}=ADDR:PORT through a tunnel to follow it",
                endpoint.host_port()
            ));
            return Ok(Replication::unchecked(e.to_string()));
        }
    };
    let endpoint = &endpoint;
    wait::until(
        ctx,
        &aws.wait,
        &format!("{name} ({endpoint}) to finish its sync"),
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
                    Poll::Done(Replication {
                        checked: true,
                        master_link_status: link,
                        master_host: field("master_host").unwrap_or_default(),
                        offset: field("slave_repl_offset")
                            .and_then(|o| o.parse().ok())
                            .unwrap_or(0),
                        why: None,
                    })
                } else {
                    Poll::Pending(format!(
                        "master_link_status {link}, sync in progress {syncing}"
                    ))
                })
            }
        },
    )
    .await
}

/// elasticache:CompleteMigration (unless already complete), then waits for `available`.
async fn complete_migration(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    force: bool,
) -> Result<MigrationCompleted, ActionError> {
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
    Ok(MigrationCompleted {
        group: info(aws, &done).await?,
        forced: force,
    })
}

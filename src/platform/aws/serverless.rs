//! ElastiCache Serverless: describe, the online migration from a self-hosted source
//! (PrepareMigration, StartMigration, StopMigration, CompleteMigration with
//! ServerlessCacheName), the in-place engine change (ModifyServerlessCache), snapshots and
//! their export to S3, a cache made from snapshots or RDB files in S3, and delete.
//!
//! AWS does not document the values of `MigrationSummary.Status`, so the waits read them
//! by their words (`…fail…` fails, `…sync…` is a running sync, `…stop…` a paused one,
//! `…complet…` the end) and show every value they meet as it changes.

use aws_sdk_elasticache::types::{
    CustomerNodeEndpoint, SecretManagerAuthConfig, ServerlessCache, ServerlessCacheSnapshot,
    SourceAuthenticationConfiguration, SourceTlsConfiguration, SourceType, TlsMode,
};

use super::s3::{bucket_calls, seed_calls};
use super::wait::{self, Events, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    CompleteServerlessMigration, CreateServerless, CreateServerlessSnapshot, DeleteServerless,
    DescribeServerless, ExportServerlessSnapshot, ModifyServerlessEngine,
    PrepareServerlessMigration, ServerlessDeleted, ServerlessInfo, ServerlessMigrationCompleted,
    ServerlessSnapshotInfo, SnapshotExported, StartServerlessMigration, StopServerlessMigration,
    bucket_name_problem, exported_object,
};

const AVAILABLE: &str = "available";

fn describe_call(name: &str) -> Operation {
    Operation::new("aws", "elasticache:DescribeServerlessCaches").param("ServerlessCacheName", name)
}

fn events_call(name: &str) -> Operation {
    Operation::new("aws", "elasticache:DescribeEvents")
        .param("SourceIdentifier", name)
        .param("SourceType", "serverless-cache")
}

fn snapshots_call(snapshot: &str) -> Operation {
    Operation::new("aws", "elasticache:DescribeServerlessCacheSnapshots")
        .param("ServerlessCacheSnapshotName", snapshot)
}

/// The cache, or `None` when it does not exist.
async fn find(aws: &Aws, name: &str) -> Result<Option<ServerlessCache>, ActionError> {
    let result = aws
        .clients
        .elasticache
        .describe_serverless_caches()
        .serverless_cache_name(name)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.serverless_caches.unwrap_or_default().into_iter().next()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_serverless_cache_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("elasticache:DescribeServerlessCaches", e)),
    }
}

async fn describe(aws: &Aws, name: &str) -> Result<ServerlessCache, ActionError> {
    find(aws, name).await?.ok_or_else(|| {
        ActionError::fatal(format!(
            "serverless cache `{name}` does not exist in this account and region (check --profile, --region and the name)"
        ))
    })
}

fn status(cache: &ServerlessCache) -> &str {
    cache.status().unwrap_or("unknown")
}

fn migration(cache: &ServerlessCache) -> String {
    cache
        .migration()
        .and_then(|m| m.status())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn syncing(m: &str) -> bool {
    m.contains("sync") && !m.contains("stop")
}

fn completed(m: &str) -> bool {
    m.contains("complet")
}

fn host_port(e: Option<&aws_sdk_elasticache::types::Endpoint>) -> String {
    e.and_then(|e| {
        e.address()
            .map(|a| format!("{a}:{}", e.port().unwrap_or(6379)))
    })
    .unwrap_or_default()
}

/// The cache as the contract describes it. ElastiCache Serverless always encrypts in transit.
fn info(c: &ServerlessCache) -> ServerlessInfo {
    let endpoint = host_port(c.endpoint());
    ServerlessInfo {
        name: c.serverless_cache_name().unwrap_or_default().to_string(),
        status: status(c).to_string(),
        engine: c.engine().unwrap_or_default().to_string(),
        major_engine_version: c.major_engine_version().unwrap_or_default().to_string(),
        full_engine_version: c.full_engine_version().unwrap_or_default().to_string(),
        url: format!("rediss://{endpoint}"),
        reader_endpoint: host_port(c.reader_endpoint()),
        endpoint,
        tls: true,
        arn: c.arn().unwrap_or_default().to_string(),
        migration_status: c
            .migration()
            .and_then(|m| m.status())
            .unwrap_or_default()
            .to_string(),
    }
}

/// Waits until `done` says the cache has settled; a failed status or migration ends it.
async fn wait_cache(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    name: &str,
    what: &str,
    done: impl Fn(&ServerlessCache) -> bool,
) -> Result<ServerlessCache, ActionError> {
    let events = Events::of(
        &aws.clients.elasticache,
        name,
        SourceType::ServerlessCache,
        &aws.events_unsupported,
    );
    wait::until(ctx, &aws.wait, what, Some(&events), || async {
        let c = describe(aws, name).await?;
        let (s, m) = (status(&c).to_string(), migration(&c));
        if done(&c) {
            Ok(Poll::Done(c))
        } else if s.ends_with("failed") {
            Ok(Poll::Failed(format!("the cache's status is `{s}`")))
        } else if m.contains("fail") {
            Ok(Poll::Failed(format!("the migration's status is `{m}`")))
        } else if m.is_empty() {
            Ok(Poll::Pending(format!("status {s}")))
        } else {
            Ok(Poll::Pending(format!("status {s}, migration {m}")))
        }
    })
    .await
}

#[async_trait::async_trait]
impl Handles<DescribeServerless> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &DescribeServerless) -> Vec<Operation> {
        vec![describe_call(&r.serverless_cache)]
    }

    async fn call(
        &self,
        _: &StepCtx<'_>,
        r: &DescribeServerless,
    ) -> Result<ServerlessInfo, ActionError> {
        Ok(info(&describe(self, &r.serverless_cache).await?))
    }
}

#[async_trait::async_trait]
impl Handles<PrepareServerlessMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &PrepareServerlessMigration) -> Vec<Operation> {
        let name = &r.serverless_cache;
        let endpoints = super::migration::node_endpoints_param(&r.source);
        let mut call = Operation::new("aws", "elasticache:PrepareMigration")
            .param("ServerlessCacheName", name)
            .param("CustomerNodeEndpointList", endpoints)
            .param("when", "no migration is prepared yet");
        if let Some(arn) = &r.source_secret_arn {
            call = call.param(
                "SourceAuthenticationConfiguration.SecretManagerConfig.SecretArn",
                arn,
            );
        }
        if r.source_tls {
            call = call.param("SourceTlsConfiguration.SourceTlsMode", "verify-ca");
        }
        vec![
            describe_call(name),
            call,
            Operation::wait(format!(
                "until {name} is `{AVAILABLE}` with its migration prepared"
            )),
            events_call(name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &PrepareServerlessMigration,
    ) -> Result<ServerlessInfo, ActionError> {
        let source = r.source()?;
        let name = &r.serverless_cache;
        let current = describe(self, name).await?;
        let m = migration(&current);
        if !m.is_empty() && !m.contains("fail") && !completed(&m) {
            ctx.note(format!(
                "{name} already has a migration (`{m}`): not preparing it again"
            ));
        } else {
            let mut call = self
                .clients
                .elasticache
                .prepare_migration()
                .serverless_cache_name(name)
                .customer_node_endpoint_list(
                    CustomerNodeEndpoint::builder()
                        .address(&source.host)
                        .port(i32::from(source.port))
                        .build(),
                );
            if let Some(arn) = &r.source_secret_arn {
                call = call.source_authentication_configuration(
                    SourceAuthenticationConfiguration::builder()
                        .secret_manager_config(
                            SecretManagerAuthConfig::builder().secret_arn(arn).build(),
                        )
                        .build(),
                );
            }
            if r.source_tls {
                call = call.source_tls_configuration(
                    SourceTlsConfiguration::builder()
                        .source_tls_mode(TlsMode::VerifyCa)
                        .build(),
                );
            }
            call.send()
                .await
                .map_err(|e| sdk_error("elasticache:PrepareMigration", e))?;
            ctx.note(format!(
                "PrepareMigration accepted: {name} will migrate from {}",
                source.host_port()
            ));
        }
        let done = wait_cache(self, ctx, name, &format!("{name} to be prepared"), |c| {
            let m = migration(c);
            status(c) == AVAILABLE && !m.is_empty() && !m.contains("preparing")
        })
        .await?;
        Ok(info(&done))
    }
}

#[async_trait::async_trait]
impl Handles<StartServerlessMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &StartServerlessMigration) -> Vec<Operation> {
        let name = &r.serverless_cache;
        vec![
            describe_call(name),
            Operation::new("aws", "elasticache:StartMigration")
                .param("ServerlessCacheName", name)
                .param("AutoCutover", r.auto_cutover)
                .param("ClearTargetCacheData", r.clear_target_cache_data)
                .param("when", "the data sync does not run yet")
                .destructive(),
            Operation::wait(if r.auto_cutover {
                format!("until the migration of {name} has completed (auto cutover)")
            } else {
                format!("until the data sync of {name} runs")
            }),
            events_call(name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &StartServerlessMigration,
    ) -> Result<ServerlessInfo, ActionError> {
        let name = &r.serverless_cache;
        let m = migration(&describe(self, name).await?);
        if syncing(&m) || completed(&m) {
            ctx.note(format!(
                "the migration of {name} is `{m}`: not starting it again"
            ));
        } else {
            self.clients
                .elasticache
                .start_migration()
                .serverless_cache_name(name)
                .auto_cutover(r.auto_cutover)
                .clear_target_cache_data(r.clear_target_cache_data)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:StartMigration", e))?;
            ctx.note(format!("StartMigration accepted for {name}"));
        }
        let auto = r.auto_cutover;
        let done = wait_cache(self, ctx, name, &format!("the data sync of {name}"), |c| {
            let m = migration(c);
            completed(&m) || (!auto && syncing(&m) && !m.contains("start"))
        })
        .await?;
        Ok(info(&done))
    }
}

#[async_trait::async_trait]
impl Handles<StopServerlessMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &StopServerlessMigration) -> Vec<Operation> {
        let name = &r.serverless_cache;
        vec![
            describe_call(name),
            Operation::new("aws", "elasticache:StopMigration")
                .param("ServerlessCacheName", name)
                .param("when", "the data sync runs (refused during the cutover)"),
            Operation::wait(format!("until the data sync of {name} is stopped")),
            events_call(name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &StopServerlessMigration,
    ) -> Result<ServerlessInfo, ActionError> {
        let name = &r.serverless_cache;
        let m = migration(&describe(self, name).await?);
        if m.contains("stop") {
            ctx.note(format!("the data sync of {name} is already `{m}`"));
        } else {
            self.clients
                .elasticache
                .stop_migration()
                .serverless_cache_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:StopMigration", e))?;
            ctx.note(format!("StopMigration accepted for {name}"));
        }
        let done = wait_cache(
            self,
            ctx,
            name,
            &format!("the data sync of {name} to stop"),
            |c| migration(c).contains("stop"),
        )
        .await?;
        Ok(info(&done))
    }
}

#[async_trait::async_trait]
impl Handles<CompleteServerlessMigration> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &CompleteServerlessMigration) -> Vec<Operation> {
        let name = &r.serverless_cache;
        let call = Operation::new("aws", "elasticache:CompleteMigration")
            .param("ServerlessCacheName", name)
            .param("Force", r.force)
            .param("when", "the migration is not complete yet");
        vec![
            describe_call(name),
            if r.force { call.destructive() } else { call },
            Operation::wait(format!(
                "until {name} is `{AVAILABLE}` and its migration complete"
            )),
            events_call(name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CompleteServerlessMigration,
    ) -> Result<ServerlessMigrationCompleted, ActionError> {
        let name = &r.serverless_cache;
        let m = migration(&describe(self, name).await?);
        if completed(&m) || (m.is_empty() && r.force) {
            ctx.note(format!(
                "{name} has no migration to complete (`{}`)",
                if m.is_empty() { "none" } else { &m }
            ));
        } else {
            self.clients
                .elasticache
                .complete_migration()
                .serverless_cache_name(name)
                .force(r.force)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:CompleteMigration", e))?;
            ctx.note(format!(
                "CompleteMigration accepted for {name}{}",
                if r.force { " (forced)" } else { "" }
            ));
        }
        let done = wait_cache(self, ctx, name, &format!("the cutover of {name}"), |c| {
            let m = migration(c);
            status(c) == AVAILABLE && (m.is_empty() || completed(&m))
        })
        .await?;
        Ok(ServerlessMigrationCompleted {
            cache: info(&done),
            forced: r.force,
        })
    }
}

#[async_trait::async_trait]
impl Handles<ModifyServerlessEngine> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &ModifyServerlessEngine) -> Vec<Operation> {
        let name = &r.serverless_cache;
        let mut call = Operation::new("aws", "elasticache:ModifyServerlessCache")
            .param("ServerlessCacheName", name)
            .param("Engine", &r.engine)
            .param("when", "the cache runs another engine or version");
        if let Some(v) = &r.major_engine_version {
            call = call.param("MajorEngineVersion", v);
        }
        vec![
            describe_call(name),
            call.destructive(),
            Operation::wait(format!("until {name} is `{AVAILABLE}` on {}", r.engine)),
            events_call(name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &ModifyServerlessEngine,
    ) -> Result<ServerlessInfo, ActionError> {
        let name = &r.serverless_cache;
        let engine = r.engine.to_ascii_lowercase();
        let version = r.major_engine_version.clone();
        let there = |c: &ServerlessCache| {
            c.engine().is_some_and(|e| e.eq_ignore_ascii_case(&engine))
                && version
                    .as_deref()
                    .is_none_or(|v| c.major_engine_version() == Some(v))
        };
        let current = describe(self, name).await?;
        if there(&current) {
            ctx.note(format!("{name} already runs {engine}: not modifying it"));
        } else if status(&current) == AVAILABLE {
            if current.engine() == Some("valkey") && engine == "redis" {
                return Err(ActionError::fatal(format!(
                    "{name} runs Valkey: AWS documents no in-place way back to Redis OSS; restore a snapshot taken before the change instead"
                )));
            }
            self.clients
                .elasticache
                .modify_serverless_cache()
                .serverless_cache_name(name)
                .engine(&engine)
                .set_major_engine_version(version.clone())
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:ModifyServerlessCache", e))?;
            ctx.note(format!(
                "ModifyServerlessCache accepted: {name} to {engine}"
            ));
        } else {
            ctx.note(format!(
                "{name} is `{}`: waiting for the change already under way",
                status(&current)
            ));
        }
        let done = wait_cache(self, ctx, name, &format!("{name} to run {engine}"), |c| {
            status(c) == AVAILABLE && there(c)
        })
        .await?;
        Ok(info(&done))
    }
}

async fn find_snapshot(
    aws: &Aws,
    snapshot: &str,
) -> Result<Option<ServerlessCacheSnapshot>, ActionError> {
    let result = aws
        .clients
        .elasticache
        .describe_serverless_cache_snapshots()
        .serverless_cache_snapshot_name(snapshot)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out
            .serverless_cache_snapshots
            .unwrap_or_default()
            .into_iter()
            .next()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_serverless_cache_snapshot_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("elasticache:DescribeServerlessCacheSnapshots", e)),
    }
}

/// Waits until the serverless snapshot is `available` again (after a create or an export).
async fn wait_snapshot(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    snapshot: &str,
) -> Result<ServerlessCacheSnapshot, ActionError> {
    wait::until(
        ctx,
        &aws.wait,
        &format!("serverless snapshot {snapshot}"),
        None,
        || async {
            let s = find_snapshot(aws, snapshot).await?.ok_or_else(|| {
                ActionError::fatal(format!("serverless snapshot {snapshot} disappeared"))
            })?;
            Ok(match s.status().unwrap_or("unknown") {
                AVAILABLE => Poll::Done(s),
                "failed" => Poll::Failed(format!("serverless snapshot {snapshot} failed")),
                other => Poll::Pending(format!("status {other}")),
            })
        },
    )
    .await
}

#[async_trait::async_trait]
impl Handles<CreateServerlessSnapshot> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &CreateServerlessSnapshot) -> Vec<Operation> {
        vec![
            snapshots_call(&r.snapshot),
            Operation::new("aws", "elasticache:CreateServerlessCacheSnapshot")
                .param("ServerlessCacheName", &r.serverless_cache)
                .param("ServerlessCacheSnapshotName", &r.snapshot)
                .param("when", "no snapshot of that name exists"),
            Operation::wait(format!("until snapshot {} is `{AVAILABLE}`", r.snapshot)),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CreateServerlessSnapshot,
    ) -> Result<ServerlessSnapshotInfo, ActionError> {
        let (name, snapshot) = (&r.serverless_cache, &r.snapshot);
        match find_snapshot(self, snapshot).await? {
            Some(existing) => {
                let of = existing
                    .serverless_cache_configuration()
                    .and_then(|c| c.serverless_cache_name())
                    .unwrap_or_default();
                if of != name {
                    return Err(ActionError::fatal(format!(
                        "a serverless snapshot named `{snapshot}` already exists, of `{of}` rather than `{name}`; choose another name"
                    )));
                }
                ctx.note(format!(
                    "snapshot {snapshot} already exists: not taking it again"
                ));
            }
            None => {
                self.clients
                    .elasticache
                    .create_serverless_cache_snapshot()
                    .serverless_cache_name(name)
                    .serverless_cache_snapshot_name(snapshot)
                    .send()
                    .await
                    .map_err(|e| sdk_error("elasticache:CreateServerlessCacheSnapshot", e))?;
                ctx.note(format!(
                    "CreateServerlessCacheSnapshot accepted: {snapshot} of {name}"
                ));
            }
        }
        let done = wait_snapshot(self, ctx, snapshot).await?;
        let config = done.serverless_cache_configuration();
        Ok(ServerlessSnapshotInfo {
            snapshot: snapshot.clone(),
            arn: done.arn().unwrap_or_default().to_string(),
            serverless_cache: name.clone(),
            status: done.status().unwrap_or_default().to_string(),
            engine: config
                .and_then(|c| c.engine())
                .unwrap_or_default()
                .to_string(),
            major_engine_version: config
                .and_then(|c| c.major_engine_version())
                .unwrap_or_default()
                .to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Handles<ExportServerlessSnapshot> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &ExportServerlessSnapshot) -> Vec<Operation> {
        vec![
            bucket_calls(&r.bucket),
            snapshots_call(&r.snapshot),
            Operation::new("aws", "elasticache:ExportServerlessCacheSnapshot")
                .param("ServerlessCacheSnapshotName", &r.snapshot)
                .param("S3BucketName", &r.bucket)
                .param("when", "no export of it is under way"),
            Operation::wait(format!(
                "until snapshot {} is `{AVAILABLE}` again",
                r.snapshot
            )),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &ExportServerlessSnapshot,
    ) -> Result<SnapshotExported, ActionError> {
        let (snapshot, bucket) = (&r.snapshot, &r.bucket);
        if let Some(why) = bucket_name_problem(bucket) {
            return Err(ActionError::fatal(why));
        }
        self.check_export_bucket(bucket).await?;
        let current = find_snapshot(self, snapshot).await?.ok_or_else(|| {
            ActionError::fatal(format!("serverless snapshot `{snapshot}` does not exist"))
        })?;
        if current.status() == Some("exporting") {
            ctx.note(format!("{snapshot} is being exported already: waiting"));
        } else {
            self.clients
                .elasticache
                .export_serverless_cache_snapshot()
                .serverless_cache_snapshot_name(snapshot)
                .s3_bucket_name(bucket)
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:ExportServerlessCacheSnapshot", e))?;
            ctx.note(format!(
                "ExportServerlessCacheSnapshot accepted: {snapshot} to s3://{bucket}"
            ));
        }
        wait_snapshot(self, ctx, snapshot).await?;
        Ok(SnapshotExported::new(
            snapshot,
            bucket,
            vec![exported_object(bucket, snapshot, 1)],
        ))
    }
}

#[async_trait::async_trait]
impl Handles<CreateServerless> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &CreateServerless) -> Vec<Operation> {
        let name = &r.serverless_cache;
        let mut call = Operation::new("aws", "elasticache:CreateServerlessCache")
            .param("ServerlessCacheName", name)
            .param("Engine", &r.engine);
        if let Some(v) = &r.major_engine_version {
            call = call.param("MajorEngineVersion", v);
        }
        let mut ops = vec![describe_call(name)];
        if !r.snapshot_arns.is_empty() {
            call = call.param("SnapshotArnsToRestore", &r.snapshot_arns);
            ops.extend(seed_calls(&r.snapshot_arns));
        }
        ops.extend([
            call.param("when", "the cache does not exist yet"),
            Operation::wait(format!("until {name} is `{AVAILABLE}`")),
            events_call(name),
        ]);
        ops
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CreateServerless,
    ) -> Result<ServerlessInfo, ActionError> {
        let name = &r.serverless_cache;
        if find(self, name).await?.is_some() {
            ctx.note(format!("{name} already exists: not creating it again"));
        } else {
            self.check_seed_objects(&r.snapshot_arns).await?;
            self.clients
                .elasticache
                .create_serverless_cache()
                .serverless_cache_name(name)
                .engine(&r.engine)
                .set_major_engine_version(r.major_engine_version.clone())
                .set_snapshot_arns_to_restore(
                    Some(r.snapshot_arns.clone()).filter(|a| !a.is_empty()),
                )
                .send()
                .await
                .map_err(|e| sdk_error("elasticache:CreateServerlessCache", e))?;
            ctx.note(format!("CreateServerlessCache accepted: {name}"));
        }
        let done = wait_cache(
            self,
            ctx,
            name,
            &format!("{name} to be `{AVAILABLE}`"),
            |c| status(c) == AVAILABLE,
        )
        .await?;
        Ok(info(&done))
    }
}

#[async_trait::async_trait]
impl Handles<DeleteServerless> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &DeleteServerless) -> Vec<Operation> {
        let name = &r.serverless_cache;
        let mut call = Operation::new("aws", "elasticache:DeleteServerlessCache")
            .param("ServerlessCacheName", name)
            .param("when", "the cache exists");
        if let Some(s) = &r.final_snapshot {
            call = call.param("FinalSnapshotName", s);
        }
        vec![
            describe_call(name),
            call.destructive(),
            Operation::wait(format!("until {name} is gone")),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &DeleteServerless,
    ) -> Result<ServerlessDeleted, ActionError> {
        let name = &r.serverless_cache;
        let existed = match find(self, name).await? {
            None => {
                ctx.note(format!("{name} does not exist: nothing to delete"));
                false
            }
            Some(c) if status(&c) == "deleting" => {
                ctx.note(format!("{name} is already being deleted"));
                true
            }
            Some(_) => {
                self.clients
                    .elasticache
                    .delete_serverless_cache()
                    .serverless_cache_name(name)
                    .set_final_snapshot_name(r.final_snapshot.clone())
                    .send()
                    .await
                    .map_err(|e| sdk_error("elasticache:DeleteServerlessCache", e))?;
                ctx.note(format!("DeleteServerlessCache accepted for {name}"));
                true
            }
        };
        wait::until(
            ctx,
            &self.wait,
            &format!("{name} to be deleted"),
            None,
            || async {
                Ok(match find(self, name).await? {
                    None => Poll::Done(()),
                    Some(c) => Poll::Pending(format!("status {}", status(&c))),
                })
            },
        )
        .await?;
        Ok(ServerlessDeleted {
            serverless_cache: name.clone(),
            deleted: existed,
        })
    }
}

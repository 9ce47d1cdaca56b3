//! ElastiCache Serverless rehearsed: a serverless cache is one `valkey-server` in cluster
//! mode owning all 16,384 slots behind one endpoint, so clients meet what they meet on AWS
//! (no SELECT, CROSSSLOT on multi-key commands across slots).
//!
//! A cluster-mode node refuses `REPLICAOF` ("not allowed in cluster mode"), so the
//! online migration is rehearsed by what the real servers can do: while the data sync
//! runs, the cache's node restarts on the same port without cluster mode as a replica of
//! the source (real replication, read-only like a migrating target); `StopMigration` is
//! `REPLICAOF NO ONE` (the data stays, the sync pauses); a later start with
//! `clear_target_cache_data` flushes and syncs again; the cutover saves the node's data and
//! restarts it in cluster mode on its own `nodes.conf`, every slot still its own. Unlike
//! AWS, whose endpoint forwards to the source until the cutover, the rehearsal's endpoint
//! serves the replica (writes are refused) and restarts twice: it over-states the client
//! impact of start and cutover, never under-states it.

use std::path::PathBuf;

use async_trait::async_trait;

use super::cluster::SLOTS;
use super::server::{self, Engine};
use super::state::{Group, GroupKind, Migration, Serverless, Shard};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::Handles;
use crate::platform::contract::{
    CompleteServerlessMigration, CreateServerless, CreateServerlessSnapshot, DeleteServerless,
    DescribeServerless, ExportServerlessSnapshot, ModifyServerlessEngine,
    PrepareServerlessMigration, ServerlessDeleted, ServerlessInfo, ServerlessMigrationCompleted,
    ServerlessSnapshotInfo, SnapshotExported, StartServerlessMigration, StopServerlessMigration,
    serverless_source_problem,
};

/// Migration statuses the rehearsal reports (`ServerlessInfo::migration_status`).
const PREPARED: &str = "prepared";
const SYNCING: &str = "syncing";
const STOPPED: &str = "stopped";
const COMPLETED: &str = "completed";

/// The ARN a rehearsed serverless snapshot answers to.
pub fn snapshot_arn(name: &str) -> String {
    format!("arn:aws:elasticache:local:000000000000:serverlesscachesnapshot:{name}")
}

/// The group of a new serverless cache: one shard `0001` owning every slot.
pub fn cache_group(name: &str, stack: Option<&str>, version: Option<String>) -> Group {
    Group {
        id: name.to_string(),
        kind: GroupKind::Serverless,
        stack: stack.map(str::to_string),
        requested_version: version,
        node_type: None,
        multi_az: true,
        transit_encryption: false,
        auth: false,
        cluster_mode: true,
        shards: vec![Shard {
            id: "0001".into(),
            slots: vec![(0, SLOTS - 1)],
        }],
        configuration_port: None,
        nodes: Vec::new(),
        migration: None,
        completed_migration: None,
    }
}

fn named(what: &str, name: &str) -> Operation {
    Operation::new("process", format!("{what} {name}"))
}

#[async_trait]
impl Handles<DescribeServerless> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &DescribeServerless) -> Vec<Operation> {
        vec![Operation::new(
            "redis",
            format!("INFO server and CLUSTER INFO of {}", r.serverless_cache),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &DescribeServerless,
    ) -> Result<ServerlessInfo, ActionError> {
        let run = self.open(ctx).await?;
        Ok(run.describe_serverless(&r.serverless_cache).await?)
    }
}

#[async_trait]
impl Handles<PrepareServerlessMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &PrepareServerlessMigration) -> Vec<Operation> {
        vec![
            Operation::new("redis", "INFO server and INFO keyspace on the source")
                .param("source", &r.source),
            Operation::new(
                "redis",
                format!("DBSIZE on {} (it must be empty)", r.serverless_cache),
            ),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &PrepareServerlessMigration,
    ) -> Result<ServerlessInfo, ActionError> {
        let source = r.source()?;
        if r.source_tls {
            return Err(ActionError::fatal(
                "source_tls: the rehearsal's sources serve plain TCP; rehearse without source_tls",
            ));
        }
        let mut run = self.open(ctx).await?;
        if let Some(arn) = &r.source_secret_arn {
            ctx.note(format!(
                "ElastiCache would read the source's credentials from {arn}; the rehearsal reaches its source without them"
            ));
        }
        Ok(run.prepare(&r.serverless_cache, &source).await?)
    }
}

#[async_trait]
impl Handles<StartServerlessMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &StartServerlessMigration) -> Vec<Operation> {
        let mut ops = Vec::new();
        if r.clear_target_cache_data {
            ops.push(
                Operation::new("redis", format!("FLUSHALL on {}", r.serverless_cache))
                    .destructive(),
            );
        }
        ops.push(
            Operation::new(
                "process",
                format!(
                    "restart the node of {} without cluster mode as a replica of the prepared source (REPLICAOF)",
                    r.serverless_cache
                ),
            )
            .destructive(),
        );
        ops.push(Operation::wait(
            "until the link is up and the offsets match the source's",
        ));
        if r.auto_cutover {
            ops.push(named("then cut over", &r.serverless_cache));
        }
        ops
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &StartServerlessMigration,
    ) -> Result<ServerlessInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        let name = &r.serverless_cache;
        run.start_sync(name, r.clear_target_cache_data).await?;
        if r.auto_cutover {
            run.cut_over(name, false).await?;
        }
        Ok(run.describe_serverless(name).await?)
    }
}

#[async_trait]
impl Handles<StopServerlessMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &StopServerlessMigration) -> Vec<Operation> {
        vec![Operation::new(
            "redis",
            format!("REPLICAOF NO ONE on the node of {}", r.serverless_cache),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &StopServerlessMigration,
    ) -> Result<ServerlessInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run.stop_sync(&r.serverless_cache).await?)
    }
}

#[async_trait]
impl Handles<CompleteServerlessMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &CompleteServerlessMigration) -> Vec<Operation> {
        let mut ops = Vec::new();
        if !r.force {
            ops.push(Operation::wait(
                "until the node has caught up with the source",
            ));
        }
        let cut = Operation::new(
            "process",
            format!(
                "REPLICAOF NO ONE, SHUTDOWN SAVE, restart the node of {} in cluster mode owning every slot",
                r.serverless_cache
            ),
        );
        ops.push(if r.force { cut.destructive() } else { cut });
        ops
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CompleteServerlessMigration,
    ) -> Result<ServerlessMigrationCompleted, ActionError> {
        let mut run = self.open(ctx).await?;
        run.cut_over(&r.serverless_cache, r.force).await?;
        Ok(ServerlessMigrationCompleted {
            cache: run.describe_serverless(&r.serverless_cache).await?,
            forced: r.force,
        })
    }
}

#[async_trait]
impl Handles<ModifyServerlessEngine> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &ModifyServerlessEngine) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!(
                    "SHUTDOWN SAVE the node of {} and start {}-server on the same port, data and nodes.conf",
                    r.serverless_cache, r.engine
                ),
            )
            .param("major_engine_version", &r.major_engine_version)
            .destructive(),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &ModifyServerlessEngine,
    ) -> Result<ServerlessInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run
            .modify_serverless(
                &r.serverless_cache,
                &r.engine,
                r.major_engine_version.as_deref(),
            )
            .await?)
    }
}

#[async_trait]
impl Handles<CreateServerlessSnapshot> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &CreateServerlessSnapshot) -> Vec<Operation> {
        vec![
            Operation::new("redis", format!("BGSAVE on {}", r.serverless_cache)),
            Operation::new(
                "process",
                format!("copy the RDB file to snapshots/{}.rdb", r.snapshot),
            ),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CreateServerlessSnapshot,
    ) -> Result<ServerlessSnapshotInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        run.serverless(&r.serverless_cache)?;
        let s = run
            .create_snapshot(&r.serverless_cache, &r.snapshot)
            .await?;
        Ok(ServerlessSnapshotInfo {
            arn: snapshot_arn(&s.snapshot),
            snapshot: s.snapshot,
            serverless_cache: s.group,
            status: s.status,
            engine: s.engine,
            major_engine_version: major(&s.engine_version),
        })
    }
}

#[async_trait]
impl Handles<ExportServerlessSnapshot> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &ExportServerlessSnapshot) -> Vec<Operation> {
        vec![Operation::new(
            "process",
            format!(
                "copy snapshots/{}.rdb into the bucket folder s3/{}/",
                r.snapshot, r.bucket
            ),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &ExportServerlessSnapshot,
    ) -> Result<SnapshotExported, ActionError> {
        let run = self.open(ctx).await?;
        Ok(run.export_to_bucket(&r.snapshot, &r.bucket)?)
    }
}

#[async_trait]
impl Handles<CreateServerless> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &CreateServerless) -> Vec<Operation> {
        let mut what = format!(
            "start {}: {}-server in cluster mode owning every slot",
            r.serverless_cache, r.engine
        );
        if !r.snapshot_arns.is_empty() {
            what.push_str(", then restart it on the RDB file of the snapshot");
        }
        vec![Operation::new("process", what).param("snapshot_arns", &r.snapshot_arns)]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CreateServerless,
    ) -> Result<ServerlessInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run
            .create_serverless(
                &r.serverless_cache,
                &r.engine,
                r.major_engine_version.as_deref(),
                &r.snapshot_arns,
            )
            .await?)
    }
}

#[async_trait]
impl Handles<DeleteServerless> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &DeleteServerless) -> Vec<Operation> {
        let mut ops = Vec::new();
        if let Some(s) = &r.final_snapshot {
            ops.push(Operation::new(
                "redis",
                format!("BGSAVE on {} as snapshot {s}", r.serverless_cache),
            ));
        }
        ops.push(named("stop the server of", &r.serverless_cache).destructive());
        ops
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &DeleteServerless,
    ) -> Result<ServerlessDeleted, ActionError> {
        let mut run = self.open(ctx).await?;
        let name = &r.serverless_cache;
        let exists = run.state.serverless.contains_key(name);
        if exists && let Some(s) = &r.final_snapshot {
            run.create_snapshot(name, s).await?;
        }
        let deleted = exists && run.delete_group(name).await?;
        if !exists {
            ctx.note(format!("{name} does not exist: nothing to delete"));
        }
        run.state.serverless.remove(name);
        run.save().map_err(ActionError::from)?;
        Ok(ServerlessDeleted {
            serverless_cache: name.clone(),
            deleted,
        })
    }
}

/// The major version of a full one (`9.1.2` → `9`).
fn major(version: &str) -> String {
    version.split('.').next().unwrap_or_default().to_string()
}

impl Run<'_, '_> {
    /// The serverless state of `name`, or why there is none.
    fn serverless(&self, name: &str) -> Result<&Serverless> {
        self.state.serverless.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.state.serverless.keys().map(String::as_str).collect();
            LocalError::Refused(format!(
                "there is no serverless cache `{name}` in this rehearsal (known: {}); deploy a stack with an AWS::ElastiCache::ServerlessCache or use serverless.create first",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    fn set_status(&mut self, name: &str, status: &str) -> Result<()> {
        if let Some(s) = self.state.serverless.get_mut(name) {
            s.migration_status = status.to_string();
        }
        self.save()
    }

    pub(super) async fn describe_serverless(&self, name: &str) -> Result<ServerlessInfo> {
        let s = self.serverless(name)?.clone();
        let g = self.describe(name).await?;
        let endpoint = g
            .nodes
            .first()
            .map(|n| n.endpoint.clone())
            .unwrap_or_default();
        let status = if g.status.starts_with("unavailable") {
            g.status
        } else {
            "available".to_string()
        };
        Ok(ServerlessInfo {
            name: name.to_string(),
            status,
            engine: g.engine,
            major_engine_version: if s.major_engine_version.is_empty() {
                major(&g.engine_version)
            } else {
                s.major_engine_version
            },
            full_engine_version: g.engine_version,
            url: format!("redis://{endpoint}"),
            reader_endpoint: endpoint.clone(),
            endpoint,
            tls: false,
            arn: format!("arn:aws:elasticache:local:000000000000:serverlesscache:{name}"),
            migration_status: s.migration_status,
        })
    }

    /// The one node of a serverless cache, as the control plane reaches it.
    fn cache_node(&self, name: &str) -> Result<(server::Access, u32)> {
        let g = self.group(name)?;
        let node = g.primary();
        Ok((self.access(g, node)?, node.pid))
    }

    async fn prepare(&mut self, name: &str, source: &Endpoint) -> Result<ServerlessInfo> {
        let s = self.serverless(name)?.clone();
        if s.migration_status == PREPARED || s.migration_status == SYNCING {
            self.ctx
                .note(format!("{name} is already prepared for a migration"));
            return self.describe_serverless(name).await;
        }
        let addr = match self.ctx.resolver.override_for(source) {
            Some(a) => a.to_string(),
            None => source.host_port(),
        };
        let info = self.source_info(source).await?;
        let (engine, version) = server::engine_of(&info);
        let target = self.describe_serverless(name).await?;
        if let Some(why) =
            serverless_source_problem(engine.name(), &version, &target.full_engine_version)
        {
            return Err(LocalError::Refused(why));
        }
        let keyspace = self.source_keyspace(source).await?;
        if let Some(db) = keyspace.iter().find(|db| *db != "db0") {
            return Err(LocalError::Refused(format!(
                "the source holds keys in {db}: a serverless cache is cluster mode and has db 0 only; move those keys to db 0 first"
            )));
        }
        let (access, _) = self.cache_node(name)?;
        let keys: u64 = server::command(&access, &redis::cmd("DBSIZE")).await?;
        if keys > 0 {
            return Err(LocalError::Refused(format!(
                "{name} holds {keys} key(s); a migration needs an empty serverless cache"
            )));
        }
        self.ctx.note(format!(
            "{name} will migrate from {source} ({engine} {version})"
        ));
        let entry = self.state.serverless.get_mut(name).expect("checked");
        entry.prepared_source = Some(addr);
        entry.migration_status = PREPARED.into();
        self.save()?;
        self.describe_serverless(name).await
    }

    /// The databases that hold keys on the source (`db0`, …).
    async fn source_keyspace(&self, source: &Endpoint) -> Result<Vec<String>> {
        let refused = |e: redis::RedisError| {
            LocalError::Refused(format!("the source {source} does not answer: {e}"))
        };
        let mut conn = self
            .ctx
            .resolver
            .connect(source, std::time::Duration::from_secs(5))
            .await
            .map_err(refused)?;
        let text: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut conn)
            .await
            .map_err(refused)?;
        Ok(server::parse_info(&text).into_keys().collect())
    }

    /// Restarts the cache's node as a replica of the prepared source (unless it already
    /// replicates), then waits until it has caught up.
    async fn start_sync(&mut self, name: &str, clear: bool) -> Result<()> {
        let s = self.serverless(name)?.clone();
        let Some(source) = s.prepared_source.clone() else {
            return Err(LocalError::Refused(format!(
                "{name} is not prepared for a migration (status `{}`); run serverless.prepare_migration first",
                if s.migration_status.is_empty() {
                    "none"
                } else {
                    &s.migration_status
                }
            )));
        };
        let source_endpoint = Endpoint::parse(&source)
            .map_err(|e| LocalError::Refused(format!("the prepared source: {e}")))?;
        match s.migration_status.as_str() {
            SYNCING => {
                self.ensure_group(name).await?;
                self.ctx.note(format!(
                    "{name} already syncs from {source}: waiting for it to catch up"
                ));
            }
            COMPLETED => {
                return Err(LocalError::Refused(format!(
                    "the migration of {name} is complete; there is no sync to start"
                )));
            }
            status => {
                if status == STOPPED && !clear {
                    return Err(LocalError::Refused(format!(
                        "the sync of {name} was stopped: StartMigration needs clear_target_cache_data: true to start it again"
                    )));
                }
                let (access, pid) = self.cache_node(name)?;
                let keys: u64 = server::command(&access, &redis::cmd("DBSIZE")).await?;
                if keys > 0 && !clear {
                    return Err(LocalError::Refused(format!(
                        "{name} holds {keys} key(s): the data sync fails on a cache with data; start with clear_target_cache_data: true"
                    )));
                }
                if clear {
                    server::command::<()>(&access, &redis::cmd("FLUSHALL")).await?;
                    self.ctx
                        .note(format!("{name}: FLUSHALL (clear_target_cache_data)"));
                }
                server::stop(pid, access.port).await;
                let g = self.state.groups.get_mut(name).expect("checked");
                g.cluster_mode = false;
                g.migration = Some(Migration::of(source.clone()));
                self.set_status(name, SYNCING)?;
                self.ensure_node(name, 0).await?;
                self.ctx.note(format!(
                    "{name} syncs from {source} (its node serves as a read-only replica until the cutover)"
                ));
            }
        }
        self.wait_in_sync(name, 0, &source_endpoint).await?;
        Ok(())
    }

    async fn stop_sync(&mut self, name: &str) -> Result<ServerlessInfo> {
        let s = self.serverless(name)?.clone();
        match s.migration_status.as_str() {
            SYNCING => {
                let (access, _) = self.cache_node(name)?;
                server::command::<()>(&access, redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
                    .await?;
                self.state.groups.get_mut(name).expect("checked").migration = None;
                self.set_status(name, STOPPED)?;
                self.ctx.note(format!(
                    "{name}: the data sync is paused (REPLICAOF NO ONE)"
                ));
            }
            STOPPED => self
                .ctx
                .note(format!("the data sync of {name} is already stopped")),
            COMPLETED => {
                return Err(LocalError::Refused(format!(
                    "InvalidServerlessCacheState: the migration of {name} is past its cutover; StopMigration is valid only while syncing"
                )));
            }
            other => {
                return Err(LocalError::Refused(format!(
                    "ServerlessCacheNotUnderMigration: {name} has no data sync to stop (status `{}`)",
                    if other.is_empty() { "none" } else { other }
                )));
            }
        }
        self.describe_serverless(name).await
    }

    /// The cutover: waits for sync (unless `force`), saves the node's data and restarts it
    /// in cluster mode owning every slot. A forced cutover of a prepared cache that never
    /// synced cancels the migration.
    async fn cut_over(&mut self, name: &str, force: bool) -> Result<()> {
        let s = self.serverless(name)?.clone();
        match s.migration_status.as_str() {
            COMPLETED => {
                self.ensure_group(name).await?;
                self.ctx
                    .note(format!("the migration of {name} is already complete"));
                return Ok(());
            }
            SYNCING | STOPPED => {}
            PREPARED | "" if force => {
                let entry = self.state.serverless.get_mut(name).expect("checked");
                entry.prepared_source = None;
                self.set_status(name, "")?;
                self.ctx.note(format!(
                    "{name} never synced: there is no migration left to stop"
                ));
                return Ok(());
            }
            other => {
                return Err(LocalError::Refused(format!(
                    "{name} has no running data sync to complete (status `{}`); start it with serverless.start_migration, or use force: true",
                    if other.is_empty() { "none" } else { other }
                )));
            }
        }
        if s.migration_status == STOPPED && !force {
            return Err(LocalError::Refused(format!(
                "the data sync of {name} is stopped, so the cache is not in sync; start it again with clear_target_cache_data: true, or complete with force: true"
            )));
        }
        let source = s.prepared_source.clone().unwrap_or_default();
        if force {
            self.ctx.note("force: cutting over without ensuring sync");
        } else {
            let endpoint = Endpoint::parse(&source)
                .map_err(|e| LocalError::Refused(format!("the prepared source: {e}")))?;
            self.ensure_group(name).await?;
            self.wait_in_sync(name, 0, &endpoint).await?;
        }
        let (access, pid) = self.cache_node(name)?;
        if server::is_alive(pid, &access).await {
            server::command::<()>(&access, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
            server::save_and_stop(pid, &access).await?;
        }
        let g = self.state.groups.get_mut(name).expect("checked");
        g.cluster_mode = true;
        g.migration = None;
        g.completed_migration = Some(Migration {
            forced: force,
            ..Migration::of(source)
        });
        self.set_status(name, COMPLETED)?;
        self.ensure_group(name).await?;
        self.ctx.note(format!(
            "{name} is cut over: its node serves in cluster mode, every slot its own"
        ));
        Ok(())
    }

    async fn modify_serverless(
        &mut self,
        name: &str,
        engine: &str,
        version: Option<&str>,
    ) -> Result<ServerlessInfo> {
        self.serverless(name)?;
        let wanted = Engine::parse(engine).ok_or_else(|| {
            LocalError::Refused(format!("engine `{engine}` is neither redis nor valkey"))
        })?;
        let current = self.group(name)?.primary().engine;
        if current == Engine::Valkey && wanted == Engine::Redis {
            return Err(LocalError::Refused(format!(
                "{name} runs Valkey: AWS documents no in-place way back to Redis OSS; restore a snapshot taken before the change instead"
            )));
        }
        if current == wanted {
            self.ensure_group(name).await?;
            self.ctx.note(format!("{name} already runs {wanted}"));
        } else {
            server::binary(wanted)?;
            let (access, pid) = self.cache_node(name)?;
            if server::is_alive(pid, &access).await {
                server::save_and_stop(pid, &access).await?;
            }
            self.state.groups.get_mut(name).expect("checked").nodes[0].engine = wanted;
            self.save()?;
            self.ensure_group(name).await?;
            self.ctx
                .note(format!("{name} restarted with {wanted} on its own data"));
        }
        if let Some(v) = version {
            self.state
                .serverless
                .get_mut(name)
                .expect("checked")
                .major_engine_version = v.to_string();
            self.save()?;
        }
        self.describe_serverless(name).await
    }

    async fn create_serverless(
        &mut self,
        name: &str,
        engine: &str,
        version: Option<&str>,
        arns: &[String],
    ) -> Result<ServerlessInfo> {
        if self.state.serverless.contains_key(name) {
            self.ensure_group(name).await?;
            self.ctx.note(format!("{name} already exists"));
            return self.describe_serverless(name).await;
        }
        if self.state.groups.contains_key(name) {
            return Err(LocalError::Refused(format!(
                "a group `{name}` already exists in this rehearsal; choose another name"
            )));
        }
        let engine = Engine::parse(engine).ok_or_else(|| {
            LocalError::Refused(format!("engine `{engine}` is neither redis nor valkey"))
        })?;
        let seed = match arns {
            [] => None,
            [arn] => Some(self.rdb_of(arn)?),
            _ => {
                return Err(LocalError::Refused(format!(
                    "{} snapshot ARNs: the rehearsal's serverless cache is one node and loads one RDB file",
                    arns.len()
                )));
            }
        };
        self.state.serverless.insert(
            name.to_string(),
            Serverless {
                major_engine_version: version.unwrap_or_default().to_string(),
                ..Serverless::default()
            },
        );
        self.create_group(
            cache_group(name, None, version.map(str::to_string)),
            &[1],
            engine,
            None,
        )
        .await?;
        if let Some(file) = seed {
            // Loaded on a restart, after the node owns every slot in its nodes.conf: a node
            // that started on the data would claim only the slots of its keys.
            let (access, pid) = self.cache_node(name)?;
            server::stop(pid, access.port).await;
            let dir = self.group(name)?.primary().dir.clone();
            std::fs::copy(&file, dir.join(server::DB_FILE)).map_err(|e| {
                LocalError::Refused(format!(
                    "cannot copy {} into {}: {e}",
                    file.display(),
                    dir.display()
                ))
            })?;
            self.ensure_group(name).await?;
            self.ctx.note(format!("{name} loaded {}", file.display()));
        }
        self.describe_serverless(name).await
    }

    /// The RDB file an ARN names in this rehearsal: a serverless snapshot's, or an object
    /// in a bucket folder.
    pub(super) fn rdb_of(&self, arn: &str) -> Result<PathBuf> {
        if let Some(name) =
            arn.strip_prefix("arn:aws:elasticache:local:000000000000:serverlesscachesnapshot:")
        {
            return self
                .state
                .snapshots
                .get(name)
                .map(|s| s.file.clone())
                .ok_or_else(|| {
                    LocalError::Refused(format!(
                        "there is no serverless snapshot `{name}` in this rehearsal"
                    ))
                });
        }
        let (bucket, key) = crate::platform::contract::s3_object(arn)
            .map_err(|e| LocalError::Refused(e.message))?;
        let file = self.bucket_dir(bucket).join(key);
        if !file.is_file() {
            return Err(LocalError::Refused(format!(
                "{arn}: no such object in the rehearsal's bucket folder {}",
                self.bucket_dir(bucket).display()
            )));
        }
        Ok(file)
    }
}

//! An online migration rehearsed: the group's primary becomes a replica of the source
//! (`REPLICAOF`), is followed until it has caught up, and completing it is a promotion.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SYNC_DEADLINE;
use super::server;
use super::state::Migration;
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::Handles;
use crate::platform::contract::{
    CompleteMigration, MigrationCompleted, MigrationStarted, MigrationTested, Replication,
    StartMigration, TestMigration,
};

#[async_trait]
impl Handles<TestMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &TestMigration) -> Vec<Operation> {
        vec![
            Operation::new("redis", "PING + INFO server on the source")
                .param("group", &request.replication_group)
                .param("source", &request.source),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &TestMigration,
    ) -> Result<MigrationTested, ActionError> {
        let source = request.source()?;
        let run = self.open(ctx).await?;
        Ok(run
            .test_migration(&request.replication_group, &[source])
            .await?)
    }
}

#[async_trait]
impl Handles<StartMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &StartMigration) -> Vec<Operation> {
        vec![
            Operation::new(
                "redis",
                format!(
                    "REPLICAOF <source> on the primary of {}",
                    request.replication_group
                ),
            )
            .param("source", &request.source),
            Operation::new(
                "wait",
                "until the link is up and the offsets match the source's",
            ),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &StartMigration,
    ) -> Result<MigrationStarted, ActionError> {
        let source = request.source()?;
        let mut run = self.open(ctx).await?;
        Ok(run
            .start_migration(&request.replication_group, &[source])
            .await?)
    }
}

#[async_trait]
impl Handles<CompleteMigration> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &CompleteMigration) -> Vec<Operation> {
        let mut ops = Vec::new();
        if !request.force {
            ops.push(Operation::new(
                "wait",
                "until the primary has caught up with the source",
            ));
        }
        let promote = Operation::new(
            "redis",
            format!(
                "REPLICAOF NO ONE on the primary of {}",
                request.replication_group
            ),
        );
        ops.push(if request.force {
            promote.destructive()
        } else {
            promote
        });
        ops
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CompleteMigration,
    ) -> Result<MigrationCompleted, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run
            .complete_migration(&request.replication_group, request.force)
            .await?)
    }
}

impl Run<'_, '_> {
    /// The one source of a non-clustered group, as the servers reach it (`host:port`).
    fn source_of(&self, sources: &[Endpoint]) -> Result<(Endpoint, String)> {
        let [source] = sources else {
            return Err(LocalError::Refused(format!(
                "a non-clustered replication group migrates from exactly one source, got {}",
                sources.len()
            )));
        };
        if source.tls || source.password.is_some() {
            return Err(LocalError::Refused(format!(
                "{source}: online migration needs a source without AUTH and without TLS"
            )));
        }
        let addr = match self.ctx.resolver.override_for(source) {
            Some(a) => a.to_string(),
            None => source.host_port(),
        };
        Ok((source.clone(), addr))
    }

    /// INFO server of the source, through `--resolve` if given.
    pub(super) async fn source_info(&self, source: &Endpoint) -> Result<BTreeMap<String, String>> {
        let refused = |e: redis::RedisError| {
            LocalError::Refused(format!("the source {source} does not answer: {e}"))
        };
        let mut conn = self
            .ctx
            .resolver
            .connect(source, Duration::from_secs(5))
            .await
            .map_err(refused)?;
        let text: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(refused)?;
        Ok(server::parse_info(&text))
    }

    async fn test_migration(&self, id: &str, sources: &[Endpoint]) -> Result<MigrationTested> {
        let (source, _) = self.source_of(sources)?;
        let g = self.group(id)?;
        if let Some(m) = &g.migration {
            return Err(LocalError::Refused(format!(
                "{id} is already migrating from {}; complete that migration first",
                m.source
            )));
        }
        let info = self.source_info(&source).await?;
        let (engine, version) = server::engine_of(&info);
        let answer = format!("{source} answers: {engine} {version}");
        self.ctx.note(answer.clone());
        Ok(MigrationTested {
            group: self.describe(id).await?,
            events: vec![answer],
        })
    }

    async fn start_migration(
        &mut self,
        id: &str,
        sources: &[Endpoint],
    ) -> Result<MigrationStarted> {
        let (source, addr) = self.source_of(sources)?;
        let g = self.group(id)?.clone();
        match &g.migration {
            Some(m) if m.source == addr => {
                self.ctx.note(format!(
                    "{id} already replicates from {source}: waiting for it to catch up"
                ));
            }
            Some(m) => {
                return Err(LocalError::Refused(format!(
                    "{id} already migrates from {}; complete that migration before starting one from {source}",
                    m.source
                )));
            }
            None => {
                self.source_info(&source).await?;
                let (host, port) = addr.rsplit_once(':').expect("host:port");
                server::command::<()>(
                    &self.access(&g, g.primary())?,
                    redis::cmd("REPLICAOF").arg(host).arg(port),
                )
                .await?;
                self.state.groups.get_mut(id).expect("group").migration = Some(Migration {
                    source: addr.clone(),
                    forced: false,
                });
                self.save()?;
                self.ctx
                    .note(format!("{} replicates from {source}", g.primary().id));
            }
        }
        let offset = self.wait_in_sync(id, &source).await?;
        let info = server::info(&self.access(&g, g.primary())?, "replication").await?;
        let field = |name: &str| info.get(name).cloned().unwrap_or_default();
        Ok(MigrationStarted {
            group: self.describe(id).await?,
            replication: Replication {
                checked: true,
                master_link_status: field("master_link_status"),
                master_host: field("master_host"),
                offset,
                why: None,
            },
        })
    }

    /// Waits until the primary of `id` is linked to `source`, done loading, and has reached
    /// the source's replication offset as it was when the wait began. Fails at once when
    /// the replica cannot load what the source sends (an RDB version it does not know).
    pub(super) async fn wait_in_sync(&self, id: &str, source: &Endpoint) -> Result<u64> {
        let g = self.group(id)?;
        let primary = g.primary().clone();
        let access = self.access(g, &primary)?;
        let deadline = Instant::now() + SYNC_DEADLINE;
        let mut target_offset: Option<u64> = None;
        let mut last_status = String::new();
        let log = server::log_path(&primary.dir);
        let log_start = server::log_len(&log);
        loop {
            let info = server::info(&access, "replication").await?;
            let link = info.get("master_link_status").cloned().unwrap_or_default();
            let syncing = info
                .get("master_sync_in_progress")
                .is_some_and(|v| v == "1");
            let status = if link == "up" && !syncing {
                "linked"
            } else if syncing {
                "full sync in progress"
            } else {
                "connecting"
            };
            if status != last_status {
                self.ctx.note(format!("{id}: {status}"));
                last_status = status.to_string();
            }
            if let Some(line) =
                server::log_find_since(&log, log_start, "Can't handle RDB format version")
            {
                let why = line.split(" # ").last().unwrap_or(&line);
                return Err(LocalError::Refused(format!(
                    "{} ({}) cannot load the data {source} sends (\"{why}\"): the source writes an RDB version this engine refuses (Redis 7.4+ writes RDB 12, which Valkey 7.x/8.x refuses; Redis cannot load Valkey's), and a failed full sync leaves the replica empty; complete the migration with force: true and migrate to an engine that reads the source's RDB",
                    primary.id, primary.engine
                )));
            }
            if status == "linked" {
                if target_offset.is_none() {
                    target_offset = Some(self.source_offset(source).await?);
                }
                let have: u64 = info
                    .get("slave_repl_offset")
                    .or_else(|| info.get("master_repl_offset"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if target_offset.is_some_and(|want| have >= want) {
                    self.ctx.note(format!(
                        "{id} has caught up with the source (offset {have})"
                    ));
                    return Ok(have);
                }
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "{id} did not catch up with {source} within {} s (last: {last_status})",
                    SYNC_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn source_offset(&self, source: &Endpoint) -> Result<u64> {
        let failed = |e: redis::RedisError| {
            LocalError::Timeout(format!("INFO replication on {source}: {e}"))
        };
        let mut conn = self
            .ctx
            .resolver
            .connect(source, Duration::from_secs(5))
            .await
            .map_err(failed)?;
        let text: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(server::parse_info(&text)
            .get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn complete_migration(&mut self, id: &str, force: bool) -> Result<MigrationCompleted> {
        let g = self.group(id)?.clone();
        let Some(migration) = g.migration.clone() else {
            if g.completed_migration.is_some() {
                self.ctx
                    .note(format!("the migration of {id} is already complete"));
            } else if force {
                self.ctx
                    .note(format!("{id} is not migrating: nothing to stop"));
            } else {
                return Err(LocalError::Refused(format!(
                    "{id} is not migrating; start a migration first (or use force: true to stop regardless)"
                )));
            }
            return Ok(MigrationCompleted {
                group: self.describe(id).await?,
                forced: force,
            });
        };
        if force {
            self.ctx.note("force: promoting without ensuring sync");
        } else {
            let source = Endpoint::parse(&migration.source)
                .map_err(|e| LocalError::Refused(format!("the recorded source: {e}")))?;
            let info = server::info(&self.access(&g, g.primary())?, "replication").await?;
            if info.get("master_link_status").is_none_or(|s| s != "up") {
                return Err(LocalError::Refused(format!(
                    "{id} is not in sync with {} (replication link down); fix the source or complete with force: true",
                    migration.source
                )));
            }
            self.wait_in_sync(id, &source).await?;
        }
        server::command::<()>(
            &self.access(&g, g.primary())?,
            redis::cmd("REPLICAOF").arg("NO").arg("ONE"),
        )
        .await?;
        let group = self.state.groups.get_mut(id).expect("group");
        group.migration = None;
        group.completed_migration = Some(Migration {
            forced: force,
            ..migration
        });
        self.save()?;
        self.ctx
            .note(format!("{} is a primary again", g.primary().id));
        Ok(MigrationCompleted {
            group: self.describe(id).await?,
            forced: force,
        })
    }
}

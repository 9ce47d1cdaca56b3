//! An online migration rehearsed: the group's primary becomes a replica of the source
//! (`REPLICAOF`), is followed until it has caught up, and completing it is a promotion.
//!
//! In a cluster, each shard's primary replicates from the source's shard that owns the same
//! slots, as on ElastiCache. A cluster-mode node refuses `REPLICAOF`, so while the sync runs
//! the shards' nodes serve as plain replicas on their own ports, and completing it promotes
//! every shard's primary and starts the nodes in cluster mode again on their own
//! `nodes.conf`, with the same slot map. Unlike AWS, whose target stays a read-only
//! cluster during the sync, the rehearsal's target answers as separate plain replicas
//! until the cutover, so a cluster client cannot read it whole before `complete`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SYNC_DEADLINE;
use super::server;
use super::state::{Group, Migration, slots_text};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::Handles;
use crate::platform::contract::{
    CompleteMigration, MigrationCompleted, MigrationStarted, MigrationTested, Replication,
    StartMigration, TestMigration,
};
use crate::resp::cluster::Topology;

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
            Operation::new("redis", "INFO cluster, CLUSTER SLOTS on the source")
                .param("source", &request.source),
            Operation::new(
                "redis",
                format!(
                    "REPLICAOF <source> on the primary of {} (in a cluster: each shard's nodes restart as plain replicas, its primary of the source shard with the same slots)",
                    request.replication_group
                ),
            )
            .param("source", &request.source)
            .destructive(),
            Operation::wait("per shard: until the link is up and the offsets match the source shard's",
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
            ops.push(Operation::wait(
                "per shard: until the primary has caught up with the source",
            ));
        }
        let promote = Operation::new(
            "redis",
            format!(
                "REPLICAOF NO ONE on the primary of each shard of {} (in a cluster: SHUTDOWN SAVE, then every node starts in cluster mode again with the same slots)",
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
    /// The one source endpoint of a migration, and how the servers reach it (`host:port`).
    fn source_of(&self, sources: &[Endpoint]) -> Result<(Endpoint, String)> {
        let [source] = sources else {
            return Err(LocalError::Refused(format!(
                "a migration names exactly one source endpoint (a node of a source cluster), got {}",
                sources.len()
            )));
        };
        if source.tls || source.password.is_some() {
            return Err(LocalError::Refused(format!(
                "{source}: online migration needs a source without AUTH and without TLS"
            )));
        }
        Ok((source.clone(), self.reach(source)))
    }

    /// `host:port` as the servers reach `endpoint` (through `--resolve` if given).
    fn reach(&self, endpoint: &Endpoint) -> String {
        match self.ctx.resolver.override_for(endpoint) {
            Some(a) => a.to_string(),
            None => endpoint.host_port(),
        }
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

    /// The source's shards and slots (one shard owning every slot without cluster mode).
    pub(super) async fn source_shards(&self, source: &Endpoint) -> Result<Topology> {
        let refused = |e: &(dyn std::error::Error + 'static)| {
            LocalError::Refused(format!(
                "the source {source} does not tell its shards: {}",
                crate::error::chain(e)
            ))
        };
        let mut conn =
            crate::resp::Conn::connect(self.ctx.resolver, source, Duration::from_secs(5))
                .await
                .map_err(|e| refused(&e))?;
        Topology::of(&mut conn, source)
            .await
            .map_err(|e| refused(&e))
    }

    /// For each shard of `g`, `host:port` of the source primary that owns the same slots;
    /// or, when the two sides are not sharded alike, why not, naming both.
    pub(super) fn matching_sources(
        &self,
        g: &Group,
        source: &Endpoint,
        topology: &Topology,
    ) -> std::result::Result<Vec<String>, String> {
        let target: Vec<(String, Vec<(u16, u16)>)> = (0..g.shard_count())
            .map(|s| match g.shards.get(s) {
                Some(shard) => (shard.id.clone(), shard.slots.clone()),
                None => ("0001".to_string(), vec![(0, super::cluster::SLOTS - 1)]),
            })
            .collect();
        let found: Option<Vec<String>> = target
            .iter()
            .map(|(_, slots)| {
                topology
                    .shards
                    .iter()
                    .find(|s| &s.slots == slots)
                    .map(|s| self.reach(&s.primary))
            })
            .collect();
        match found {
            Some(primaries) if target.len() == topology.shards.len() => Ok(primaries),
            _ => Err(format!(
                "the source {source} has {} shard(s) ({}) and {} has {} ({}); an online migration needs as many shards on both sides, each with the same slots",
                topology.shards.len(),
                topology
                    .shards
                    .iter()
                    .map(|s| slots_text(&s.slots))
                    .collect::<Vec<_>>()
                    .join("; "),
                g.id,
                target.len(),
                target
                    .iter()
                    .map(|(id, slots)| format!("{id} {}", slots_text(slots)))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
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
        let topology = self.source_shards(&source).await?;
        self.matching_sources(g, &source, &topology)
            .map_err(LocalError::Refused)?;
        let (engine, version) = server::engine_of(&info);
        let answer = format!(
            "{source} answers: {engine} {version}, {} shard(s)",
            topology.shards.len()
        );
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
                self.ensure_group(id).await?;
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
                let topology = self.source_shards(&source).await?;
                let shard_sources = self
                    .matching_sources(&g, &source, &topology)
                    .map_err(LocalError::Refused)?;
                if g.cluster_mode {
                    for node in &g.nodes {
                        server::stop(node.pid, node.port).await;
                    }
                    self.state.groups.get_mut(id).expect("group").migration = Some(Migration {
                        shard_sources: shard_sources.clone(),
                        ..Migration::of(addr.clone())
                    });
                    self.save()?;
                    self.ensure_group(id).await?;
                    for (s, from) in shard_sources.iter().enumerate() {
                        self.ctx.note(format!(
                            "{} replicates from {from}, the source shard with slots {}",
                            super::engine::shard_name(&g, s),
                            g.shards[s].slots_text()
                        ));
                    }
                } else {
                    let (host, port) = addr.rsplit_once(':').expect("host:port");
                    server::command::<()>(
                        &self.access(&g, g.primary())?,
                        redis::cmd("REPLICAOF").arg(host).arg(port),
                    )
                    .await?;
                    self.state.groups.get_mut(id).expect("group").migration =
                        Some(Migration::of(addr.clone()));
                    self.save()?;
                    self.ctx
                        .note(format!("{} replicates from {source}", g.primary().id));
                }
            }
        }
        let offset = self.wait_all_in_sync(id, &source).await?;
        let primary = self.group(id)?.primary().clone();
        let info = server::info(&self.access(&g, &primary)?, "replication").await?;
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

    /// Waits until every shard of `id` has caught up with its source (`source` itself for
    /// a group without cluster mode); returns the first shard's offset.
    async fn wait_all_in_sync(&self, id: &str, source: &Endpoint) -> Result<u64> {
        let g = self.group(id)?;
        let Some(m) = g.migration.clone().filter(|m| !m.shard_sources.is_empty()) else {
            return self.wait_in_sync(id, 0, source).await;
        };
        let mut first = None;
        for (s, from) in m.shard_sources.iter().enumerate() {
            let from = Endpoint::parse(from)
                .map_err(|e| LocalError::Refused(format!("the recorded source: {e}")))?;
            let offset = self.wait_in_sync(id, s, &from).await?;
            first.get_or_insert(offset);
        }
        Ok(first.unwrap_or(0))
    }

    /// Waits until the primary of shard `shard` of `id` is linked to `source`, done
    /// loading, and has reached the source's replication offset as it was when the wait
    /// began. Fails at once when the replica cannot load what the source sends (an RDB
    /// version it does not know).
    pub(super) async fn wait_in_sync(
        &self,
        id: &str,
        shard: usize,
        source: &Endpoint,
    ) -> Result<u64> {
        let g = self.group(id)?;
        let primary = g.nodes[g.shard_nodes(shard)[0]].clone();
        let name = super::engine::shard_name(g, shard);
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
                self.ctx.note(format!("{name}: {status}"));
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
                        "{name} has caught up with the source (offset {have})"
                    ));
                    return Ok(have);
                }
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "{name} did not catch up with {source} within {} s (last: {last_status})",
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
                self.ensure_group(id).await?;
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
        // A run that stopped part-way may have left nodes down: they come back as replicas.
        self.ensure_group(id).await?;
        if force {
            self.ctx.note("force: promoting without ensuring sync");
        } else {
            for s in 0..g.shard_count() {
                let primary = &g.nodes[g.shard_nodes(s)[0]];
                let info = server::info(&self.access(&g, primary)?, "replication").await?;
                if info.get("master_link_status").is_none_or(|s| s != "up") {
                    return Err(LocalError::Refused(format!(
                        "{} is not in sync with {} (replication link down); fix the source or complete with force: true",
                        super::engine::shard_name(&g, s),
                        migration.source_of(s)
                    )));
                }
            }
            let source = Endpoint::parse(&migration.source)
                .map_err(|e| LocalError::Refused(format!("the recorded source: {e}")))?;
            self.wait_all_in_sync(id, &source).await?;
        }
        for s in 0..g.shard_count() {
            let primary = &g.nodes[g.shard_nodes(s)[0]];
            server::command::<()>(
                &self.access(&g, primary)?,
                redis::cmd("REPLICAOF").arg("NO").arg("ONE"),
            )
            .await?;
        }
        if g.cluster_mode {
            for node in &g.nodes {
                let access = self.access(&g, node)?;
                if server::is_alive(node.pid, &access).await {
                    server::save_and_stop(node.pid, &access).await?;
                }
            }
        }
        let group = self.state.groups.get_mut(id).expect("group");
        group.migration = None;
        group.completed_migration = Some(Migration {
            forced: force,
            ..migration
        });
        self.save()?;
        if g.cluster_mode {
            self.ensure_group(id).await?;
            for i in 0..g.nodes.len() {
                self.wait_serving(id, i).await?;
            }
            self.ctx.note(format!(
                "{id}: every shard's primary is promoted, and the nodes serve in cluster mode again with the same slots"
            ));
        } else {
            self.ctx
                .note(format!("{} is a primary again", g.primary().id));
        }
        Ok(MigrationCompleted {
            group: self.describe(id).await?,
            forced: force,
        })
    }
}

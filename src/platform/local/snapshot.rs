//! Snapshots rehearsed: `BGSAVE` on a node (a replica when there is one, like ElastiCache)
//! and the RDB file kept in the run directory; a restore starts a new group loading it.
//! A cluster's snapshot is one RDB file per shard, and restores into as many shards with
//! the same slots, as ElastiCache's does.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SYNC_DEADLINE;
use super::server::{self, Engine, ServerError};
use super::state::{Group, GroupKind, Snapshot, SnapshotShard, slots_text};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{CreateSnapshot, GroupInfo, RestoreSnapshot, SnapshotInfo};

#[async_trait]
impl Handles<CreateSnapshot> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &CreateSnapshot) -> Vec<Operation> {
        vec![
            Operation::new(
                "redis",
                format!(
                    "BGSAVE on a node of {} (a replica of each shard, once it has caught up)",
                    request.replication_group
                ),
            ),
            Operation::new(
                "process",
                format!(
                    "copy the RDB file to snapshots/{}.rdb (a cluster: one file per shard, snapshots/{}-0001.rdb, …)",
                    request.snapshot, request.snapshot
                ),
            ),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CreateSnapshot,
    ) -> Result<SnapshotInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run
            .create_snapshot(&request.replication_group, &request.snapshot)
            .await?)
    }
}

#[async_trait]
impl Handles<RestoreSnapshot> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &RestoreSnapshot) -> Vec<Operation> {
        vec![Operation::new(
            "process",
            format!(
                "start {}: {}-server loading {}, with {} replica(s) (a cluster's snapshot: as many shards with the same slots, each primary loading its shard's RDB file)",
                request.replication_group, request.engine, request.snapshot, request.replicas
            ),
        )
        .param("shards", request.shards)]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &RestoreSnapshot,
    ) -> Result<GroupInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run.restore_snapshot(request).await?)
    }
}

impl Run<'_, '_> {
    pub(super) async fn create_snapshot(&mut self, id: &str, name: &str) -> Result<SnapshotInfo> {
        let folder = self.dir.join("snapshots");
        if let Some(s) = self.state.snapshots.get(name)
            && s.file.exists()
        {
            self.ctx.note(format!("snapshot {name} already exists"));
            return Ok(snapshot_info(name, s));
        }
        let g = self.group(id)?.clone();
        // Like ElastiCache, back up each shard from a replica when it has one.
        let from = |s: usize| {
            let members = g.shard_nodes(s);
            members.get(1).copied().unwrap_or(members[0])
        };
        let snapshot = if g.cluster_mode {
            let mut shards = Vec::new();
            let mut written = None;
            for (s, shard) in g.shards.iter().enumerate() {
                let file = folder.join(format!("{name}-{}.rdb", shard.id));
                written = Some(self.save_rdb(&g, from(s), &file).await?);
                shards.push(SnapshotShard {
                    shard: shard.clone(),
                    file,
                });
            }
            let (engine, engine_version) = written.expect("a cluster has shards");
            Snapshot {
                group: id.to_string(),
                engine,
                engine_version,
                file: shards[0].file.clone(),
                shards,
            }
        } else {
            let file = folder.join(format!("{name}.rdb"));
            let (engine, engine_version) = self.save_rdb(&g, from(0), &file).await?;
            Snapshot {
                group: id.to_string(),
                engine,
                engine_version,
                file,
                shards: Vec::new(),
            }
        };
        self.ctx.note(format!(
            "snapshot {name} of {id} taken ({})",
            if snapshot.shards.is_empty() {
                "one RDB file".to_string()
            } else {
                format!("{} shards, one RDB file each", snapshot.shards.len())
            }
        ));
        let out = snapshot_info(name, &snapshot);
        self.state.snapshots.insert(name.to_string(), snapshot);
        self.save()?;
        Ok(out)
    }

    /// `BGSAVE` on node `index` of `g` (a replica: once it has every write its primary had)
    /// and its RDB file copied to `to`; returns the engine and version that wrote it.
    async fn save_rdb(&self, g: &Group, index: usize, to: &Path) -> Result<(Engine, String)> {
        let node = g.nodes[index].clone();
        let access = self.access(g, &node)?;
        let deadline = Instant::now() + SYNC_DEADLINE;
        let primary = g.primary_of(index);
        if primary != index {
            let want = offset(&self.access(g, &g.nodes[primary])?, "master_repl_offset").await?;
            while offset(&access, "slave_repl_offset").await? < want {
                if Instant::now() > deadline {
                    return Err(LocalError::Timeout(format!(
                        "{} did not catch up with its primary to be backed up",
                        node.id
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let before = rdb_saves(&access).await?;
        let started: Result<String, ServerError> =
            server::command(&access, &redis::cmd("BGSAVE")).await;
        if let Err(e) = started
            && !e.to_string().contains("in progress")
        {
            return Err(e.into());
        }
        loop {
            let info = server::info(&access, "persistence").await?;
            let done = info.get("rdb_bgsave_in_progress").is_some_and(|v| v == "0")
                && info
                    .get("rdb_saves")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|n| n > before);
            if done {
                if info
                    .get("rdb_last_bgsave_status")
                    .is_some_and(|s| s != "ok")
                {
                    return Err(LocalError::Refused(format!(
                        "BGSAVE on {} failed; see {}",
                        node.id,
                        server::log_path(&node.dir).display()
                    )));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "BGSAVE on {} did not finish",
                    node.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let written = server::engine_of(&server::info(&access, "server").await?);
        let copy = || -> std::io::Result<()> {
            std::fs::create_dir_all(to.parent().expect("has a parent"))?;
            let tmp = to.with_extension("rdb.tmp");
            std::fs::copy(node.dir.join(server::DB_FILE), &tmp)?;
            std::fs::rename(&tmp, to)
        };
        copy().map_err(|e| {
            LocalError::Refused(format!("cannot keep the snapshot in {}: {e}", to.display()))
        })?;
        self.ctx.note(format!(
            "{} wrote {}",
            node.id,
            to.file_name().unwrap_or_default().to_string_lossy()
        ));
        Ok(written)
    }

    async fn restore_snapshot(&mut self, request: &RestoreSnapshot) -> Result<GroupInfo> {
        let (name, id) = (&request.snapshot, &request.replication_group);
        if self.state.groups.contains_key(id) {
            self.ensure_group(id).await?;
            self.ctx.note(format!("{id} already exists"));
            return self.describe(id).await;
        }
        let snapshot = self.state.snapshots.get(name).cloned().ok_or_else(|| {
            LocalError::Refused(format!(
                "there is no snapshot `{name}` in this rehearsal; create it with snapshot.create first"
            ))
        })?;
        let engine = Engine::parse(&request.engine).ok_or_else(|| {
            LocalError::Refused(format!(
                "engine `{}` is neither redis nor valkey",
                request.engine
            ))
        })?;
        if snapshot.engine == Engine::Valkey && engine == Engine::Redis {
            return Err(LocalError::Refused(format!(
                "snapshot {name} was taken from Valkey {}: Redis cannot load Valkey's RDB; restore it into a valkey group",
                snapshot.engine_version
            )));
        }
        let held = snapshot.shards.len().max(1);
        if let Some(asked) = request.shards
            && asked as usize != held
        {
            return Err(LocalError::Refused(format!(
                "snapshot {name} holds {held} shard(s) ({}); a restore makes a group of as many, so ask for shards: {held}",
                if snapshot.shards.is_empty() {
                    "no cluster mode".to_string()
                } else {
                    snapshot
                        .shards
                        .iter()
                        .map(|s| format!("{} {}", s.shard.id, slots_text(&s.shard.slots)))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            )));
        }
        let replicas = request.replicas;
        let group = Group {
            id: id.to_string(),
            kind: GroupKind::ReplicationGroup,
            stack: None,
            requested_version: request.engine_version.clone(),
            node_type: None,
            multi_az: replicas > 0,
            transit_encryption: false,
            auth: false,
            cluster_mode: !snapshot.shards.is_empty(),
            shards: snapshot.shards.iter().map(|s| s.shard.clone()).collect(),
            configuration_port: None,
            nodes: Vec::new(),
            migration: None,
            completed_migration: None,
        };
        if snapshot.shards.is_empty() {
            self.create_group(group, &[replicas + 1], engine, Some(&snapshot.file))
                .await?;
        } else {
            let files: Vec<PathBuf> = snapshot.shards.iter().map(|s| s.file.clone()).collect();
            self.create_cluster_from(group, &files, replicas + 1, engine)
                .await?;
        }
        for i in 0..self.group(id)?.nodes.len() {
            self.wait_serving(id, i).await?;
        }
        self.ctx.note(format!(
            "{id} restored from {name} ({} {}, {held} shard(s))",
            snapshot.engine, snapshot.engine_version
        ));
        self.describe(id).await
    }

    /// A new cluster whose shard `s` loads `files[s]`. The data is loaded on a restart,
    /// after the cluster is formed with every slot in the nodes' `nodes.conf`: a node that
    /// started on the data would claim only the slots of its keys.
    async fn create_cluster_from(
        &mut self,
        group: Group,
        files: &[PathBuf],
        nodes: u32,
        engine: Engine,
    ) -> Result<()> {
        let id = group.id.clone();
        self.create_group(group, &vec![nodes; files.len()], engine, None)
            .await?;
        let g = self.group(&id)?.clone();
        for node in &g.nodes {
            server::stop(node.pid, node.port).await;
        }
        for (s, file) in files.iter().enumerate() {
            let dir = &g.nodes[g.shard_nodes(s)[0]].dir;
            std::fs::copy(file, dir.join(server::DB_FILE)).map_err(|e| {
                LocalError::Refused(format!(
                    "cannot copy {} into {}: {e}",
                    file.display(),
                    dir.display()
                ))
            })?;
        }
        self.ensure_group(&id).await
    }
}

async fn offset(access: &server::Access, field: &str) -> Result<u64> {
    Ok(server::info(access, "replication")
        .await?
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn rdb_saves(access: &server::Access) -> Result<u64> {
    Ok(server::info(access, "persistence")
        .await?
        .get("rdb_saves")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// A snapshot kept in the run directory, as the contract describes it.
fn snapshot_info(name: &str, s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        snapshot: name.to_string(),
        group: s.group.clone(),
        status: "available".into(),
        engine: s.engine.to_string(),
        engine_version: s.engine_version.clone(),
    }
}

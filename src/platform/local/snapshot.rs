//! Snapshots rehearsed: `BGSAVE` on a node (a replica when there is one, like ElastiCache)
//! and the RDB file kept in the run directory; a restore starts a new group loading it.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SYNC_DEADLINE;
use super::server::{self, Engine, ServerError};
use super::state::{Group, GroupKind, Snapshot};
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
                format!("BGSAVE on a node of {}", request.replication_group),
            ),
            Operation::new(
                "process",
                format!("copy the RDB file to snapshots/{}.rdb", request.snapshot),
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
                "start {}: {}-server loading {}, with {} replica(s)",
                request.replication_group, request.engine, request.snapshot, request.replicas
            ),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &RestoreSnapshot,
    ) -> Result<GroupInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run
            .restore_snapshot(
                &request.snapshot,
                &request.replication_group,
                &request.engine,
                request.engine_version.as_deref(),
                request.replicas,
            )
            .await?)
    }
}

impl Run<'_, '_> {
    pub(super) async fn create_snapshot(&mut self, id: &str, name: &str) -> Result<SnapshotInfo> {
        let snapshot_file = self.dir.join("snapshots").join(format!("{name}.rdb"));
        if let Some(s) = self.state.snapshots.get(name)
            && s.file.exists()
        {
            self.ctx.note(format!("snapshot {name} already exists"));
            return Ok(snapshot_info(name, s));
        }
        let g = self.group(id)?;
        // Like ElastiCache, back up from a replica when there is one.
        let node = g.nodes.get(1).unwrap_or(g.primary()).clone();
        let access = self.access(g, &node)?;
        let before = rdb_saves(&access).await?;
        let started: Result<String, ServerError> =
            server::command(&access, &redis::cmd("BGSAVE")).await;
        if let Err(e) = started
            && !e.to_string().contains("in progress")
        {
            return Err(e.into());
        }
        let deadline = Instant::now() + SYNC_DEADLINE;
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
        let (engine, version) = server::engine_of(&server::info(&access, "server").await?);
        let copy = || -> std::io::Result<()> {
            std::fs::create_dir_all(snapshot_file.parent().expect("has a parent"))?;
            let tmp = snapshot_file.with_extension("rdb.tmp");
            std::fs::copy(node.dir.join(server::DB_FILE), &tmp)?;
            std::fs::rename(&tmp, &snapshot_file)
        };
        copy().map_err(|e| {
            LocalError::Refused(format!(
                "cannot keep the snapshot in {}: {e}",
                snapshot_file.display()
            ))
        })?;
        let snapshot = Snapshot {
            group: id.to_string(),
            engine,
            engine_version: version,
            file: snapshot_file,
        };
        self.ctx
            .note(format!("snapshot {name} of {id} taken from {}", node.id));
        let out = snapshot_info(name, &snapshot);
        self.state.snapshots.insert(name.to_string(), snapshot);
        self.save()?;
        Ok(out)
    }

    async fn restore_snapshot(
        &mut self,
        name: &str,
        id: &str,
        engine: &str,
        version: Option<&str>,
        replicas: u32,
    ) -> Result<GroupInfo> {
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
        let engine = Engine::parse(engine).ok_or_else(|| {
            LocalError::Refused(format!("engine `{engine}` is neither redis nor valkey"))
        })?;
        if snapshot.engine == Engine::Valkey && engine == Engine::Redis {
            return Err(LocalError::Refused(format!(
                "snapshot {name} was taken from Valkey {}: Redis cannot load Valkey's RDB; restore it into a valkey group",
                snapshot.engine_version
            )));
        }
        let group = Group {
            id: id.to_string(),
            kind: GroupKind::ReplicationGroup,
            stack: None,
            requested_version: version.map(str::to_string),
            node_type: None,
            multi_az: replicas > 0,
            transit_encryption: false,
            auth: false,
            cluster_mode: false,
            shards: Vec::new(),
            configuration_port: None,
            nodes: Vec::new(),
            migration: None,
            completed_migration: None,
        };
        self.create_group(group, &[replicas + 1], engine, Some(&snapshot.file))
            .await?;
        for i in 0..self.group(id)?.nodes.len() {
            self.wait_serving(id, i).await?;
        }
        self.ctx.note(format!(
            "{id} restored from {name} ({} {})",
            snapshot.engine, snapshot.engine_version
        ));
        self.describe(id).await
    }
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

//! Replication groups as server processes: describe one, delete one, and the node
//! bookkeeping the other operations share (start a node on its port and data, journal it).

use std::path::Path;

use serde_json::json;

use async_trait::async_trait;

use super::server::{self, Engine, ServerError};
use super::state::{Group, Node};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{DeleteGroup, DescribeGroup, GroupDeleted, GroupInfo, NodeInfo};

#[async_trait]
impl Handles<DescribeGroup> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &DescribeGroup) -> Vec<Operation> {
        vec![Operation::new(
            "redis",
            format!("INFO of the nodes of {}", request.replication_group),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DescribeGroup,
    ) -> Result<GroupInfo, ActionError> {
        let run = self.open(ctx).await?;
        Ok(run.describe(&request.replication_group).await?)
    }
}

#[async_trait]
impl Handles<DeleteGroup> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &DeleteGroup) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!("stop every server of {}", request.replication_group),
            )
            .destructive(),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DeleteGroup,
    ) -> Result<GroupDeleted, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(GroupDeleted {
            replication_group: request.replication_group.clone(),
            deleted: run.delete_group(&request.replication_group).await?,
        })
    }
}

impl Run<'_, '_> {
    pub(super) fn group(&self, id: &str) -> Result<&Group> {
        self.state.groups.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.state.groups.keys().map(String::as_str).collect();
            LocalError::Refused(format!(
                "there is no replication group `{id}` in this rehearsal (known: {}); deploy a stack or restore a snapshot first",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    /// Starts node `index` of `group` (on its recorded port and data) unless it runs,
    /// as a replica of the group's primary (or of the migration source), and journals it.
    pub(super) async fn ensure_node(&mut self, group: &str, index: usize) -> Result<()> {
        let g = self.group(group)?.clone();
        let node = &g.nodes[index];
        if server::is_alive(node.pid, node.port).await {
            return Ok(());
        }
        let replica_of = if index == 0 {
            g.migration.as_ref().map(|m| m.source.clone())
        } else {
            Some(format!("127.0.0.1:{}", g.primary().port))
        };
        let mut port = node.port;
        let mut tries = 0;
        let pid = loop {
            match server::start(node.engine, port, &node.dir, replica_of.as_deref()).await {
                Ok(pid) => break pid,
                // A node never started yet may have lost its free port to another process
                // between choosing and binding it: choose again.
                Err(ServerError::Start { .. }) if node.pid == 0 && tries < 3 => {
                    tries += 1;
                    port = server::free_port()
                        .map_err(|e| LocalError::Refused(format!("no free port: {e}")))?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let node = {
            let n = &mut self
                .state
                .groups
                .get_mut(group)
                .expect("group exists")
                .nodes[index];
            n.pid = pid;
            n.port = port;
            n.clone()
        };
        self.save()?;
        self.ctx
            .record_resource(json!({
                "kind": "server",
                "group": group,
                "node": node.id,
                "engine": node.engine,
                "port": node.port,
                "pid": pid,
                "dir": node.dir,
            }))
            .map_err(|e| {
                LocalError::Refused(format!("cannot journal the server {}: {e}", node.id))
            })?;
        self.ctx.note(format!(
            "{} ({}) serves on 127.0.0.1:{} (pid {pid})",
            node.id, node.engine, node.port
        ));
        Ok(())
    }

    /// Creates a group of `nodes` servers (primary first) and starts them. `seed` is an RDB
    /// file the primary loads.
    pub(super) async fn create_group(
        &mut self,
        mut group: Group,
        count: u32,
        engine: Engine,
        seed: Option<&Path>,
    ) -> Result<()> {
        server::binary(engine)?;
        let id = group.id.clone();
        for i in 1..=count.max(1) {
            let node_id = format!("{id}-{i:03}");
            let dir = self.dir.join("servers").join(&node_id);
            group.nodes.push(Node {
                id: node_id,
                engine,
                port: server::free_port()
                    .map_err(|e| LocalError::Refused(format!("no free port: {e}")))?,
                pid: 0,
                dir,
            });
        }
        if let Some(seed) = seed {
            let dir = &group.nodes[0].dir;
            std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::copy(seed, dir.join(server::DB_FILE)))
                .map_err(|e| {
                    LocalError::Refused(format!(
                        "cannot copy {} into {}: {e}",
                        seed.display(),
                        dir.display()
                    ))
                })?;
        }
        let count = group.nodes.len();
        self.state.groups.insert(id.clone(), group);
        self.save()?;
        for i in 0..count {
            self.ensure_node(&id, i).await?;
        }
        Ok(())
    }

    async fn stop_group(&mut self, id: &str) -> Result<()> {
        if let Some(g) = self.state.groups.get(id) {
            for node in g.nodes.iter().rev() {
                if server::stop(node.pid, node.port).await {
                    self.ctx
                        .note(format!("stopped {} (port {})", node.id, node.port));
                }
            }
        }
        Ok(())
    }

    /// Stops and forgets a group; false when there was none of that id.
    pub(super) async fn delete_group(&mut self, id: &str) -> Result<bool> {
        if !self.state.groups.contains_key(id) {
            self.ctx
                .note(format!("{id} does not exist: nothing to delete"));
            return Ok(false);
        }
        self.stop_group(id).await?;
        self.state.groups.remove(id);
        self.save()?;
        Ok(true)
    }

    pub(super) async fn describe(&self, id: &str) -> Result<GroupInfo> {
        let g = self.group(id)?;
        let mut nodes = Vec::new();
        let mut down = Vec::new();
        let (mut engine, mut version) = (g.primary().engine, String::new());
        for (i, n) in g.nodes.iter().enumerate() {
            if !server::is_alive(n.pid, n.port).await {
                down.push(n.id.clone());
            } else if i == 0 {
                (engine, version) = server::engine_of(&server::info(n.port, "server").await?);
            }
            nodes.push(NodeInfo {
                id: n.id.clone(),
                role: if i == 0 { "primary" } else { "replica" }.into(),
                endpoint: format!("127.0.0.1:{}", n.port),
            });
        }
        let status = if !down.is_empty() {
            format!("unavailable ({} not running)", down.join(", "))
        } else if g.migration.is_some() {
            "migrating".into()
        } else {
            "available".into()
        };
        Ok(GroupInfo {
            id: g.id.clone(),
            status,
            engine: engine.to_string(),
            engine_version: if version.is_empty() {
                g.requested_version.clone().unwrap_or_default()
            } else {
                version
            },
            primary_endpoint: format!("127.0.0.1:{}", g.primary().port),
            nodes,
        })
    }
}

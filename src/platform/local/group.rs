//! Replication groups as server processes: describe one, delete one, and the node
//! bookkeeping the other operations share (start a node on its port and data, journal it).

use std::path::Path;

use serde_json::json;

use async_trait::async_trait;

use super::cluster;
use super::secure;
use super::server::{self, Access, Engine, Launch, ServerError};
use super::state::{Group, Node, slots_text};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    DeleteGroup, DescribeGroup, GroupDeleted, GroupInfo, NodeInfo, ShardInfo,
};

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

    /// How the control plane reaches `node` of `g`.
    pub(super) fn access(&self, g: &Group, node: &Node) -> Result<Access> {
        Ok(Access {
            port: node.port,
            tls: g.transit_encryption,
            password: if g.auth {
                Some(secure::token(&self.dir, &g.id)?)
            } else {
                None
            },
        })
    }

    /// Starts node `index` of `group` (on its recorded port and data) unless it runs,
    /// as a replica of its shard's primary (or of the migration source), and journals it.
    /// A cluster node finds its role in its own `nodes.conf`.
    pub(super) async fn ensure_node(&mut self, group: &str, index: usize) -> Result<()> {
        let g = self.group(group)?.clone();
        let node = &g.nodes[index];
        let mut access = self.access(&g, node)?;
        if server::is_alive(node.pid, &access).await {
            return Ok(());
        }
        let primary = g.primary_of(index);
        let replica_of = if g.runs_clustered() {
            None
        } else if primary == index {
            g.migration
                .as_ref()
                .map(|m| m.source_of(node.shard).to_string())
        } else {
            Some(format!("127.0.0.1:{}", g.nodes[primary].port))
        };
        let certs = if g.transit_encryption {
            Some(secure::ensure_certs(&self.dir, &g.id)?)
        } else {
            None
        };
        let mut tries = 0;
        let pid = loop {
            let launch = Launch {
                engine: node.engine,
                access: &access,
                dir: &node.dir,
                replica_of: replica_of.as_deref(),
                cluster: g.runs_clustered(),
                certs: certs.as_deref(),
            };
            match server::start(&launch).await {
                Ok(pid) => break pid,
                // A node never started yet may have lost its free port to another process
                // between choosing and binding it: choose again.
                Err(ServerError::Start { .. }) if node.pid == 0 && tries < 3 => {
                    tries += 1;
                    access.port = node_port(g.cluster_mode)?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let port = access.port;
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
                LocalError::Refused(format!(
                    "cannot journal the server {}: {}",
                    node.id,
                    crate::error::chain(&e)
                ))
            })?;
        self.ctx.note(format!(
            "{} ({}) serves on 127.0.0.1:{} (pid {pid})",
            node.id, node.engine, node.port
        ));
        Ok(())
    }

    /// Creates a group of `nodes[s]` servers in shard `s` (primary first), starts them and,
    /// in cluster mode, forms the cluster. `seed` is an RDB file the primary loads.
    pub(super) async fn create_group(
        &mut self,
        mut group: Group,
        nodes: &[u32],
        engine: Engine,
        seed: Option<&Path>,
    ) -> Result<()> {
        server::binary(engine)?;
        let id = group.id.clone();
        for (s, &count) in nodes.iter().enumerate() {
            for i in 1..=count.max(1) {
                let node_id = match group.shards.get(s) {
                    Some(shard) if group.cluster_mode => format!("{id}-{}-{i:03}", shard.id),
                    _ => format!("{id}-{i:03}"),
                };
                let dir = self.dir.join("servers").join(&node_id);
                group.nodes.push(Node {
                    id: node_id,
                    shard: s,
                    engine,
                    node_type: group.node_type.clone(),
                    port: node_port(group.cluster_mode)?,
                    pid: 0,
                    dir,
                });
            }
        }
        if group.cluster_mode {
            group.configuration_port = Some(group.nodes[0].port);
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
        let cluster = group.cluster_mode;
        self.state.groups.insert(id.clone(), group);
        self.save()?;
        for i in 0..count {
            self.ensure_node(&id, i).await?;
        }
        if cluster {
            self.form_cluster(&id).await?;
        }
        Ok(())
    }

    /// Starts every node of the group that does not run, and heals its cluster.
    pub(super) async fn ensure_group(&mut self, id: &str) -> Result<()> {
        let n = self.group(id)?.nodes.len();
        for i in 0..n {
            self.ensure_node(id, i).await?;
        }
        if self.group(id)?.runs_clustered() {
            self.form_cluster(id).await?;
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
        self.state.serverless.remove(id);
        self.save()?;
        Ok(true)
    }

    pub(super) async fn describe(&self, id: &str) -> Result<GroupInfo> {
        let g = self.group(id)?;
        let mut nodes = Vec::new();
        let mut down = Vec::new();
        let (mut engine, mut version) = (g.primary().engine, String::new());
        let endpoint = |n: &Node| format!("127.0.0.1:{}", n.port);
        for (i, n) in g.nodes.iter().enumerate() {
            let access = self.access(g, n)?;
            if !server::is_alive(n.pid, &access).await {
                down.push(n.id.clone());
            } else if version.is_empty() {
                (engine, version) = server::engine_of(&server::info(&access, "server").await?);
            }
            nodes.push(NodeInfo {
                id: n.id.clone(),
                role: if g.primary_of(i) == i {
                    "primary"
                } else {
                    "replica"
                }
                .into(),
                endpoint: endpoint(n),
            });
        }
        let shards = (0..g.shard_count())
            .map(|s| {
                let members = g.shard_nodes(s);
                ShardInfo {
                    id: g
                        .shards
                        .get(s)
                        .map_or_else(|| "0001".to_string(), |shard| shard.id.clone()),
                    slots: g.shards.get(s).map_or_else(
                        || slots_text(&[(0, cluster::SLOTS - 1)]),
                        |shard| shard.slots_text(),
                    ),
                    primary_endpoint: endpoint(&g.nodes[members[0]]),
                    replicas: members[1..]
                        .iter()
                        .map(|&r| endpoint(&g.nodes[r]))
                        .collect(),
                }
            })
            .collect();
        let status = if !down.is_empty() {
            format!("unavailable ({} not running)", down.join(", "))
        } else if g.migration.is_some() {
            "migrating".into()
        } else {
            "available".into()
        };
        let configuration_endpoint = g
            .configuration_port
            .filter(|_| g.cluster_mode)
            .map(|p| format!("127.0.0.1:{p}"));
        Ok(GroupInfo {
            id: g.id.clone(),
            status,
            engine: engine.to_string(),
            engine_version: if version.is_empty() {
                g.requested_version.clone().unwrap_or_default()
            } else {
                version
            },
            primary_endpoint: configuration_endpoint
                .clone()
                .unwrap_or_else(|| endpoint(g.primary())),
            nodes,
            cluster_mode: g.cluster_mode,
            configuration_endpoint,
            shards,
            tls: g.transit_encryption,
            auth: g.auth,
        })
    }
}

/// A free port for a new node (with its bus port free too, in cluster mode).
fn node_port(cluster: bool) -> Result<u16> {
    if cluster {
        server::free_cluster_port()
    } else {
        server::free_port()
    }
    .map_err(|e| LocalError::Refused(format!("no free port: {e}")))
}

//! The local target: real `redis-server` / `valkey-server` processes on loopback, so a
//! whole migration can be rehearsed without an AWS account.
//!
//! Each [`ControlOp`] becomes what ElastiCache would do, with real servers: a stack's
//! replication groups and self-hosted servers become processes ([`template`]), an online
//! migration is `REPLICAOF` from the source, completing it is a promotion, an engine change
//! restarts node after node with the other binary on its own data ([`server`]). What was
//! made is kept in the run directory ([`state`]), so a new `runbook` process resuming the
//! run finds it again, and every server started is journaled for `runbook destroy`.

pub mod server;
mod state;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::actions::{ActionError, Operation, Outputs, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::{ControlOp, GroupInfo, NodeInfo, Platform, PlatformKind};
use server::{Engine, ServerError};
use state::{Group, GroupKind, Migration, Node, Snapshot, Stack, StackResource, State, StateError};
use template::{Scope, Template, TemplateError};

/// Why a local control-plane request failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    State(#[from] StateError),
    /// The request cannot be done as asked; the message says what to do instead.
    #[error("{0}")]
    Refused(String),
    /// A wait ran out of time; trying again may pass.
    #[error("{0}")]
    Timeout(String),
}

impl From<LocalError> for ActionError {
    fn from(e: LocalError) -> ActionError {
        match e {
            LocalError::Timeout(_) | LocalError::Server(ServerError::Command { .. }) => {
                ActionError::transient(crate::error::chain(&e))
            }
            _ => ActionError::fatal(crate::error::chain(&e)),
        }
    }
}

type Result<T, E = LocalError> = std::result::Result<T, E>;

/// How long a migration may take to link and catch up, an engine change to bring a node back.
const SYNC_DEADLINE: Duration = Duration::from_secs(600);

/// Rehearsal on real server processes. Holds no state of its own: everything lives in
/// the run directory each call is given.
pub struct Local {
    /// One control-plane change at a time within this process.
    busy: tokio::sync::Mutex<()>,
}

impl Local {
    pub fn new() -> Local {
        Local {
            busy: tokio::sync::Mutex::new(()),
        }
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

/// A server the journal says a run started.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordedServer {
    pub group: String,
    pub node: String,
    pub port: u16,
    pub pid: u32,
}

/// Every server a run's journal records (`journal.jsonl` in `run_dir`).
pub fn recorded_servers(
    run_dir: &Path,
) -> Result<Vec<RecordedServer>, crate::journal::JournalError> {
    let mut servers = Vec::new();
    for resource in crate::journal::replay(&run_dir.join("journal.jsonl"))?.resources() {
        if resource["kind"] == "server"
            && let (Some(port), Some(pid)) = (resource["port"].as_u64(), resource["pid"].as_u64())
        {
            servers.push(RecordedServer {
                group: resource["group"].as_str().unwrap_or_default().to_string(),
                node: resource["node"].as_str().unwrap_or_default().to_string(),
                port: u16::try_from(port).unwrap_or_default(),
                pid: u32::try_from(pid).unwrap_or_default(),
            });
        }
    }
    servers.sort();
    servers.dedup();
    Ok(servers)
}

/// Stops every server the run's journal records that still runs; returns those stopped.
pub async fn stop_recorded(
    run_dir: &Path,
) -> Result<Vec<RecordedServer>, crate::journal::JournalError> {
    let mut stopped = Vec::new();
    for s in recorded_servers(run_dir)? {
        if server::stop(s.pid, s.port).await {
            stopped.push(s);
        }
    }
    Ok(stopped)
}

#[async_trait]
impl Platform for Local {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Local
    }

    fn explain(&self, op: &ControlOp) -> Vec<Operation> {
        explain(op)
    }

    async fn apply(&self, ctx: &StepCtx<'_>, op: &ControlOp) -> Result<Outputs, ActionError> {
        let _busy = self.busy.lock().await;
        let run_dir = std::path::absolute(ctx.run_dir).map_err(|e| {
            ActionError::fatal(format!("the run directory {}: {e}", ctx.run_dir.display()))
        })?;
        let mut run = Run {
            ctx,
            dir: run_dir.clone(),
            state: State::load(&run_dir).map_err(LocalError::from)?,
        };
        Ok(run.apply(op).await?)
    }
}

fn explain(op: &ControlOp) -> Vec<Operation> {
    match op {
        ControlOp::DeployStack {
            stack_name,
            template,
            parameters,
        } => vec![
            Operation::new("process", format!("start the servers of {}", template.display()))
                .param("stack_name", stack_name)
                .param("parameters", parameters),
        ],
        ControlOp::DeleteStack { stack_name } => {
            vec![Operation::new("process", format!("stop every server of stack {stack_name}")).destructive()]
        }
        ControlOp::DescribeGroup { group } => vec![Operation::new("redis", format!("INFO of the nodes of {group}"))],
        ControlOp::CheckMigrationTarget { group, sources } => vec![
            Operation::new("check", format!("{group} is available, Multi-AZ, without in-transit encryption"))
                .param("sources", sources),
        ],
        ControlOp::TestMigration { group, sources } => vec![
            Operation::new("redis", "PING + INFO server on the source")
                .param("group", group)
                .param("sources", sources),
        ],
        ControlOp::StartMigration { group, sources } => vec![
            Operation::new("redis", format!("REPLICAOF <source> on the primary of {group}")).param("sources", sources),
            Operation::new("wait", "until the link is up and the offsets match the source's"),
        ],
        ControlOp::CompleteMigration { group, force } => {
            let mut ops = Vec::new();
            if !force {
                ops.push(Operation::new("wait", "until the primary has caught up with the source"));
            }
            let promote = Operation::new("redis", format!("REPLICAOF NO ONE on the primary of {group}"));
            ops.push(if *force { promote.destructive() } else { promote });
            ops
        }
        ControlOp::ModifyEngine {
            group,
            engine,
            engine_version,
            ..
        } => vec![
            Operation::new(
                "process",
                format!("replicas first, then the primary of {group}: SHUTDOWN SAVE, start {engine}-server on the same port and data"),
            )
            .param("engine_version", engine_version)
            .destructive(),
            Operation::new("wait", "until each node serves again (and replicas are linked)"),
        ],
        ControlOp::CreateSnapshot { group, snapshot } => vec![
            Operation::new("redis", format!("BGSAVE on a node of {group}")),
            Operation::new("process", format!("copy the RDB file to snapshots/{snapshot}.rdb")),
        ],
        ControlOp::RestoreSnapshot {
            snapshot,
            group,
            engine,
            replicas,
            ..
        } => vec![Operation::new(
            "process",
            format!("start {group}: {engine}-server loading {snapshot}, with {replicas} replica(s)"),
        )],
        ControlOp::DeleteGroup { group } => {
            vec![Operation::new("process", format!("stop every server of {group}")).destructive()]
        }
        ControlOp::CaptureMetrics { group, .. } => vec![Operation::new("redis", format!("INFO of the nodes of {group}"))],
    }
}

/// One `apply` call: the step's context, the run directory and the state read from it.
struct Run<'a, 'c> {
    ctx: &'a StepCtx<'c>,
    dir: PathBuf,
    state: State,
}

impl Run<'_, '_> {
    async fn apply(&mut self, op: &ControlOp) -> Result<Outputs> {
        match op {
            ControlOp::DeployStack {
                stack_name,
                template,
                parameters,
            } => self.deploy(stack_name, template, parameters).await,
            ControlOp::DeleteStack { stack_name } => self.delete_stack(stack_name).await,
            ControlOp::DescribeGroup { group } => {
                self.describe(group).await.map(|g| to_outputs(&g))
            }
            ControlOp::CheckMigrationTarget { group, sources } => {
                self.check_target(group, sources).await
            }
            ControlOp::TestMigration { group, sources } => {
                self.test_migration(group, sources).await
            }
            ControlOp::StartMigration { group, sources } => {
                self.start_migration(group, sources).await
            }
            ControlOp::CompleteMigration { group, force } => {
                self.complete_migration(group, *force).await
            }
            ControlOp::ModifyEngine {
                group,
                engine,
                engine_version,
                parameter_group,
            } => {
                if let Some(p) = parameter_group {
                    self.ctx
                        .note(format!("parameter group {p} has no local equivalent; the servers keep their settings"));
                }
                self.modify_engine(group, engine, engine_version.as_deref())
                    .await
            }
            ControlOp::CreateSnapshot { group, snapshot } => {
                self.create_snapshot(group, snapshot).await
            }
            ControlOp::RestoreSnapshot {
                snapshot,
                group,
                engine,
                engine_version,
                replicas,
            } => {
                self.restore_snapshot(
                    snapshot,
                    group,
                    engine,
                    engine_version.as_deref(),
                    *replicas,
                )
                .await
            }
            ControlOp::DeleteGroup { group } => {
                self.delete_group(group).await?;
                Ok(Outputs::new())
            }
            ControlOp::CaptureMetrics { group, .. } => self.metrics(group).await,
        }
    }

    fn save(&self) -> Result<()> {
        Ok(self.state.save(&self.dir)?)
    }

    fn group(&self, id: &str) -> Result<&Group> {
        self.state.groups.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.state.groups.keys().map(String::as_str).collect();
            LocalError::Refused(format!(
                "there is no replication group `{id}` in this rehearsal (known: {}); deploy a stack or restore a snapshot first",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    // ---- servers -------------------------------------------------------------------

    /// Starts node `index` of `group` (on its recorded port and data) unless it runs,
    /// as a replica of the group's primary (or of the migration source), and journals it.
    async fn ensure_node(&mut self, group: &str, index: usize) -> Result<()> {
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

    /// Creates a group of `nodes` servers (primary first) and starts them. `seed` is an RDB
    /// file the primary loads.
    async fn create_group(
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

    async fn delete_group(&mut self, id: &str) -> Result<()> {
        if !self.state.groups.contains_key(id) {
            self.ctx
                .note(format!("{id} does not exist: nothing to delete"));
            return Ok(());
        }
        self.stop_group(id).await?;
        self.state.groups.remove(id);
        self.save()
    }

    // ---- stacks --------------------------------------------------------------------

    async fn deploy(
        &mut self,
        name: &str,
        template: &Path,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Outputs> {
        if let Some(stack) = self.state.stacks.get(name) {
            let groups: Vec<String> = self.groups_of(name);
            let outputs = stack.outputs.clone();
            for g in &groups {
                let count = self.group(g)?.nodes.len();
                for i in 0..count {
                    self.ensure_node(g, i).await?;
                }
            }
            self.ctx
                .note(format!("stack {name} is already deployed; its servers run"));
            return Ok(outputs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect());
        }
        let t = Template::load(template)?;
        let mut scope = Scope::default();
        for (k, v) in &t.parameters {
            scope.refs.insert(k.clone(), v.clone());
        }
        for (k, v) in parameters {
            if !t.parameters.contains_key(k) {
                return Err(LocalError::Refused(format!(
                    "parameter `{k}` is not declared in {} (declared: {})",
                    template.display(),
                    t.parameters.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            scope.refs.insert(k.clone(), Value::String(v.clone()));
        }
        for (k, v) in [
            ("AWS::StackName", name),
            ("AWS::Region", "local"),
            ("AWS::AccountId", "000000000000"),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
        ] {
            scope.refs.insert(k.into(), Value::String(v.into()));
        }
        scope.refs.insert("AWS::NoValue".into(), Value::Null);

        // First what each resource is and its Ref, so properties can refer to each other.
        let mut planned: Vec<(String, Group, u32, Engine)> = Vec::new();
        let mut resources = Vec::new();
        for (logical, r) in &t.resources {
            let ctx = format!("Resources.{logical}");
            let prop = |key: &str| -> Result<Option<Value>> {
                r.properties
                    .get(key)
                    .map(|v| scope.eval(v, &format!("{ctx}.Properties.{key}")))
                    .transpose()
                    .map_err(LocalError::from)
            };
            let marker = r.metadata.get("Runbook");
            let (kind, engine, count, id) = match r.kind.as_str() {
                "AWS::ElastiCache::ReplicationGroup" => {
                    if prop("NumNodeGroups")?.is_some_and(|n| template::text(&n) != "1") {
                        return Err(LocalError::Refused(format!(
                            "{ctx}: cluster mode (NumNodeGroups > 1) cannot be rehearsed locally"
                        )));
                    }
                    let engine_text = prop("Engine")?
                        .map(|v| template::text(&v))
                        .unwrap_or_else(|| "redis".into());
                    let engine = Engine::parse(&engine_text).ok_or_else(|| {
                        LocalError::Refused(format!(
                            "{ctx}: Engine `{engine_text}` is neither redis nor valkey"
                        ))
                    })?;
                    let count = match prop("NumCacheClusters")? {
                        Some(n) => template::text(&n).parse().unwrap_or(1),
                        None => prop("ReplicasPerNodeGroup")?
                            .and_then(|n| template::text(&n).parse::<u32>().ok())
                            .map_or(1, |r| r + 1),
                    };
                    let id = prop("ReplicationGroupId")?
                        .map(|v| template::text(&v))
                        .unwrap_or_else(|| format!("{name}-{}", logical.to_ascii_lowercase()));
                    (GroupKind::ReplicationGroup, engine, count, id)
                }
                "AWS::EC2::Instance" if marker.is_some() => {
                    let marker = marker.expect("checked");
                    let engine_text = marker
                        .get("Engine")
                        .map(template::text)
                        .unwrap_or_else(|| "redis".into());
                    let engine = Engine::parse(&engine_text).ok_or_else(|| {
                        LocalError::Refused(format!("{ctx}: Metadata.Runbook.Engine `{engine_text}` is neither redis nor valkey"))
                    })?;
                    (
                        GroupKind::Instance,
                        engine,
                        1,
                        format!("{name}-{}", logical.to_ascii_lowercase()),
                    )
                }
                _ => {
                    let physical = format!("{name}-{logical}-local");
                    scope
                        .refs
                        .insert(logical.clone(), Value::String(physical.clone()));
                    scope.simulated.insert(logical.clone());
                    resources.push(StackResource {
                        logical_id: logical.clone(),
                        kind: r.kind.clone(),
                        local: "simulated".into(),
                        physical_id: physical,
                    });
                    continue;
                }
            };
            let group = match self.state.groups.get(&id) {
                Some(existing) if existing.stack.as_deref() != Some(name) => {
                    return Err(LocalError::Refused(format!(
                        "{ctx}: a group `{id}` already exists in this rehearsal outside stack {name}"
                    )));
                }
                _ => Group {
                    id: id.clone(),
                    kind,
                    stack: Some(name.to_string()),
                    requested_version: prop("EngineVersion")?.map(|v| template::text(&v)),
                    multi_az: prop("MultiAZEnabled")?.is_some_and(|v| template::text(&v) == "true"),
                    transit_encryption: prop("TransitEncryptionEnabled")?
                        .is_some_and(|v| template::text(&v) == "true"),
                    nodes: Vec::new(),
                    migration: None,
                    completed_migration: None,
                },
            };
            let physical = if kind == GroupKind::Instance {
                format!("i-{}", id)
            } else {
                id.clone()
            };
            scope
                .refs
                .insert(logical.clone(), Value::String(physical.clone()));
            resources.push(StackResource {
                logical_id: logical.clone(),
                kind: r.kind.clone(),
                local: "process".into(),
                physical_id: physical,
            });
            planned.push((logical.clone(), group, count, engine));
        }

        for (logical, group, count, engine) in planned {
            let id = group.id.clone();
            if self.state.groups.contains_key(&id) {
                let n = self.group(&id)?.nodes.len();
                for i in 0..n {
                    self.ensure_node(&id, i).await?;
                }
            } else {
                self.create_group(group, count, engine, None).await?;
            }
            let g = self.group(&id)?;
            let primary = g.primary().port.to_string();
            let reader = g.nodes.get(1).unwrap_or(g.primary()).port.to_string();
            let t = &t.resources[&logical];
            let attrs = [
                ("PrimaryEndPoint.Address", "127.0.0.1".to_string()),
                ("PrimaryEndPoint.Port", primary.clone()),
                ("ReaderEndPoint.Address", "127.0.0.1".to_string()),
                ("ReaderEndPoint.Port", reader),
                ("PrivateIp", "127.0.0.1".to_string()),
                ("PublicIp", "127.0.0.1".to_string()),
                ("PrivateDnsName", "localhost".to_string()),
                ("PublicDnsName", "localhost".to_string()),
                ("AvailabilityZone", "local-a".to_string()),
            ];
            if let Some(param) = t
                .metadata
                .get("Runbook")
                .and_then(|m| m.get("PortParameter"))
            {
                // The template names the parameter that holds this server's port: locally
                // the server listens on a free port instead, and outputs must say so.
                scope
                    .refs
                    .insert(template::text(param), Value::String(primary.clone()));
            }
            for (attr, v) in attrs {
                scope
                    .attrs
                    .insert((logical.clone(), attr.to_string()), Value::String(v));
            }
        }
        let mut outputs = BTreeMap::new();
        for (key, value) in &t.outputs {
            outputs.insert(
                key.clone(),
                template::text(&scope.eval(value, &format!("Outputs.{key}"))?),
            );
        }
        let simulated = resources.iter().filter(|r| r.local == "simulated").count();
        self.ctx.note(format!(
            "stack {name}: {} resource(s) run as servers, {simulated} simulated",
            resources.len() - simulated
        ));
        self.state.stacks.insert(
            name.to_string(),
            Stack {
                template: template.to_path_buf(),
                outputs: outputs.clone(),
                resources,
            },
        );
        self.save()?;
        Ok(outputs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect())
    }

    fn groups_of(&self, stack: &str) -> Vec<String> {
        self.state
            .groups
            .values()
            .filter(|g| g.stack.as_deref() == Some(stack))
            .map(|g| g.id.clone())
            .collect()
    }

    async fn delete_stack(&mut self, name: &str) -> Result<Outputs> {
        let groups = self.groups_of(name);
        if groups.is_empty() && !self.state.stacks.contains_key(name) {
            self.ctx
                .note(format!("stack {name} does not exist: nothing to delete"));
        }
        for g in &groups {
            self.delete_group(g).await?;
        }
        self.state.stacks.remove(name);
        self.save()?;
        let mut out = Outputs::new();
        out.insert("deleted_groups".into(), json!(groups));
        Ok(out)
    }

    // ---- groups --------------------------------------------------------------------

    async fn describe(&self, id: &str) -> Result<GroupInfo> {
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

    async fn metrics(&self, id: &str) -> Result<Outputs> {
        let g = self.group(id)?;
        let mut nodes = serde_json::Map::new();
        for n in &g.nodes {
            let mut m = serde_json::Map::new();
            for section in ["clients", "memory", "stats"] {
                let info = server::info(n.port, section).await?;
                for field in [
                    "connected_clients",
                    "used_memory",
                    "instantaneous_ops_per_sec",
                ] {
                    if let Some(v) = info.get(field).and_then(|v| v.parse::<u64>().ok()) {
                        m.insert(field.into(), v.into());
                    }
                }
            }
            nodes.insert(n.id.clone(), Value::Object(m));
        }
        let mut out = Outputs::new();
        out.insert("nodes".into(), Value::Object(nodes));
        Ok(out)
    }

    // ---- migration -----------------------------------------------------------------

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
    async fn source_info(&self, source: &Endpoint) -> Result<BTreeMap<String, String>> {
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

    async fn check_target(&self, id: &str, sources: &[Endpoint]) -> Result<Outputs> {
        let info = self.describe(id).await?;
        let g = self.group(id)?;
        let mut checks = vec![
            check(
                "target_available",
                info.status == "available",
                format!("{id} is {}", info.status),
            ),
            check(
                "target_multi_az",
                g.multi_az,
                format!("Multi-AZ is {}", on_off(g.multi_az)),
            ),
            check(
                "target_in_transit_encryption_off",
                !g.transit_encryption,
                format!("in-transit encryption is {}", on_off(g.transit_encryption)),
            ),
            check(
                "target_single_shard",
                true,
                "one shard (cluster mode disabled)".into(),
            ),
        ];
        for s in sources {
            let reached = self.source_info(s).await;
            checks.push(check(
                "source_reachable_from_target",
                reached.is_ok(),
                match reached {
                    Ok(_) => format!("{s} answers on loopback"),
                    Err(e) => e.to_string(),
                },
            ));
        }
        let ok = checks.iter().all(|c| c["ok"] == true);
        let mut out = Outputs::new();
        out.insert("ok".into(), ok.into());
        out.insert("checks".into(), Value::Array(checks));
        Ok(out)
    }

    async fn test_migration(&self, id: &str, sources: &[Endpoint]) -> Result<Outputs> {
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
        self.ctx
            .note(format!("{source} answers: {engine} {version}"));
        let mut out = Outputs::new();
        out.insert("status".into(), "success".into());
        out.insert("source_engine".into(), engine.to_string().into());
        out.insert("source_version".into(), version.into());
        Ok(out)
    }

    async fn start_migration(&mut self, id: &str, sources: &[Endpoint]) -> Result<Outputs> {
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
                    g.primary().port,
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
        let mut out = to_outputs(&self.describe(id).await?);
        out.insert("replication_offset".into(), offset.into());
        Ok(out)
    }

    /// Waits until the primary of `id` is linked to `source`, done loading, and has reached
    /// the source's replication offset as it was when the wait began. Fails at once when
    /// the replica cannot load what the source sends (an RDB version it does not know).
    async fn wait_in_sync(&self, id: &str, source: &Endpoint) -> Result<u64> {
        let primary = self.group(id)?.primary().clone();
        let deadline = Instant::now() + SYNC_DEADLINE;
        let mut target_offset: Option<u64> = None;
        let mut last_status = String::new();
        let log = server::log_path(&primary.dir);
        let log_start = server::log_len(&log);
        loop {
            let info = server::info(primary.port, "replication").await?;
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

    async fn complete_migration(&mut self, id: &str, force: bool) -> Result<Outputs> {
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
            return Ok(to_outputs(&self.describe(id).await?));
        };
        if force {
            self.ctx.note("force: promoting without ensuring sync");
        } else {
            let source = Endpoint::parse(&migration.source)
                .map_err(|e| LocalError::Refused(format!("the recorded source: {e}")))?;
            let info = server::info(g.primary().port, "replication").await?;
            if info.get("master_link_status").is_none_or(|s| s != "up") {
                return Err(LocalError::Refused(format!(
                    "{id} is not in sync with {} (replication link down); fix the source or complete with force: true",
                    migration.source
                )));
            }
            self.wait_in_sync(id, &source).await?;
        }
        server::command::<()>(
            g.primary().port,
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
        let mut out = to_outputs(&self.describe(id).await?);
        out.insert("forced".into(), force.into());
        Ok(out)
    }

    // ---- engine change -------------------------------------------------------------

    async fn modify_engine(
        &mut self,
        id: &str,
        engine: &str,
        version: Option<&str>,
    ) -> Result<Outputs> {
        let engine = Engine::parse(engine).ok_or_else(|| {
            LocalError::Refused(format!("engine `{engine}` is neither redis nor valkey"))
        })?;
        let g = self.group(id)?.clone();
        if g.migration.is_some() {
            return Err(LocalError::Refused(format!(
                "{id} is migrating; complete the migration before changing its engine"
            )));
        }
        if engine == Engine::Redis && g.nodes.iter().any(|n| n.engine == Engine::Valkey) {
            return Err(LocalError::Refused(format!(
                "{id} runs Valkey: changing back to Redis is not possible in place (Valkey writes an RDB version Redis 7.x cannot load); restore a snapshot taken before the change instead"
            )));
        }
        server::binary(engine)?;
        // Replicas first, the primary last: clients of the primary see one restart only.
        let order: Vec<usize> = (1..g.nodes.len()).chain(std::iter::once(0)).collect();
        for i in order {
            let node = self.group(id)?.nodes[i].clone();
            let alive = server::is_alive(node.pid, node.port).await;
            if alive && node.engine == engine {
                let (running, _) = server::engine_of(&server::info(node.port, "server").await?);
                if running == engine {
                    self.ctx.note(format!("{} already runs {engine}", node.id));
                    continue;
                }
            }
            if alive {
                self.ctx.note(format!(
                    "{}: saving its data and stopping {}",
                    node.id, node.engine
                ));
                server::save_and_stop(node.pid, node.port).await?;
            }
            self.state.groups.get_mut(id).expect("group").nodes[i].engine = engine;
            self.save()?;
            self.ensure_node(id, i).await?;
            self.wait_serving(&node.id, node.port, i != 0).await?;
        }
        let info = self.describe(id).await?;
        if let Some(v) = version
            && !info.engine_version.starts_with(v)
        {
            self.ctx.note(format!(
                "{engine} {v} was asked for; the local {engine}-server is {}, so the rehearsal runs that",
                info.engine_version
            ));
        }
        self.state
            .groups
            .get_mut(id)
            .expect("group")
            .requested_version = version.map(str::to_string);
        self.save()?;
        Ok(to_outputs(&info))
    }

    /// Waits until the node on `port` has loaded its data (and, for a replica, is linked).
    async fn wait_serving(&self, node: &str, port: u16, replica: bool) -> Result<()> {
        let deadline = Instant::now() + SYNC_DEADLINE;
        loop {
            let persistence = server::info(port, "persistence").await?;
            let loaded = persistence.get("loading").is_some_and(|v| v == "0");
            let linked = !replica
                || server::info(port, "replication")
                    .await?
                    .get("master_link_status")
                    .is_some_and(|v| v == "up");
            if loaded && linked {
                self.ctx.note(format!(
                    "{node} serves: data loaded{}",
                    if replica {
                        ", linked to its primary"
                    } else {
                        ""
                    }
                ));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "{node} did not serve again within {} s",
                    SYNC_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // ---- snapshots -----------------------------------------------------------------

    async fn create_snapshot(&mut self, id: &str, name: &str) -> Result<Outputs> {
        let snapshot_file = self.dir.join("snapshots").join(format!("{name}.rdb"));
        if let Some(s) = self.state.snapshots.get(name)
            && s.file.exists()
        {
            self.ctx.note(format!("snapshot {name} already exists"));
            return Ok(snapshot_outputs(name, s));
        }
        let g = self.group(id)?;
        // Like ElastiCache, back up from a replica when there is one.
        let node = g.nodes.get(1).unwrap_or(g.primary()).clone();
        let before = rdb_saves(node.port).await?;
        let started: Result<String, ServerError> =
            server::command(node.port, &redis::cmd("BGSAVE")).await;
        if let Err(e) = started
            && !e.to_string().contains("in progress")
        {
            return Err(e.into());
        }
        let deadline = Instant::now() + SYNC_DEADLINE;
        loop {
            let info = server::info(node.port, "persistence").await?;
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
        let (engine, version) = server::engine_of(&server::info(node.port, "server").await?);
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
        let out = snapshot_outputs(name, &snapshot);
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
    ) -> Result<Outputs> {
        if self.state.groups.contains_key(id) {
            let n = self.group(id)?.nodes.len();
            for i in 0..n {
                self.ensure_node(id, i).await?;
            }
            self.ctx.note(format!("{id} already exists"));
            return Ok(to_outputs(&self.describe(id).await?));
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
            multi_az: replicas > 0,
            transit_encryption: false,
            nodes: Vec::new(),
            migration: None,
            completed_migration: None,
        };
        self.create_group(group, replicas + 1, engine, Some(&snapshot.file))
            .await?;
        let g = self.group(id)?.clone();
        for (i, n) in g.nodes.iter().enumerate() {
            self.wait_serving(&n.id, n.port, i != 0).await?;
        }
        self.ctx.note(format!(
            "{id} restored from {name} ({} {})",
            snapshot.engine, snapshot.engine_version
        ));
        Ok(to_outputs(&self.describe(id).await?))
    }
}

async fn rdb_saves(port: u16) -> Result<u64> {
    Ok(server::info(port, "persistence")
        .await?
        .get("rdb_saves")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn snapshot_outputs(name: &str, s: &Snapshot) -> Outputs {
    let mut out = Outputs::new();
    out.insert("snapshot".into(), name.into());
    out.insert("group".into(), s.group.clone().into());
    out.insert("engine".into(), s.engine.to_string().into());
    out.insert("engine_version".into(), s.engine_version.clone().into());
    out.insert("file".into(), s.file.display().to_string().into());
    out
}

fn check(name: &str, ok: bool, detail: String) -> Value {
    json!({"name": name, "ok": ok, "detail": detail})
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A group's description as step outputs.
fn to_outputs(info: &GroupInfo) -> Outputs {
    match serde_json::to_value(info) {
        Ok(Value::Object(map)) => map,
        _ => Outputs::new(),
    }
}

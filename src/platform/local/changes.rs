//! The everyday changes of a replication group (seed 002), rehearsed on its real servers so
//! the probe sees what clients of ElastiCache would: a failover test is a replica promoted
//! (the engine change's failover), a replica count change starts or stops replica servers,
//! a node type change replaces node after node in the engine change's sequence (replicas
//! first, then a failover, then the old primary), and a parameter group change is
//! `CONFIG SET` on every node. The health check reads what CloudWatch would show from
//! `INFO`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::cluster::{self, Wait};
use super::engine::{Wanted, shard_name};
use super::server::{self, Access};
use super::state::{Group, Node};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    CheckHealth, FailedOver, FailoverGroup, Health, HealthFigures, ModifyNodeType,
    ModifyParameters, ModifyReplicas, NodeTypeModified, ParametersModified, ReplicasModified,
};

#[async_trait]
impl Handles<FailoverGroup> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &FailoverGroup) -> Vec<Operation> {
        vec![
            Operation::new(
                "redis",
                format!(
                    "promote the first replica of shard {} of {}: CLUSTER FAILOVER, or CLIENT PAUSE WRITE on the primary, REPLICAOF NO ONE on the replica once it has every write, REPLICAOF it on the others",
                    request.node_group(),
                    request.replication_group
                ),
            )
            .destructive(),
            Operation::wait("until the replica is the primary"),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &FailoverGroup,
    ) -> Result<FailedOver, ActionError> {
        let mut run = self.open(ctx).await?;
        let id = &request.replication_group;
        let g = run.group(id)?.clone();
        let shard = shard_index(&g, request.node_group())?;
        let members = g.shard_nodes(shard);
        if members.len() < 2 {
            return Err(LocalError::Refused(format!(
                "{} has no replica to promote; add one first (group.modify_replicas)",
                shard_name(&g, shard)
            ))
            .into());
        }
        run.ensure_group(id).await?;
        let (old_primary, new_primary) = run.fail_over(id, shard, members[1]).await?;
        Ok(FailedOver {
            group: run.describe(id).await?,
            node_group: request.node_group().to_string(),
            old_primary,
            new_primary,
        })
    }
}

#[async_trait]
impl Handles<ModifyReplicas> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyReplicas) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!(
                    "in each shard of {}: start new replica servers (REPLICAOF its primary, or CLUSTER MEET and REPLICATE) or stop the last replicas (CLUSTER FORGET them), until it has {} replica(s)",
                    request.replication_group, request.replicas
                ),
            ),
            Operation::wait("until every new replica is linked to its primary"),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyReplicas,
    ) -> Result<ReplicasModified, ActionError> {
        let wanted = request.checked()?;
        let mut run = self.open(ctx).await?;
        let id = &request.replication_group;
        let before = replicas(run.group(id)?);
        run.ensure_group(id).await?;
        let shards = run.group(id)?.shard_count();
        for shard in 0..shards {
            run.set_replicas(id, shard, wanted as usize).await?;
        }
        Ok(ReplicasModified {
            group: run.describe(id).await?,
            replicas_before: before,
            replicas: replicas(run.group(id)?),
        })
    }
}

#[async_trait]
impl Handles<ModifyNodeType> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyNodeType) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!(
                    "shard by shard of {}, as ElastiCache replaces nodes: each replica SHUTDOWN SAVE and start again on its data, then fail over to a replaced replica, then replace the old primary; a shard without replicas restarts in place",
                    request.replication_group
                ),
            )
            .param("node_type", &request.node_type)
            .destructive(),
            Operation::wait("until each node serves again (and replicas are linked)"),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyNodeType,
    ) -> Result<NodeTypeModified, ActionError> {
        let mut run = self.open(ctx).await?;
        let id = &request.replication_group;
        let g = run.group(id)?.clone();
        if g.migration.is_some() {
            return Err(LocalError::Refused(format!(
                "{id} is migrating; complete the migration before changing its node type"
            ))
            .into());
        }
        let before = node_type(&g);
        let wanted = Wanted {
            engine: g.primary().engine,
            node_type: Some(request.node_type.clone()),
        };
        ctx.note(format!(
            "{} stands for {} here: a local server has no instance size, so the rehearsal replaces the nodes as ElastiCache does and measures that",
            request.node_type, id
        ));
        run.state.groups.get_mut(id).expect("group").node_type = Some(request.node_type.clone());
        run.save()?;
        for shard in 0..g.shard_count() {
            run.change_shard(id, shard, &wanted).await?;
        }
        Ok(NodeTypeModified {
            group: run.describe(id).await?,
            node_type_before: before,
            node_type: request.node_type.clone(),
        })
    }
}

#[async_trait]
impl Handles<ModifyParameters> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyParameters) -> Vec<Operation> {
        let mut op = Operation::new(
            "redis",
            format!(
                "CONFIG SET on every node of {} whose value differs, then CONFIG GET to check",
                request.replication_group
            ),
        );
        for (name, value) in &request.parameters {
            op = op.param(name, value);
        }
        vec![op]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyParameters,
    ) -> Result<ParametersModified, ActionError> {
        request.checked()?;
        let mut run = self.open(ctx).await?;
        let id = &request.replication_group;
        run.ensure_group(id).await?;
        let g = run.group(id)?.clone();
        let mut changed = Vec::new();
        let mut now = BTreeMap::new();
        for (name, value) in &request.parameters {
            for node in &g.nodes {
                let access = run.access(&g, node)?;
                let had = config_get(&access, name).await?;
                if had != *value {
                    server::command::<()>(
                        &access,
                        redis::cmd("CONFIG").arg("SET").arg(name).arg(value),
                    )
                    .await
                    .map_err(LocalError::from)?;
                    ctx.note(format!("{}: {name} {had} -> {value}", node.id));
                    if !changed.contains(name) {
                        changed.push(name.clone());
                    }
                }
                let has = config_get(&access, name).await?;
                if has != *value {
                    return Err(LocalError::Refused(format!(
                        "{}: {name} reads `{has}` after CONFIG SET {name} {value}; give the value as the server writes it",
                        node.id
                    ))
                    .into());
                }
                now.insert(name.clone(), has);
            }
        }
        if changed.is_empty() {
            ctx.note(format!("every node of {id} already has these values"));
        }
        Ok(ParametersModified {
            replication_group: id.clone(),
            parameter_group: request.parameter_group.clone(),
            parameters: now,
            changed,
            apply_status: "in-sync".into(),
        })
    }
}

#[async_trait]
impl Handles<CheckHealth> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &CheckHealth) -> Vec<Operation> {
        vec![
            Operation::new(
                "redis",
                format!(
                    "INFO memory, cpu, clients and stats of every node of {} (CPU over {} s)",
                    request.replication_group,
                    CPU_SAMPLE.as_secs()
                ),
            )
            .param("max_memory_percent", request.max_memory_percent)
            .param("max_cpu_percent", request.max_cpu_percent)
            .param("max_connections", request.max_connections)
            .param("max_evictions", request.max_evictions),
        ]
    }

    async fn call(&self, ctx: &StepCtx<'_>, request: &CheckHealth) -> Result<Health, ActionError> {
        let run = self.open(ctx).await?;
        let g = run.group(&request.replication_group)?.clone();
        let access: Vec<Access> = g
            .nodes
            .iter()
            .map(|n| run.access(&g, n))
            .collect::<Result<_>>()?;
        let mut figures = HealthFigures::default();
        let mut cpu_before = Vec::new();
        for a in &access {
            cpu_before.push(cpu_seconds(a).await?);
        }
        tokio::time::sleep(CPU_SAMPLE).await;
        for (a, before) in access.iter().zip(cpu_before) {
            let cpu = (cpu_seconds(a).await? - before) / CPU_SAMPLE.as_secs_f64() * 100.0;
            figures.cpu_percent = figures.cpu_percent.max(cpu);
            let memory = server::info(a, "memory").await.map_err(LocalError::from)?;
            let used = number(&memory, "used_memory");
            let max = number(&memory, "maxmemory");
            if max > 0.0 {
                figures.memory_percent = figures.memory_percent.max(used / max * 100.0);
            }
            let clients = server::info(a, "clients").await.map_err(LocalError::from)?;
            figures.connections = figures
                .connections
                .max(number(&clients, "connected_clients") as u64);
            let stats = server::info(a, "stats").await.map_err(LocalError::from)?;
            figures.evictions += number(&stats, "evicted_keys") as u64;
        }
        Ok(request.judge(
            figures,
            "read from INFO now (memory against maxmemory; none set counts as 0%)",
        )?)
    }
}

/// How long the local health check watches CPU time.
const CPU_SAMPLE: Duration = Duration::from_secs(1);

/// The server's CPU seconds so far (`used_cpu_sys` + `used_cpu_user`).
async fn cpu_seconds(access: &Access) -> Result<f64> {
    let cpu = server::info(access, "cpu").await?;
    Ok(number(&cpu, "used_cpu_sys") + number(&cpu, "used_cpu_user"))
}

fn number(info: &BTreeMap<String, String>, field: &str) -> f64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// `CONFIG GET name` of one node: its value.
async fn config_get(access: &Access, name: &str) -> Result<String> {
    let pairs: Vec<String> =
        server::command(access, redis::cmd("CONFIG").arg("GET").arg(name)).await?;
    pairs.get(1).cloned().ok_or_else(|| {
        LocalError::Refused(format!(
            "the server on port {} has no parameter `{name}`",
            access.port
        ))
    })
}

/// The index of the shard ElastiCache calls `node_group` (`0001` without cluster mode).
fn shard_index(g: &Group, node_group: &str) -> Result<usize> {
    if !g.cluster_mode {
        return if node_group == "0001" {
            Ok(0)
        } else {
            Err(LocalError::Refused(format!(
                "{} has one node group, 0001, not {node_group}",
                g.id
            )))
        };
    }
    g.shards
        .iter()
        .position(|s| s.id == node_group)
        .ok_or_else(|| {
            let known: Vec<&str> = g.shards.iter().map(|s| s.id.as_str()).collect();
            LocalError::Refused(format!(
                "{} has no node group {node_group} (its node groups: {})",
                g.id,
                known.join(", ")
            ))
        })
}

/// The fewest replicas of any shard.
fn replicas(g: &Group) -> u32 {
    (0..g.shard_count())
        .map(|s| g.shard_nodes(s).len().saturating_sub(1) as u32)
        .min()
        .unwrap_or(0)
}

/// The group's node type when every node agrees, else what it is being moved to.
fn node_type(g: &Group) -> String {
    let first = g.primary().node_type.clone();
    if g.nodes.iter().all(|n| n.node_type == first) {
        first.or_else(|| g.node_type.clone()).unwrap_or_default()
    } else {
        g.node_type.clone().unwrap_or_default()
    }
}

impl Run<'_, '_> {
    /// Starts or stops replicas of shard `shard` until it has `wanted`. A new replica is
    /// numbered after the shard's highest node; the last ones listed are the ones removed.
    async fn set_replicas(&mut self, id: &str, shard: usize, wanted: usize) -> Result<()> {
        let g = self.group(id)?.clone();
        let members = g.shard_nodes(shard);
        let have = members.len() - 1;
        if have == wanted {
            self.ctx.note(format!(
                "{} already has {wanted} replica(s)",
                shard_name(&g, shard)
            ));
            return Ok(());
        }
        if have < wanted {
            for _ in have..wanted {
                self.add_replica(id, shard).await?;
            }
            if g.cluster_mode {
                self.form_cluster(id).await?;
            }
            return Ok(());
        }
        for &index in members[wanted + 1..].iter().rev() {
            self.remove_node(id, index).await?;
        }
        Ok(())
    }

    /// A new replica of shard `shard`, started on a free port and linked to its primary.
    async fn add_replica(&mut self, id: &str, shard: usize) -> Result<()> {
        let g = self.group(id)?.clone();
        let members = g.shard_nodes(shard);
        let last = *members.last().expect("a shard has a primary");
        let number = members
            .iter()
            .filter_map(|&m| g.nodes[m].id.rsplit('-').next()?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let node_id = match g.shards.get(shard) {
            Some(s) if g.cluster_mode => format!("{id}-{}-{number:03}", s.id),
            _ => format!("{id}-{number:03}"),
        };
        let port = if g.cluster_mode {
            server::free_cluster_port()
        } else {
            server::free_port()
        }
        .map_err(|e| LocalError::Refused(format!("no free port: {e}")))?;
        let primary = &g.nodes[members[0]];
        let node = Node {
            dir: self.dir.join("servers").join(&node_id),
            id: node_id,
            shard,
            engine: primary.engine,
            node_type: primary.node_type.clone(),
            port,
            pid: 0,
        };
        self.state
            .groups
            .get_mut(id)
            .expect("group")
            .nodes
            .insert(last + 1, node);
        self.save()?;
        self.ensure_node(id, last + 1).await?;
        if !g.cluster_mode {
            self.wait_serving(id, last + 1).await?;
        }
        Ok(())
    }

    /// Stops node `index` and forgets it (in a cluster, every other node forgets it too).
    async fn remove_node(&mut self, id: &str, index: usize) -> Result<()> {
        let g = self.group(id)?.clone();
        let node = g.nodes[index].clone();
        let forgotten = if g.cluster_mode {
            Some(cluster::myself(&self.access(&g, &node)?).await?.id)
        } else {
            None
        };
        server::stop(node.pid, node.port).await;
        self.state
            .groups
            .get_mut(id)
            .expect("group")
            .nodes
            .remove(index);
        self.save()?;
        self.ctx.note(format!(
            "{}: stopped and removed (port {})",
            node.id, node.port
        ));
        if let Some(forgotten) = forgotten {
            let g = self.group(id)?.clone();
            for n in &g.nodes {
                let a = self.access(&g, n)?;
                let known = cluster::nodes_seen(&a).await?;
                if known.iter().any(|k| k.id == forgotten) {
                    server::command::<()>(&a, redis::cmd("CLUSTER").arg("FORGET").arg(&forgotten))
                        .await?;
                }
            }
            let wait = Wait::new(format!("every node of {id} to forget {}", node.id));
            loop {
                let mut seen = false;
                for n in &g.nodes {
                    let a = self.access(&g, n)?;
                    seen |= cluster::nodes_seen(&a)
                        .await?
                        .iter()
                        .any(|k| k.id == forgotten);
                }
                if !seen {
                    break;
                }
                wait.tick().await?;
            }
        }
        Ok(())
    }
}

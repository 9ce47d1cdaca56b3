//! An engine change rehearsed in AWS's sequence, shard by shard: the replicas are replaced
//! first (each saves its data, stops, and starts again with the other engine's binary on
//! the same port and data), then an upgraded replica takes over (in a cluster `CLUSTER
//! FAILOVER`, or its steps without the vote while the nodes run both engines; a `REPLICAOF`
//! swap otherwise), then the old primary is replaced as a replica.
//! Only a shard without replicas restarts its primary in place.
//!
//! Clients of a group with replicas so see a failover, as on ElastiCache, not a restart:
//! that is the client impact the rehearsal is there to measure.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SYNC_DEADLINE;
use super::cluster::Wait;
use super::server::{self, Engine};
use super::state::Group;
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{GroupInfo, ModifyEngine};

#[async_trait]
impl Handles<ModifyEngine> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyEngine) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!(
                    "shard by shard of {}: each replica SHUTDOWN SAVE and start {}-server on the same port and data, then fail over to an upgraded replica (in a cluster CLUSTER FAILOVER, or with the nodes on both engines writes paused until it has them all and CLUSTER FAILOVER TAKEOVER; a REPLICAOF swap otherwise), then replace the old primary; a shard without replicas restarts in place",
                    request.replication_group, request.engine
                ),
            )
            .param("engine_version", &request.engine_version)
            .destructive(),
            Operation::wait("until each node serves again (and replicas are linked)"),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyEngine,
    ) -> Result<GroupInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        if let Some(p) = &request.parameter_group {
            ctx.note(format!(
                "parameter group {p} has no local equivalent; the servers keep their settings"
            ));
        }
        Ok(run
            .modify_engine(
                &request.replication_group,
                &request.engine,
                request.engine_version.as_deref(),
            )
            .await?)
    }
}

impl Run<'_, '_> {
    async fn modify_engine(
        &mut self,
        id: &str,
        engine: &str,
        version: Option<&str>,
    ) -> Result<GroupInfo> {
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
        let wanted = Wanted {
            engine,
            node_type: None,
        };
        for shard in 0..g.shard_count() {
            self.change_shard(id, shard, &wanted).await?;
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
        Ok(info)
    }

    /// One shard onto `wanted`: replicas, failover, old primary (or a lone primary in
    /// place). Safe to repeat after a crash: nodes already as wanted are left alone, and a
    /// primary already as wanted needs no failover.
    pub(super) async fn change_shard(
        &mut self,
        id: &str,
        shard: usize,
        wanted: &Wanted,
    ) -> Result<()> {
        let members = self.group(id)?.shard_nodes(shard);
        let primary = members[0];
        if members.len() == 1 {
            return self.replace_node(id, primary, wanted).await;
        }
        for &replica in &members[1..] {
            self.replace_node(id, replica, wanted).await?;
        }
        if self.runs(id, primary, wanted).await? {
            return Ok(());
        }
        let target = members[1];
        self.fail_over(id, shard, target).await?;
        self.replace_node(id, target, wanted).await
    }

    /// The replica `target` of shard `shard` becomes its primary (`CLUSTER FAILOVER` in a
    /// cluster, a `REPLICAOF` swap otherwise) and takes the old primary's place first in
    /// the shard; returns the old and the new primary's node ids.
    pub(super) async fn fail_over(
        &mut self,
        id: &str,
        shard: usize,
        target: usize,
    ) -> Result<(String, String)> {
        let g = self.group(id)?.clone();
        let members = g.shard_nodes(shard);
        let primary = members[0];
        let (old, new) = (g.nodes[primary].id.clone(), g.nodes[target].id.clone());
        if g.cluster_mode {
            self.cluster_failover(id, primary, target).await?;
        } else {
            self.replicaof_swap(id, &members, target).await?;
        }
        self.state
            .groups
            .get_mut(id)
            .expect("group")
            .nodes
            .swap(primary, target);
        self.save()?;
        self.ctx.note(format!(
            "{}: failed over from {old} to {new} ({}), now {new} is the primary",
            shard_name(&g, shard),
            match (g.cluster_mode, mixed(&g, target)) {
                (true, true) => "writes paused until it had them all, CLUSTER FAILOVER TAKEOVER",
                (true, false) => "CLUSTER FAILOVER",
                (false, _) => "REPLICAOF swap",
            }
        ));
        Ok((old, new))
    }

    /// Whether node `index` runs as `wanted` right now.
    async fn runs(&self, id: &str, index: usize, wanted: &Wanted) -> Result<bool> {
        let g = self.group(id)?;
        let node = &g.nodes[index];
        let access = self.access(g, node)?;
        if node.engine != wanted.engine
            || (wanted.node_type.is_some() && node.node_type != wanted.node_type)
            || !server::is_alive(node.pid, &access).await
        {
            return Ok(false);
        }
        let (running, _) = server::engine_of(&server::info(&access, "server").await?);
        Ok(running == wanted.engine)
    }

    /// Node `index` saves its data, stops, and starts again as `wanted` on the same port
    /// and data; waits until it serves (a replica: linked to its primary).
    async fn replace_node(&mut self, id: &str, index: usize, wanted: &Wanted) -> Result<()> {
        let g = self.group(id)?.clone();
        let node = g.nodes[index].clone();
        if self.runs(id, index, wanted).await? {
            self.ctx
                .note(format!("{} already runs as {wanted}", node.id));
            return Ok(());
        }
        let access = self.access(&g, &node)?;
        if server::is_alive(node.pid, &access).await {
            self.ctx.note(format!(
                "{}: saving its data and stopping {}",
                node.id, node.engine
            ));
            server::save_and_stop(node.pid, &access).await?;
        }
        {
            let n = &mut self.state.groups.get_mut(id).expect("group").nodes[index];
            n.engine = wanted.engine;
            if wanted.node_type.is_some() {
                n.node_type = wanted.node_type.clone();
            }
        }
        self.save()?;
        self.ensure_node(id, index).await?;
        self.wait_serving(id, index).await
    }

    /// `CLUSTER FAILOVER` on the replica `target`, and waits until it is its shard's
    /// primary and `primary` its replica.
    async fn cluster_failover(&self, id: &str, primary: usize, target: usize) -> Result<()> {
        let g = self.group(id)?;
        let (old, new) = (
            self.access(g, &g.nodes[primary])?,
            self.access(g, &g.nodes[target])?,
        );
        let wait = Wait::new(format!(
            "{} to take over from {}",
            g.nodes[target].id, g.nodes[primary].id
        ));
        if mixed(g, target) {
            return self.takeover(g, primary, target, &wait).await;
        }
        // A manual failover the primary does not take part in (it may not have seen the
        // restarted replica yet) is given up silently by the replica: ask again.
        let mut asked: Option<Instant> = None;
        while !(role(&new).await? == "master" && role(&old).await? == "slave") {
            if asked.is_none_or(|t| t.elapsed() > FAILOVER_RETRY) {
                server::command::<()>(&new, redis::cmd("CLUSTER").arg("FAILOVER")).await?;
                asked = Some(Instant::now());
            }
            wait.tick().await?;
        }
        Ok(())
    }

    /// The failover of a cluster whose nodes run both engines. Their failover votes do not
    /// reliably count across engines (a Valkey 9 replica has counted 1 of 3 grants from
    /// Redis 7 and Valkey primaries), and a manual failover that misses its majority pauses
    /// the primary's writes for its whole 5 s timeout, a stall ElastiCache's engine change
    /// does not have. So the steps a manual failover takes are taken here, without the
    /// vote: writes paused on the primary until the replica has all of them, `CLUSTER
    /// FAILOVER TAKEOVER` on the replica, and the pause lifted once the old primary has
    /// turned replica (a write it took before would be lost).
    async fn takeover(&self, g: &Group, primary: usize, target: usize, wait: &Wait) -> Result<()> {
        let old = self.access(g, &g.nodes[primary])?;
        let new = self.access(g, &g.nodes[target])?;
        if role(&new).await? != "master" {
            pause_writes(&old).await?;
            let paused = Instant::now();
            caught_up(&old, &new, wait).await?;
            server::command::<()>(&new, redis::cmd("CLUSTER").arg("FAILOVER").arg("TAKEOVER"))
                .await?;
            while role(&old).await? != "slave" {
                if paused.elapsed() > PROMOTION_PAUSE {
                    return Err(LocalError::Timeout(format!(
                        "{} took over, but {} still had not turned replica when its writes \
                         were let through again after {} s: writes it took since may be lost",
                        g.nodes[target].id,
                        g.nodes[primary].id,
                        PROMOTION_PAUSE.as_secs()
                    )));
                }
                wait.tick().await?;
            }
        }
        server::command::<()>(&old, &redis::cmd("CLIENT").arg("UNPAUSE").to_owned()).await?;
        while !(role(&new).await? == "master" && role(&old).await? == "slave") {
            wait.tick().await?;
        }
        Ok(())
    }

    /// Promotes the replica `target` of a group without cluster mode: writes paused on the
    /// primary until the replica has all of them, `REPLICAOF NO ONE` on it, and every other
    /// node of the shard (the old primary too) `REPLICAOF` it.
    async fn replicaof_swap(&self, id: &str, members: &[usize], target: usize) -> Result<()> {
        let g = self.group(id)?;
        let old = self.access(g, &g.nodes[members[0]])?;
        let new = self.access(g, &g.nodes[target])?;
        pause_writes(&old).await?;
        // Promoted already by a run that stopped part-way: it had every write then.
        if role(&new).await? != "master" {
            let wait = Wait::new(format!(
                "{} to have every write of the primary",
                g.nodes[target].id
            ));
            caught_up(&old, &new, &wait).await?;
            server::command::<()>(&new, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
        }
        for &m in members.iter().filter(|&&m| m != target) {
            let a = self.access(g, &g.nodes[m])?;
            server::command::<()>(&a, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(new.port))
                .await?;
        }
        server::command::<()>(&old, &redis::cmd("CLIENT").arg("UNPAUSE").to_owned()).await?;
        Ok(())
    }

    /// Waits until node `index` has loaded its data (and, for a replica, is linked).
    pub(super) async fn wait_serving(&self, id: &str, index: usize) -> Result<()> {
        let g = self.group(id)?;
        let node = &g.nodes[index];
        let access = self.access(g, node)?;
        let replica = g.primary_of(index) != index;
        let deadline = Instant::now() + SYNC_DEADLINE;
        loop {
            let persistence = server::info(&access, "persistence").await?;
            let loaded = persistence.get("loading").is_some_and(|v| v == "0");
            let linked = !replica
                || server::info(&access, "replication")
                    .await?
                    .get("master_link_status")
                    .is_some_and(|v| v == "up");
            if loaded && linked {
                self.ctx.note(format!(
                    "{} serves: data loaded{}",
                    node.id,
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
                    "{} did not serve again within {} s",
                    node.id,
                    SYNC_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What a node is restarted as: an engine, and the node type it stands for (none: the
/// node type stays as it is).
pub(super) struct Wanted {
    pub engine: Engine,
    pub node_type: Option<String>,
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node_type {
            Some(t) => write!(f, "{} on {t}", self.engine),
            None => write!(f, "{}", self.engine),
        }
    }
}

/// Whether some node of `g` runs another engine than node `target` (see
/// [`Run::takeover`]).
fn mixed(g: &Group, target: usize) -> bool {
    g.nodes.iter().any(|n| n.engine != g.nodes[target].engine)
}

/// How long a promotion pauses the old primary's writes at most.
const PROMOTION_PAUSE: Duration = Duration::from_secs(10);

/// Pauses the writes of the primary on `old` for at most [`PROMOTION_PAUSE`].
async fn pause_writes(old: &server::Access) -> Result<()> {
    server::command::<()>(
        old,
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(PROMOTION_PAUSE.as_millis() as u64)
            .arg("WRITE"),
    )
    .await?;
    Ok(())
}

/// Waits until the replica on `new` has every write the primary on `old` had.
async fn caught_up(old: &server::Access, new: &server::Access, wait: &Wait) -> Result<()> {
    let want = offset(old, "master_repl_offset").await?;
    while offset(new, "slave_repl_offset").await? < want {
        wait.tick().await?;
    }
    Ok(())
}

/// How long a `CLUSTER FAILOVER` may go unanswered before it is asked again.
const FAILOVER_RETRY: Duration = Duration::from_secs(6);

/// `shard 0002` in a cluster, the group's id otherwise.
pub(super) fn shard_name(g: &Group, shard: usize) -> String {
    match g.shards.get(shard) {
        Some(s) if g.cluster_mode => format!("{} shard {}", g.id, s.id),
        _ => g.id.clone(),
    }
}

/// `role` of INFO replication: `master` or `slave`.
async fn role(access: &server::Access) -> Result<String> {
    Ok(server::info(access, "replication")
        .await?
        .get("role")
        .cloned()
        .unwrap_or_default())
}

async fn offset(access: &server::Access, field: &str) -> Result<u64> {
    Ok(server::info(access, "replication")
        .await?
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

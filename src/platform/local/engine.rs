//! An engine change rehearsed: node after node, replicas first, each server saves its data,
//! stops, and starts again with the other engine's binary on the same port and data.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SYNC_DEADLINE;
use super::server::{self, Engine};
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
                    "replicas first, then the primary of {}: SHUTDOWN SAVE, start {}-server on the same port and data",
                    request.replication_group, request.engine
                ),
            )
            .param("engine_version", &request.engine_version)
            .destructive(),
            Operation::new("wait", "until each node serves again (and replicas are linked)"),
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
        Ok(info)
    }

    /// Waits until the node on `port` has loaded its data (and, for a replica, is linked).
    pub(super) async fn wait_serving(&self, node: &str, port: u16, replica: bool) -> Result<()> {
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
}

//! `snapshot.create` / `snapshot.restore`: a backup before a risky step, and seed 004's way
//! to cut downtime (a new Valkey group made from a Redis group's snapshot).

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::platform::ControlOp;

pub const CREATE: ActionSpec = ActionSpec {
    name: "snapshot.create",
    summary: "Snapshot a replication group and wait until the snapshot is available.",
    outputs: &["snapshot", "group", "engine", "engine_version", "file"],
    effect: Effect::Changes,
    build: super::build::<Create>,
    schema: super::schema::<Create>,
};

pub const RESTORE: ActionSpec = ActionSpec {
    name: "snapshot.restore",
    summary: "Create a new replication group from a snapshot and wait until it is available.",
    outputs: &[
        "id",
        "status",
        "engine",
        "engine_version",
        "primary_endpoint",
        "nodes",
    ],
    effect: Effect::Changes,
    build: super::build::<Restore>,
    schema: super::schema::<Restore>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// The replication group to back up.
    replication_group: String,
    /// The snapshot's name.
    snapshot: String,
}

impl Create {
    fn op(&self) -> ControlOp {
        ControlOp::CreateSnapshot {
            group: self.replication_group.clone(),
            snapshot: self.snapshot.clone(),
        }
    }
}

#[async_trait]
impl Action for Create {
    fn effect(&self) -> Effect {
        Effect::Changes
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&self.op())
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.platform.apply(ctx, &self.op()).await
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The snapshot to load.
    snapshot: String,
    /// The id of the new replication group.
    replication_group: String,
    /// `valkey` or `redis`.
    engine: String,
    /// E.g. `8.2`.
    #[serde(default)]
    engine_version: Option<String>,
    /// Replicas besides the primary.
    #[serde(default = "one")]
    replicas: u32,
}

fn one() -> u32 {
    1
}

impl Restore {
    fn op(&self) -> ControlOp {
        ControlOp::RestoreSnapshot {
            snapshot: self.snapshot.clone(),
            group: self.replication_group.clone(),
            engine: self.engine.clone(),
            engine_version: self.engine_version.clone(),
            replicas: self.replicas,
        }
    }
}

#[async_trait]
impl Action for Restore {
    fn effect(&self) -> Effect {
        Effect::Changes
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&self.op())
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.platform.apply(ctx, &self.op()).await
    }
}

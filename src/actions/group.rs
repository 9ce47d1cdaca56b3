//! `group.describe` / `group.delete`: what a replication group looks like now (status,
//! engine, nodes), so later steps can use its endpoints and assertions can check its engine;
//! and removing a group a runbook made.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::platform::ControlOp;

pub const SPEC: ActionSpec = ActionSpec {
    name: "group.describe",
    summary: "Describe a replication group: status, engine, version, primary endpoint, nodes.",
    outputs: &[
        "id",
        "status",
        "engine",
        "engine_version",
        "primary_endpoint",
        "nodes",
    ],
    effect: Effect::Observes,
    build: super::build::<Describe>,
    schema: super::schema::<Describe>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Describe {
    /// The replication group id.
    replication_group: String,
}

impl Describe {
    fn op(&self) -> ControlOp {
        ControlOp::DescribeGroup {
            group: self.replication_group.clone(),
        }
    }
}

#[async_trait]
impl Action for Describe {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&self.op())
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.platform.apply(ctx, &self.op()).await
    }
}

pub const DELETE: ActionSpec = ActionSpec {
    name: "group.delete",
    summary: "Delete a replication group a runbook made (e.g. one restored from a snapshot).",
    outputs: &[],
    effect: Effect::Destructive,
    build: super::build::<Delete>,
    schema: super::schema::<Delete>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// The replication group id.
    replication_group: String,
}

impl Delete {
    fn op(&self) -> ControlOp {
        ControlOp::DeleteGroup {
            group: self.replication_group.clone(),
        }
    }
}

#[async_trait]
impl Action for Delete {
    fn effect(&self) -> Effect {
        Effect::Destructive
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&self.op())
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.platform.apply(ctx, &self.op()).await
    }
}

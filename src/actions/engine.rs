//! `engine.modify`: the in-place engine change of a replication group (Redis OSS → Valkey),
//! the way AWS documents it for ElastiCache; locally, node by node, replicas first.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::platform::ControlOp;

pub const SPEC: ActionSpec = ActionSpec {
    name: "engine.modify",
    summary: "Change a replication group's engine and/or version in place and wait until it is available.",
    outputs: &[
        "id",
        "status",
        "engine",
        "engine_version",
        "primary_endpoint",
        "nodes",
    ],
    effect: Effect::Destructive,
    build: super::build::<Modify>,
    schema: super::schema::<Modify>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Modify {
    /// The replication group id.
    replication_group: String,
    /// `valkey` or `redis`.
    engine: String,
    /// E.g. `8.2`.
    #[serde(default)]
    engine_version: Option<String>,
    /// The cache parameter group for the new engine (aws).
    #[serde(default)]
    parameter_group: Option<String>,
}

impl Modify {
    fn op(&self) -> ControlOp {
        ControlOp::ModifyEngine {
            group: self.replication_group.clone(),
            engine: self.engine.clone(),
            engine_version: self.engine_version.clone(),
            parameter_group: self.parameter_group.clone(),
        }
    }
}

#[async_trait]
impl Action for Modify {
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

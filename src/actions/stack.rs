//! `stack.deploy` / `stack.delete`: the CloudFormation stack a runbook works in.
//!
//! On aws the template is deployed; on the local target the same template is read and its
//! replication groups and self-hosted servers become real server processes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::platform::ControlOp;

pub const DEPLOY: ActionSpec = ActionSpec {
    name: "stack.deploy",
    summary: "Create or update a CloudFormation stack (local: start its servers); outputs are the stack's Outputs.",
    outputs: &["*"],
    effect: Effect::Changes,
    build: super::build::<Deploy>,
    schema: super::schema::<Deploy>,
};

pub const DELETE: ActionSpec = ActionSpec {
    name: "stack.delete",
    summary: "Delete a stack and everything it made (local: stop its servers).",
    outputs: &["deleted_groups"],
    effect: Effect::Destructive,
    build: super::build::<Delete>,
    schema: super::schema::<Delete>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The stack's name.
    stack_name: String,
    /// The template file, relative to the runbook's folder.
    template: PathBuf,
    /// Template parameters.
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

impl Deploy {
    fn op(&self, base: &std::path::Path) -> ControlOp {
        ControlOp::DeployStack {
            stack_name: self.stack_name.clone(),
            template: base.join(&self.template),
            parameters: self.parameters.clone(),
        }
    }
}

#[async_trait]
impl Action for Deploy {
    fn effect(&self) -> Effect {
        Effect::Changes
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&self.op(ctx.base_dir))
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.platform.apply(ctx, &self.op(ctx.base_dir)).await
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// The stack's name.
    stack_name: String,
}

impl Delete {
    fn op(&self) -> ControlOp {
        ControlOp::DeleteStack {
            stack_name: self.stack_name.clone(),
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

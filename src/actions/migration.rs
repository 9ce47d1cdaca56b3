//! `migration.test`, `migration.start`, `migration.complete`: ElastiCache's online
//! migration from a self-hosted Redis OSS (TestMigration, StartMigration, CompleteMigration).

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::ControlOp;

pub const TEST: ActionSpec = ActionSpec {
    name: "migration.test",
    summary: "Check that a replication group can migrate from a source (TestMigration).",
    outputs: &["status", "source_engine", "source_version"],
    effect: Effect::Observes,
    build: super::build::<Test>,
    schema: super::schema::<Test>,
};

pub const START: ActionSpec = ActionSpec {
    name: "migration.start",
    summary: "Start an online migration (StartMigration) and wait until the group replicates and has caught up.",
    outputs: &[
        "id",
        "status",
        "engine",
        "engine_version",
        "primary_endpoint",
        "nodes",
        "replication_offset",
    ],
    effect: Effect::Destructive,
    build: super::build::<Start>,
    schema: super::schema::<Start>,
};

pub const COMPLETE: ActionSpec = ActionSpec {
    name: "migration.complete",
    summary: "Complete an online migration (CompleteMigration); `force: true` stops without ensuring sync.",
    outputs: &[
        "id",
        "status",
        "engine",
        "engine_version",
        "primary_endpoint",
        "nodes",
        "forced",
    ],
    effect: Effect::Destructive,
    build: super::build::<Complete>,
    schema: super::schema::<Complete>,
};

/// The source endpoint of a migration input.
pub(super) fn source(text: &str) -> Result<Endpoint, ActionError> {
    Endpoint::parse(text).map_err(|e| ActionError::fatal(format!("source: {e}")))
}

/// What `plan` shows when the source is not an endpoint yet (it fails at run time).
fn plan_sources(text: &str) -> Vec<Endpoint> {
    Endpoint::parse(text).into_iter().collect()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Test {
    /// The ElastiCache replication group that will receive the data.
    replication_group: String,
    /// The self-hosted source, `host:port` or `redis://host:port`.
    source: String,
}

#[async_trait]
impl Action for Test {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&ControlOp::TestMigration {
            group: self.replication_group.clone(),
            sources: plan_sources(&self.source),
        })
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let op = ControlOp::TestMigration {
            group: self.replication_group.clone(),
            sources: vec![source(&self.source)?],
        };
        ctx.platform.apply(ctx, &op).await
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The ElastiCache replication group that will receive the data.
    replication_group: String,
    /// The self-hosted source, `host:port` or `redis://host:port`.
    source: String,
}

#[async_trait]
impl Action for Start {
    fn effect(&self) -> Effect {
        Effect::Destructive
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&ControlOp::StartMigration {
            group: self.replication_group.clone(),
            sources: plan_sources(&self.source),
        })
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let op = ControlOp::StartMigration {
            group: self.replication_group.clone(),
            sources: vec![source(&self.source)?],
        };
        ctx.platform.apply(ctx, &op).await
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Complete {
    /// The migrating replication group.
    replication_group: String,
    /// Stop without ensuring the group has caught up (a rollback).
    #[serde(default)]
    force: bool,
}

impl Complete {
    fn op(&self) -> ControlOp {
        ControlOp::CompleteMigration {
            group: self.replication_group.clone(),
            force: self.force,
        }
    }
}

#[async_trait]
impl Action for Complete {
    fn effect(&self) -> Effect {
        if self.force {
            Effect::Destructive
        } else {
            Effect::Changes
        }
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.explain(&self.op())
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.platform.apply(ctx, &self.op()).await
    }
}

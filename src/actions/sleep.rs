//! `sleep`: wait a fixed time (let replication settle, let the probe see a baseline).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};

pub const SPEC: ActionSpec = ActionSpec {
    name: "sleep",
    summary: "Wait for a duration.",
    outputs: super::Declared::Listed(&[]),
    effect: Effect::Observes,
    build: super::build::<Sleep>,
    schema: super::schema::<Sleep>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// How long, e.g. `500ms`, `10s`, `2m`.
    #[serde(with = "crate::duration::serde_text")]
    #[schemars(with = "String")]
    duration: Duration,
}

#[async_trait]
impl Action for Sleep {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        vec![Operation::wait(format!(
            "sleep {}",
            crate::duration::format(self.duration)
        ))]
    }

    async fn run(&self, _ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        tokio::time::sleep(self.duration).await;
        Ok(Outputs::new())
    }
}

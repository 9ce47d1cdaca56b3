//! `assert`: stop the run when a condition over earlier outputs does not hold.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};

pub const SPEC: ActionSpec = ActionSpec {
    name: "assert",
    summary: "Fail the step unless a condition is true.",
    outputs: super::Declared::Listed(&[]),
    effect: Effect::Observes,
    build: super::build::<Assert>,
    schema: super::schema::<Assert>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    /// The condition, a template that renders to `true` or `false`,
    /// e.g. `"{{ steps.verify.outputs.mismatches == 0 }}"`.
    that: bool,
    /// What the failure says.
    #[serde(default)]
    message: Option<String>,
}

#[async_trait]
impl Action for Assert {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        vec![Operation::new(
            "check",
            self.message
                .clone()
                .unwrap_or_else(|| "assert condition".into()),
        )]
    }

    async fn run(&self, _ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        if self.that {
            Ok(Outputs::new())
        } else {
            Err(ActionError::fatal(
                self.message
                    .clone()
                    .unwrap_or_else(|| "the assertion is false".into()),
            ))
        }
    }
}

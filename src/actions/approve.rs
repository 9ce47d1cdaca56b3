//! `approve`: a person says yes before the run goes on. Without a terminal to ask on it
//! fails closed: the run stops there, awaiting approval, and nothing is rolled back.

use std::io::{BufRead, IsTerminal, Write};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};

pub const SPEC: ActionSpec = ActionSpec {
    name: "approve",
    summary: "Ask a person to approve; `--yes` approves; without a terminal the run stops, awaiting approval.",
    outputs: super::Declared::Listed(&["approved_by"]),
    effect: Effect::Observes,
    build: super::build::<Approve>,
    schema: super::schema::<Approve>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The question shown to the approver.
    message: String,
}

#[async_trait]
impl Action for Approve {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        vec![Operation::new("approval", self.message.clone())]
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let mut out = Outputs::new();
        if ctx.assume_yes {
            ctx.note(format!("approved by --yes: {}", self.message));
            out.insert("approved_by".into(), "--yes".into());
            return Ok(out);
        }
        if !std::io::stdin().is_terminal() {
            return Err(ActionError::awaiting_approval(format!(
                "approval needed: {} — there is no terminal to ask on",
                self.message
            )));
        }
        // The spinner stays hidden while the person reads the question and answers.
        let answer = tokio::task::block_in_place(|| {
            ctx.progress.suspend(|| {
                let mut err = std::io::stderr();
                let _ = write!(err, "\n{} [y/N] ", self.message);
                let _ = err.flush();
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map(|_| line)
            })
        })
        .map_err(|e| ActionError::fatal(format!("cannot read the answer: {e}")))?;
        if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            out.insert("approved_by".into(), "terminal".into());
            Ok(out)
        } else {
            Err(ActionError::fatal(format!(
                "not approved: {}",
                self.message
            )))
        }
    }
}

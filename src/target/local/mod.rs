//! The local target: real `redis-server` / `valkey-server` processes on loopback.

use async_trait::async_trait;

use crate::actions::{ActionError, Operation, Outputs, StepCtx};
use crate::target::{ControlOp, Target, TargetKind};

/// Rehearsal on real server processes.
pub struct Local;

#[async_trait]
impl Target for Local {
    fn kind(&self) -> TargetKind {
        TargetKind::Local
    }

    fn explain(&self, _op: &ControlOp) -> Vec<Operation> {
        Vec::new()
    }

    async fn apply(&self, _ctx: &StepCtx<'_>, _op: &ControlOp) -> Result<Outputs, ActionError> {
        Err(ActionError::fatal("the local target is not built yet"))
    }
}

//! The aws target: ElastiCache, CloudFormation, EC2 and CloudWatch through the AWS SDK.

use async_trait::async_trait;

use crate::actions::{ActionError, Operation, Outputs, StepCtx};
use crate::target::{ControlOp, Target, TargetKind};

/// The real thing.
pub struct Aws;

#[async_trait]
impl Target for Aws {
    fn kind(&self) -> TargetKind {
        TargetKind::Aws
    }

    fn explain(&self, _op: &ControlOp) -> Vec<Operation> {
        Vec::new()
    }

    async fn apply(&self, _ctx: &StepCtx<'_>, _op: &ControlOp) -> Result<Outputs, ActionError> {
        Err(ActionError::fatal("the aws target is not built yet"))
    }
}

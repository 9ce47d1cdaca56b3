//! The control plane, behind one contract that both platforms implement.
//!
//! Actions never talk to AWS or start processes themselves: they hand a typed request of
//! the [`contract`] to the run's [`Platform`]. `local` turns it into real `redis-server` /
//! `valkey-server` processes, `aws` into AWS API calls. `plan` asks the same platform to
//! [`Handles::explain`] the request, so what `plan` prints is what `run` does.

use serde::Serialize;

use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
pub use contract::{
    CaptureMetrics, CheckMigrationTarget, CheckSnapshotExport, CompleteMigration,
    CompleteServerlessMigration, CreateServerless, CreateServerlessSnapshot, CreateSnapshot,
    DeleteGroup, DeleteServerless, DeleteStack, DeployStack, DescribeGroup, DescribeServerless,
    ExportServerlessSnapshot, ExportSnapshot, GroupInfo, Handles, ImportSnapshot, ModifyEngine,
    ModifyServerlessEngine, NodeInfo, PrepareServerlessMigration, Request, RestoreSnapshot,
    ShardInfo, StartMigration, StartServerlessMigration, StopServerlessMigration, TestMigration,
};
pub use contract::{CheckHealth, FailoverGroup, ModifyNodeType, ModifyParameters, ModifyReplicas};

/// Which control plane a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// Real server processes on loopback: a rehearsal.
    Local,
    /// AWS ElastiCache, CloudFormation, EC2 and CloudWatch.
    Aws,
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlatformKind::Local => "local",
            PlatformKind::Aws => "aws",
        })
    }
}

/// A control plane: local processes or AWS. It serves every request of the [`contract`],
/// each with its own typed reply.
pub trait Platform:
    Handles<DeployStack>
    + Handles<DeleteStack>
    + Handles<DescribeGroup>
    + Handles<DeleteGroup>
    + Handles<CheckMigrationTarget>
    + Handles<TestMigration>
    + Handles<StartMigration>
    + Handles<CompleteMigration>
    + Handles<ModifyEngine>
    + Handles<CreateSnapshot>
    + Handles<RestoreSnapshot>
    + Handles<CaptureMetrics>
    + Handles<DescribeServerless>
    + Handles<PrepareServerlessMigration>
    + Handles<StartServerlessMigration>
    + Handles<StopServerlessMigration>
    + Handles<CompleteServerlessMigration>
    + Handles<ModifyServerlessEngine>
    + Handles<CreateServerlessSnapshot>
    + Handles<ExportServerlessSnapshot>
    + Handles<CreateServerless>
    + Handles<DeleteServerless>
    + Handles<ExportSnapshot>
    + Handles<CheckSnapshotExport>
    + Handles<ImportSnapshot>
    + Handles<FailoverGroup>
    + Handles<ModifyReplicas>
    + Handles<ModifyNodeType>
    + Handles<ModifyParameters>
    + Handles<CheckHealth>
{
    fn kind(&self) -> PlatformKind;
}

impl dyn Platform + '_ {
    /// Serves `request` on this platform.
    pub async fn serve<R: Request>(
        &self,
        ctx: &StepCtx<'_>,
        request: &R,
    ) -> Result<R::Reply, ActionError>
    where
        Self: Handles<R>,
    {
        Handles::<R>::call(self, ctx, request).await
    }

    /// What serving `request` would do, for `plan`.
    pub fn plan<R: Request>(&self, ctx: &PlanCtx<'_>, request: &R) -> Vec<Operation>
    where
        Self: Handles<R>,
    {
        Handles::<R>::explain(self, ctx, request)
    }
}

pub mod aws;
pub mod contract;
pub mod local;

/// How to reach the control plane, from the command line.
#[derive(Clone, Debug, Default)]
pub struct PlatformOptions {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// The control plane a run drives.
pub async fn open(kind: PlatformKind, opts: &PlatformOptions) -> anyhow::Result<Box<dyn Platform>> {
    Ok(match kind {
        PlatformKind::Local => Box::new(local::Local::new()),
        PlatformKind::Aws => {
            let aws_opts = aws::AwsOptions {
                profile: opts.profile.clone(),
                region: opts.region.clone(),
                endpoint_url: opts.endpoint_url.clone(),
            };
            Box::new(
                aws::Aws::new(&aws_opts)
                    .await
                    .map_err(|e| crate::error::invalid(e.to_string()))?,
            )
        }
    })
}

/// A platform that can only explain requests: `plan` makes no call and starts nothing.
pub fn for_plan(kind: PlatformKind) -> Box<dyn Platform> {
    match kind {
        PlatformKind::Local => Box::new(local::Local::new()),
        PlatformKind::Aws => Box::new(aws::Aws::for_plan()),
    }
}

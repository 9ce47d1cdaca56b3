//! The control plane, behind one contract that both targets implement.
//!
//! Actions never talk to AWS or start processes themselves: they describe a [`ControlOp`]
//! and hand it to the run's [`Target`]. `local` turns the op into real `redis-server` /
//! `valkey-server` processes, `aws` into AWS API calls. `plan` asks the same target to
//! [`Target::explain`] an op, so what `plan` prints is what `run` does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Serialize;

use crate::actions::{ActionError, Operation, Outputs, StepCtx};
use crate::endpoint::Endpoint;

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

/// One control-plane request. Adding one means handling it in every target.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlOp {
    /// Create or update a CloudFormation stack from a template; outputs are the stack outputs.
    DeployStack {
        stack_name: String,
        template: PathBuf,
        parameters: BTreeMap<String, String>,
    },
    /// Delete a stack and everything it made.
    DeleteStack { stack_name: String },
    /// Observe a replication group; outputs are a [`GroupInfo`].
    DescribeGroup { group: String },
    /// The target-side prerequisites of an online migration (status, Multi-AZ,
    /// in-transit encryption off, shard count, network reachability of the source).
    CheckMigrationTarget {
        group: String,
        sources: Vec<Endpoint>,
    },
    /// elasticache:TestMigration.
    TestMigration {
        group: String,
        sources: Vec<Endpoint>,
    },
    /// elasticache:StartMigration, then wait until the group replicates and has caught up.
    StartMigration {
        group: String,
        sources: Vec<Endpoint>,
    },
    /// elasticache:CompleteMigration (`force` stops without ensuring sync).
    CompleteMigration { group: String, force: bool },
    /// elasticache:ModifyReplicationGroup with a new engine and/or version; waits for `available`.
    ModifyEngine {
        group: String,
        engine: String,
        engine_version: Option<String>,
        parameter_group: Option<String>,
    },
    /// elasticache:CreateSnapshot of a group; waits until the snapshot is available.
    CreateSnapshot { group: String, snapshot: String },
    /// A new replication group seeded from a snapshot (elasticache:CreateReplicationGroup
    /// with SnapshotName); waits for `available`.
    RestoreSnapshot {
        snapshot: String,
        group: String,
        engine: String,
        engine_version: Option<String>,
        replicas: u32,
    },
    /// Delete a replication group made by a runbook.
    DeleteGroup { group: String },
    /// Metrics of a group's nodes over the run's steps (CloudWatch GetMetricData on aws).
    CaptureMetrics { group: String, metrics: Vec<String> },
}

/// What a replication group looks like right now, as actions' outputs carry it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct GroupInfo {
    pub id: String,
    pub status: String,
    pub engine: String,
    pub engine_version: String,
    /// `host:port` of the primary endpoint.
    pub primary_endpoint: String,
    pub nodes: Vec<NodeInfo>,
}

/// One node of a replication group.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// `primary` or `replica`.
    pub role: String,
    /// `host:port`.
    pub endpoint: String,
}

/// A control plane: local processes or AWS.
#[async_trait]
pub trait Platform: Send + Sync {
    fn kind(&self) -> PlatformKind;

    /// What `apply` would do for `op`, without doing any of it.
    fn explain(&self, op: &ControlOp) -> Vec<Operation>;

    /// Observes the current state, does what is missing, waits until done.
    /// Safe to call again after a crash part-way through (resume relies on it).
    async fn apply(&self, ctx: &StepCtx<'_>, op: &ControlOp) -> Result<Outputs, ActionError>;
}

pub mod aws;
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

/// A target that can only explain ops: `plan` makes no call and starts nothing.
pub fn for_plan(kind: PlatformKind) -> Box<dyn Platform> {
    match kind {
        PlatformKind::Local => Box::new(local::Local::new()),
        PlatformKind::Aws => Box::new(aws::Aws::for_plan()),
    }
}

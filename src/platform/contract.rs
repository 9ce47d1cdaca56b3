//! The contract between actions and the control planes: one request type per operation,
//! whose fields are the action's inputs, and one reply type both platforms return.
//!
//! A platform serves an operation by implementing [`Handles`] for its request, and
//! [`Platform`](super::Platform) requires every one of them, so the compiler makes local and
//! aws answer each request with the same type. The action that forwards a request declares
//! its outputs from the reply's JSON schema, so `plan` checks `steps.X.outputs.Y` against
//! what both platforms really return.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::actions::{ActionError, Effect, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;

/// One control-plane operation: the request (the action's inputs) and its reply.
pub trait Request: DeserializeOwned + JsonSchema + Debug + Send + Sync + 'static {
    /// What the platform answers; serialized, it is the step's outputs.
    type Reply: Serialize + JsonSchema + Send;

    /// The most this operation changes, for `plan` when the inputs are not known yet.
    const EFFECT: Effect;

    /// How much this request changes (may depend on its fields, e.g. `force: true`).
    fn effect(&self) -> Effect {
        Self::EFFECT
    }
}

/// A control plane that serves request `R`.
#[async_trait]
pub trait Handles<R: Request>: Send + Sync {
    /// The calls `call` would make for `request`, without making any of them.
    fn explain(&self, ctx: &PlanCtx<'_>, request: &R) -> Vec<Operation>;

    /// Observes the current state, does what is missing, waits until done. Safe to call
    /// again after a crash part-way through (resume relies on it).
    async fn call(&self, ctx: &StepCtx<'_>, request: &R) -> Result<R::Reply, ActionError>;
}

/// The self-hosted source of a migration request, `host:port` or `redis://host:port`.
fn parse_source(text: &str) -> Result<Endpoint, ActionError> {
    Endpoint::parse(text).map_err(|e| ActionError::fatal(format!("source: {e}")))
}

// ---- stacks ------------------------------------------------------------------------

/// `stack.deploy`: create or update a CloudFormation stack (locally: start its servers).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployStack {
    /// The stack's name.
    pub stack_name: String,
    /// The template file, relative to the runbook's folder.
    pub template: PathBuf,
    /// Template parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// A deployed stack: its own outputs (an open map: any output name of the template) plus
/// its name, id and status.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StackDeployed {
    pub stack_name: String,
    pub stack_id: String,
    /// `CREATE_COMPLETE`, `UPDATE_COMPLETE` or `IMPORT_COMPLETE`.
    pub stack_status: String,
    /// The template's `Outputs`, by name.
    #[serde(flatten)]
    pub outputs: BTreeMap<String, String>,
}

impl Request for DeployStack {
    type Reply = StackDeployed;
    const EFFECT: Effect = Effect::Changes;
}

/// `stack.delete`: delete a stack and everything it made (locally: stop its servers).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteStack {
    /// The stack's name.
    pub stack_name: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StackDeleted {
    pub stack_name: String,
    /// False when there was no such stack to delete.
    pub deleted: bool,
}

impl Request for DeleteStack {
    type Reply = StackDeleted;
    const EFFECT: Effect = Effect::Destructive;
}

// ---- groups ------------------------------------------------------------------------

/// What a replication group looks like right now.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct GroupInfo {
    pub id: String,
    pub status: String,
    pub engine: String,
    pub engine_version: String,
    /// `host:port` of the primary endpoint (of the configuration endpoint in cluster mode).
    pub primary_endpoint: String,
    pub nodes: Vec<NodeInfo>,
    /// Whether the group is sharded (cluster mode enabled).
    pub cluster_mode: bool,
    /// `host:port` of the configuration endpoint, in cluster mode.
    pub configuration_endpoint: Option<String>,
    /// The node groups: one without cluster mode.
    pub shards: Vec<ShardInfo>,
    /// In-transit encryption: clients connect with TLS (`rediss://`).
    pub tls: bool,
    /// Clients authenticate (an AUTH token or a user group).
    pub auth: bool,
}

/// One shard (node group) of a replication group.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ShardInfo {
    /// ElastiCache's node group id, `0001`, …
    pub id: String,
    /// The hash slots it serves, `0-5461` (`0-16383` without cluster mode).
    pub slots: String,
    /// `host:port` of its primary.
    pub primary_endpoint: String,
    /// `host:port` of each of its replicas.
    pub replicas: Vec<String>,
}

/// One node of a replication group.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfo {
    pub id: String,
    /// `primary` or `replica`.
    pub role: String,
    /// `host:port`.
    pub endpoint: String,
}

/// `group.describe`: status, engine, version, primary endpoint and nodes of a group.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeGroup {
    /// The replication group id.
    pub replication_group: String,
}

impl Request for DescribeGroup {
    type Reply = GroupInfo;
    const EFFECT: Effect = Effect::Observes;
}

/// `group.delete`: remove a group a runbook made (e.g. one restored from a snapshot).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteGroup {
    /// The replication group id.
    pub replication_group: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupDeleted {
    pub replication_group: String,
    /// False when there was no such group to delete.
    pub deleted: bool,
}

impl Request for DeleteGroup {
    type Reply = GroupDeleted;
    const EFFECT: Effect = Effect::Destructive;
}

// ---- online migration --------------------------------------------------------------

/// One prerequisite of an online migration, checked.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        }
    }
}

/// The target-side prerequisites of an online migration (status, Multi-AZ, in-transit
/// encryption off, shard count, the source reachable from the target). Asked by
/// `migration.preflight`, not an action of its own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckMigrationTarget {
    /// The replication group that will receive the data.
    pub replication_group: String,
    /// The self-hosted source, `host:port` or `redis://host:port`.
    pub source: String,
}

impl CheckMigrationTarget {
    pub fn source(&self) -> Result<Endpoint, ActionError> {
        parse_source(&self.source)
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TargetChecks {
    pub checks: Vec<Check>,
}

impl Request for CheckMigrationTarget {
    type Reply = TargetChecks;
    const EFFECT: Effect = Effect::Observes;
}

/// `migration.test`: can the group migrate from the source (elasticache:TestMigration).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMigration {
    /// The ElastiCache replication group that will receive the data.
    pub replication_group: String,
    /// The self-hosted source, `host:port` or `redis://host:port`.
    pub source: String,
}

impl TestMigration {
    pub fn source(&self) -> Result<Endpoint, ActionError> {
        parse_source(&self.source)
    }
}

/// A passed migration test (a failed one fails the step).
#[derive(Debug, Serialize, JsonSchema)]
pub struct MigrationTested {
    #[serde(flatten)]
    pub group: GroupInfo,
    /// What the test reported, oldest first (ElastiCache's events; locally, what the
    /// source answered).
    pub events: Vec<String>,
}

impl Request for TestMigration {
    type Reply = MigrationTested;
    const EFFECT: Effect = Effect::Observes;
}

/// `migration.start`: start an online migration and wait until the group replicates and
/// has caught up.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartMigration {
    /// The ElastiCache replication group that will receive the data.
    pub replication_group: String,
    /// The self-hosted source, `host:port` or `redis://host:port`.
    pub source: String,
}

impl StartMigration {
    pub fn source(&self) -> Result<Endpoint, ActionError> {
        parse_source(&self.source)
    }
}

/// The group's primary as a replica of the source, read over the data plane.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Replication {
    /// False when the group's primary could not be reached to follow the sync (no tunnel):
    /// the group's status alone says it migrates, and the other fields are empty.
    pub checked: bool,
    /// `up` once linked.
    pub master_link_status: String,
    /// The source as the primary replicates from it.
    pub master_host: String,
    /// The replication offset the primary had reached.
    pub offset: u64,
    /// Why the sync was not followed, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Replication {
    /// The sync could not be followed, for the reason given.
    pub fn unchecked(why: impl Into<String>) -> Replication {
        Replication {
            checked: false,
            master_link_status: String::new(),
            master_host: String::new(),
            offset: 0,
            why: Some(why.into()),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MigrationStarted {
    #[serde(flatten)]
    pub group: GroupInfo,
    pub replication: Replication,
}

impl Request for StartMigration {
    type Reply = MigrationStarted;
    const EFFECT: Effect = Effect::Destructive;
}

/// `migration.complete`: end an online migration; `force: true` stops without ensuring
/// sync (a rollback).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteMigration {
    /// The migrating replication group.
    pub replication_group: String,
    /// Stop without ensuring the group has caught up (a rollback).
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MigrationCompleted {
    #[serde(flatten)]
    pub group: GroupInfo,
    /// True when it was asked to stop without ensuring sync.
    pub forced: bool,
}

impl Request for CompleteMigration {
    type Reply = MigrationCompleted;
    const EFFECT: Effect = Effect::Destructive;

    fn effect(&self) -> Effect {
        if self.force {
            Effect::Destructive
        } else {
            Effect::Changes
        }
    }
}

// ---- engine ------------------------------------------------------------------------

/// `engine.modify`: change a group's engine and/or version in place, wait until available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyEngine {
    /// The replication group id.
    pub replication_group: String,
    /// `valkey` or `redis`.
    pub engine: String,
    /// E.g. `8.2`.
    #[serde(default)]
    pub engine_version: Option<String>,
    /// The cache parameter group for the new engine (aws).
    #[serde(default)]
    pub parameter_group: Option<String>,
}

impl Request for ModifyEngine {
    type Reply = GroupInfo;
    const EFFECT: Effect = Effect::Destructive;
}

// ---- snapshots ---------------------------------------------------------------------

/// `snapshot.create`: snapshot a group and wait until the snapshot is available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// The replication group to back up.
    pub replication_group: String,
    /// The snapshot's name.
    pub snapshot: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotInfo {
    pub snapshot: String,
    /// The group it was taken of.
    pub group: String,
    /// `available`.
    pub status: String,
    /// The engine and version that wrote it.
    pub engine: String,
    pub engine_version: String,
}

impl Request for CreateSnapshot {
    type Reply = SnapshotInfo;
    const EFFECT: Effect = Effect::Changes;
}

/// `snapshot.restore`: a new group made from a snapshot, waited for until available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreSnapshot {
    /// The snapshot to load.
    pub snapshot: String,
    /// The id of the new replication group.
    pub replication_group: String,
    /// `valkey` or `redis`.
    pub engine: String,
    /// E.g. `8.2`.
    #[serde(default)]
    pub engine_version: Option<String>,
    /// Replicas besides the primary.
    #[serde(default = "one")]
    pub replicas: u32,
}

fn one() -> u32 {
    1
}

impl Request for RestoreSnapshot {
    type Reply = GroupInfo;
    const EFFECT: Effect = Effect::Changes;
}

// ---- metrics -----------------------------------------------------------------------

/// The metrics worth capturing around an engine change or a migration.
pub const DEFAULT_METRICS: &[&str] = &[
    "CPUUtilization",
    "EngineCPUUtilization",
    "DatabaseMemoryUsagePercentage",
    "CurrConnections",
    "NewConnections",
    "CacheHits",
    "CacheMisses",
    "Evictions",
    "NetworkBytesIn",
    "NetworkBytesOut",
    "ReplicationLag",
];

/// `metrics.capture`: the group's metrics for every earlier step of the run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureMetrics {
    /// The replication group whose nodes are measured.
    pub replication_group: String,
    /// Metric names (ElastiCache's CloudWatch names); by default CPUUtilization,
    /// EngineCPUUtilization, DatabaseMemoryUsagePercentage, CurrConnections, NewConnections,
    /// CacheHits, CacheMisses, Evictions, NetworkBytesIn, NetworkBytesOut, ReplicationLag.
    #[serde(default)]
    pub metrics: Vec<String>,
}

impl CaptureMetrics {
    /// The metrics asked for, or the default ones.
    pub fn chosen(&self) -> Vec<String> {
        if self.metrics.is_empty() {
            DEFAULT_METRICS.iter().map(|m| m.to_string()).collect()
        } else {
            self.metrics.clone()
        }
    }
}

/// One metric of one node over one step.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Series {
    pub metric: String,
    pub node: String,
    pub step: String,
    /// `Sum`, `Average`, or `Sample` (one reading).
    pub stat: String,
    pub period_secs: i32,
    pub timestamps: Vec<String>,
    pub values: Vec<f64>,
}

/// When one earlier step ran.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Window {
    pub step: String,
    #[schemars(with = "String")]
    pub start: DateTime<Utc>,
    #[schemars(with = "String")]
    pub end: DateTime<Utc>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MetricsCaptured {
    pub group: String,
    pub metrics: Vec<Series>,
    pub windows: Vec<Window>,
}

impl Request for CaptureMetrics {
    type Reply = MetricsCaptured;
    const EFFECT: Effect = Effect::Observes;
}

impl From<crate::actions::metrics::StepWindow> for Window {
    fn from(w: crate::actions::metrics::StepWindow) -> Window {
        Window {
            step: w.step,
            start: w.start,
            end: w.end,
        }
    }
}

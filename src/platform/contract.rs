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

    /// The first failed check of `checks` as a step failure: `WHAT: NAME failed: DETAIL`.
    pub fn refuse_first(what: &str, checks: &[Check]) -> Result<(), ActionError> {
        match checks.iter().find(|c| !c.ok) {
            Some(failed) => Err(ActionError::fatal(format!(
                "{what}: {} failed: {}",
                failed.name, failed.detail
            ))),
            None => Ok(()),
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
    /// Replicas besides the primary (of each shard).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Shards (node groups) of the new group: as many as the snapshot holds, which is
    /// also the default; another count is refused.
    #[serde(default)]
    pub shards: Option<u32>,
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

// ---- serverless caches -------------------------------------------------------------

/// What a serverless cache looks like right now.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ServerlessInfo {
    pub name: String,
    /// `available`, `creating`, `modifying`, `deleting`, …
    pub status: String,
    pub engine: String,
    /// E.g. `8`.
    pub major_engine_version: String,
    /// E.g. `8.1.1`.
    pub full_engine_version: String,
    /// `host:port` of the one endpoint (it owns every hash slot).
    pub endpoint: String,
    /// `host:port` of the reader endpoint.
    pub reader_endpoint: String,
    /// The endpoint as a URL: `rediss://` when it serves TLS (always, on ElastiCache).
    pub url: String,
    pub tls: bool,
    pub arn: String,
    /// The migration's status as ElastiCache reports it; empty when none was prepared.
    pub migration_status: String,
}

/// `serverless.describe`: status, engine, version and endpoint of a serverless cache.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeServerless {
    /// The serverless cache's name.
    pub serverless_cache: String,
}

impl Request for DescribeServerless {
    type Reply = ServerlessInfo;
    const EFFECT: Effect = Effect::Observes;
}

/// `serverless.prepare_migration`: name the self-hosted source of an online migration into a
/// serverless cache (elasticache:PrepareMigration) and wait until the cache is ready for it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepareServerlessMigration {
    /// The serverless cache that will receive the data (available and empty).
    pub serverless_cache: String,
    /// The self-hosted source, `host:port` or `redis://host:port` (no password here: see
    /// `source_secret_arn`).
    pub source: String,
    /// A Secrets Manager secret holding the source's credentials. ElastiCache reads it
    /// (secretsmanager:GetSecretValue is granted to ElastiCache, not to this tool).
    #[serde(default)]
    pub source_secret_arn: Option<String>,
    /// The source serves TLS.
    #[serde(default)]
    pub source_tls: bool,
}

impl PrepareServerlessMigration {
    pub fn source(&self) -> Result<Endpoint, ActionError> {
        let source = parse_source(&self.source)?;
        if source.password.is_some() {
            return Err(ActionError::fatal(format!(
                "source {source}: put the source's credentials in a Secrets Manager secret and pass its ARN as source_secret_arn, not in the URL"
            )));
        }
        Ok(source)
    }
}

impl Request for PrepareServerlessMigration {
    type Reply = ServerlessInfo;
    const EFFECT: Effect = Effect::Changes;
}

/// `serverless.start_migration`: start (or restart) the data sync from the prepared source
/// (elasticache:StartMigration with ServerlessCacheName) and wait until it is in sync.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartServerlessMigration {
    /// The prepared serverless cache.
    pub serverless_cache: String,
    /// ElastiCache completes the migration by itself once in sync.
    #[serde(default)]
    pub auto_cutover: bool,
    /// Delete the cache's data before the sync begins; required to start again after
    /// `serverless.stop_migration`.
    #[serde(default)]
    pub clear_target_cache_data: bool,
}

impl Request for StartServerlessMigration {
    type Reply = ServerlessInfo;
    const EFFECT: Effect = Effect::Destructive;
}

/// `serverless.stop_migration`: pause the data sync (elasticache:StopMigration); refused
/// during the cutover.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopServerlessMigration {
    /// The migrating serverless cache.
    pub serverless_cache: String,
}

impl Request for StopServerlessMigration {
    type Reply = ServerlessInfo;
    const EFFECT: Effect = Effect::Changes;
}

/// `serverless.complete_migration`: cut over to the serverless cache
/// (elasticache:CompleteMigration with ServerlessCacheName); `force: true` stops without
/// ensuring sync (a rollback).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteServerlessMigration {
    /// The migrating serverless cache.
    pub serverless_cache: String,
    /// Stop without ensuring the cache has caught up.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerlessMigrationCompleted {
    #[serde(flatten)]
    pub cache: ServerlessInfo,
    /// True when it was asked to stop without ensuring sync.
    pub forced: bool,
}

impl Request for CompleteServerlessMigration {
    type Reply = ServerlessMigrationCompleted;
    const EFFECT: Effect = Effect::Destructive;

    fn effect(&self) -> Effect {
        if self.force {
            Effect::Destructive
        } else {
            Effect::Changes
        }
    }
}

/// `serverless.modify_engine`: change a serverless cache's engine in place
/// (elasticache:ModifyServerlessCache), wait until it is available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyServerlessEngine {
    /// The serverless cache's name.
    pub serverless_cache: String,
    /// `valkey` (from `redis`; AWS documents no way back).
    pub engine: String,
    /// E.g. `8`.
    #[serde(default)]
    pub major_engine_version: Option<String>,
}

impl Request for ModifyServerlessEngine {
    type Reply = ServerlessInfo;
    const EFFECT: Effect = Effect::Destructive;
}

/// `serverless.snapshot`: snapshot a serverless cache and wait until it is available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerlessSnapshot {
    /// The serverless cache to back up.
    pub serverless_cache: String,
    /// The snapshot's name.
    pub snapshot: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerlessSnapshotInfo {
    pub snapshot: String,
    /// What `serverless.create` takes in `snapshot_arns`.
    pub arn: String,
    pub serverless_cache: String,
    /// `available`.
    pub status: String,
    pub engine: String,
    pub major_engine_version: String,
}

impl Request for CreateServerlessSnapshot {
    type Reply = ServerlessSnapshotInfo;
    const EFFECT: Effect = Effect::Changes;
}

/// RDB files in an S3 bucket, made by an export.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotExported {
    pub snapshot: String,
    pub bucket: String,
    /// The S3 objects' ARNs (`arn:aws:s3:::bucket/key`), one per shard: what
    /// `snapshot.import` takes in `snapshot_arns`, `serverless.create` too.
    pub objects: Vec<String>,
    /// The first of `objects` (the only one of a group without cluster mode), for a
    /// runbook to pass on as one value.
    pub first_object: String,
}

impl SnapshotExported {
    pub fn new(snapshot: &str, bucket: &str, objects: Vec<String>) -> SnapshotExported {
        SnapshotExported {
            snapshot: snapshot.to_string(),
            bucket: bucket.to_string(),
            first_object: objects.first().cloned().unwrap_or_default(),
            objects,
        }
    }
}

/// `serverless.export_snapshot`: export a serverless snapshot to an S3 bucket of the same
/// region (elasticache:ExportServerlessCacheSnapshot), wait until done.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportServerlessSnapshot {
    /// The serverless snapshot.
    pub snapshot: String,
    /// The S3 bucket, in the snapshot's region, that grants ElastiCache write access.
    pub bucket: String,
}

impl Request for ExportServerlessSnapshot {
    type Reply = SnapshotExported;
    const EFFECT: Effect = Effect::Changes;
}

/// `serverless.create`: a new serverless cache, empty or seeded from snapshots
/// (`SnapshotArnsToRestore`: a serverless snapshot's ARN or RDB files in S3), waited for
/// until available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerless {
    /// The new cache's name.
    pub serverless_cache: String,
    /// `valkey` or `redis`.
    pub engine: String,
    /// E.g. `8`.
    #[serde(default)]
    pub major_engine_version: Option<String>,
    /// What to load: ARNs of serverless snapshots or of RDB files in S3.
    #[serde(default)]
    pub snapshot_arns: Vec<String>,
}

impl Request for CreateServerless {
    type Reply = ServerlessInfo;
    const EFFECT: Effect = Effect::Changes;
}

/// `serverless.delete`: delete a serverless cache (optionally keeping a final snapshot).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteServerless {
    /// The serverless cache's name.
    pub serverless_cache: String,
    /// A snapshot to take before the cache goes.
    #[serde(default)]
    pub final_snapshot: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerlessDeleted {
    pub serverless_cache: String,
    /// False when there was no such cache to delete.
    pub deleted: bool,
}

impl Request for DeleteServerless {
    type Reply = ServerlessDeleted;
    const EFFECT: Effect = Effect::Destructive;
}

// ---- snapshots through S3 ----------------------------------------------------------

/// `snapshot.export`: copy a node-based snapshot to an S3 bucket as RDB files
/// (elasticache:CopySnapshot with TargetBucket), wait until done.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportSnapshot {
    /// The snapshot to export.
    pub snapshot: String,
    /// The S3 bucket, in the snapshot's region, that grants ElastiCache write access.
    pub bucket: String,
}

impl Request for ExportSnapshot {
    type Reply = SnapshotExported;
    const EFFECT: Effect = Effect::Changes;
}

/// `snapshot.preflight`: what AWS requires before a snapshot goes through S3 into a new
/// group: the snapshot is available, was not taken with data tiering, and holds an RDB
/// version the target engine loads.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSnapshotExport {
    /// The snapshot that will be exported.
    pub snapshot: String,
    /// The bucket it will be exported to.
    pub bucket: String,
    /// The engine of the group that will load it.
    pub engine: String,
    /// Its version, e.g. `8.2`.
    #[serde(default)]
    pub engine_version: Option<String>,
}

impl Request for CheckSnapshotExport {
    type Reply = TargetChecks;
    const EFFECT: Effect = Effect::Observes;
}

/// `snapshot.import`: a new replication group seeded from RDB files in S3
/// (elasticache:CreateReplicationGroup with SnapshotArns), waited for until available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportSnapshot {
    /// The RDB files' ARNs, `arn:aws:s3:::bucket/key`.
    pub snapshot_arns: Vec<String>,
    /// The id of the new replication group.
    pub replication_group: String,
    /// `valkey` or `redis`.
    pub engine: String,
    /// E.g. `8.2`.
    #[serde(default)]
    pub engine_version: Option<String>,
    /// The node type (aws); by default cache.t4g.small.
    #[serde(default)]
    pub node_type: Option<String>,
    /// Replicas besides the primary.
    #[serde(default = "one")]
    pub replicas: u32,
}

impl Request for ImportSnapshot {
    type Reply = GroupInfo;
    const EFFECT: Effect = Effect::Changes;
}

/// How the ARN of an S3 object starts.
pub const S3_ARN: &str = "arn:aws:s3:::";

/// The bucket and key of an S3 object's ARN (`arn:aws:s3:::bucket/key`).
pub fn s3_object(arn: &str) -> Result<(&str, &str), ActionError> {
    arn.strip_prefix(S3_ARN)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| {
            ActionError::fatal(format!(
                "`{arn}` is not the ARN of an S3 object; write arn:aws:s3:::BUCKET/KEY"
            ))
        })
}

/// The hash slots of Redis and Valkey cluster mode.
pub const SLOTS: u16 = 16384;

/// `count` contiguous slot ranges as even as can be, the first ones one slot larger
/// when the slots do not divide evenly (3 shards: 0-5461, 5462-10922, 10923-16383).
pub fn even_slots(count: u16) -> Vec<(u16, u16)> {
    let count = count.max(1);
    let (base, extra) = (SLOTS / count, SLOTS % count);
    let mut start = 0;
    (0..count)
        .map(|i| {
            let size = base + u16::from(i < extra);
            let range = (start, start + size - 1);
            start += size;
            range
        })
        .collect()
}

/// The ARN of the RDB file an export to `bucket` makes for shard `shard` (1-based) of
/// `snapshot`, as ElastiCache names it (`snapshot-0001.rdb`).
pub fn exported_object(bucket: &str, snapshot: &str, shard: usize) -> String {
    format!("{S3_ARN}{bucket}/{snapshot}-{shard:04}.rdb")
}

/// `major.minor` of a version string (`7.0.15` → (7, 0)); none when it does not start so.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// Why a source cannot migrate online into a serverless cache of `target_version`
/// (AWS: Redis OSS 4.0 to 7.2 or Valkey 7.2 to 8.1, not newer than the target).
pub fn serverless_source_problem(
    engine: &str,
    version: &str,
    target_version: &str,
) -> Option<String> {
    let Some(v) = major_minor(version) else {
        return Some(format!("the source's version `{version}` cannot be read"));
    };
    let supported = match engine {
        "valkey" => ((7, 2), (8, 1)),
        _ => ((4, 0), (7, 2)),
    };
    let label = if engine == "valkey" {
        "Valkey"
    } else {
        "Redis OSS"
    };
    if v < supported.0 || v > supported.1 {
        return Some(format!(
            "the source runs {label} {version}; a serverless migration takes {label} {}.{} to {}.{}",
            supported.0.0, supported.0.1, supported.1.0, supported.1.1
        ));
    }
    if engine == "valkey"
        && let Some(t) = major_minor(target_version)
        && v > t
    {
        return Some(format!(
            "the source runs Valkey {version}, newer than the serverless cache's {target_version}"
        ));
    }
    None
}

/// Why a `target_engine` at `target_version` cannot load an RDB written by `engine` at
/// `version`: Valkey's RDB is not Redis's, Redis 7.4 and later write RDB 12 which Valkey
/// 7.x/8.x refuse, and no engine loads an RDB of a newer version of itself.
pub fn rdb_problem(
    engine: &str,
    version: &str,
    target_engine: &str,
    target_version: Option<&str>,
) -> Option<String> {
    let (from, to) = (major_minor(version), target_version.and_then(major_minor));
    match (engine, target_engine) {
        ("valkey", "redis") => Some(format!(
            "the snapshot was written by Valkey {version}: Redis OSS cannot load Valkey's RDB; load it into valkey"
        )),
        ("redis", "valkey") if from >= Some((7, 4)) && to.is_none_or(|t| t < (9, 0)) => {
            Some(format!(
                "the snapshot was written by Redis {version} (RDB 12), which Valkey 7.x/8.x refuse; take it from Redis 7.2 or earlier"
            ))
        }
        (a, b) if a == b && from.is_some() && to.is_some() && from > to => Some(format!(
            "the snapshot was written by {engine} {version}, newer than the target's {}",
            target_version.unwrap_or_default()
        )),
        _ => None,
    }
}

/// What S3 would refuse in a bucket name (3 to 63 lowercase letters, digits, dots, hyphens).
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let ok = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        format!("`{name}` is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)")
    })
}

// ---- everyday changes of a replication group ---------------------------------------

/// `group.failover`: promote a replica of one shard (elasticache:TestFailover), wait until
/// the group is available with the new primary.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverGroup {
    /// The replication group id.
    pub replication_group: String,
    /// The shard (node group) to fail over, `0001`, …; by default the first.
    #[serde(default)]
    pub node_group: Option<String>,
}

impl FailoverGroup {
    /// The shard asked for, `0001` by default.
    pub fn node_group(&self) -> &str {
        self.node_group.as_deref().unwrap_or("0001")
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FailedOver {
    #[serde(flatten)]
    pub group: GroupInfo,
    /// The shard that failed over.
    pub node_group: String,
    /// The node id of its primary before, and after.
    pub old_primary: String,
    pub new_primary: String,
}

impl Request for FailoverGroup {
    type Reply = FailedOver;
    const EFFECT: Effect = Effect::Destructive;
}

/// `group.modify_replicas`: the number of replicas in each shard
/// (elasticache:IncreaseReplicaCount / DecreaseReplicaCount), waited for until available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyReplicas {
    /// The replication group id.
    pub replication_group: String,
    /// Replicas per shard, besides its primary (0 to 5).
    pub replicas: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplicasModified {
    #[serde(flatten)]
    pub group: GroupInfo,
    /// Replicas per shard before the change (the fewest of any shard).
    pub replicas_before: u32,
    /// Replicas per shard now.
    pub replicas: u32,
}

impl Request for ModifyReplicas {
    type Reply = ReplicasModified;
    const EFFECT: Effect = Effect::Changes;
}

/// The most replicas ElastiCache gives a shard.
pub const MAX_REPLICAS: u32 = 5;

impl ModifyReplicas {
    /// The count, refused when ElastiCache would refuse it.
    pub fn checked(&self) -> Result<u32, ActionError> {
        if self.replicas > MAX_REPLICAS {
            return Err(ActionError::fatal(format!(
                "replicas: {} asked for; a shard has at most {MAX_REPLICAS} replicas",
                self.replicas
            )));
        }
        Ok(self.replicas)
    }
}

/// `group.modify_node_type`: move a group to another node type
/// (elasticache:ModifyReplicationGroup CacheNodeType), waited for until available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyNodeType {
    /// The replication group id.
    pub replication_group: String,
    /// E.g. `cache.r7g.large`.
    pub node_type: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeTypeModified {
    #[serde(flatten)]
    pub group: GroupInfo,
    /// The node type before the change (empty when not known).
    pub node_type_before: String,
    pub node_type: String,
}

impl Request for ModifyNodeType {
    type Reply = NodeTypeModified;
    const EFFECT: Effect = Effect::Destructive;
}

/// `parameters.modify`: set parameters of a cache parameter group
/// (elasticache:ModifyCacheParameterGroup), make it the group's parameter group if it is
/// not, and wait until every node applies them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyParameters {
    /// The replication group whose nodes use the parameter group.
    pub replication_group: String,
    /// A custom cache parameter group (a `default.*` one cannot be changed).
    pub parameter_group: String,
    /// Parameter name → value, e.g. `maxmemory-policy: volatile-lru`.
    pub parameters: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ParametersModified {
    pub replication_group: String,
    pub parameter_group: String,
    /// Each parameter asked for and its value now.
    pub parameters: BTreeMap<String, String>,
    /// The parameters whose value changed.
    pub changed: Vec<String>,
    /// `in-sync` once every node applies them.
    pub apply_status: String,
}

impl Request for ModifyParameters {
    type Reply = ParametersModified;
    const EFFECT: Effect = Effect::Changes;
}

impl ModifyParameters {
    /// Refused when there is nothing to set or the group is one AWS keeps fixed.
    pub fn checked(&self) -> Result<(), ActionError> {
        if self.parameters.is_empty() {
            return Err(ActionError::fatal(
                "parameters: name at least one parameter to set, e.g. `maxmemory-policy: volatile-lru`",
            ));
        }
        if self.parameter_group.starts_with("default.") {
            return Err(ActionError::fatal(format!(
                "`{}` is a default parameter group, which ElastiCache does not let anyone change; create a custom one (AWS::ElastiCache::ParameterGroup) and name it",
                self.parameter_group
            )));
        }
        Ok(())
    }
}

/// `group.health`: the troubles an everyday change must not start from or end in: memory
/// use, evictions, CPU and connections (CloudWatch over `window` on aws; INFO locally).
/// Fails listing every threshold passed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckHealth {
    /// The replication group id.
    pub replication_group: String,
    /// The highest DatabaseMemoryUsagePercentage allowed on any node.
    #[serde(default = "ninety")]
    pub max_memory_percent: f64,
    /// The highest EngineCPUUtilization allowed on any node.
    #[serde(default = "ninety")]
    pub max_cpu_percent: f64,
    /// The most CurrConnections allowed on any node.
    #[serde(default = "max_connections")]
    pub max_connections: u64,
    /// The most evictions allowed (over the window on aws, since start locally); by default
    /// they are counted, not limited.
    #[serde(default)]
    pub max_evictions: Option<u64>,
    /// How far back CloudWatch is read on aws, e.g. `15m`.
    #[serde(default = "health_window", with = "crate::duration::serde_text")]
    #[schemars(with = "String")]
    pub window: std::time::Duration,
}

fn ninety() -> f64 {
    90.0
}

/// ElastiCache's `maxclients`.
fn max_connections() -> u64 {
    65_000
}

fn health_window() -> std::time::Duration {
    std::time::Duration::from_secs(15 * 60)
}

/// What the nodes went through, the highest of any node (evictions: their sum).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct HealthFigures {
    pub memory_percent: f64,
    pub cpu_percent: f64,
    pub connections: u64,
    pub evictions: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    pub replication_group: String,
    #[serde(flatten)]
    pub figures: HealthFigures,
    /// One check per trouble; all passed (a failed one fails the step).
    pub checks: Vec<Check>,
}

impl Request for CheckHealth {
    type Reply = Health;
    const EFFECT: Effect = Effect::Observes;
}

impl CheckHealth {
    /// The checks of `figures` against the thresholds; `measured` says where they come from.
    pub fn judge(&self, figures: HealthFigures, measured: &str) -> Result<Health, ActionError> {
        let mut checks = vec![
            Check::new(
                "memory",
                figures.memory_percent <= self.max_memory_percent,
                format!(
                    "{:.1}% of maxmemory used at most (limit {}%), {measured}",
                    figures.memory_percent, self.max_memory_percent
                ),
            ),
            Check::new(
                "cpu",
                figures.cpu_percent <= self.max_cpu_percent,
                format!(
                    "{:.1}% engine CPU at most (limit {}%), {measured}",
                    figures.cpu_percent, self.max_cpu_percent
                ),
            ),
            Check::new(
                "connections",
                figures.connections <= self.max_connections,
                format!(
                    "{} client connections at most (limit {})",
                    figures.connections, self.max_connections
                ),
            ),
        ];
        checks.push(match self.max_evictions {
            Some(max) => Check::new(
                "evictions",
                figures.evictions <= max,
                format!("{} keys evicted (limit {max})", figures.evictions),
            ),
            None => Check::new(
                "evictions",
                true,
                format!("{} keys evicted (counted, not limited)", figures.evictions),
            ),
        });
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            return Err(ActionError::fatal(format!(
                "{} is not healthy enough for the change: {}",
                self.replication_group,
                failed.join("; ")
            )));
        }
        Ok(Health {
            replication_group: self.replication_group.clone(),
            figures,
            checks,
        })
    }
}

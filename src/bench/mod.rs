//! The Redis vs Valkey benchmark (`runbook bench`, the `bench.run` action).
//!
//! The same workload runs against each endpoint in turn, so the engines are compared
//! under the same client, settings and machine. The client must never be what limits
//! the figures: `connections` sockets each keep `pipeline` requests in flight (like
//! redis-benchmark `-c`/`-P`), commands are encoded once and patched per request, and
//! replies are framed without building values ([`crate::resp::Conn::batch`]). Plain TCP or
//! TLS, as the endpoint says. Latency goes into HdrHistograms.
//!
//! A cluster-mode endpoint is benchmarked on every shard's primary at once: each shard gets
//! its share of the connections and keys of its own (a hash tag that lands on it), so no
//! request is redirected and the figure is the whole cluster's.

mod command;
mod figures;
mod local;
mod open;
mod persistence;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

pub use command::Op;
use command::{MAX_NUMBER, Template};
pub use figures::{BurstFigures, Point, Recovery, Timeline, Window};
pub use local::{Event, LocalError, Owned};
pub use open::{Burst, parse_burst};
pub use persistence::{Persistence, parse_modes};
pub use table::table;

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::cluster::{Topology, TopologyError};
use crate::resp::{Conn, Pipeline, RespError};

/// How long connecting, or one batch, may take before it counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting or workload name is wrong; the text says what is accepted.
    #[error("{0}")]
    Invalid(String),
    /// An endpoint could not be reached or refused the login.
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint's URL, password redacted.
        endpoint: String,
        #[source]
        source: RespError,
    },
    /// A cluster-mode endpoint's shards could not be found.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A benchmark connection's task ended abnormally.
    #[error("a benchmark connection stopped")]
    Stopped(#[source] tokio::task::JoinError),
    /// A persistence mode could not be set, read back or put back, or a save failed.
    #[error("cannot {what} {endpoint}{hint}")]
    Persistence {
        what: String,
        /// The endpoint's URL, password redacted.
        endpoint: String,
        hint: &'static str,
        #[source]
        source: RespError,
    },
    /// A server the benchmark owns could not be started or restarted.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// Writing the data a read workload reads failed.
    #[error("cannot prepare `{op}` on {endpoint}")]
    Prepare {
        op: &'static str,
        /// The endpoint's URL, password redacted.
        endpoint: String,
        #[source]
        source: RespError,
    },
}

/// The workload names `--workload` accepts, for error messages and help.
pub const WORKLOAD_NAMES: &str = "get, set, mix (SET:GET by --ratio), lpush, lrange, hset, hgetall, sadd, smembers, zadd, zrange, kv (= set,get), ds (= the eight data-structure operations), all (= kv,ds)";

/// One timed phase: a single operation, or SET and GET mixed by ratio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    Op(Op),
    /// `set` SETs for every `get` GETs, interleaved at random.
    Mix {
        set: u32,
        get: u32,
    },
}

impl Workload {
    pub fn name(&self) -> String {
        match self {
            Workload::Op(op) => op.name().to_string(),
            Workload::Mix { set, get } => format!("mix-{set}:{get}"),
        }
    }

    /// The operations of the phase with their weights.
    fn ops(&self) -> Vec<(Op, u32)> {
        match *self {
            Workload::Op(op) => vec![(op, 1)],
            Workload::Mix { set, get } => [(Op::Set, set), (Op::Get, get)]
                .into_iter()
                .filter(|(_, w)| *w > 0)
                .collect(),
        }
    }
}

/// Parses workload lists (`set,get`, `kv`, `ds`, `mix`, repeatable) with the mix's
/// `SET:GET` ratio (e.g. `1:10`).
pub fn parse_workloads(lists: &[String], ratio: &str) -> Result<Vec<Workload>, BenchError> {
    let mut out = Vec::new();
    for name in lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let ds = &Op::ALL[2..];
        match name {
            "kv" => out.extend([Op::Set, Op::Get].map(Workload::Op)),
            "ds" => out.extend(ds.iter().copied().map(Workload::Op)),
            "all" => out.extend(Op::ALL.map(Workload::Op)),
            "mix" => {
                let (set, get) = parse_ratio(ratio)?;
                out.push(Workload::Mix { set, get });
            }
            other => out.push(Workload::Op(Op::from_name(other).ok_or_else(|| {
                BenchError::Invalid(format!(
                    "`{other}` is not a workload; use one of: {WORKLOAD_NAMES}"
                ))
            })?)),
        }
    }
    if out.is_empty() {
        return Err(BenchError::Invalid(format!(
            "no workload given; use one of: {WORKLOAD_NAMES}"
        )));
    }
    Ok(out)
}

/// `SET:GET`, e.g. `1:10` (memtier_benchmark's convention).
pub fn parse_ratio(text: &str) -> Result<(u32, u32), BenchError> {
    let bad = || BenchError::Invalid(format!("`{text}` is not a SET:GET ratio (write e.g. 1:10)"));
    let (set, get) = text.split_once(':').ok_or_else(bad)?;
    let set: u32 = set.trim().parse().map_err(|_| bad())?;
    let get: u32 = get.trim().parse().map_err(|_| bad())?;
    if set.saturating_add(get) == 0 {
        return Err(bad());
    }
    Ok((set, get))
}

/// When a phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// After this many requests in all (redis-benchmark `-n`).
    Requests(u64),
    /// After this long.
    Duration(Duration),
}

/// How requests are sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Each connection sends its next batch when the last one is answered (redis-benchmark).
    Closed,
    /// Requests leave on a fixed schedule of `rate` per second, with bursts on top.
    Open { rate: f64, burst: Option<Burst> },
}

/// The longest open-loop phase: samples carry their time in µs as 32 bits.
const MAX_OPEN_LENGTH: Duration = Duration::from_secs(3600);

/// The most requests an open-loop phase may schedule: each is kept as a sample (12 bytes).
const MAX_SAMPLES: f64 = 50_000_000.0;

/// How the benchmark loads each endpoint.
#[derive(Clone, Debug)]
pub struct Settings {
    pub load: Load,
    /// Each workload runs once per mode (empty: as the server is).
    pub persistence: Vec<Persistence>,
    /// Open loop: restart or fail over each server a third into each phase, and measure
    /// the recovery.
    pub recovery: Option<Event>,
    pub workloads: Vec<Workload>,
    /// Sockets per endpoint (redis-benchmark `-c`).
    pub connections: usize,
    /// Requests in flight per socket (redis-benchmark `-P`).
    pub pipeline: usize,
    /// Bytes of each written value (redis-benchmark `-d`).
    pub value_size: usize,
    /// Distinct keys per data type (redis-benchmark `-r`).
    pub keyspace: u64,
    /// Members per list, hash, set or sorted set: what range reads fetch.
    pub elements: u64,
    pub limit: Limit,
    /// Every key starts with this.
    pub key_prefix: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            load: Load::Closed,
            persistence: Vec::new(),
            recovery: None,
            workloads: vec![Workload::Op(Op::Set), Workload::Op(Op::Get)],
            connections: 50,
            pipeline: 1,
            value_size: 3,
            keyspace: 10_000,
            elements: 100,
            limit: Limit::Requests(100_000),
            key_prefix: "bench:".into(),
        }
    }
}

/// Memory the client may spend on request buffers, and data a read phase may prepare.
const MAX_BYTES: u64 = 1 << 30;

impl Settings {
    /// Checks the settings; the error says which one and what is accepted.
    pub fn check(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Invalid(m));
        if self.workloads.is_empty() {
            return bad(format!("no workload given; use one of: {WORKLOAD_NAMES}"));
        }
        if !(1..=10_000).contains(&self.connections) {
            return bad(format!(
                "--connections {} is out of range (1 to 10000)",
                self.connections
            ));
        }
        if !(1..=100_000).contains(&self.pipeline) {
            return bad(format!(
                "--pipeline {} is out of range (1 to 100000)",
                self.pipeline
            ));
        }
        if !(1..=MAX_NUMBER).contains(&self.keyspace) {
            return bad(format!(
                "--keyspace {} is out of range (1 to {MAX_NUMBER})",
                self.keyspace
            ));
        }
        if !(1..=1_000_000).contains(&self.elements) {
            return bad(format!(
                "--elements {} is out of range (1 to 1000000)",
                self.elements
            ));
        }
        match self.limit {
            Limit::Requests(0) => return bad("--requests must be at least 1".into()),
            Limit::Duration(d) if d.is_zero() => {
                return bad("--duration must be longer than 0".into());
            }
            _ => {}
        }
        if let Load::Open { rate, burst } = self.load {
            if !(rate.is_finite() && rate > 0.0) {
                return bad(format!("--rate {rate} must be above 0 requests per second"));
            }
            let length = self.open_length(rate);
            if length > MAX_OPEN_LENGTH {
                return bad(format!(
                    "an open-loop phase of {} s is longer than the most, 1 h: lower --duration or --requests",
                    length.as_secs()
                ));
            }
            let scheduled = length.as_secs_f64() * (rate + burst.map_or(0.0, |b| b.extra));
            if scheduled > MAX_SAMPLES {
                return bad(format!(
                    "--rate {rate} for {} s schedules more than {MAX_SAMPLES} requests per phase, each kept as a sample: lower --rate or --duration",
                    length.as_secs()
                ));
            }
        }
        if self.recovery.is_some() && self.load == Load::Closed {
            return bad(
                "--recovery measures the time back to the sustained level: give --rate too".into(),
            );
        }
        let value = self.value_size as u64;
        let buffers = (self.connections as u64)
            .saturating_mul(self.pipeline as u64)
            .saturating_mul(value);
        if value > 512 << 20 || buffers > MAX_BYTES {
            return bad(format!(
                "--value-size {} with {} connections × pipeline {} needs more than 1 GiB of request buffers; lower one of them",
                self.value_size, self.connections, self.pipeline
            ));
        }
        let reads_structures = self.workloads.iter().any(|w| {
            matches!(
                w,
                Workload::Op(Op::Lrange | Op::Hgetall | Op::Smembers | Op::Zrange)
            )
        });
        let prepared = self
            .keyspace
            .saturating_mul(self.elements)
            .saturating_mul(value + 16);
        if reads_structures && prepared > MAX_BYTES {
            return bad(format!(
                "range reads would first write --keyspace {} × --elements {} members of {} bytes (over 1 GiB); lower --keyspace, --elements or --value-size",
                self.keyspace, self.elements, self.value_size
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// How long an open-loop phase at `rate` lasts: `--duration`, or the time `--requests`
    /// take at the sustained rate.
    fn open_length(&self, rate: f64) -> Duration {
        match self.limit {
            Limit::Duration(d) => d,
            Limit::Requests(n) => {
                Duration::try_from_secs_f64(n as f64 / rate).unwrap_or(Duration::MAX)
            }
        }
    }
}

/// The figures of one operation against one endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct OpResult {
    /// The endpoint URL, password redacted.
    pub endpoint: String,
    /// A short name for tables and charts (`redis`, `valkey`), else the endpoint.
    pub label: String,
    pub workload: String,
    pub op: &'static str,
    /// Requests answered without an error.
    pub requests: u64,
    /// Error replies plus requests lost with a broken connection.
    pub errors: u64,
    pub ops_per_sec: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The first error seen, to say what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// The persistence mode the server ran with, when the benchmark set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<String>,
    /// `appendonly`, `appendfsync` and `save` as the server reported them for the mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence_config: Option<persistence::Settings>,
    /// RDB snapshots that finished during the phase (`rdb` mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saves: Option<u64>,
    /// Open loop: requests scheduled per second (the sustained rate and the bursts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ops_per_sec: Option<f64>,
    /// Open loop: requests scheduled in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<u64>,
    /// Open loop with bursts: inside them against between them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstFigures>,
    /// Open loop with `--recovery`: the restart and the time back to the level before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// Open loop: the phase stretch by stretch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
}

/// An endpoint with the name it gets in results.
#[derive(Clone, Debug)]
pub struct Labeled {
    pub label: String,
    pub endpoint: Endpoint,
    /// The server behind it, when the benchmark started it itself.
    pub owned: Option<Arc<Owned>>,
}

/// Parses endpoint URLs and pairs them with their labels (the redacted URL when none).
pub fn labeled(urls: &[String], labels: &[String]) -> Result<Vec<Labeled>, BenchError> {
    if urls.is_empty() {
        return Err(BenchError::Invalid(
            "no endpoint given: name at least one".into(),
        ));
    }
    if !labels.is_empty() && labels.len() != urls.len() {
        return Err(BenchError::Invalid(format!(
            "{} labels for {} endpoints: give one label per endpoint, or none",
            labels.len(),
            urls.len()
        )));
    }
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            let endpoint = Endpoint::parse(url).map_err(|e| BenchError::Invalid(e.to_string()))?;
            let label = labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| endpoint.to_string());
            Ok(Labeled {
                label,
                endpoint,
                owned: None,
            })
        })
        .collect()
}

/// Runs every workload against every endpoint, endpoint after endpoint within each
/// workload, and returns one result per workload, operation and endpoint in that order.
/// `note` hears a line after each phase.
pub async fn run(
    endpoints: &[Labeled],
    settings: &Settings,
    resolver: &Resolver,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Vec<OpResult>, BenchError> {
    settings.check()?;
    if let Some(event) = settings.recovery
        && let Some(foreign) = endpoints.iter().find(|e| e.owned.is_none())
    {
        let what = match event {
            Event::Failover => "promotes the server's replica",
            Event::Restart | Event::RestartSave => "shuts the server down and starts it again",
        };
        return Err(BenchError::Invalid(format!(
            "--recovery {what}, which the benchmark does only to servers it started itself: {} is not one (benchmark --local redis / --local valkey instead)",
            foreign.endpoint
        )));
    }
    // Each endpoint's shards, found once for every workload.
    let mut shards = Vec::with_capacity(endpoints.len());
    for target in endpoints {
        shards.push(lanes(target, settings, resolver).await?);
    }
    if settings.persistence.is_empty() {
        return run_workloads(endpoints, &shards, None, settings, resolver, note).await;
    }
    // The servers' own settings, to put back whatever happens.
    let mut own = Vec::new();
    for lane in shards.iter().flatten() {
        own.push(persistence::read(lane, resolver).await?);
    }
    let mut results = Vec::new();
    let mut outcome = Ok(());
    for &mode in &settings.persistence {
        match run_workloads(endpoints, &shards, Some(mode), settings, resolver, note).await {
            Ok(r) => results.extend(r),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    for (lane, settings) in shards.iter().flatten().zip(&own) {
        let restored = persistence::restore(lane, settings, resolver).await;
        if outcome.is_ok() {
            outcome = restored;
        }
    }
    outcome.map(|()| results)
}

/// Every workload on every endpoint, in `mode` when one is given.
async fn run_workloads(
    endpoints: &[Labeled],
    shards: &[Vec<Lane>],
    mode: Option<Persistence>,
    settings: &Settings,
    resolver: &Resolver,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Vec<OpResult>, BenchError> {
    let mut configs = Vec::with_capacity(shards.len());
    for lanes in shards {
        let mut config = None;
        if let Some(mode) = mode {
            for lane in lanes {
                config = Some(persistence::apply(lane, mode, resolver).await?);
            }
        }
        configs.push(config);
    }
    let mut results = Vec::new();
    for workload in &settings.workloads {
        for ((target, lanes), config) in endpoints.iter().zip(shards).zip(&configs) {
            let mut phase = run_phase(target, lanes, workload, mode, settings, resolver).await?;
            for r in &mut phase {
                r.persistence = mode.map(|m| m.name().to_string());
                r.persistence_config = config.clone();
                let what = match (&r.persistence, r.workload == r.op) {
                    (None, true) => r.op.to_string(),
                    (None, false) => format!("{} {}", r.workload, r.op),
                    (Some(m), true) => format!("{} ({m})", r.op),
                    (Some(m), false) => format!("{} {} ({m})", r.workload, r.op),
                };
                note(&format!(
                    "{what} on {}: {:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
                    r.label, r.ops_per_sec, r.p50_ms, r.p99_ms, r.errors
                ));
            }
            results.extend(phase);
        }
    }
    Ok(results)
}

/// What one connection counted for one operation.
struct Tally {
    latency_us: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds"),
            ok: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us
            .add(other.latency_us)
            .expect("histograms with the same bounds add up");
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The remaining work of a phase, shared by its connections.
enum Budget {
    Requests { total: u64, claimed: AtomicU64 },
    Until(Instant),
}

impl Budget {
    /// Up to `want` more requests to send; 0 when the phase is over.
    fn claim(&self, want: u64) -> u64 {
        match self {
            Budget::Requests { total, claimed } => {
                let before = claimed.fetch_add(want, Ordering::Relaxed);
                want.min(total.saturating_sub(before))
            }
            Budget::Until(end) => {
                if Instant::now() < *end {
                    want
                } else {
                    0
                }
            }
        }
    }
}

/// What every connection of a phase sends.
struct Plan {
    templates: Vec<Template>,
    /// Cumulative weights of `templates`, for picking one per request.
    cumulative: Vec<u64>,
    pipeline: u64,
    keyspace: u64,
    elements: u64,
}

impl Plan {
    fn pick(&self, r: u64) -> usize {
        let total = *self.cumulative.last().expect("a phase has an operation");
        let x = r % total;
        self.cumulative
            .iter()
            .position(|&c| x < c)
            .expect("x is below the total")
    }
}

/// splitmix64: a fast, well-mixed generator for keys and members (not for secrets).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Where one shard of an endpoint is loaded: its primary, and the key prefix that keeps the
/// phase's keys on it. A standalone endpoint is one lane with the settings' own prefix.
#[derive(Clone)]
struct Lane {
    endpoint: Endpoint,
    prefix: String,
}

/// The lanes of `target`: one per shard of a cluster, else one.
async fn lanes(
    target: &Labeled,
    settings: &Settings,
    resolver: &Resolver,
) -> Result<Vec<Lane>, BenchError> {
    let mut conn = open(&target.endpoint, resolver).await?;
    let topology = Topology::of(&mut conn, &target.endpoint).await?;
    Ok(topology
        .shards
        .iter()
        .enumerate()
        .map(|(i, shard)| Lane {
            endpoint: shard.primary.clone(),
            prefix: if topology.cluster {
                format!("{{{}}}{}", topology.tag_for(i), settings.key_prefix)
            } else {
                settings.key_prefix.clone()
            },
        })
        .collect())
}

/// One workload against one endpoint: prepare, connect, run, merge the counts.
async fn run_phase(
    target: &Labeled,
    lanes: &[Lane],
    workload: &Workload,
    mode: Option<Persistence>,
    settings: &Settings,
    resolver: &Resolver,
) -> Result<Vec<OpResult>, BenchError> {
    let ops = workload.ops();
    let value = vec![b'x'; settings.value_size];
    for lane in lanes {
        prepare(lane, &ops, settings, &value, resolver).await?;
    }

    let mut total = 0;
    let cumulative: Vec<u64> = ops
        .iter()
        .map(|&(_, w)| {
            total += u64::from(w);
            total
        })
        .collect();
    let plans: Vec<Arc<Plan>> = lanes
        .iter()
        .map(|lane| {
            Arc::new(Plan {
                templates: ops
                    .iter()
                    .map(|&(op, _)| Template::new(op, &lane.prefix, &value, settings.elements))
                    .collect(),
                cumulative: cumulative.clone(),
                pipeline: settings.pipeline as u64,
                keyspace: settings.keyspace,
                elements: settings.elements,
            })
        })
        .collect();
    // Connection `i` loads lane `i % lanes`; every shard gets at least one.
    let connections = settings.connections.max(lanes.len());
    let conns = futures::future::try_join_all(
        (0..connections).map(|i| open(&lanes[i % lanes.len()].endpoint, resolver)),
    )
    .await?;

    // In `rdb` mode, snapshots are taken while the load runs.
    let saver =
        (mode == Some(Persistence::Rdb)).then(|| persistence::start_saving(lanes, resolver));
    let loaded: Result<Vec<OpResult>, BenchError> = async {
        if let Load::Open { rate, burst } = settings.load {
            let length = settings.open_length(rate);
            // Every connection starts on the same schedule, a moment from now.
            let start = Instant::now() + Duration::from_millis(10);
            let restart = settings
                .recovery
                .zip(target.owned.clone())
                .map(|(event, owned)| {
                    let at = start + length / 3;
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        match event {
                            Event::Failover => owned.failover().await,
                            Event::Restart => owned.restart(false).await,
                            Event::RestartSave => owned.restart(true).await,
                        }
                    })
                });
            // After a failover the clients follow the primary, as a client library does.
            let follow = settings.recovery == Some(Event::Failover);
            let recorded = open_loop(
                conns,
                lanes,
                &plans,
                (rate, burst),
                (start, length),
                follow,
                resolver,
            )
            .await?;
            let mut results = open_results(target, workload, &ops, &recorded, burst, length);
            if let (Some(restart), Some(how)) = (restart, settings.recovery) {
                let (down, back) = restart.await.map_err(BenchError::Stopped)??;
                if let (Event::Failover, Some(owned)) = (how, &target.owned) {
                    owned.fail_back().await?;
                }
                let window = (length / 6).min(Duration::from_secs(1));
                let since = |t: Instant| t.saturating_duration_since(start);
                for (i, r) in results.iter_mut().enumerate() {
                    let samples: Vec<open::Sample> = recorded
                        .samples
                        .iter()
                        .filter(|s| usize::from(s.op) == i)
                        .copied()
                        .collect();
                    r.recovery = Some(Recovery::of(
                        &samples,
                        how.name(),
                        (since(down), since(back)),
                        window,
                        length,
                    ));
                }
            }
            return Ok(results);
        }
        let start = Instant::now();
        let budget = Arc::new(match settings.limit {
            Limit::Requests(total) => Budget::Requests {
                total,
                claimed: AtomicU64::new(0),
            },
            Limit::Duration(d) => Budget::Until(start + d),
        });
        let workers: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let lane = i % lanes.len();
                let worker = Worker {
                    plan: plans[lane].clone(),
                    budget: budget.clone(),
                    endpoint: lanes[lane].endpoint.clone(),
                    resolver: resolver.clone(),
                    rng: Rng(i as u64 ^ 0x5DEE_CE66),
                };
                tokio::spawn(worker.run(conn))
            })
            .collect();
        let mut tallies: Vec<Tally> = ops.iter().map(|_| Tally::new()).collect();
        for joined in futures::future::join_all(workers).await {
            let counted = joined.map_err(BenchError::Stopped)?;
            for (sum, t) in tallies.iter_mut().zip(counted) {
                sum.merge(t);
            }
        }
        let elapsed = start.elapsed().as_secs_f64().max(f64::EPSILON);

        let ms = |us: u64| us as f64 / 1000.0;
        Ok(ops
            .iter()
            .zip(tallies)
            .map(|(&(op, _), t)| {
                let h = &t.latency_us;
                let q = |quantile| {
                    if h.is_empty() {
                        0.0
                    } else {
                        ms(h.value_at_quantile(quantile))
                    }
                };
                OpResult {
                    requests: t.ok,
                    errors: t.errors,
                    ops_per_sec: t.ok as f64 / elapsed,
                    mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
                    p50_ms: q(0.50),
                    p95_ms: q(0.95),
                    p99_ms: q(0.99),
                    p999_ms: q(0.999),
                    max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
                    first_error: t.first_error,
                    ..OpResult::new(target, workload, op)
                }
            })
            .collect())
    }
    .await;
    if let Some((stop, saves)) = saver {
        let _ = stop.send(true);
        let saves = saves.await.map_err(BenchError::Stopped)??;
        let mut results = loaded?;
        for r in &mut results {
            r.saves = Some(saves);
        }
        return Ok(results);
    }
    loaded
}

impl OpResult {
    /// A result with the names filled in and no figures yet.
    fn new(target: &Labeled, workload: &Workload, op: Op) -> OpResult {
        OpResult {
            endpoint: target.endpoint.to_string(),
            label: target.label.clone(),
            workload: workload.name(),
            op: op.name(),
            requests: 0,
            errors: 0,
            ops_per_sec: 0.0,
            mean_ms: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
            first_error: None,
            persistence: None,
            persistence_config: None,
            saves: None,
            target_ops_per_sec: None,
            scheduled: None,
            burst: None,
            recovery: None,
            timeline: None,
        }
    }
}

/// Runs an open-loop phase on `conns` (connection `i` on lane `i % lanes`, with its share
/// of the schedule) and returns every connection's samples.
async fn open_loop(
    conns: Vec<Conn>,
    lanes: &[Lane],
    plans: &[Arc<Plan>],
    (rate, burst): (f64, Option<Burst>),
    (start, length): (Instant, Duration),
    follow: bool,
    resolver: &Resolver,
) -> Result<open::Recorded, BenchError> {
    let count = conns.len();
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let lane = i % lanes.len();
            let worker = open::OpenWorker {
                plan: plans[lane].clone(),
                schedule: open::Schedule::new(rate, burst, count, i, length),
                start,
                endpoint: lanes[lane].endpoint.clone(),
                resolver: resolver.clone(),
                rng: Rng(i as u64 ^ 0x5DEE_CE66),
                follow,
            };
            tokio::spawn(worker.run(conn))
        })
        .collect();
    let mut all = open::Recorded::default();
    for joined in futures::future::join_all(workers).await {
        all.merge(joined.map_err(BenchError::Stopped)?);
    }
    Ok(all)
}

/// One result per operation of an open-loop phase, from its samples.
fn open_results(
    target: &Labeled,
    workload: &Workload,
    ops: &[(Op, u32)],
    recorded: &open::Recorded,
    burst: Option<Burst>,
    length: Duration,
) -> Vec<OpResult> {
    let seconds = length.as_secs_f64();
    ops.iter()
        .enumerate()
        .map(|(i, &(op, _))| {
            let samples: Vec<open::Sample> = recorded
                .samples
                .iter()
                .filter(|s| usize::from(s.op) == i)
                .copied()
                .collect();
            let mut ok: Vec<u32> = samples
                .iter()
                .filter(|s| s.ok)
                .map(|s| s.latency_us)
                .collect();
            let requests = ok.len() as u64;
            let l = figures::latency(&mut ok);
            let scheduled = samples.len() as u64;
            OpResult {
                requests,
                errors: scheduled - requests,
                ops_per_sec: requests as f64 / seconds,
                mean_ms: l.mean_ms,
                p50_ms: l.p50_ms,
                p95_ms: l.p95_ms,
                p99_ms: l.p99_ms,
                p999_ms: l.p999_ms,
                max_ms: l.max_ms,
                first_error: (scheduled > requests)
                    .then(|| recorded.first_error.clone())
                    .flatten(),
                target_ops_per_sec: Some(scheduled as f64 / seconds),
                scheduled: Some(scheduled),
                burst: burst.map(|b| BurstFigures::of(&samples, &b, length)),
                timeline: Some(Timeline::of(&samples, length)),
                ..OpResult::new(target, workload, op)
            }
        })
        .collect()
}

/// Writes what the phase's reads read (strings for GET, filled structures for range
/// reads), in pipelined batches on one connection.
async fn prepare(
    lane: &Lane,
    ops: &[(Op, u32)],
    settings: &Settings,
    value: &[u8],
    resolver: &Resolver,
) -> Result<(), BenchError> {
    const KEYS_PER_BATCH: u64 = 256;
    let mut conn = None;
    for &(op, _) in ops.iter().filter(|(op, _)| op.reads()) {
        let conn = match &mut conn {
            Some(c) => c,
            None => conn.insert(open(&lane.endpoint, resolver).await?),
        };
        let mut first = 0;
        while first < settings.keyspace {
            let last = (first + KEYS_PER_BATCH).min(settings.keyspace);
            let mut p = Pipeline::new();
            for k in first..last {
                command::prepare(&mut p, op, &lane.prefix, value, settings.elements, k);
            }
            conn.run(&p, |_, reply| reply.ok().map(drop))
                .await
                .map_err(|source| BenchError::Prepare {
                    op: op.name(),
                    endpoint: lane.endpoint.to_string(),
                    source,
                })?;
            first = last;
        }
    }
    Ok(())
}

/// Opens one benchmark connection: authenticated, on the endpoint's database.
async fn open(endpoint: &Endpoint, resolver: &Resolver) -> Result<Conn, BenchError> {
    Conn::connect(resolver, endpoint, IO_TIMEOUT)
        .await
        .map_err(|source| BenchError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })
}

/// One connection's loop: claim a batch, send it, time the replies, repeat.
struct Worker {
    plan: Arc<Plan>,
    budget: Arc<Budget>,
    endpoint: Endpoint,
    resolver: Resolver,
    rng: Rng,
}

impl Worker {
    async fn run(mut self, mut conn: Conn) -> Vec<Tally> {
        let plan = self.plan.clone();
        let mut tallies: Vec<Tally> = plan.templates.iter().map(|_| Tally::new()).collect();
        let mut out = Vec::new();
        let mut sent_ops = Vec::with_capacity(plan.pipeline as usize);
        loop {
            let n = self.budget.claim(plan.pipeline);
            if n == 0 {
                break;
            }
            out.clear();
            sent_ops.clear();
            for _ in 0..n {
                let i = if plan.templates.len() == 1 {
                    0
                } else {
                    plan.pick(self.rng.next())
                };
                let key = self.rng.next() % plan.keyspace;
                let member = self.rng.next() % plan.elements;
                plan.templates[i].write(&mut out, key, member);
                sent_ops.push(i);
            }
            let sent = Instant::now();
            let mut answered = 0;
            let outcome = conn
                .batch(&out, n as usize, |reply| {
                    let tally = &mut tallies[sent_ops[answered]];
                    answered += 1;
                    match reply.error {
                        None => {
                            tally.ok += 1;
                            let us = reply.at.saturating_duration_since(sent).as_micros();
                            tally.latency_us.saturating_record(us.max(1) as u64);
                        }
                        Some(text) => tally.error(|| String::from_utf8_lossy(text).into_owned()),
                    }
                })
                .await;
            if let Err(e) = outcome {
                for &i in &sent_ops[answered..] {
                    tallies[i].error(|| e.to_string());
                }
                match open(&self.endpoint, &self.resolver).await {
                    Ok(fresh) => conn = fresh,
                    Err(e) => {
                        tallies[sent_ops[0]]
                            .first_error
                            .get_or_insert(crate::error::chain(&e));
                        break;
                    }
                }
            }
        }
        tallies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_expand_groups_and_reject_unknown_names() {
        let w = parse_workloads(&["kv".into(), "mix,zrange".into()], "1:4").unwrap();
        assert_eq!(
            w,
            vec![
                Workload::Op(Op::Set),
                Workload::Op(Op::Get),
                Workload::Mix { set: 1, get: 4 },
                Workload::Op(Op::Zrange)
            ]
        );
        assert_eq!(parse_workloads(&["ds".into()], "1:1").unwrap().len(), 8);
        let err = parse_workloads(&["gets".into()], "1:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`gets` is not a workload") && err.contains("lrange"),
            "{err}"
        );
        assert!(parse_workloads(&["mix".into()], "0:0").is_err());
        assert!(parse_workloads(&["mix".into()], "1-10").is_err());
        assert!(parse_workloads(&[" ".into()], "1:1").is_err());
    }

    #[test]
    fn mixes_pick_operations_by_weight() {
        let plan = Plan {
            templates: Vec::new(),
            cumulative: vec![1, 11],
            pipeline: 1,
            keyspace: 1,
            elements: 1,
        };
        let mut rng = Rng(7);
        let sets = (0..110_000).filter(|_| plan.pick(rng.next()) == 0).count();
        assert!(
            (9_000..11_000).contains(&sets),
            "{sets} SETs of 110000 at 1:10"
        );
    }

    #[test]
    fn request_budgets_hand_out_exactly_the_total() {
        let budget = Budget::Requests {
            total: 10,
            claimed: AtomicU64::new(0),
        };
        let claims: Vec<u64> = (0..5).map(|_| budget.claim(4)).collect();
        assert_eq!(claims, vec![4, 4, 2, 0, 0]);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Settings::default().check().is_ok());
        let bad = [
            Settings {
                connections: 0,
                ..Settings::default()
            },
            Settings {
                pipeline: 0,
                ..Settings::default()
            },
            Settings {
                keyspace: 0,
                ..Settings::default()
            },
            Settings {
                limit: Limit::Requests(0),
                ..Settings::default()
            },
            Settings {
                value_size: 1 << 30,
                ..Settings::default()
            },
            Settings {
                workloads: vec![Workload::Op(Op::Lrange)],
                keyspace: 1_000_000,
                elements: 1000,
                ..Settings::default()
            },
        ];
        for s in bad {
            assert!(matches!(s.check(), Err(BenchError::Invalid(_))), "{s:?}");
        }
    }
}

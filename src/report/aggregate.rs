//! Builds the report model from a run directory.
//!
//! The journal's replay gives the steps (status, attempts, times, notes, outputs); the
//! probe's files give latency, errors and disconnects, tagged with the step that was
//! running. Both are folded into [`Report`] here and nowhere else.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde_json::Value;

use super::model::*;
use crate::journal::{self, Replay, StepStatus};
use crate::probe::record::{EVENTS_FILE, PROBE_DIR, SECONDS_FILE, new_histogram};
use crate::probe::{ClientsAt, ErrorClass, Op, OutageKind, ProbeEvent, Second, ShardAt};

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Stats {
    fn from(h: &Histogram<u64>, errors: u64) -> Stats {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Stats {
                requests: errors,
                errors,
                ..Stats::default()
            };
        }
        Stats {
            requests: h.len() + errors,
            errors,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Histograms and error counts being merged.
#[derive(Clone)]
struct Acc {
    latencies: Histogram<u64>,
    errors: u64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            latencies: new_histogram(),
            errors: 0,
        }
    }
}

impl Acc {
    fn add(&mut self, second: &Second, h: Option<&Histogram<u64>>) {
        if let Some(h) = h {
            let _ = self.latencies.add(h);
        }
        self.errors += second.errors.values().sum::<u64>();
    }

    fn stats(&self) -> Stats {
        Stats::from(&self.latencies, self.errors)
    }
}
/// How many notes of a step the table shows.
const NOTES_SHOWN: usize = 3;

fn read_json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    mut each: impl FnMut(T),
) -> Result<(), ReportError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ReportError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        // A line cut short by a crash is skipped; the rest of the data still counts.
        if let Ok(item) = serde_json::from_str::<T>(&line) {
            each(item);
        }
    }
    Ok(())
}

fn step_label(step: &Option<String>) -> String {
    step.clone().unwrap_or_else(|| NO_STEP.to_string())
}

fn seconds_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// Builds the report of the run (or standalone probe) in `dir`.
pub fn build(dir: &Path) -> Result<Report, ReportError> {
    let run_json = dir.join("run.json");
    let meta: Value = match std::fs::read_to_string(&run_json) {
        Ok(text) => serde_json::from_str(&text).map_err(|source| ReportError::Json {
            path: run_json.display().to_string(),
            source,
        })?,
        Err(_) => Value::Null,
    };
    let replay = crate::state::replay(dir)?;
    let mut run = run_info(&replay);
    let mut steps = step_rows(&replay);
    let text = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    run.id = run.id.or_else(|| text("id"));
    run.runbook = run.runbook.or_else(|| text("runbook"));
    run.file = run.file.or_else(|| text("file"));
    run.platform = run.platform.or_else(|| text("platform"));
    if run.started_at.is_none() {
        run.started_at = meta
            .get("started_at")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
    }

    let probe_dir = dir.join(PROBE_DIR);
    let mut events = Vec::new();
    read_json_lines::<ProbeEvent>(&probe_dir.join(EVENTS_FILE), |e| events.push(e))?;
    let mut seconds = Vec::new();
    read_json_lines::<Second>(&probe_dir.join(SECONDS_FILE), |s| seconds.push(s))?;
    let probe = ProbeData::from_events(events);

    let window = Window {
        start: [run.started_at, probe.first]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(Utc::now),
        end: [run.finished_at, probe.last]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Utc::now),
    };
    let step_starts: BTreeMap<String, DateTime<Utc>> = steps
        .iter()
        .filter_map(|s| Some((s.id.clone(), s.started_at?)))
        .collect();
    let clients = clients_spans(&probe, &step_starts, window);
    let mut view = ClientsView::new(&clients, &probe, window);

    let mut per_step: BTreeMap<(String, String, Option<String>, Op), Acc> = BTreeMap::new();
    let mut per_shard: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut per_op: BTreeMap<Op, Acc> = BTreeMap::new();
    let mut per_second: BTreeMap<i64, SecondAcc> = BTreeMap::new();
    let mut by_second_op: BTreeMap<(i64, Op), Acc> = BTreeMap::new();
    let mut errors_by_class: BTreeMap<String, u64> = BTreeMap::new();
    for s in &seconds {
        let h = s.decode_histogram();
        per_step
            .entry((
                step_label(&s.step),
                s.endpoint.clone(),
                s.shard.clone(),
                s.op,
            ))
            .or_default()
            .add(s, h.as_ref());
        if let Some(shard) = &s.shard {
            per_shard
                .entry((s.endpoint.clone(), shard.clone()))
                .or_default()
                .add(s, h.as_ref());
        }
        per_op.entry(s.op).or_default().add(s, h.as_ref());
        by_second_op
            .entry((s.second, s.op))
            .or_default()
            .add(s, h.as_ref());
        let sec = per_second.entry(s.second).or_default();
        if let Some(h) = &h {
            let _ = sec.latencies.add(h);
        }
        for (class, n) in &s.errors {
            sec.errors += n;
            *errors_by_class.entry(class.to_string()).or_default() += n;
        }
        for i in 0..10 {
            sec.tenths_max_us[i] = sec.tenths_max_us[i].max(s.tenths_max_us[i]);
            sec.tenths_errors[i] += s.tenths_errors[i];
        }
    }

    let outages = merge_outages(&probe, &view);
    let labels: Vec<String> = probe.endpoints.iter().map(|e| e.endpoint.clone()).collect();
    let step_stats = |id: &str, at: Option<DateTime<Utc>>| {
        let on: Vec<String> = match at {
            Some(t) if !clients.is_empty() => view.at(t),
            _ => labels.clone(),
        };
        let mut by_op = BTreeMap::new();
        let mut all = Acc::default();
        for op in [Op::Write, Op::Read] {
            let mut acc = Acc::default();
            let mut any = false;
            for ((_, _, _, _), a) in per_step
                .iter()
                .filter(|((s, e, _, o), _)| s == id && *o == op && on.contains(e))
            {
                let _ = acc.latencies.add(&a.latencies);
                acc.errors += a.errors;
                any = true;
            }
            if any {
                by_op.insert(op.as_str().to_string(), acc.stats());
                let _ = all.latencies.add(&acc.latencies);
                all.errors += acc.errors;
            }
        }
        (by_op, all.stats())
    };
    for row in &mut steps {
        (row.by_op, row.latency) = step_stats(&row.id, row.started_at);
        if !clients.is_empty() {
            row.clients = row
                .started_at
                .and_then(|t| clients.iter().rev().find(|c| c.start <= t))
                .map(|c| c.name.clone());
        }
        count_outages(row, &outages);
        row.shards = step_shards(&row.id, &probe, &per_step, &outages);
    }
    // Samples taken while no step ran (before the first, between steps) get a row of their own.
    if per_step.keys().any(|(s, _, _, _)| s == NO_STEP) {
        let mut row = empty_row(NO_STEP, "", "", "");
        (row.by_op, row.latency) = step_stats(NO_STEP, None);
        count_outages(&mut row, &outages);
        row.shards = step_shards(NO_STEP, &probe, &per_step, &outages);
        steps.push(row);
    }
    let shards = probe
        .shards
        .iter()
        .map(|(endpoint, at)| {
            let mut row = shard_row(&probe, endpoint, &at.shard);
            row.primary = Some(at.primary.clone());
            if let Some(acc) = per_shard.get(&(endpoint.clone(), at.shard.clone())) {
                row.latency = acc.stats();
            }
            count_shard_outages(&mut row, outages.iter());
            row
        })
        .collect();

    let latency = per_op
        .iter()
        .map(|(op, acc)| (op.as_str().to_string(), acc.stats()))
        .collect();
    let halves = halves(&by_second_op);
    let timeline = per_second
        .iter()
        .map(|(second, acc)| {
            let s = Stats::from(&acc.latencies, acc.errors);
            TimelinePoint {
                second: *second,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
                max_ms: s.max_ms,
                errors: acc.errors,
                tenths_max_ms: acc.tenths_max_us.map(|us| us as f64 / 1000.0),
                tenths_errors: acc.tenths_errors,
            }
        })
        .collect();

    let (verify, benchmarks, metrics) = step_outputs(&replay);
    let parity = verify.last().map(|last| {
        let mismatches = last.mismatches.values().sum::<u64>();
        Parity {
            step: last.step.clone(),
            keys_checked: last.keys_checked,
            mismatches,
            equal: mismatches == 0,
            checks: verify.len(),
        }
    });
    let changed = changed_steps(&replay);
    let bands = steps
        .iter()
        .filter(|s| s.status != StepStatus::Skipped.to_string())
        .filter_map(|s| {
            let start = s.started_at?;
            let end = s.ended_at.or(run.finished_at).or(probe.last)?;
            let (w0, w1) = (unix(window.start), unix(window.end));
            let width = (w1 - w0).max(f64::MIN_POSITIVE);
            Some(Band {
                step: s.id.clone(),
                start,
                end,
                left_pct: round_ms((unix(start) - w0) / width * 100.0),
                width_pct: round_ms((unix(end) - unix(start)).max(0.0) / width * 100.0),
            })
        })
        .collect();
    if run.started_at.is_none() {
        run.started_at = probe.first;
    }
    if run.finished_at.is_none() && replay.run().is_none() {
        run.finished_at = probe.last;
        if probe.last.is_some() {
            run.status = "finished".into();
        }
    }
    run.duration_s = match (run.started_at, run.finished_at) {
        (Some(a), Some(b)) => Some(seconds_between(a, b)),
        _ => None,
    };
    let lost: u64 = probe.lost_writes.iter().map(|l| l.lost).sum();
    let succeeded = matches!(run.status.as_str(), "succeeded" | "finished");
    let cutovers = cutovers(&probe, &step_starts);
    let mut outcome = Outcome {
        succeeded,
        status: run.status.clone(),
        changed,
        lost_writes: lost,
        parity,
        cutover: cutovers.into_iter().next(),
        ..Outcome::default()
    };
    let strips = strips(&probe, &outages, &view, window);
    view.fill(&mut outcome, &probe, &outages, probe.planned_endpoints);
    Ok(Report {
        format_version: FORMAT_VERSION,
        generated_at: Utc::now(),
        run,
        outcome,
        steps,
        outages,
        clients,
        connections: probe.connections,
        lost_writes: probe.lost_writes,
        verify,
        benchmarks,
        halves,
        latency,
        errors_by_class,
        metrics,
        shards,
        endpoints: probe.endpoints,
        probe_interval_ms: probe.interval_ms,
        timeline,
        bands,
        strips,
    })
}

/// One second of every endpoint and operation, merged.
struct SecondAcc {
    latencies: Histogram<u64>,
    errors: u64,
    tenths_max_us: [u64; 10],
    tenths_errors: [u64; 10],
}

impl Default for SecondAcc {
    fn default() -> Self {
        SecondAcc {
            latencies: new_histogram(),
            errors: 0,
            tenths_max_us: [0; 10],
            tenths_errors: [0; 10],
        }
    }
}

/// The time a report covers: the run's, or the probe's when that is longer.
#[derive(Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// A run of failed requests of one operation, as the probe recorded it.
struct RawOutage {
    endpoint: String,
    shard: Option<String>,
    op: Op,
    kind: OutageKind,
    step: Option<String>,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    duration_ms: f64,
    cause: ErrorClass,
    failed: u64,
}

impl RawOutage {
    fn span(&self) -> (f64, f64) {
        let a = unix(self.start);
        (a, a + self.duration_ms / 1000.0)
    }
}

/// The probe's events, sorted out.
#[derive(Default)]
struct ProbeData {
    endpoints: Vec<EndpointInfo>,
    /// When each endpoint was probed (several spans after a resume).
    probed: BTreeMap<String, Vec<(f64, f64)>>,
    raw: Vec<RawOutage>,
    /// The shards of each endpoint that is a cluster of several, in slot order.
    shards: Vec<(String, ShardAt)>,
    /// When each endpoint refused writes as a replica after it had taken some (a failover
    /// demoted it), until it took writes again.
    demoted: BTreeMap<String, Vec<(f64, f64)>>,
    /// Named endpoints that moved: (old, when, new).
    replaced: Vec<(String, f64, String)>,
    connections: Vec<Connection>,
    lost_writes: Vec<LostWrites>,
    plan: Vec<ClientsAt>,
    first_writes: Vec<(String, DateTime<Utc>)>,
    interval_ms: Option<f64>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    /// Whether a probe ran at all (a runbook's probe writes its clients' plan first).
    planned_endpoints: bool,
}

impl ProbeData {
    fn from_events(events: Vec<ProbeEvent>) -> ProbeData {
        let mut d = ProbeData::default();
        let mut open: BTreeMap<String, f64> = BTreeMap::new();
        for event in events {
            match event {
                ProbeEvent::Started {
                    ts,
                    endpoint,
                    name,
                    interval_ms,
                    ..
                } => {
                    match d.endpoints.iter_mut().find(|e| e.endpoint == endpoint) {
                        Some(e) => e.name = e.name.take().or(name),
                        None => d.endpoints.push(EndpointInfo {
                            endpoint: endpoint.clone(),
                            name,
                            from: ts,
                            until: None,
                            ticks: 0,
                        }),
                    }
                    open.insert(endpoint, unix(ts));
                    d.interval_ms = Some(interval_ms);
                    d.first = Some(d.first.map_or(ts, |t| t.min(ts)));
                }
                ProbeEvent::Stopped {
                    ts,
                    endpoint,
                    ticks,
                } => {
                    d.last = Some(d.last.map_or(ts, |t| t.max(ts)));
                    if let Some(e) = d.endpoints.iter_mut().find(|e| e.endpoint == endpoint) {
                        e.until = Some(ts);
                        e.ticks += ticks;
                    }
                    if let Some(a) = open.remove(&endpoint) {
                        d.probed.entry(endpoint).or_default().push((a, unix(ts)));
                    }
                }
                ProbeEvent::Connected {
                    ts,
                    endpoint,
                    shard,
                    op,
                    resolved,
                    address,
                    role,
                } => d.connections.push(Connection {
                    ts,
                    endpoint,
                    shard,
                    op,
                    address,
                    role,
                    resolved,
                }),
                ProbeEvent::Outage {
                    endpoint,
                    shard,
                    op,
                    kind,
                    step,
                    start,
                    end,
                    duration_ms,
                    cause,
                    failed_requests,
                } => d.raw.push(RawOutage {
                    endpoint,
                    shard,
                    op,
                    kind,
                    step,
                    start,
                    end,
                    duration_ms,
                    cause,
                    failed: failed_requests,
                }),
                ProbeEvent::LostWrites {
                    ts,
                    endpoint,
                    shard,
                    step,
                    acknowledged,
                    read_back,
                    lost,
                } => d.lost_writes.push(LostWrites {
                    ts,
                    endpoint,
                    shard,
                    step: step_label(&step),
                    acknowledged,
                    read_back,
                    lost,
                }),
                ProbeEvent::Clients { plan, .. } => {
                    d.plan = plan;
                    d.planned_endpoints = true;
                }
                ProbeEvent::FirstWrite { ts, endpoint, .. } => d.first_writes.push((endpoint, ts)),
                ProbeEvent::Shards {
                    endpoint, shards, ..
                } => {
                    // A resumed run probes again: its shards are the same ones, or new.
                    for at in shards {
                        if !d
                            .shards
                            .iter()
                            .any(|(e, s)| *e == endpoint && s.shard == at.shard)
                        {
                            d.shards.push((endpoint.clone(), at));
                        }
                    }
                }
                ProbeEvent::Writable {
                    ts,
                    endpoint,
                    shard: None,
                    writable,
                } => {
                    let spans = d.demoted.entry(endpoint).or_default();
                    let open = spans.last().is_some_and(|l| l.1 == f64::INFINITY);
                    match (writable, spans.last_mut()) {
                        (true, Some(last)) if open => last.1 = unix(ts),
                        (false, _) if !open => spans.push((unix(ts), f64::INFINITY)),
                        _ => {}
                    }
                }
                ProbeEvent::Replaced { ts, endpoint, by } => {
                    d.replaced.push((endpoint, unix(ts), by));
                }
                ProbeEvent::Writable { .. } | ProbeEvent::Error { .. } => {}
            }
        }
        // A probe that never stopped (a crash) counts until its last sign of life.
        let last = d.last.or(d.first).map(unix).unwrap_or(0.0);
        for (endpoint, a) in open {
            d.probed.entry(endpoint).or_default().push((a, last.max(a)));
        }
        d.raw.sort_by_key(|o| o.start);
        d
    }

    /// When `endpoint` stood for its name: from the replacement of the one before it (of
    /// that name) to its own, unbounded on either side when there was none.
    fn tenure(&self, endpoint: &str) -> (f64, f64) {
        let start = self
            .replaced
            .iter()
            .find(|(_, _, by)| by == endpoint)
            .map_or(f64::NEG_INFINITY, |(_, t, _)| *t);
        let end = self
            .replaced
            .iter()
            .find(|(old, _, _)| old == endpoint)
            .map_or(f64::INFINITY, |(_, t, _)| *t);
        (start, end)
    }

    fn label_of(&self, name: &str) -> Option<String> {
        self.endpoints
            .iter()
            .find(|e| e.name.as_deref() == Some(name))
            .map(|e| e.endpoint.clone())
    }
}

/// Where the clients were, from the plan and the steps' start times.
fn clients_spans(
    probe: &ProbeData,
    step_starts: &BTreeMap<String, DateTime<Utc>>,
    window: Window,
) -> Vec<ClientsSpan> {
    let mut spans: Vec<ClientsSpan> = Vec::new();
    for entry in &probe.plan {
        let start = match &entry.from {
            None => window.start,
            Some(step) => match step_starts.get(step) {
                Some(t) => *t,
                None => break,
            },
        };
        if let Some(last) = spans.last_mut() {
            last.end = start;
        }
        spans.push(ClientsSpan {
            name: entry.endpoint.clone(),
            endpoint: probe.label_of(&entry.endpoint),
            from_step: entry.from.clone(),
            start,
            end: window.end,
        });
    }
    spans
}

/// The endpoints the clients use, moment by moment: the plan's, or every probed endpoint
/// throughout when there is none.
struct ClientsView {
    /// (endpoint, from, to), in seconds.
    spans: Vec<(String, f64, f64)>,
    window: (f64, f64),
    probed: Vec<(f64, f64)>,
    /// The runbook does not say where the clients are.
    planless: bool,
}

impl ClientsView {
    /// Without a plan the clients are on every endpoint while it stands for its name, except
    /// while it is demoted to a replica: the clients of a primary endpoint follow the
    /// primary. With a plan they are on the endpoints of the name it gives, each while it
    /// stands for that name.
    fn new(clients: &[ClientsSpan], probe: &ProbeData, window: Window) -> ClientsView {
        let w = (unix(window.start), unix(window.end));
        let within = |e: &EndpointInfo, (a, b): (f64, f64)| {
            let (t0, t1) = probe.tenure(&e.endpoint);
            let span = (a.max(t0), b.min(t1));
            (span.1 > span.0).then_some(span)
        };
        let spans = if clients.is_empty() {
            probe
                .endpoints
                .iter()
                .filter_map(|e| Some((e, within(e, w)?)))
                .flat_map(|(e, span)| {
                    let demoted = probe.demoted.get(&e.endpoint).cloned().unwrap_or_default();
                    subtract(&[span], &demoted)
                        .into_iter()
                        .map(|(a, b)| (e.endpoint.clone(), a, b))
                })
                .collect()
        } else {
            clients
                .iter()
                .flat_map(|c| {
                    probe
                        .endpoints
                        .iter()
                        .filter(|e| e.name.as_deref() == Some(c.name.as_str()))
                        .filter_map(|e| {
                            let (a, b) = within(e, (unix(c.start), unix(c.end)))?;
                            Some((e.endpoint.clone(), a, b))
                        })
                })
                .collect()
        };
        ClientsView {
            spans,
            window: w,
            probed: Vec::new(),
            planless: clients.is_empty(),
        }
    }

    /// The endpoints the clients use at `t`.
    fn at(&self, t: DateTime<Utc>) -> Vec<String> {
        let t = unix(t);
        self.spans
            .iter()
            .filter(|(_, a, b)| *a <= t && t < *b)
            .map(|(e, _, _)| e.clone())
            .collect()
    }

    /// When the clients were on `endpoint`.
    fn on(&self, endpoint: &str) -> Vec<(f64, f64)> {
        self.spans
            .iter()
            .filter(|(e, _, _)| e == endpoint)
            .map(|(_, a, b)| (*a, *b))
            .collect()
    }

    /// The clients' figures of the outcome.
    fn fill(
        &mut self,
        outcome: &mut Outcome,
        probe: &ProbeData,
        outages: &[Outage],
        runbook_probe: bool,
    ) {
        let mut covered = Vec::new();
        for (endpoint, a, b) in &self.spans {
            let probed = probe.probed.get(endpoint).cloned().unwrap_or_default();
            covered.extend(intersect(&[(*a, *b)], &probed));
        }
        self.probed = union(covered);
        let run_s = (self.window.1 - self.window.0).max(0.0);
        let probed_s = measure(&self.probed);
        outcome.run_s = round_ms(run_s);
        outcome.probed_s = round_ms(probed_s);
        // A probe starts a moment after the run, and its last tick ends a moment before.
        let slack = 2.0 * probe.interval_ms.unwrap_or(10.0) / 1000.0 + 0.05;
        outcome.probed = if probed_s <= 0.0 {
            Coverage::None
        } else if run_s - probed_s <= slack {
            Coverage::Whole
        } else {
            Coverage::Partly
        };
        outcome.probe_note = match outcome.probed {
            Coverage::Whole => None,
            Coverage::None if probe.endpoints.is_empty() => Some(if runbook_probe {
                "no endpoint was probed (none of `probe.endpoints` had a value the probe could use): nothing was measured".into()
            } else {
                "no endpoint was probed: nothing was measured".into()
            }),
            Coverage::None => Some(
                "the clients' endpoint was not probed while they used it: nothing was measured for them".into(),
            ),
            Coverage::Partly => Some(format!(
                "the clients' endpoint was probed for {:.2} s of the run's {:.2} s ({:.0} %); not probed: {}",
                probed_s,
                run_s,
                100.0 * probed_s / run_s.max(f64::MIN_POSITIVE),
                self.gaps()
            )),
        };
        if self.planless {
            let demoted: Vec<String> = probe
                .demoted
                .iter()
                .flat_map(|(e, spans)| spans.iter().map(move |(a, _)| (e, *a)))
                .map(|(e, a)| format!("`{e}` from {}", clock(a)))
                .collect();
            if !demoted.is_empty() {
                let sentence = format!(
                    "the probed primary became a replica ({}): its clients follow the new primary, so its time as a replica does not count (and counts again only where the new primary was probed)",
                    demoted.join(", ")
                );
                outcome.probe_note = Some(match outcome.probe_note.take() {
                    Some(note) => format!("{note}; {sentence}"),
                    None => sentence,
                });
            }
        }
        if outcome.probed == Coverage::None {
            return;
        }
        let failing = |op: Op| {
            let mut spans = Vec::new();
            for o in probe.raw.iter().filter(|o| o.op == op) {
                spans.extend(intersect(&[o.span()], &self.on(&o.endpoint)));
            }
            round_ms(measure(&union(spans)))
        };
        outcome.unwritable_s = Some(failing(Op::Write));
        outcome.unreadable_s = Some(failing(Op::Read));
        for o in outages.iter().filter(|o| o.clients) {
            match o.kind {
                OutageKind::Disconnect => outcome.disconnects += 1,
                OutageKind::Stall => outcome.stalls += 1,
                OutageKind::Refusal => outcome.refusals += 1,
                OutageKind::Error => outcome.errors += 1,
            }
        }
    }

    /// The stretches of the run when the clients' endpoint was not probed, as clock times.
    fn gaps(&self) -> String {
        let missing = subtract(&[self.window], &self.probed);
        let shown: Vec<String> = missing
            .iter()
            .take(3)
            .map(|(a, b)| format!("{}–{}", clock(*a), clock(*b)))
            .collect();
        let more = missing.len().saturating_sub(3);
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    }
}

/// One endpoint's write and read outages that overlap (and are of one kind) become one.
fn merge_outages(probe: &ProbeData, view: &ClientsView) -> Vec<Outage> {
    let mut out: Vec<(Outage, f64)> = Vec::new();
    for o in &probe.raw {
        let (a, b) = o.span();
        let name = probe
            .endpoints
            .iter()
            .find(|e| e.endpoint == o.endpoint)
            .and_then(|e| e.name.clone());
        if let Some((m, m_end)) = out.iter_mut().rev().find(|(m, m_end)| {
            m.endpoint == o.endpoint
                && m.shard == o.shard
                && m.kind == o.kind
                && unix(m.start) <= b
                && a <= *m_end
        }) {
            if !m.ops.contains(&o.op) {
                m.ops.push(o.op);
                m.ops.sort();
            }
            *m_end = m_end.max(b);
            m.end = match (m.end, o.end) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            };
            m.duration_ms = round_ms((*m_end - unix(m.start)) * 1000.0);
            m.failed_requests += o.failed;
            continue;
        }
        let clients = view.on(&o.endpoint).iter().any(|(x, y)| *x <= a && a < *y);
        out.push((
            Outage {
                endpoint: o.endpoint.clone(),
                name,
                shard: o.shard.clone(),
                kind: o.kind,
                ops: vec![o.op],
                step: step_label(&o.step),
                start: o.start,
                end: o.end,
                duration_ms: round_ms(o.duration_ms),
                cause: o.cause,
                failed_requests: o.failed,
                clients,
            },
            b,
        ));
    }
    out.into_iter().map(|(o, _)| o).collect()
}

/// One shard's row, figures still empty.
fn shard_row(probe: &ProbeData, endpoint: &str, shard: &str) -> ShardRow {
    ShardRow {
        endpoint: endpoint.to_string(),
        name: probe
            .endpoints
            .iter()
            .find(|e| e.endpoint == endpoint)
            .and_then(|e| e.name.clone()),
        shard: shard.to_string(),
        primary: None,
        latency: Stats::default(),
        disconnected_s: 0.0,
        disconnects: 0,
        stalls: 0,
        refusals: 0,
        errors: 0,
    }
}

/// Counts the outages of `row`'s shard among `outages`.
fn count_shard_outages<'a>(row: &mut ShardRow, outages: impl Iterator<Item = &'a Outage>) {
    for o in outages.filter(|o| o.endpoint == row.endpoint && o.shard.as_ref() == Some(&row.shard))
    {
        match o.kind {
            OutageKind::Disconnect => {
                row.disconnects += 1;
                row.disconnected_s += o.duration_ms / 1000.0;
            }
            OutageKind::Stall => row.stalls += 1,
            OutageKind::Refusal => row.refusals += 1,
            OutageKind::Error => row.errors += 1,
        }
    }
    row.disconnected_s = round_ms(row.disconnected_s);
}

/// Step `id`'s figures shard by shard: every request to the shard during the step, and the
/// outages that began in it.
fn step_shards(
    id: &str,
    probe: &ProbeData,
    per_step: &BTreeMap<(String, String, Option<String>, Op), Acc>,
    outages: &[Outage],
) -> Vec<ShardRow> {
    probe
        .shards
        .iter()
        .map(|(endpoint, at)| {
            let mut row = shard_row(probe, endpoint, &at.shard);
            let mut acc = Acc::default();
            for ((_, _, _, _), a) in per_step.iter().filter(|((s, e, sh, _), _)| {
                s == id && e == endpoint && sh.as_ref() == Some(&at.shard)
            }) {
                let _ = acc.latencies.add(&a.latencies);
                acc.errors += a.errors;
            }
            row.latency = acc.stats();
            count_shard_outages(&mut row, outages.iter().filter(|o| o.step == id));
            row
        })
        .collect()
}

fn count_outages(row: &mut StepRow, outages: &[Outage]) {
    for o in outages.iter().filter(|o| o.step == row.id) {
        match o.kind {
            OutageKind::Disconnect => {
                row.disconnects += 1;
                row.disconnected_s += o.duration_ms / 1000.0;
            }
            OutageKind::Stall => row.stalls += 1,
            OutageKind::Refusal => row.refusals += 1,
            OutageKind::Error => row.errors += 1,
        }
    }
    row.disconnected_s = round_ms(row.disconnected_s);
}

/// Each move of the clients: from the start of its step to the first write acknowledged
/// by the new endpoint.
fn cutovers(probe: &ProbeData, step_starts: &BTreeMap<String, DateTime<Utc>>) -> Vec<Cutover> {
    let mut out = Vec::new();
    for pair in probe.plan.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        let Some(step) = &to.from else {
            continue;
        };
        let at = step_starts.get(step).copied();
        let to_endpoint = probe.label_of(&to.endpoint);
        let first_write_at = match (&to_endpoint, at) {
            (Some(label), Some(at)) => probe
                .first_writes
                .iter()
                .filter(|(e, ts)| e == label && *ts >= at)
                .map(|(_, ts)| *ts)
                .min(),
            _ => None,
        };
        let note = match (at, &to_endpoint, first_write_at) {
            (None, _, _) => Some(format!(
                "step `{step}` did not run: the clients did not move"
            )),
            (_, None, _) => Some(format!("`{}` was not probed", to.endpoint)),
            (_, _, None) => Some(format!(
                "no write was acknowledged on `{}` after `{step}` started",
                to.endpoint
            )),
            _ => None,
        };
        out.push(Cutover {
            step: step.clone(),
            from: from.endpoint.clone(),
            to: to.endpoint.clone(),
            from_endpoint: probe.label_of(&from.endpoint),
            to_endpoint,
            at,
            first_write_at,
            write_gap_ms: match (at, first_write_at) {
                (Some(a), Some(b)) => Some(round_ms((unix(b) - unix(a)) * 1000.0)),
                _ => None,
            },
            note,
        });
    }
    out
}

/// Each endpoint's (each shard's, in a cluster of several) states over the report's window,
/// for the connection-state strip.
fn strips(probe: &ProbeData, outages: &[Outage], view: &ClientsView, window: Window) -> Vec<Strip> {
    let (w0, w1) = (unix(window.start), unix(window.end));
    let width = (w1 - w0).max(f64::MIN_POSITIVE);
    let rank = |state: &str| match state {
        "ok" => 1,
        "error" => 2,
        "refusal" => 3,
        "stall" => 4,
        "disconnect" => 5,
        _ => 0,
    };
    let lanes = probe.endpoints.iter().flat_map(|e| {
        let shards: Vec<Option<String>> = probe
            .shards
            .iter()
            .filter(|(endpoint, _)| *endpoint == e.endpoint)
            .map(|(_, at)| Some(at.shard.clone()))
            .collect();
        let shards = if shards.is_empty() {
            vec![None]
        } else {
            shards
        };
        shards.into_iter().map(move |shard| (e, shard))
    });
    lanes
        .map(|(e, shard)| {
            let probed = probe.probed.get(&e.endpoint).cloned().unwrap_or_default();
            let mine: Vec<(f64, f64, &'static str)> = outages
                .iter()
                .filter(|o| o.endpoint == e.endpoint && o.shard == shard)
                .map(|o| {
                    let a = unix(o.start);
                    (a, a + o.duration_ms / 1000.0, o.kind.as_str())
                })
                .collect();
            let clients_on = view.on(&e.endpoint);
            let mut cuts: Vec<f64> = vec![w0, w1];
            cuts.extend(probed.iter().flat_map(|(a, b)| [*a, *b]));
            cuts.extend(mine.iter().flat_map(|(a, b, _)| [*a, *b]));
            cuts.extend(clients_on.iter().flat_map(|(a, b)| [*a, *b]));
            cuts.retain(|t| (w0..=w1).contains(t));
            cuts.sort_by(f64::total_cmp);
            cuts.dedup();
            let mut segments: Vec<Segment> = Vec::new();
            for pair in cuts.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let mid = (a + b) / 2.0;
                let inside =
                    |spans: &[(f64, f64)]| spans.iter().any(|(x, y)| *x <= mid && mid < *y);
                let mut state = if inside(&probed) { "ok" } else { "unprobed" };
                for (x, y, kind) in &mine {
                    if *x <= mid && mid < *y && rank(kind) > rank(state) {
                        state = kind;
                    }
                }
                let clients = inside(&clients_on);
                match segments.last_mut() {
                    Some(last) if last.state == state && last.clients == clients => {
                        last.end = from_unix(b);
                        last.width_pct = round_ms((b - unix(last.start)) / width * 100.0);
                    }
                    _ => segments.push(Segment {
                        state: state.to_string(),
                        clients,
                        start: from_unix(a),
                        end: from_unix(b),
                        left_pct: round_ms((a - w0) / width * 100.0),
                        width_pct: round_ms((b - a) / width * 100.0),
                    }),
                }
            }
            Strip {
                endpoint: e.endpoint.clone(),
                name: e.name.clone(),
                shard,
                segments,
            }
        })
        .collect()
}

/// A time as `HH:MM:SS.mmm` (UTC).
fn clock(t: f64) -> String {
    DateTime::from_timestamp_micros((t * 1e6) as i64)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn from_unix(t: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((t * 1e6).round() as i64).unwrap_or_default()
}

/// Rounded to a thousandth: figures in the report do not pretend to float precision.
fn round_ms(x: f64) -> f64 {
    let r = (x * 1000.0).round() / 1000.0;
    // No `-0`: a sum of nothing is nothing.
    if r == 0.0 { 0.0 } else { r }
}

/// The spans merged where they overlap, in order.
fn union(mut spans: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    spans.retain(|(a, b)| b > a);
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn measure(spans: &[(f64, f64)]) -> f64 {
    union(spans.to_vec()).iter().map(|(a, b)| b - a).sum()
}

fn intersect(xs: &[(f64, f64)], ys: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (a, b) in xs {
        for (c, d) in ys {
            let (s, e) = (a.max(*c), b.min(*d));
            if e > s {
                out.push((s, e));
            }
        }
    }
    union(out)
}

/// `xs` without `ys`.
fn subtract(xs: &[(f64, f64)], ys: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let ys = union(ys.to_vec());
    let mut out = Vec::new();
    for (a, b) in xs {
        let mut from = *a;
        for (c, d) in &ys {
            if *d <= from || *c >= *b {
                continue;
            }
            if *c > from {
                out.push((from, *c));
            }
            from = from.max(*d);
        }
        if from < *b {
            out.push((from, *b));
        }
    }
    out
}

fn empty_row(id: &str, action: &str, phase: &str, status: &str) -> StepRow {
    StepRow {
        id: id.to_string(),
        action: action.to_string(),
        phase: phase.to_string(),
        status: status.to_string(),
        attempts: 0,
        started_at: None,
        ended_at: None,
        duration_s: None,
        operations: Vec::new(),
        notes: 0,
        more_notes: 0,
        error: None,
        latency: Stats::default(),
        by_op: BTreeMap::new(),
        clients: None,
        disconnected_s: 0.0,
        disconnects: 0,
        stalls: 0,
        refusals: 0,
        errors: 0,
        shards: Vec::new(),
    }
}

/// The run's identity, status and times, from the journal.
fn run_info(replay: &Replay) -> RunInfo {
    match replay.run() {
        Some(run) => RunInfo {
            id: Some(run.run_id.clone()),
            runbook: Some(run.runbook.clone()),
            file: Some(run.file.clone()),
            platform: Some(run.platform.clone()),
            status: run.status.to_string(),
            started_at: Some(run.started_at),
            finished_at: run.finished_at,
            duration_s: None,
        },
        None => RunInfo {
            status: "unknown".into(),
            ..RunInfo::default()
        },
    }
}

/// Per-step status, attempts, times and notes, from the journal.
fn step_rows(replay: &Replay) -> Vec<StepRow> {
    replay
        .steps()
        .iter()
        .map(|s| {
            let mut row = empty_row(
                &s.id,
                &s.action,
                &s.phase.to_string(),
                &s.status.to_string(),
            );
            row.attempts = s.attempts;
            row.started_at = s.started_at;
            row.ended_at = s.finished_at;
            row.duration_s = match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => Some(seconds_between(a, b)),
                _ => None,
            };
            row.notes = s.notes.len();
            row.more_notes = s.notes.len().saturating_sub(NOTES_SHOWN);
            row.operations = s.notes.iter().take(NOTES_SHOWN).cloned().collect();
            row.error = s.error.clone();
            row
        })
        .collect()
}

/// Steps that changed something, by their action's declared effect.
fn changed_steps(replay: &Replay) -> Vec<String> {
    replay
        .steps()
        .iter()
        .filter(|s| s.outputs.is_some())
        .filter(|s| {
            crate::actions::lookup(&s.action)
                .and_then(|spec| (spec.build)(s.inputs.clone()).ok())
                .is_none_or(|a| a.effect() != crate::actions::Effect::Observes)
        })
        .map(|s| format!("{}: {}", s.id, s.action))
        .collect()
}

/// The last successful outputs of steps whose action is `action`.
fn outputs_of<'a>(
    replay: &'a Replay,
    action: &str,
) -> Vec<(String, &'a serde_json::Map<String, Value>)> {
    replay
        .steps()
        .iter()
        .filter(|s| s.action == action)
        .filter_map(|s| Some((s.id.clone(), s.outputs.as_ref()?)))
        .collect()
}

fn num(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(0.0)
}

/// Verify, benchmark and CloudWatch results from the steps that produce them.
fn step_outputs(replay: &Replay) -> (Vec<Verify>, Vec<Bench>, Vec<Metric>) {
    let verify = outputs_of(replay, "data.verify")
        .into_iter()
        .map(|(step, o)| Verify {
            step,
            keys_checked: o.get("keys_checked").and_then(Value::as_u64).unwrap_or(0),
            mismatches: o
                .get("mismatches")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default(),
            examples: o
                .get("examples")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            keys_per_sec: o.get("keys_per_sec").and_then(Value::as_f64),
        })
        .collect();
    let mut benchmarks = Vec::new();
    for (step, o) in outputs_of(replay, "bench.run") {
        for r in o
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            benchmarks.push(bench_row(&step, r));
        }
    }
    let mut metrics = Vec::new();
    for (step, o) in outputs_of(replay, "metrics.capture") {
        for m in o
            .get("metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            let values: Vec<f64> = m
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            let mean =
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
            metrics.push(Metric {
                step: text("step").unwrap_or_else(|| step.clone()),
                metric: text("metric").unwrap_or_default(),
                node: text("node").unwrap_or_default(),
                points: values.len(),
                min: values.iter().copied().reduce(f64::min),
                mean,
                max: values.iter().copied().reduce(f64::max),
                timestamps: m
                    .get("timestamps")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                values,
            });
        }
    }
    (verify, benchmarks, metrics)
}

/// One result of a `bench.run` step, with its timeline, bursts and recovery when it has them.
fn bench_row(step: &str, r: &Value) -> Bench {
    let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let opt = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let timeline = r.get("timeline");
    let points: Vec<BenchPoint> = timeline
        .and_then(|t| t.get("points"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| BenchPoint {
            t_s: num(p.get("t_s")),
            target_ops_per_sec: num(p.get("target_ops_per_sec")),
            ops_per_sec: num(p.get("ops_per_sec")),
            p99_ms: num(p.get("p99_ms")),
        })
        .collect();
    let bucket_s = timeline.map_or(0.0, |t| num(t.get("bucket_ms")) / 1000.0);
    let length_s = points.last().map_or(0.0, |p| p.t_s + bucket_s);
    let mut bursts = Vec::new();
    if let Some(b) = r.get("burst")
        && let (Some(every), Some(length)) = (opt(b, "every_s"), opt(b, "length_s"))
        && every > 0.0
    {
        let mut start = every;
        while start < length_s {
            bursts.push(BenchSpan {
                start_s: start,
                end_s: (start + length).min(length_s),
            });
            start += every;
        }
    }
    let (label, workload, op) = (text("label"), text("workload"), text("op"));
    let persistence = r
        .get("persistence")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut group = if workload == op || workload.is_empty() {
        op.clone()
    } else {
        format!("{workload} {op}")
    };
    if let Some(mode) = &persistence {
        group.push_str(&format!(" ({mode})"));
    }
    Bench {
        step: step.to_string(),
        endpoint: text("endpoint"),
        label: if label.is_empty() {
            text("endpoint")
        } else {
            label
        },
        workload,
        op,
        persistence,
        group,
        ops_per_sec: num(r.get("ops_per_sec")),
        target_ops_per_sec: opt(r, "target_ops_per_sec"),
        p50_ms: num(r.get("p50_ms")),
        p95_ms: num(r.get("p95_ms")),
        p99_ms: num(r.get("p99_ms")),
        max_ms: num(r.get("max_ms")),
        errors: r.get("errors").and_then(Value::as_u64).unwrap_or(0),
        timeline: points,
        bursts,
        recovery: r
            .get("recovery")
            .filter(|v| v.is_object())
            .map(|v| BenchRecovery {
                event: v
                    .get("event")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                event_s: num(v.get("event_s")),
                back_s: opt(v, "back_s"),
                recovered_s: opt(v, "recovered_s"),
                recovery_s: opt(v, "recovery_s"),
            }),
    }
}

/// Seed 000's conclusion: the first half of the probed seconds against the second.
fn halves(by_second_op: &BTreeMap<(i64, Op), Acc>) -> Option<Halves> {
    let first = by_second_op.keys().map(|k| k.0).min()?;
    let last = by_second_op.keys().map(|k| k.0).max()?;
    if last <= first {
        return None;
    }
    let split = first + (last - first + 1) / 2;
    let mut a: BTreeMap<String, Acc> = BTreeMap::new();
    let mut b: BTreeMap<String, Acc> = BTreeMap::new();
    for ((second, op), acc) in by_second_op {
        let side = if *second < split { &mut a } else { &mut b };
        let into = side.entry(op.as_str().to_string()).or_default();
        let _ = into.latencies.add(&acc.latencies);
        into.errors += acc.errors;
    }
    let first_stats: BTreeMap<String, Stats> =
        a.iter().map(|(k, v)| (k.clone(), v.stats())).collect();
    let second_stats: BTreeMap<String, Stats> =
        b.iter().map(|(k, v)| (k.clone(), v.stats())).collect();
    let change = |pick: fn(&Stats) -> f64| -> BTreeMap<String, f64> {
        first_stats
            .iter()
            .filter_map(|(op, s1)| {
                let s2 = second_stats.get(op)?;
                (pick(s1) > 0.0).then(|| (op.clone(), (pick(s2) - pick(s1)) / pick(s1) * 100.0))
            })
            .collect()
    };
    Some(Halves {
        split_at: DateTime::from_timestamp(split, 0)?,
        p50_change_pct: change(|s| s.p50_ms),
        p99_change_pct: change(|s| s.p99_ms),
        first: first_stats,
        second: second_stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_once_and_subtract() {
        let d = [(0.0, 1.0), (0.5, 1.5), (5.0, 5.25)];
        assert!((measure(&d) - 1.75).abs() < 1e-9);
        assert_eq!(intersect(&[(0.0, 10.0)], &d), vec![(0.0, 1.5), (5.0, 5.25)]);
        assert_eq!(subtract(&[(0.0, 10.0)], &d), vec![(1.5, 5.0), (5.25, 10.0)]);
    }
}

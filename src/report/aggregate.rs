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
use crate::probe::{Op, ProbeEvent, Second};

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
    let mut per_step: BTreeMap<(String, Op), Acc> = BTreeMap::new();
    let mut per_op: BTreeMap<Op, Acc> = BTreeMap::new();
    let mut per_second: BTreeMap<i64, (Histogram<u64>, u64)> = BTreeMap::new();
    let mut by_second_op: BTreeMap<(i64, Op), Acc> = BTreeMap::new();
    let mut errors_by_class: BTreeMap<String, u64> = BTreeMap::new();
    read_json_lines::<Second>(&probe_dir.join(SECONDS_FILE), |s| {
        let h = s.decode_histogram();
        per_step
            .entry((step_label(&s.step), s.op))
            .or_default()
            .add(&s, h.as_ref());
        per_op.entry(s.op).or_default().add(&s, h.as_ref());
        by_second_op
            .entry((s.second, s.op))
            .or_default()
            .add(&s, h.as_ref());
        let (sec_h, sec_errors) = per_second
            .entry(s.second)
            .or_insert_with(|| (new_histogram(), 0));
        if let Some(h) = &h {
            let _ = sec_h.add(h);
        }
        for (class, n) in &s.errors {
            *sec_errors += n;
            *errors_by_class.entry(class.to_string()).or_default() += n;
        }
    })?;

    let mut disconnects = Vec::new();
    let mut connections = Vec::new();
    let mut lost_writes = Vec::new();
    let mut endpoints: Vec<String> = Vec::new();
    let mut probe_interval_ms = None;
    let mut first_probe: Option<DateTime<Utc>> = None;
    let mut last_probe: Option<DateTime<Utc>> = None;
    for event in events {
        match event {
            ProbeEvent::Started {
                ts,
                endpoint,
                interval_ms,
                ..
            } => {
                if !endpoints.contains(&endpoint) {
                    endpoints.push(endpoint);
                }
                probe_interval_ms = Some(interval_ms);
                first_probe = Some(first_probe.map_or(ts, |t| t.min(ts)));
            }
            ProbeEvent::Stopped { ts, .. } => {
                last_probe = Some(last_probe.map_or(ts, |t| t.max(ts)))
            }
            ProbeEvent::Connected {
                ts,
                endpoint,
                resolved,
                address,
                role,
            } => connections.push(Connection {
                ts,
                endpoint,
                address,
                role,
                resolved,
            }),
            ProbeEvent::Disconnect {
                endpoint,
                step,
                start,
                end,
                duration_ms,
                cause,
                failed_requests,
            } => disconnects.push(Disconnect {
                endpoint,
                step: step_label(&step),
                start,
                end,
                duration_ms,
                cause,
                failed_requests,
            }),
            ProbeEvent::LostWrites {
                ts,
                endpoint,
                step,
                acknowledged,
                read_back,
                lost,
            } => lost_writes.push(LostWrites {
                ts,
                endpoint,
                step: step_label(&step),
                acknowledged,
                read_back,
                lost,
            }),
            ProbeEvent::Error { .. } => {}
        }
    }
    disconnects.sort_by_key(|d| d.start);

    for row in &mut steps {
        let mut all = Acc::default();
        for op in [Op::Write, Op::Read] {
            if let Some(acc) = per_step.get(&(row.id.clone(), op)) {
                row.by_op.insert(op.as_str().to_string(), acc.stats());
                let _ = all.latencies.add(&acc.latencies);
                all.errors += acc.errors;
            }
        }
        row.latency = all.stats();
        let mine: Vec<&Disconnect> = disconnects.iter().filter(|d| d.step == row.id).collect();
        row.disconnects = mine.len();
        row.disconnected_s = mine.iter().map(|d| d.duration_ms).fold(0.0, |a, b| a + b) / 1000.0;
    }
    // Samples taken while no step ran (before the first, between steps) get a row of their own.
    if per_step.keys().any(|(s, _)| s == NO_STEP) {
        let mut row = empty_row(NO_STEP, "", "", "");
        let mut all = Acc::default();
        for op in [Op::Write, Op::Read] {
            if let Some(acc) = per_step.get(&(NO_STEP.to_string(), op)) {
                row.by_op.insert(op.as_str().to_string(), acc.stats());
                let _ = all.latencies.add(&acc.latencies);
                all.errors += acc.errors;
            }
        }
        row.latency = all.stats();
        let mine: Vec<&Disconnect> = disconnects.iter().filter(|d| d.step == NO_STEP).collect();
        row.disconnects = mine.len();
        row.disconnected_s = mine.iter().map(|d| d.duration_ms).fold(0.0, |a, b| a + b) / 1000.0;
        steps.push(row);
    }

    let latency = per_op
        .iter()
        .map(|(op, acc)| (op.as_str().to_string(), acc.stats()))
        .collect();
    let halves = halves(&by_second_op);
    let timeline = per_second
        .iter()
        .map(|(second, (h, errors))| {
            let s = Stats::from(h, *errors);
            TimelinePoint {
                second: *second,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
                max_ms: s.max_ms,
                errors: *errors,
            }
        })
        .collect();

    let (verify, benchmarks, metrics) = step_outputs(&replay);
    let parity = (!verify.is_empty()).then(|| {
        let keys_checked = verify.iter().map(|v| v.keys_checked).sum();
        let mismatches = verify
            .iter()
            .map(|v| v.mismatches.values().sum::<u64>())
            .sum();
        Parity {
            keys_checked,
            mismatches,
            equal: mismatches == 0,
        }
    });
    let changed = changed_steps(&replay);
    let bands = steps
        .iter()
        .filter(|s| s.status != StepStatus::Skipped.to_string())
        .filter_map(|s| {
            Some(Band {
                step: s.id.clone(),
                start: s.started_at?,
                end: s.ended_at.or(run.finished_at).or(last_probe)?,
            })
        })
        .collect();
    if run.started_at.is_none() {
        run.started_at = first_probe;
    }
    if run.finished_at.is_none() && replay.run().is_none() {
        run.finished_at = last_probe;
        if last_probe.is_some() {
            run.status = "finished".into();
        }
    }
    run.duration_s = match (run.started_at, run.finished_at) {
        (Some(a), Some(b)) => Some(seconds_between(a, b)),
        _ => None,
    };
    let unwritable_s = union_seconds(&disconnects);
    let lost: u64 = lost_writes.iter().map(|l| l.lost).sum();
    let succeeded = matches!(run.status.as_str(), "succeeded" | "finished");
    let outcome = Outcome {
        succeeded,
        status: run.status.clone(),
        changed,
        unwritable_s,
        disconnects: disconnects.len(),
        lost_writes: lost,
        parity,
    };
    Ok(Report {
        format_version: FORMAT_VERSION,
        generated_at: Utc::now(),
        run,
        outcome,
        steps,
        disconnects,
        connections,
        lost_writes,
        verify,
        benchmarks,
        halves,
        latency,
        errors_by_class,
        metrics,
        endpoints,
        probe_interval_ms,
        timeline,
        bands,
    })
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
        disconnected_s: 0.0,
        disconnects: 0,
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
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            benchmarks.push(Bench {
                step: step.clone(),
                endpoint: text("endpoint"),
                op: text("op"),
                ops_per_sec: num(r.get("ops_per_sec")),
                p50_ms: num(r.get("p50_ms")),
                p95_ms: num(r.get("p95_ms")),
                p99_ms: num(r.get("p99_ms")),
                max_ms: num(r.get("max_ms")),
                errors: r.get("errors").and_then(Value::as_u64).unwrap_or(0),
            });
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

/// Total time covered by at least one disconnect (overlaps across endpoints counted once).
fn union_seconds(disconnects: &[Disconnect]) -> f64 {
    let mut spans: Vec<(f64, f64)> = disconnects
        .iter()
        .map(|d| {
            let start = d.start.timestamp_micros() as f64 / 1e6;
            (start, start + d.duration_ms / 1000.0)
        })
        .collect();
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ErrorClass;

    fn outage(start_ms: i64, duration_ms: f64) -> Disconnect {
        Disconnect {
            endpoint: "e".into(),
            step: "s".into(),
            start: DateTime::from_timestamp_millis(start_ms).unwrap(),
            end: None,
            duration_ms,
            cause: ErrorClass::Refused,
            failed_requests: 1,
        }
    }

    #[test]
    fn overlapping_outages_count_once() {
        let d = [outage(0, 1000.0), outage(500, 1000.0), outage(5000, 250.0)];
        assert!((union_seconds(&d) - 1.75).abs() < 1e-9);
    }
}

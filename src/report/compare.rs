//! Two runs side by side, step by step: a rehearsal against the production run, or
//! before against after.
//!
//! A comparison is built from the two runs' own reports, so every figure in it is the one
//! each report shows; steps are matched by id, in the order of the first run (steps only
//! the second run has follow theirs).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{Band, Outcome, Report, ShardRow, StepRow, Strip};

/// The version of the JSON comparison; bumped when a field changes meaning or goes away.
pub const COMPARE_FORMAT_VERSION: u32 = 1;

/// One run of the two.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub id: Option<String>,
    pub runbook: Option<String>,
    pub platform: Option<String>,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_s: Option<f64>,
    pub probe_interval_ms: Option<f64>,
    pub outcome: Outcome,
    /// The run's steps and connection states, for its strip.
    pub bands: Vec<Band>,
    pub strips: Vec<Strip>,
}

/// One step's figures in one run.
#[derive(Clone, Debug, Serialize)]
pub struct StepFigures {
    pub status: String,
    pub duration_s: Option<f64>,
    pub disconnects: usize,
    pub disconnected_s: f64,
    pub stalls: usize,
    pub refusals: usize,
    pub errors: usize,
    pub requests: u64,
    pub failed_requests: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// A `data.verify` step's result: keys checked and mismatches.
    pub keys_checked: Option<u64>,
    pub mismatches: Option<u64>,
    /// The step's figures shard by shard, for cluster endpoints of several shards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRow>,
}

/// A step in both runs (or in one of them only).
#[derive(Clone, Debug, Serialize)]
pub struct StepPair {
    pub id: String,
    pub action: String,
    pub left: Option<StepFigures>,
    pub right: Option<StepFigures>,
}

/// The comparison of two runs.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub format_version: u32,
    pub generated_at: DateTime<Utc>,
    pub left: Side,
    pub right: Side,
    pub steps: Vec<StepPair>,
}

fn side(r: &Report) -> Side {
    Side {
        id: r.run.id.clone(),
        runbook: r.run.runbook.clone(),
        platform: r.run.platform.clone(),
        status: r.run.status.clone(),
        started_at: r.run.started_at,
        duration_s: r.run.duration_s,
        probe_interval_ms: r.probe_interval_ms,
        outcome: r.outcome.clone(),
        bands: r.bands.clone(),
        strips: r.strips.clone(),
    }
}

fn figures(r: &Report, row: &StepRow) -> StepFigures {
    let answered = row.latency.requests > row.latency.errors;
    let latency = |v: f64| answered.then_some(v);
    let verify = r.verify.iter().find(|v| v.step == row.id);
    StepFigures {
        status: row.status.clone(),
        duration_s: row.duration_s,
        disconnects: row.disconnects,
        disconnected_s: row.disconnected_s,
        stalls: row.stalls,
        refusals: row.refusals,
        errors: row.errors,
        requests: row.latency.requests,
        failed_requests: row.latency.errors,
        p50_ms: latency(row.latency.p50_ms),
        p95_ms: latency(row.latency.p95_ms),
        p99_ms: latency(row.latency.p99_ms),
        max_ms: latency(row.latency.max_ms),
        keys_checked: verify.map(|v| v.keys_checked),
        mismatches: verify.map(|v| v.mismatches.values().sum()),
        shards: row.shards.clone(),
    }
}

/// Sets `left` and `right` side by side.
pub fn compare(left: &Report, right: &Report) -> Comparison {
    let mut steps: Vec<StepPair> = left
        .steps
        .iter()
        .map(|row| StepPair {
            id: row.id.clone(),
            action: row.action.clone(),
            left: Some(figures(left, row)),
            right: None,
        })
        .collect();
    let mut after = 0;
    for row in &right.steps {
        match steps.iter().position(|p| p.id == row.id) {
            Some(i) => {
                steps[i].right = Some(figures(right, row));
                after = i + 1;
            }
            None => {
                steps.insert(
                    after,
                    StepPair {
                        id: row.id.clone(),
                        action: row.action.clone(),
                        left: None,
                        right: Some(figures(right, row)),
                    },
                );
                after += 1;
            }
        }
    }
    Comparison {
        format_version: COMPARE_FORMAT_VERSION,
        generated_at: Utc::now(),
        left: side(left),
        right: side(right),
        steps,
    }
}

/// The comparison as aligned plain text, for a terminal.
pub fn to_text(c: &Comparison) -> String {
    use std::fmt::Write as _;
    let name = |s: &Side| s.id.clone().unwrap_or_else(|| "(probe)".into());
    let (a, b) = (name(&c.left), name(&c.right));
    let mut out = String::new();
    let _ = writeln!(out, "A: {a} ({})", c.left.status);
    let _ = writeln!(out, "B: {b} ({})", c.right.status);
    let _ = writeln!(out);
    let secs = |v: Option<f64>| v.map_or("not measured".to_string(), |s| format!("{s:.2} s"));
    let gap = |o: &Outcome| {
        o.cutover.as_ref().map_or("–".to_string(), |c| {
            c.write_gap_ms
                .map_or("not measured".to_string(), |g| format!("{g:.1} ms"))
        })
    };
    let parity = |o: &Outcome| {
        o.parity.as_ref().map_or("not checked".to_string(), |p| {
            format!(
                "{} ({} keys, {} check{})",
                if p.equal {
                    "equal".to_string()
                } else {
                    format!("{} mismatches", p.mismatches)
                },
                p.keys_checked,
                p.checks,
                if p.checks == 1 { "" } else { "s" }
            )
        })
    };
    let rows: Vec<(&str, String, String)> = vec![
        (
            "duration",
            secs(c.left.duration_s),
            secs(c.right.duration_s),
        ),
        (
            "could not write",
            secs(c.left.outcome.unwritable_s),
            secs(c.right.outcome.unwritable_s),
        ),
        (
            "disconnects",
            c.left.outcome.disconnects.to_string(),
            c.right.outcome.disconnects.to_string(),
        ),
        (
            "stalls",
            c.left.outcome.stalls.to_string(),
            c.right.outcome.stalls.to_string(),
        ),
        (
            "cutover write gap",
            gap(&c.left.outcome),
            gap(&c.right.outcome),
        ),
        (
            "key parity",
            parity(&c.left.outcome),
            parity(&c.right.outcome),
        ),
    ];
    for (label, x, y) in rows {
        let _ = writeln!(out, "{label:<18} A {x:<28} B {y}");
    }
    for (label, o) in [("A", &c.left.outcome), ("B", &c.right.outcome)] {
        if let Some(note) = &o.probe_note {
            let _ = writeln!(out, "not measured in {label}: {note}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>9}  {:>6} {:>6}  {:>9} {:>9}  {:>9} {:>9}  parity",
        "step", "A time", "B time", "A disc", "B disc", "A p50", "B p50", "A p99", "B p99",
    );
    let dur = |f: &Option<StepFigures>| {
        f.as_ref()
            .and_then(|f| f.duration_s)
            .map_or("–".to_string(), |s| format!("{s:.2} s"))
    };
    let disc = |f: &Option<StepFigures>| {
        f.as_ref()
            .map_or("–".to_string(), |f| f.disconnects.to_string())
    };
    let ms = |f: &Option<StepFigures>, pick: fn(&StepFigures) -> Option<f64>| {
        f.as_ref()
            .and_then(pick)
            .map_or("–".to_string(), |v| format!("{v:.2} ms"))
    };
    let keys = |f: &Option<StepFigures>| {
        f.as_ref()
            .and_then(|f| Some(format!("{}/{}", f.keys_checked?, f.mismatches?)))
    };
    for s in &c.steps {
        let parity = match (keys(&s.left), keys(&s.right)) {
            (None, None) => String::new(),
            (x, y) => format!(
                "A {} B {} (keys/mismatches)",
                x.unwrap_or_else(|| "–".into()),
                y.unwrap_or_else(|| "–".into())
            ),
        };
        let line = format!(
            "{:<22} {:>9} {:>9}  {:>6} {:>6}  {:>9} {:>9}  {:>9} {:>9}  {}",
            s.id,
            dur(&s.left),
            dur(&s.right),
            disc(&s.left),
            disc(&s.right),
            ms(&s.left, |f| f.p50_ms),
            ms(&s.right, |f| f.p50_ms),
            ms(&s.left, |f| f.p99_ms),
            ms(&s.right, |f| f.p99_ms),
            parity
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

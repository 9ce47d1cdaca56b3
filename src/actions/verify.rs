//! `data.verify`: the key-parity check as a step, so a runbook can refuse to cut over
//! before the target holds what the source holds.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::verify::{ReadFrom, VerifyError, VerifyOptions, VerifyReport, keyname, verify};

pub const SPEC: ActionSpec = ActionSpec {
    name: "data.verify",
    summary: "Compare every key of a source and a target (type, value, TTL); fail on persistent mismatches.",
    outputs: super::Declared::Listed(&[
        "parity",
        "functions",
        "keys_checked",
        "by_type",
        "mismatches",
        "persistent",
        "transient",
        "transient_mismatches",
        "expired",
        "skipped",
        "rounds",
        "read_from",
        "databases",
        "examples",
        "keys_per_sec",
    ]),
    effect: Effect::Observes,
    build: super::build::<DataVerify>,
    schema: super::schema::<DataVerify>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataVerify {
    /// Where the data comes from, e.g. `redis://10.0.1.5:6379`.
    #[serde(deserialize_with = "endpoint")]
    #[schemars(with = "String")]
    source: Endpoint,
    /// Where it should have arrived.
    #[serde(deserialize_with = "endpoint")]
    #[schemars(with = "String")]
    target: Endpoint,
    /// How far apart the two sides' TTLs may be (default `2s`).
    #[serde(default, deserialize_with = "optional_duration::deserialize")]
    #[schemars(with = "Option<String>")]
    ttl_tolerance: Option<Duration>,
    /// Passes in all: the full one, then re-checks of the mismatches (default 3; 1 = none).
    #[serde(default)]
    rounds: Option<u32>,
    /// Pause before a re-check when the target is not a replica (default `1s`).
    #[serde(default, deserialize_with = "optional_duration::deserialize")]
    #[schemars(with = "Option<String>")]
    recheck_delay: Option<Duration>,
    /// Keys per SCAN page and pipelined batch (default 1000).
    #[serde(default)]
    batch: Option<usize>,
    /// Example keys kept in the outputs (default 10).
    #[serde(default)]
    examples: Option<usize>,
    /// Key prefixes not compared (default: the probe's `runbook:probe:`).
    #[serde(default)]
    skip_prefixes: Option<Vec<String>>,
    /// The databases to compare (default: every database that holds keys on either side).
    #[serde(default)]
    db: Option<Vec<i64>>,
    /// Keys per second each side is read at most (default: as fast as it can).
    #[serde(default)]
    max_rate: Option<u64>,
    /// `primary` (the endpoints) or `replica` (a replica of each, to spare a primary).
    #[serde(default)]
    read_from: ReadFrom,
    /// Fail the step when keys differ (default true). With `false` the step succeeds and
    /// a later `assert` can look at the outputs.
    #[serde(default = "yes")]
    fail_on_mismatch: bool,
}

fn yes() -> bool {
    true
}

/// Reads an endpoint URL; the error names the expected forms and never shows a password.
pub(super) fn endpoint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
    let text = String::deserialize(d)?;
    Endpoint::parse(&text).map_err(serde::de::Error::custom)
}

/// An optional duration written as text (`2s`).
pub(super) mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| crate::duration::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl DataVerify {
    fn options(&self) -> VerifyOptions {
        let d = VerifyOptions::default();
        VerifyOptions {
            ttl_tolerance: self.ttl_tolerance.unwrap_or(d.ttl_tolerance),
            rounds: self.rounds.unwrap_or(d.rounds),
            recheck_delay: self.recheck_delay.unwrap_or(d.recheck_delay),
            batch: self.batch.unwrap_or(d.batch),
            examples: self.examples.unwrap_or(d.examples),
            skip_prefixes: self
                .skip_prefixes
                .clone()
                .unwrap_or(d.skip_prefixes.clone()),
            dbs: self.db.clone().unwrap_or_default(),
            max_rate: self.max_rate,
            read_from: self.read_from,
            ..d
        }
    }
}

#[async_trait]
impl Action for DataVerify {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        let o = self.options();
        vec![
            Operation::new(
                "redis",
                format!("SCAN {} and {} (both directions)", self.source, self.target),
            )
            .param("compare", "TYPE, PTTL, GET/HSCAN/SSCAN/ZSCAN/LRANGE/XRANGE")
            .param("ttl_tolerance", crate::duration::format(o.ttl_tolerance))
            .param("rounds", o.rounds)
            .param("max_rate", o.max_rate)
            .param("read_from", o.read_from)
            .param(
                "databases",
                if o.dbs.is_empty() {
                    serde_json::json!("every database that holds keys")
                } else {
                    serde_json::json!(o.dbs)
                },
            )
            .param("skip_prefixes", &o.skip_prefixes),
            Operation::new(
                "check",
                "no persistent mismatch (missing, extra, type, value, ttl)",
            ),
        ]
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        ctx.note(format!("comparing {} with {}", self.source, self.target));
        let report = verify(
            ctx.resolver,
            &self.source,
            &self.target,
            &self.options(),
            &|_| {},
        )
        .await
        .map_err(|e| match e {
            VerifyError::Options(m) => ActionError::fatal(m),
            other => ActionError::transient(crate::error::chain(&other)),
        })?;
        ctx.note(summary(&report));
        if !report.parity && self.fail_on_mismatch {
            return Err(ActionError::fatal(failure(&report)));
        }
        Ok(outputs(&report))
    }
}

/// The outputs: the report without the endpoints (the step's inputs already name them).
pub fn outputs(report: &VerifyReport) -> Outputs {
    match serde_json::to_value(report) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.remove("source");
            map.remove("target");
            map
        }
        _ => Outputs::new(),
    }
}

fn summary(r: &VerifyReport) -> String {
    format!(
        "{} keys checked ({:.0} keys/s): {} persistent, {} transient mismatches, {} expired during the check",
        r.keys_checked, r.keys_per_sec, r.persistent, r.transient, r.expired
    )
}

/// The failure message: what differs, with example keys to look at.
fn failure(r: &VerifyReport) -> String {
    let f = &r.functions;
    if r.persistent == 0 {
        return format!(
            "the function libraries differ between {} and {}: missing on target [{}], extra on target [{}], different code [{}]",
            r.source,
            r.target,
            f.missing_on_target.join(", "),
            f.extra_on_target.join(", "),
            f.different.join(", ")
        );
    }
    let m = &r.mismatches;
    let examples: Vec<String> = r
        .examples
        .iter()
        .filter(|e| e.persistent)
        .map(|e| {
            let key = keyname::shorten(&e.key, e.key_bytes);
            match &e.detail {
                Some(d) => format!("{key} in db {} ({}: {d})", e.db, e.class.as_str()),
                None => format!("{key} in db {} ({})", e.db, e.class.as_str()),
            }
        })
        .collect();
    format!(
        "{} of {} keys differ between {} and {}: missing on target {}, extra on target {}, type {}, value {}, ttl {}, stream {}, field ttl {}; for example {}",
        r.persistent,
        r.keys_checked,
        r.source,
        r.target,
        m.missing_on_target,
        m.extra_on_target,
        m.type_,
        m.value,
        m.ttl,
        m.stream,
        m.field_ttl,
        examples.join(", ")
    )
}

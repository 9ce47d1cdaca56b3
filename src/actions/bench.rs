//! `bench.run`: the Redis vs Valkey benchmark as a runbook step (seed 001), so a
//! runbook can deploy both engines, load them the same way and report the comparison.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::bench::{self, BenchError, Limit, Load, Settings};
use crate::endpoint::redact_url;

pub const SPEC: ActionSpec = ActionSpec {
    name: "bench.run",
    summary: "Benchmark endpoints in turn with the same workloads; `results` holds ops/s and latency percentiles per endpoint and operation.",
    outputs: super::Declared::Listed(&["results", "table"]),
    effect: Effect::Changes,
    build: super::build::<BenchRun>,
    schema: super::schema::<BenchRun>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchRun {
    /// Endpoints (`redis://…` or `host:port`), benchmarked one after the other.
    endpoints: Vec<String>,
    /// A short name per endpoint for tables and charts (`redis`, `valkey`).
    #[serde(default)]
    labels: Vec<String>,
    /// Workload names: get, set, mix, lpush, lrange, hset, hgetall, sadd, smembers, zadd,
    /// zrange, kv (= set,get), ds (the eight data-structure operations), all.
    #[serde(default = "default_workloads")]
    workloads: Vec<String>,
    /// SET:GET ratio of the `mix` workload.
    #[serde(default = "default_ratio")]
    ratio: String,
    /// Connections per endpoint.
    #[serde(default = "default_connections", deserialize_with = "number")]
    #[schemars(with = "u64")]
    connections: usize,
    /// Requests in flight per connection.
    #[serde(default = "default_pipeline", deserialize_with = "number")]
    #[schemars(with = "u64")]
    pipeline: usize,
    /// Bytes per written value.
    #[serde(default = "default_value_size", deserialize_with = "number")]
    #[schemars(with = "u64")]
    value_size: usize,
    /// Distinct keys per data type.
    #[serde(default = "default_keyspace", deserialize_with = "number")]
    #[schemars(with = "u64")]
    keyspace: u64,
    /// Members per list, hash, set and sorted set.
    #[serde(default = "default_elements", deserialize_with = "number")]
    #[schemars(with = "u64")]
    elements: u64,
    /// Requests per workload and endpoint (default 100000 unless `duration` is given).
    #[serde(default, deserialize_with = "optional_number")]
    #[schemars(with = "Option<u64>")]
    requests: Option<u64>,
    /// Run each workload this long instead, e.g. `30s`.
    #[serde(default)]
    duration: Option<String>,
    /// Open loop: requests per second on a fixed schedule (default: closed loop).
    #[serde(default, deserialize_with = "optional_rate")]
    #[schemars(with = "Option<f64>")]
    rate: Option<f64>,
    /// Open loop: bursts on top of `rate`, `RATE:DURATION:EVERY` (e.g. `50000:2s:10s`).
    #[serde(default)]
    burst: Option<String>,
    /// Run the workloads once per persistence mode (off, rdb, aof-everysec, aof-always),
    /// set with CONFIG SET: local servers only; ElastiCache takes it from the parameter group.
    /// A list, or comma-separated text as a template renders it (empty: none).
    #[serde(default)]
    persistence: Modes,
    /// Every key the benchmark writes starts with this.
    #[serde(default = "default_key_prefix")]
    key_prefix: String,
}

/// A count written as a number or, as templates render it, as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    Number(u64),
    Text(String),
}

fn number<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    let n = match Count::deserialize(d)? {
        Count::Number(n) => n,
        Count::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a whole number")))?,
    };
    T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is too large")))
}

/// A rate written as a number or, as templates render it, as text.
fn optional_rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Number(f64),
        Text(String),
    }
    match Rate::deserialize(d)? {
        Rate::Number(n) => Ok(Some(n)),
        Rate::Text(t) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a number"))),
    }
}

/// Persistence modes as a list, or as one text as a template renders it (`off,rdb`, or
/// empty for none).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Modes {
    List(Vec<String>),
    Text(String),
}

impl Default for Modes {
    fn default() -> Modes {
        Modes::List(Vec::new())
    }
}

impl Modes {
    fn list(&self) -> Vec<String> {
        match self {
            Modes::List(list) => list.clone(),
            Modes::Text(text) if text.trim().is_empty() => Vec::new(),
            Modes::Text(text) => vec![text.clone()],
        }
    }
}

fn optional_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    number(d).map(Some)
}

fn default_workloads() -> Vec<String> {
    vec!["kv".into()]
}
fn default_ratio() -> String {
    "1:10".into()
}
fn default_connections() -> usize {
    Settings::default().connections
}
fn default_pipeline() -> usize {
    Settings::default().pipeline
}
fn default_value_size() -> usize {
    Settings::default().value_size
}
fn default_keyspace() -> u64 {
    Settings::default().keyspace
}
fn default_elements() -> u64 {
    Settings::default().elements
}
fn default_key_prefix() -> String {
    Settings::default().key_prefix
}

impl BenchRun {
    fn settings(&self) -> Result<Settings, BenchError> {
        if self.requests.is_some() && self.duration.is_some() {
            return Err(BenchError::Invalid(
                "give `requests` or `duration`, not both".into(),
            ));
        }
        let duration = self
            .duration
            .as_deref()
            .map(crate::duration::parse)
            .transpose()
            .map_err(|e| BenchError::Invalid(format!("duration: {e}")))?;
        let burst = self
            .burst
            .as_deref()
            .map(bench::parse_burst)
            .transpose()
            .map_err(|e| BenchError::Invalid(format!("burst: {e}")))?;
        let load = match (self.rate, burst) {
            (Some(rate), burst) => Load::Open { rate, burst },
            (None, None) => Load::Closed,
            (None, Some(_)) => {
                return Err(BenchError::Invalid(
                    "`burst` adds to `rate`: give `rate` too".into(),
                ));
            }
        };
        let settings = Settings {
            load,
            persistence: bench::parse_modes(&self.persistence.list())?,
            // A runbook's endpoints are not the benchmark's own servers.
            recovery: None,
            workloads: bench::parse_workloads(&self.workloads, &self.ratio)?,
            connections: self.connections,
            pipeline: self.pipeline,
            value_size: self.value_size,
            keyspace: self.keyspace,
            elements: self.elements,
            limit: match duration {
                Some(d) => Limit::Duration(d),
                None => Limit::Requests(self.requests.unwrap_or(100_000)),
            },
            key_prefix: self.key_prefix.clone(),
        };
        settings.check()?;
        Ok(settings)
    }

    fn limit_text(&self) -> String {
        let length = match (&self.duration, self.requests) {
            (Some(d), _) => d.clone(),
            (None, r) => format!("{} requests", r.unwrap_or(100_000)),
        };
        let mut text = match self.rate {
            Some(rate) => format!("{length} at {rate} ops/s"),
            None => length,
        };
        if let Some(burst) = &self.burst {
            text.push_str(&format!(" with bursts {burst}"));
        }
        let modes = self.persistence.list();
        if !modes.is_empty() {
            text.push_str(&format!(", per persistence mode {}", modes.join(",")));
        }
        text
    }
}

#[async_trait]
impl Action for BenchRun {
    fn effect(&self) -> Effect {
        // Writes keys under `key_prefix` and nothing else.
        Effect::Changes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        let endpoints: Vec<String> = self.endpoints.iter().map(|e| redact_url(e)).collect();
        vec![
            Operation::new(
                "redis",
                format!(
                    "benchmark {} on {} endpoint(s), {} each",
                    self.workloads.join(","),
                    endpoints.len(),
                    self.limit_text()
                ),
            )
            .param("endpoints", endpoints)
            .param("connections", self.connections)
            .param("pipeline", self.pipeline)
            .param("value_size", self.value_size)
            .param("keyspace", self.keyspace)
            .param("key_prefix", &self.key_prefix),
        ]
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let invalid = |e: BenchError| ActionError::fatal(e.to_string());
        let settings = self.settings().map_err(invalid)?;
        let endpoints = bench::labeled(&self.endpoints, &self.labels).map_err(invalid)?;
        let note = |line: &str| ctx.note(line);
        let results = bench::run(&endpoints, &settings, ctx.resolver, &note)
            .await
            .map_err(|e| match e {
                // A group that is still starting or failing over may answer later.
                BenchError::Connect { .. } | BenchError::Topology(_) | BenchError::Stopped(_) => {
                    ActionError::transient(crate::error::chain(&e))
                }
                other => ActionError::fatal(crate::error::chain(&other)),
            })?;
        let errors: u64 = results.iter().map(|r| r.errors).sum();
        if errors > 0 {
            ctx.note(format!(
                "{errors} requests failed; see `errors` and `first_error` in the results"
            ));
        }
        let mut outputs = Outputs::new();
        outputs.insert("table".into(), bench::table(&results).into());
        outputs.insert(
            "results".into(),
            serde_json::to_value(&results).map_err(|e| ActionError::fatal(e.to_string()))?,
        );
        Ok(outputs)
    }
}

//! `runbook bench`: Redis vs Valkey throughput and latency, endpoint after endpoint.

use std::time::Duration;

use std::sync::Arc;

use crate::bench::{self, BenchError, Event, Labeled, Limit, Load, Owned, Settings};
use crate::cli::Global;
use crate::endpoint::Resolver;
use crate::error::{Outcome, invalid};
use crate::platform::local::server::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An endpoint to benchmark (repeatable; each runs the same workloads in turn).
    #[arg(
        long = "endpoint",
        value_name = "URL",
        required_unless_present = "local"
    )]
    pub endpoints: Vec<String>,
    /// Start a server of this engine (redis or valkey) on a free loopback port for the
    /// benchmark, after the --endpoint ones, and stop it at the end (repeatable).
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    pub local: Vec<Engine>,
    /// A short name for each endpoint in tables and charts, in the order of --endpoint then
    /// --local (default: the URL, or the engine of a --local server).
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// Workloads, comma-separated or repeated: get, set, mix, lpush, lrange, hset, hgetall,
    /// sadd, smembers, zadd, zrange, kv (= set,get), ds (the eight data-structure operations), all.
    #[arg(long = "workload", value_name = "NAME", default_value = "kv")]
    pub workloads: Vec<String>,
    /// SET:GET ratio of the `mix` workload.
    #[arg(long, value_name = "SET:GET", default_value = "1:10")]
    pub ratio: String,
    /// Connections per endpoint (redis-benchmark -c).
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection (redis-benchmark -P).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Bytes per written value (redis-benchmark -d).
    #[arg(long, default_value_t = 3)]
    pub value_size: usize,
    /// Distinct keys per data type (redis-benchmark -r).
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: u64,
    /// Members per list, hash, set and sorted set; range reads fetch this many.
    #[arg(long, default_value_t = 100)]
    pub elements: u64,
    /// Requests per workload and endpoint (redis-benchmark -n).
    #[arg(long, default_value_t = 100_000, conflicts_with = "duration")]
    pub requests: u64,
    /// Run each workload this long instead of a request count, e.g. 30s.
    #[arg(long, value_parser = crate::duration::parse)]
    pub duration: Option<Duration>,
    /// Open loop: send this many requests per second on a fixed schedule, latency counted
    /// from each request's scheduled time (default: closed loop, as fast as answered).
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,
    /// Open loop: add RATE requests per second for DURATION at every EVERY, e.g. 50000:2s:10s.
    #[arg(long, value_name = "RATE:DURATION:EVERY", value_parser = bench::parse_burst, requires = "rate")]
    pub burst: Option<bench::Burst>,
    /// Run every workload once per persistence mode, set with CONFIG SET and put back
    /// afterwards: off, rdb (snapshots during the load), aof-everysec, aof-always;
    /// comma-separated or repeated.
    #[arg(long, value_name = "MODE")]
    pub persistence: Vec<String>,
    /// Open loop on --local servers: a third into each phase, shut the server down
    /// (restart: SHUTDOWN NOSAVE; restart-save: SHUTDOWN SAVE) and start it again, or
    /// promote a replica started with it (failover: FAILOVER, the clients follow the new
    /// primary), and report the time until throughput and p99 are back at their level before.
    #[arg(long, value_name = "HOW", value_parser = parse_event, requires = "rate")]
    pub recovery: Option<Event>,
    /// Every key the benchmark writes starts with this.
    #[arg(long, default_value = "bench:")]
    pub key_prefix: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let resolver = Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let wanted = args.endpoints.len() + args.local.len();
    if !args.labels.is_empty() && args.labels.len() != wanted {
        return Err(invalid(format!(
            "{} labels for {wanted} endpoints (--endpoint and --local): give one label per endpoint, or none",
            args.labels.len()
        )));
    }
    let settings = Settings {
        load: match args.rate {
            Some(rate) => Load::Open {
                rate,
                burst: args.burst,
            },
            None => Load::Closed,
        },
        persistence: bench::parse_modes(&args.persistence).map_err(edge)?,
        recovery: args.recovery,
        workloads: bench::parse_workloads(&args.workloads, &args.ratio).map_err(edge)?,
        connections: args.connections,
        pipeline: args.pipeline,
        value_size: args.value_size,
        keyspace: args.keyspace,
        elements: args.elements,
        limit: match args.duration {
            Some(d) => Limit::Duration(d),
            None => Limit::Requests(args.requests),
        },
        key_prefix: args.key_prefix,
    };
    settings.check().map_err(edge)?;
    let mut endpoints = Vec::new();
    if !args.endpoints.is_empty() {
        let labels = &args.labels[..args.labels.len().min(args.endpoints.len())];
        endpoints = bench::labeled(&args.endpoints, labels).map_err(edge)?;
    }
    // Servers of its own: started now that every flag is known good, stopped whatever happens.
    let mut owned = Vec::new();
    let mut started = Ok(());
    for &engine in &args.local {
        match Owned::start(engine, args.recovery == Some(Event::Failover)).await {
            Ok(server) => owned.push(Arc::new(server)),
            Err(e) => {
                started = Err(BenchError::from(e));
                break;
            }
        }
    }
    let ran = match started {
        Ok(()) => {
            for (i, server) in owned.iter().enumerate() {
                endpoints.push(Labeled {
                    label: args
                        .labels
                        .get(args.endpoints.len() + i)
                        .cloned()
                        .unwrap_or_else(|| server.engine.name().to_string()),
                    endpoint: server.endpoint(),
                    owned: Some(server.clone()),
                });
            }
            let note = |line: &str| eprintln!("{line}");
            bench::run(&endpoints, &settings, &resolver, &note).await
        }
        Err(e) => Err(e),
    };
    for server in &owned {
        server.stop().await;
    }
    let results = ran.map_err(edge)?;
    match args.format {
        Format::Text => print!("{}", bench::table(&results)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "results": results }))?
        ),
    }
    // Requests that failed while a restart or failover was measured are the measurement,
    // not a failure.
    let expected = |r: &bench::OpResult| r.recovery.as_ref().map_or(0, |x| x.errors_after);
    Ok(if results.iter().any(|r| r.errors > expected(r)) {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

fn parse_engine(text: &str) -> Result<Engine, String> {
    Engine::parse(text).ok_or_else(|| format!("`{text}` is not an engine: use redis or valkey"))
}

fn parse_event(text: &str) -> Result<Event, String> {
    match text {
        "restart" => Ok(Event::Restart),
        "restart-save" => Ok(Event::RestartSave),
        "failover" => Ok(Event::Failover),
        _ => Err(format!(
            "`{text}` is not a recovery scenario: use restart (SHUTDOWN NOSAVE), restart-save (SHUTDOWN SAVE) or failover (FAILOVER to a replica)"
        )),
    }
}

/// Bad settings exit with 2, failures to reach or drive an endpoint with 1.
fn edge(e: BenchError) -> anyhow::Error {
    match e {
        BenchError::Invalid(message) => invalid(message),
        other => other.into(),
    }
}

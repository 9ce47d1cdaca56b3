//! `runbook seed`: write deterministic test data to an endpoint before a rehearsal.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Global;
use crate::endpoint::{Endpoint, Resolver};
use crate::error::{Outcome, invalid};
use crate::seed::{DataType, SeedError, SeedOptions, SeedSummary, seed};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server to write to, e.g. redis://127.0.0.1:6379 (a password in it is never printed).
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// How many keys.
    #[arg(long, value_name = "N")]
    keys: u64,
    /// Prepended to every key name.
    #[arg(long, default_value = "seed:")]
    prefix: String,
    /// Bytes of a string value, a hash field's value and a list item.
    #[arg(long, default_value_t = 32, value_name = "BYTES")]
    value_size: usize,
    /// Elements of each hash, list, set, zset and stream.
    #[arg(long, default_value_t = 8, value_name = "N")]
    elements: usize,
    /// The share of keys (0 to 1) that get a TTL.
    #[arg(long, default_value_t = 0.1, value_name = "SHARE")]
    ttl_share: f64,
    /// The shortest TTL; TTLs spread from it to twice it.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = crate::duration::parse)]
    ttl: Duration,
    /// The types to write, in turn (string, hash, list, set, zset, stream).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "string,hash,list,set,zset"
    )]
    types: Vec<String>,
    /// Connections to write over.
    #[arg(long, default_value_t = 4, value_name = "N")]
    connections: usize,
    /// Keys per pipeline.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pipeline: usize,
    /// Write the keys into this database (repeatable: each gets all of them; default the
    /// endpoint's).
    #[arg(long = "db", value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    dbs: Vec<i64>,
    /// Write at most this many keys per second (default: as fast as it can).
    #[arg(long, value_name = "KEYS_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    max_rate: Option<u64>,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let resolver = Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let endpoint =
        Endpoint::parse(&args.endpoint).map_err(|e| invalid(format!("--endpoint: {e}")))?;
    let types = args
        .types
        .iter()
        .map(|t| t.trim().parse::<DataType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("--types: {e}")))?;
    let opts = SeedOptions {
        keys: args.keys,
        prefix: args.prefix,
        value_size: args.value_size,
        elements: args.elements,
        ttl_share: args.ttl_share,
        ttl: args.ttl,
        types,
        connections: args.connections,
        pipeline: args.pipeline,
        dbs: args.dbs,
        max_rate: args.max_rate,
        ..SeedOptions::default()
    };
    opts.validate().map_err(|e| invalid(e.to_string()))?;

    let bar = progress_bar(args.keys * opts.dbs.len().max(1) as u64);
    let advance = |n: u64| bar.inc(n);
    let result = seed(&resolver, &endpoint, &opts, &advance).await;
    bar.finish_and_clear();
    let summary = match result {
        Ok(s) => s,
        Err(e @ SeedError::Options(_)) => return Err(invalid(e.to_string())),
        Err(e) => return Err(e).context("seeding failed"),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Format::Text => print!("{}", text(&summary)),
    }
    Ok(Outcome::Success)
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} keys  {per_sec}  eta {eta}")
            .expect("static template"),
    );
    bar
}

fn text(s: &SeedSummary) -> String {
    let mut out = format!(
        "seeded {} keys on {} in {:.1}s ({:.0} keys/s)\n",
        s.keys,
        s.endpoint,
        s.elapsed_ms as f64 / 1000.0,
        s.keys_per_sec
    );
    if s.databases != [s.endpoint.db] {
        let dbs: Vec<String> = s.databases.iter().map(i64::to_string).collect();
        out.push_str(&format!("  databases {}\n", dbs.join(", ")));
    }
    for (t, n) in &s.by_type {
        out.push_str(&format!("  {:<8} {n}\n", t.as_str()));
    }
    out.push_str(&format!("  with TTL {}\n", s.with_ttl));
    out
}

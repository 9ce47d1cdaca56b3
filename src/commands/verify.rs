//! `runbook verify`: key parity between a source and a target, standalone.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Global;
use crate::endpoint::{Endpoint, Resolver};
use crate::error::{Outcome, invalid};
use crate::verify::{
    ReadFrom, VerifyError, VerifyOptions, VerifyProgress, VerifyReport, keyname, verify,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the data comes from, e.g. redis://10.0.1.5:6379.
    #[arg(long, value_name = "URL")]
    source: String,
    /// Where it should have arrived, e.g. rediss://my-valkey.xxxx.cache.amazonaws.com:6379.
    #[arg(long, value_name = "URL")]
    target: String,
    /// `text` for people, `json` for scripts and reports.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Example keys to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    examples: usize,
    /// How far apart the two sides' TTLs may be.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = crate::duration::parse)]
    ttl_tolerance: Duration,
    /// Passes in all: the full one, then re-checks of the mismatches (1 = no re-check).
    #[arg(long, default_value_t = 3, value_name = "N")]
    rounds: u32,
    /// Pause before a re-check when the target is not a replica.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = crate::duration::parse)]
    recheck_delay: Duration,
    /// Keys per SCAN page and pipelined batch.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    batch: usize,
    /// Batches in flight per side.
    #[arg(long, default_value_t = 8, value_name = "N")]
    in_flight: usize,
    /// Connections per side; each serves one batch at a time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    connections: usize,
    /// Skip keys starting with this (repeatable; replaces the default, the probe's prefix).
    #[arg(
        long = "skip-prefix",
        value_name = "PREFIX",
        default_value = "runbook:probe:"
    )]
    skip_prefixes: Vec<String>,
    /// Compare only this database (repeatable; default: every database that holds keys on
    /// either side).
    #[arg(long = "db", value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    dbs: Vec<i64>,
    /// Read at most this many keys per second from each side (default: as fast as it can).
    #[arg(long, value_name = "KEYS_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    max_rate: Option<u64>,
    /// Read the keys from the endpoints, or from a replica of each (the endpoint itself
    /// when it is one), to spare a production primary.
    #[arg(long, value_enum, default_value_t = ReadFrom::Primary)]
    read_from: ReadFrom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let resolver = Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let source = Endpoint::parse(&args.source).map_err(|e| invalid(format!("--source: {e}")))?;
    let target = Endpoint::parse(&args.target).map_err(|e| invalid(format!("--target: {e}")))?;
    let opts = VerifyOptions {
        batch: args.batch,
        in_flight: args.in_flight,
        connections: args.connections,
        ttl_tolerance: args.ttl_tolerance,
        rounds: args.rounds,
        recheck_delay: args.recheck_delay,
        examples: args.examples,
        skip_prefixes: args.skip_prefixes,
        dbs: args.dbs,
        max_rate: args.max_rate,
        read_from: args.read_from,
        ..VerifyOptions::default()
    };
    opts.validate().map_err(|e| invalid(e.to_string()))?;

    let bar = progress_bar();
    let report = |p: VerifyProgress| match p {
        VerifyProgress::Total(n) => bar.set_length(n),
        VerifyProgress::Checked(n) => bar.inc(n),
        VerifyProgress::Recheck { round, keys } => {
            bar.set_message(format!("round {round}: re-checking {keys} keys"))
        }
    };
    let result = verify(&resolver, &source, &target, &opts, &report).await;
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e @ VerifyError::Options(_)) => return Err(invalid(e.to_string())),
        Err(e) => return Err(e).context("the check could not finish"),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", text(&report)),
    }
    Ok(if report.parity {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/~{human_len} keys  {per_sec}  {msg}")
            .expect("static template"),
    );
    bar
}

/// The report for people: verdict first, then what differs and examples.
pub fn text(r: &VerifyReport) -> String {
    let verdict = if r.parity { "PARITY" } else { "MISMATCH" };
    let mut out = format!(
        "{verdict}: {} keys checked in {:.1}s ({:.0} keys/s), {} persistent and {} transient mismatches\n",
        r.keys_checked,
        r.elapsed_ms as f64 / 1000.0,
        r.keys_per_sec,
        r.persistent,
        r.transient
    );
    out.push_str(&format!("  source  {}\n  target  {}\n", r.source, r.target));
    if r.read_from.source != r.source || r.read_from.target != r.target {
        out.push_str(&format!(
            "  read from {} and {}\n",
            r.read_from.source, r.read_from.target
        ));
    }
    let types: Vec<String> = r.by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    out.push_str(&format!("  by type: {}\n", types.join(", ")));
    let m = &r.mismatches;
    out.push_str(&format!(
        "  persistent: missing on target {}, extra on target {}, type {}, value {}, ttl {}, stream {}, field ttl {}\n",
        m.missing_on_target, m.extra_on_target, m.type_, m.value, m.ttl, m.stream, m.field_ttl
    ));
    out.push_str(&format!(
        "  expired during the check {}, skipped {}, rounds {}\n",
        r.expired, r.skipped, r.rounds
    ));
    if r.databases.len() > 1 || r.databases.iter().any(|d| d.db != 0) {
        let dbs: Vec<String> = r
            .databases
            .iter()
            .map(|d| {
                format!(
                    "db{} {} ({} persistent)",
                    d.db, d.keys_checked, d.persistent
                )
            })
            .collect();
        out.push_str(&format!("  by database: {}\n", dbs.join(", ")));
    }
    let f = &r.functions;
    if f.checked && (f.source > 0 || f.target > 0 || !f.parity) {
        out.push_str(&format!(
            "  function libraries: {} on the source, {} on the target; missing on target [{}], extra on target [{}], different code [{}]\n",
            f.source,
            f.target,
            f.missing_on_target.join(", "),
            f.extra_on_target.join(", "),
            f.different.join(", ")
        ));
    }
    for note in &r.notes {
        out.push_str(&format!("  {note}\n"));
    }
    if r.not_rechecked > 0 {
        out.push_str(&format!(
            "  {} mismatches beyond the re-check cap were counted as persistent\n",
            r.not_rechecked
        ));
    }
    if !r.examples.is_empty() {
        out.push_str("  examples:\n");
        for e in &r.examples {
            let when = if e.persistent {
                "persistent"
            } else {
                "transient"
            };
            out.push_str(&format!(
                "    {:<18} {:<10} db{:<3} {}\n",
                e.class.as_str(),
                when,
                e.db,
                keyname::shorten(&e.key, e.key_bytes)
            ));
            if let Some(detail) = &e.detail {
                out.push_str(&format!("      {detail}\n"));
            }
        }
    }
    out
}

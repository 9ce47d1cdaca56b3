//! `runbook probe`: seed 000's standalone monitor. Probes endpoints until Ctrl+C or
//! `--duration`, then writes its report (and prints it as JSON with `--format json`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::Global;
use crate::duration;
use crate::endpoint::{Endpoint, Resolver};
use crate::error::{Outcome, invalid};
use crate::probe::{ProbeConfig, RunProbe};
use crate::report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A summary on stdout; the full report in the output folder.
    Text,
    /// The report as JSON on stdout.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An endpoint to probe: redis://[user:password@]host:port, rediss://… for TLS (repeatable).
    #[arg(long = "endpoint", value_name = "URL", required = true)]
    pub endpoints: Vec<String>,
    /// Stop after this long (e.g. 30s, 10m); without it, run until Ctrl+C.
    #[arg(long, value_name = "DURATION", value_parser = duration::positive)]
    pub duration: Option<Duration>,
    /// Time between ticks (at least 1ms); each tick writes once and reads once.
    #[arg(long, default_value = "10ms", value_name = "DURATION", value_parser = duration::positive)]
    pub interval: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "250ms", value_name = "DURATION", value_parser = duration::positive)]
    pub timeout: Duration,
    /// Prefix of the probe's own keys.
    #[arg(long, default_value = "runbook:probe:", value_name = "PREFIX")]
    pub key_prefix: String,
    /// Where the data and reports go (default: <state-dir>/probes/<time>).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let endpoints = args
        .endpoints
        .iter()
        .map(|e| Endpoint::parse(e).map_err(|e| invalid(e.to_string())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.interval < Duration::from_millis(1) {
        return Err(invalid(
            "--interval must be at least 1ms: the probe ticks at most once a millisecond",
        ));
    }
    let resolver = Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let config = ProbeConfig {
        interval: args.interval,
        timeout: args.timeout,
        key_prefix: args.key_prefix.clone(),
    };
    if let Some(out) = &args.out
        && std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some())
    {
        return Err(invalid(format!(
            "--out {} is not empty: its old data would mix into the new report; name a new or empty folder",
            out.display()
        )));
    }
    let dir = match args.out.clone() {
        Some(out) => out,
        // With state on S3, this machine's folder of it: a standalone probe is not a run.
        None => crate::state::Store::local_root(global)?
            .join("probes")
            .join(chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string()),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let (_step_tx, step_rx) = tokio::sync::watch::channel(None);
    let probe = RunProbe::start(&dir, config, resolver, step_rx);
    for e in &endpoints {
        probe.watch(e.clone());
    }
    eprintln!(
        "probing {} every {}; data in {}; {}",
        endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        duration::format(args.interval),
        dir.display(),
        match args.duration {
            Some(d) => format!("stopping after {} (or Ctrl+C)", duration::format(d)),
            None => "Ctrl+C to stop".into(),
        }
    );
    match args.duration {
        Some(limit) => {
            tokio::select! {
                () = tokio::time::sleep(limit) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    probe.stop().await;

    let written = report::write_run_reports(&dir)?;
    let model = report::build(&dir)?;
    match args.format {
        OutputFormat::Json => println!("{}", report::to_json(&model)),
        OutputFormat::Text => {
            let o = &model.outcome;
            println!(
                "{} disconnect(s), {} stall(s), {} refusal(s), {} error(s); {} without writes, {} without reads; {} lost acknowledged write(s)",
                o.disconnects,
                o.stalls,
                o.refusals,
                o.errors,
                seconds(o.unwritable_s),
                seconds(o.unreadable_s),
                o.lost_writes
            );
            if let Some(note) = &o.probe_note {
                println!("  note: {note}");
            }
            for d in &model.outages {
                println!(
                    "  {} {} {} → {}: {:.0} ms {} ({}, {} failed)",
                    d.endpoint,
                    d.kind,
                    d.start.format("%H:%M:%S%.3f"),
                    d.end.map_or("still down".into(), |t| t
                        .format("%H:%M:%S%.3f")
                        .to_string()),
                    d.duration_ms,
                    d.ops
                        .iter()
                        .map(|op| op.as_str())
                        .collect::<Vec<_>>()
                        .join("+"),
                    d.cause,
                    d.failed_requests
                );
            }
            for (op, s) in &model.latency {
                println!(
                    "  {op}: {} requests, {} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    s.requests, s.errors, s.p50_ms, s.p99_ms, s.max_ms
                );
            }
            for path in written {
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(Outcome::Success)
}

/// `1.23 s`, or `not measured`.
fn seconds(s: Option<f64>) -> String {
    s.map_or("not measured".into(), |s| format!("{s:.2} s"))
}

//! Key parity between a source and a target: the evidence that a migration moved the data.
//!
//! Both sides are scanned at once, in pipelined batches with several in flight ([`pass`]):
//! the source → target pass compares every source key's type, canonical value ([`digest`])
//! and TTL; the target → source pass finds keys only the target has. Keys that expire
//! during the check are not missing, the probe's keys and ElastiCache's own are skipped
//! ([`options`]). Mismatches ([`judge`]) are re-checked in later rounds ([`recheck`]), after
//! a replica target has caught up, and end up persistent or transient. Memory stays
//! bounded: only batches in flight, a capped re-check set ([`tally`]) and a few examples
//! are held.

pub mod digest;
mod judge;
mod observe;
mod options;
mod pass;
mod recheck;
mod replication;
mod sides;
mod tally;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::RespError;
pub use judge::{Class, ClassCounts};
pub use options::{ELASTICACHE_TIMESTAMP_KEY, VerifyOptions};
use sides::Sides;

/// A mismatched key, for people to look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The key name (bytes that are not UTF-8 shown as U+FFFD).
    pub key: String,
    pub class: Class,
    /// Still different after the last round.
    pub persistent: bool,
}

/// The outcome of a check.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub source: Endpoint,
    pub target: Endpoint,
    /// No persistent mismatch.
    pub parity: bool,
    /// Keys compared: every source key, plus the keys only the target has.
    pub keys_checked: u64,
    /// Keys checked by the source's type (`other` for module types).
    pub by_type: BTreeMap<&'static str, u64>,
    /// Persistent mismatches by class: still different after the last round.
    pub mismatches: ClassCounts,
    /// Persistent mismatches in all.
    pub persistent: u64,
    /// Mismatches that went away in a later round (writes in flight, replication lag).
    pub transient: u64,
    /// The transient ones by the class they first had.
    pub transient_mismatches: ClassCounts,
    /// Keys that expired while being checked (not counted as missing).
    pub expired: u64,
    /// Keys not compared: the probe's keys and ElastiCache's own.
    pub skipped: u64,
    /// Mismatches beyond the re-check cap, counted as persistent without a re-check.
    pub not_rechecked: u64,
    /// Rounds run (1 when the first pass found nothing or re-checks were off).
    pub rounds: u32,
    pub examples: Vec<Example>,
    pub elapsed_ms: u64,
    pub keys_per_sec: f64,
}

/// Which endpoint an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// Why a check could not finish (a mismatch is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The options contradict themselves or are out of range.
    #[error("{0}")]
    Options(String),
    /// An endpoint could not be reached.
    #[error("cannot connect to the {side} {endpoint}")]
    Connect {
        side: Side,
        endpoint: Endpoint,
        #[source]
        source: RespError,
    },
    /// An endpoint failed during the check (went away, timed out, refused a command).
    #[error("the {side} {endpoint} failed during the check")]
    Failed {
        side: Side,
        endpoint: Endpoint,
        #[source]
        source: RespError,
    },
}

/// What the check is doing, for a progress display.
#[derive(Clone, Copy, Debug)]
pub enum VerifyProgress {
    /// About this many keys will be checked (the source's DBSIZE).
    Total(u64),
    /// This many more keys were checked.
    Checked(u64),
    /// A re-check round started, over this many keys.
    Recheck { round: u32, keys: usize },
}

/// Compares `target` with `source`.
pub async fn verify(
    resolver: &Resolver,
    source: &Endpoint,
    target: &Endpoint,
    opts: &VerifyOptions,
    progress: &(dyn Fn(VerifyProgress) + Send + Sync),
) -> Result<VerifyReport, VerifyError> {
    opts.validate()?;
    let started = Instant::now();
    let sides = Arc::new(Sides::connect(resolver, source, target, opts).await?);
    let total = sides.dbsize(Side::Source).await?;
    progress(VerifyProgress::Total(total));

    let (forward, reverse) = tokio::try_join!(
        sides.clone().pass(Side::Source, progress),
        sides.clone().pass(Side::Target, progress)
    )?;
    let mut tally = forward;
    tally.merge(reverse, opts.recheck_cap);
    let rechecked = recheck::rounds(&sides, &mut tally, progress).await?;

    let mut mismatches = tally.unrechecked;
    for class in tally.pending.values() {
        mismatches.add(*class, 1);
    }
    let mut persistent_keys: Vec<(&Vec<u8>, &Class)> = tally.pending.iter().collect();
    persistent_keys.sort();
    let examples: Vec<Example> = persistent_keys
        .into_iter()
        .map(|(k, c)| (k.as_slice(), *c, true))
        .chain(
            tally
                .overflow_examples
                .iter()
                .map(|(k, c)| (k.as_slice(), *c, true)),
        )
        .chain(
            rechecked
                .transient_keys
                .iter()
                .map(|(k, c)| (k.as_slice(), *c, false)),
        )
        .take(opts.examples)
        .map(|(k, class, persistent)| Example {
            key: String::from_utf8_lossy(k).into_owned(),
            class,
            persistent,
        })
        .collect();
    let elapsed = started.elapsed();
    let persistent = mismatches.total();
    Ok(VerifyReport {
        source: source.clone(),
        target: target.clone(),
        parity: persistent == 0,
        keys_checked: tally.checked,
        by_type: tally.by_type,
        mismatches,
        persistent,
        transient: rechecked.transient.total(),
        transient_mismatches: rechecked.transient,
        expired: tally.expired,
        skipped: tally.skipped,
        not_rechecked: tally.unrechecked.total(),
        rounds: rechecked.rounds,
        examples,
        elapsed_ms: elapsed.as_millis() as u64,
        keys_per_sec: tally.checked as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

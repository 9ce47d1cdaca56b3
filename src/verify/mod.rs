//! Key parity between a source and a target: the evidence that a migration moved the data.
//!
//! Each database is scanned on both sides in turn, in pipelined batches with several in
//! flight ([`pass`]): the source → target pass compares every source key's type, canonical
//! value ([`digest`]) and TTL, and what a value carries beyond its content: a stream's
//! groups, consumers and pending entries ([`streams`]), a hash's field TTLs
//! ([`field_ttls`]); the target → source pass then finds keys only the target has, asking
//! the source only about keys its own pass did not see ([`known`]). Keys that expire
//! during the check are not missing, the probe's keys and ElastiCache's own are skipped
//! ([`options`]). Mismatches ([`judge`]) are re-checked in later rounds ([`recheck`]),
//! after a replica target has caught up, and end up persistent or transient. Memory stays
//! bounded: only batches in flight, a capped re-check set ([`tally`]), the capped
//! fingerprints of one database's source keys and a few examples are held.

pub mod digest;
mod field_ttls;
mod functions;
mod guess;
mod judge;
pub mod keyname;
mod known;
mod observe;
mod options;
pub mod pace;
mod pass;
mod recheck;
mod replication;
mod sides;
mod streams;
mod tally;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::RespError;
use crate::resp::cluster::TopologyError;
use digest::Kind;
pub use functions::Functions;
pub use judge::{Class, ClassCounts};
use known::Seen;
pub use options::{ELASTICACHE_TIMESTAMP_KEY, ReadFrom, VerifyOptions};
use sides::{Reader, Sides};
use tally::{Key, Tally};

/// A mismatched key, for people to look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The source database it is in (the target database paired with it, for an extra key).
    pub db: i64,
    /// The key name, as `redis-cli` reads it back: plain text as it is, otherwise quoted,
    /// with bytes that are not UTF-8 and control characters as `\xHH`.
    pub key: String,
    /// The name's length in bytes.
    pub key_bytes: usize,
    pub class: Class,
    /// What differs, for the classes that say (`stream`, `field_ttl`), source first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Still different after the last round.
    pub persistent: bool,
}

/// The counts of one database (the source's number; the target database paired with it
/// is the same unless the URLs name two).
#[derive(Clone, Debug, Serialize)]
pub struct DbReport {
    pub db: i64,
    /// Keys compared: every source key, plus the keys only the target has.
    pub keys_checked: u64,
    /// The same keys by type: the source's, or the target's for a key only it has.
    pub by_type: BTreeMap<&'static str, u64>,
    /// Persistent mismatches by class.
    pub mismatches: ClassCounts,
    pub persistent: u64,
    pub transient: u64,
    pub expired: u64,
    pub skipped: u64,
}

/// The servers a check read.
#[derive(Clone, Debug, Serialize)]
pub struct ReadServers {
    pub source: Endpoint,
    pub target: Endpoint,
}

/// Redirections followed, both sides together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Redirections {
    /// `MOVED`: the slot had moved; later batches of it go to the new node too.
    pub moved: u64,
    /// `ASK`: the key was already at the node importing its slot.
    pub ask: u64,
}

/// The shards of both sides of a check with a cluster on either side.
#[derive(Clone, Debug, Serialize)]
pub struct ShardsReport {
    pub source: Vec<ShardReport>,
    pub target: Vec<ShardReport>,
}

/// One shard as the check saw it.
#[derive(Clone, Debug, Serialize)]
pub struct ShardReport {
    /// The node read: the shard's primary, or its replica.
    pub read: Endpoint,
    /// The slot ranges it owns, inclusive.
    pub slots: Vec<(u16, u16)>,
    /// Keys it held when the check began (`INFO keyspace`), every database.
    pub keys: u64,
}

/// The outcome of a check.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub source: Endpoint,
    pub target: Endpoint,
    /// The servers read: the endpoints, or their replicas with `--read-from replica`.
    pub read_from: ReadServers,
    /// No persistent mismatch, and the same function libraries.
    pub parity: bool,
    /// The function libraries, a server-state check beside the keys.
    pub functions: Functions,
    /// What was not compared, and why (`field TTLs not compared: source lacks HPTTL`).
    pub notes: Vec<String>,
    /// Keys compared, in every database: every source key, plus the keys only the target
    /// has.
    pub keys_checked: u64,
    /// The same keys by type (`other` for module types): the source's, or the target's for
    /// a key only it has; they add up to `keys_checked`.
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
    /// Every database compared, with its counts.
    pub databases: Vec<DbReport>,
    /// Redirections a cluster answered and the check followed (a slot moved or being
    /// migrated during the check).
    pub redirections: Redirections,
    /// The shards of each side, when either is a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardsReport>,
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
    /// A cluster-mode endpoint's slot map could not be read or used.
    #[error("the {side}'s shards are unknown")]
    Topology {
        side: Side,
        #[source]
        source: TopologyError,
    },
    /// `--read-from replica`, and the endpoint has no replica online.
    #[error(
        "the {side} {endpoint} has no online replica to read from (read from the primary, or give a replica's URL)"
    )]
    NoReplica { side: Side, endpoint: Endpoint },
    /// A cluster sent a slot to a node it did not list when the check began.
    #[error(
        "the {side} redirected slot {slot} to {endpoint}, a node not in its slot map when the check began: run the check again"
    )]
    Redirected {
        side: Side,
        slot: u16,
        endpoint: Endpoint,
    },
    /// A cluster kept redirecting a slot.
    #[error(
        "the {side} redirected slot {slot} {times} times in a row: run the check again once the cluster is stable"
    )]
    Unsettled { side: Side, slot: u16, times: usize },
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
    let mut sides = Sides::connect(resolver, source, target, opts).await?;
    let per_shard = [
        sides.keyspaces(Side::Source).await?,
        sides.keyspaces(Side::Target).await?,
    ];
    let whole = |shards: &[BTreeMap<i64, u64>]| {
        let mut sum: BTreeMap<i64, u64> = BTreeMap::new();
        for (db, n) in shards.iter().flatten() {
            *sum.entry(*db).or_default() += n;
        }
        sum
    };
    let held = whole(&per_shard[0]);
    sides.dbs = databases(source, target, opts, &held, &whole(&per_shard[1]))?;
    let sides = Arc::new(sides);
    let total = sides.dbs.keys().filter_map(|db| held.get(db)).sum();
    progress(VerifyProgress::Total(total));

    let mut tally = Tally::default();
    for &db in sides.dbs.keys() {
        tally.db(db);
        let mut seen = Seen::with_capacity(held.get(&db).copied().unwrap_or(0));
        let forward = (sides.clone())
            .pass((Side::Source, db), (&Arc::default(), &mut seen), progress)
            .await?;
        let known = Arc::new(seen.known());
        let reverse = (sides.clone())
            .pass((Side::Target, db), (&known, &mut Seen::default()), progress)
            .await?;
        tally.merge(forward, opts.recheck_cap);
        tally.merge(reverse, opts.recheck_cap);
    }
    let rechecked = recheck::rounds(&sides, &mut tally, progress).await?;
    let functions = sides.functions().await?;

    let mut persistent_by_db: BTreeMap<i64, ClassCounts> = BTreeMap::new();
    for (key, m) in &tally.pending {
        persistent_by_db.entry(key.db).or_default().add(m.class, 1);
    }
    let mut persistent_keys: Vec<(&Key, Class, Option<&String>)> = tally
        .pending
        .iter()
        .map(|(k, m)| (k, m.class, m.detail.as_ref()))
        .collect();
    persistent_keys.sort();
    let examples: Vec<Example> = persistent_keys
        .into_iter()
        .map(|(k, c, d)| (k, c, d, true))
        .chain(
            tally
                .overflow_examples
                .iter()
                .map(|(k, c)| (k, *c, None, true)),
        )
        .chain(
            rechecked
                .transient_keys
                .iter()
                .map(|(k, c)| (k, *c, None, false)),
        )
        .take(opts.examples)
        .map(|(k, class, detail, persistent)| Example {
            db: k.db,
            key: keyname::escape(&k.name),
            key_bytes: k.name.len(),
            class,
            detail: detail.cloned(),
            persistent,
        })
        .collect();

    let mut report = VerifyReport {
        source: source.clone(),
        target: target.clone(),
        read_from: ReadServers {
            source: sides.src.shown(source),
            target: sides.dst.shown(target),
        },
        shards: (sides.src.topology.cluster || sides.dst.topology.cluster).then(|| {
            let side = |reader: &Reader, keys: &[BTreeMap<i64, u64>]| {
                reader
                    .nodes
                    .iter()
                    .zip(&reader.topology.shards)
                    .zip(keys)
                    .map(|((node, shard), keys)| ShardReport {
                        read: node.endpoint.clone(),
                        slots: shard.slots.clone(),
                        keys: keys.values().sum(),
                    })
                    .collect()
            };
            ShardsReport {
                source: side(&sides.src, &per_shard[0]),
                target: side(&sides.dst, &per_shard[1]),
            }
        }),
        redirections: Redirections {
            moved: sides.redirected[0].load(std::sync::atomic::Ordering::Relaxed),
            ask: sides.redirected[1].load(std::sync::atomic::Ordering::Relaxed),
        },
        parity: true,
        functions,
        notes: Vec::new(),
        keys_checked: 0,
        by_type: BTreeMap::new(),
        mismatches: ClassCounts::default(),
        persistent: 0,
        transient: 0,
        transient_mismatches: ClassCounts::default(),
        expired: 0,
        skipped: 0,
        not_rechecked: 0,
        rounds: rechecked.rounds,
        databases: Vec::new(),
        examples,
        elapsed_ms: 0,
        keys_per_sec: 0.0,
    };
    for (db, counts) in tally.dbs {
        let mut mismatches = counts.unrechecked;
        mismatches.add_all(&persistent_by_db.remove(&db).unwrap_or_default());
        let transient = rechecked.transient.get(&db).copied().unwrap_or_default();
        report.keys_checked += counts.checked;
        for (t, n) in &counts.by_type {
            *report.by_type.entry(t).or_default() += n;
        }
        report.mismatches.add_all(&mismatches);
        report.transient_mismatches.add_all(&transient);
        report.expired += counts.expired;
        report.skipped += counts.skipped;
        report.not_rechecked += counts.unrechecked.total();
        report.databases.push(DbReport {
            db,
            keys_checked: counts.checked,
            by_type: counts.by_type,
            mismatches,
            persistent: mismatches.total(),
            transient: transient.total(),
            expired: counts.expired,
            skipped: counts.skipped,
        });
    }
    let lacking: Vec<String> = [(Side::Source, &sides.src), (Side::Target, &sides.dst)]
        .into_iter()
        .filter(|(_, reader)| !reader.field_ttls)
        .map(|(side, _)| side.to_string())
        .collect();
    if !lacking.is_empty() && report.by_type.contains_key(Kind::Hash.name()) {
        let verb = if lacking.len() == 1 { "lacks" } else { "lack" };
        report.notes.push(format!(
            "field TTLs not compared: {} {verb} HPTTL",
            lacking.join(" and ")
        ));
    }
    report.persistent = report.mismatches.total();
    report.transient = report.transient_mismatches.total();
    report.parity = report.persistent == 0 && report.functions.parity;
    let elapsed = started.elapsed();
    report.elapsed_ms = elapsed.as_millis() as u64;
    report.keys_per_sec = report.keys_checked as f64 / elapsed.as_secs_f64().max(1e-9);
    Ok(report)
}

/// The databases to compare, each source database with the target database it pairs
/// with: the ones the URLs name, or `--db`'s, or every one that holds keys on either side.
fn databases(
    source: &Endpoint,
    target: &Endpoint,
    opts: &VerifyOptions,
    on_source: &BTreeMap<i64, u64>,
    on_target: &BTreeMap<i64, u64>,
) -> Result<BTreeMap<i64, i64>, VerifyError> {
    let named = source.db != 0 || target.db != 0;
    if named && !opts.dbs.is_empty() {
        return Err(VerifyError::Options(
            "name the database either in the URLs (/N) or with --db, not both".into(),
        ));
    }
    Ok(if named {
        [(source.db, target.db)].into()
    } else if !opts.dbs.is_empty() {
        opts.dbs.iter().map(|&db| (db, db)).collect()
    } else {
        on_source
            .keys()
            .chain(on_target.keys())
            .map(|&db| (db, db))
            .collect()
    })
}

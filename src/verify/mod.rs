//! Key parity between a source and a target: the evidence that a migration moved the data.
//!
//! Both sides are scanned at once, in pipelined batches with several in flight: the source
//! → target pass compares every source key's type, canonical value ([`digest`]) and TTL; the
//! target → source pass finds keys only the target has. Keys that expire during the check
//! are not missing, the probe's keys and ElastiCache's own are skipped. Mismatches are
//! re-checked in later rounds, after a replica target has caught up, and end up persistent
//! or transient. Memory stays bounded: only batches in flight, a capped re-check set and a
//! few examples are held.

pub mod digest;
mod replication;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::endpoint::{Endpoint, Resolver};
use digest::{Digest, Kind, Next};
use wire::{Frame, Pipeline, Pool, Wire, WireError};

/// The key ElastiCache writes on a primary to measure replication; never user data.
pub const ELASTICACHE_TIMESTAMP_KEY: &str = "ElastiCacheMasterReplicationTimestamp";

/// How to check.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Keys per SCAN page and per pipelined batch.
    pub batch: usize,
    /// Batches in flight per pass.
    pub in_flight: usize,
    /// Connections per side; each serves one batch at a time.
    pub connections: usize,
    /// How far apart the two sides' TTLs may be.
    pub ttl_tolerance: Duration,
    /// Passes in all: the first full one, then re-checks of the mismatches.
    pub rounds: u32,
    /// Pause before a re-check when the target is not a replica to wait for.
    pub recheck_delay: Duration,
    /// The longest wait for a replica target to reach the source's replication offset.
    pub catch_up_timeout: Duration,
    /// Example keys kept for the result.
    pub examples: usize,
    /// Keys starting with these are not compared (the probe's keys).
    pub skip_prefixes: Vec<String>,
    /// Mismatched keys remembered for re-checking; more are counted as persistent unchecked.
    pub recheck_cap: usize,
    /// Elements per read of a big key (HSCAN/SSCAN/ZSCAN COUNT, LRANGE and XRANGE span).
    pub chunk: usize,
    /// Connect and response timeout.
    pub timeout: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            batch: 1000,
            in_flight: 8,
            connections: 4,
            ttl_tolerance: Duration::from_secs(2),
            rounds: 3,
            recheck_delay: Duration::from_secs(1),
            catch_up_timeout: Duration::from_secs(30),
            examples: 10,
            skip_prefixes: vec![crate::probe::ProbeConfig::default().key_prefix],
            recheck_cap: 10_000,
            chunk: 1000,
            timeout: Duration::from_secs(30),
        }
    }
}

impl VerifyOptions {
    /// Rejects options that cannot work, saying which and why.
    pub fn validate(&self) -> Result<(), VerifyError> {
        let bad = |m: &str| Err(VerifyError::Options(m.to_string()));
        if self.batch == 0 || self.in_flight == 0 || self.connections == 0 || self.chunk == 0 {
            return bad("batch, in-flight batches, connections and chunk must be at least 1");
        }
        if self.rounds == 0 {
            return bad("rounds must be at least 1 (1 = no re-check)");
        }
        Ok(())
    }

    fn skipped(&self, key: &[u8]) -> bool {
        key == ELASTICACHE_TIMESTAMP_KEY.as_bytes()
            || self
                .skip_prefixes
                .iter()
                .any(|p| !p.is_empty() && key.starts_with(p.as_bytes()))
    }
}

/// How a key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    MissingOnTarget,
    ExtraOnTarget,
    Type,
    Value,
    Ttl,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::MissingOnTarget => "missing_on_target",
            Class::ExtraOnTarget => "extra_on_target",
            Class::Type => "type",
            Class::Value => "value",
            Class::Ttl => "ttl",
        }
    }
}

/// Mismatches by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub missing_on_target: u64,
    pub extra_on_target: u64,
    #[serde(rename = "type")]
    pub type_: u64,
    pub value: u64,
    pub ttl: u64,
}

impl ClassCounts {
    fn add(&mut self, class: Class, n: u64) {
        *match class {
            Class::MissingOnTarget => &mut self.missing_on_target,
            Class::ExtraOnTarget => &mut self.extra_on_target,
            Class::Type => &mut self.type_,
            Class::Value => &mut self.value,
            Class::Ttl => &mut self.ttl,
        } += n;
    }

    pub fn total(&self) -> u64 {
        self.missing_on_target + self.extra_on_target + self.type_ + self.value + self.ttl
    }
}

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
        source: WireError,
    },
    /// An endpoint failed during the check (went away, timed out, refused a command).
    #[error("the {side} {endpoint} failed during the check")]
    Redis {
        side: Side,
        endpoint: Endpoint,
        #[source]
        source: WireError,
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

    let mut first_class: HashMap<Vec<u8>, Class> =
        tally.pending.iter().map(|(k, c)| (k.clone(), *c)).collect();
    let mut transient = ClassCounts::default();
    let mut transient_keys: Vec<(Vec<u8>, Class)> = Vec::new();
    let mut rounds = 1;
    while rounds < opts.rounds && !tally.pending.is_empty() {
        rounds += 1;
        progress(VerifyProgress::Recheck {
            round: rounds,
            keys: tally.pending.len(),
        });
        replication::settle(&sides, opts).await?;
        let keys: Vec<Vec<u8>> = tally.pending.keys().cloned().collect();
        let mut still = HashMap::new();
        for chunk in keys.chunks(opts.batch) {
            let (src, dst) = sides.observe(chunk).await?;
            for ((key, s), d) in chunk.iter().zip(&src).zip(&dst) {
                match judge(s, d, opts.ttl_tolerance) {
                    Verdict::Mismatch(class) => {
                        still.insert(key.clone(), class);
                    }
                    Verdict::Expired => tally.expired += 1,
                    Verdict::Equal | Verdict::Vanished => {
                        let class = first_class.remove(key).unwrap_or(Class::Value);
                        transient.add(class, 1);
                        if transient_keys.len() < opts.examples {
                            transient_keys.push((key.clone(), class));
                        }
                    }
                }
            }
        }
        tally.pending = still;
    }

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
            transient_keys
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
        transient: transient.total(),
        transient_mismatches: transient,
        expired: tally.expired,
        skipped: tally.skipped,
        not_rechecked: tally.unrechecked.total(),
        rounds,
        examples,
        elapsed_ms: elapsed.as_millis() as u64,
        keys_per_sec: tally.checked as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// What one side says about a key.
#[derive(Clone, Copy, Debug)]
struct Observed {
    kind: Kind,
    /// PTTL: -1 no TTL, -2 no key.
    pttl: i64,
    digest: Digest,
    /// The value could not be read as its type promised (it changed under us).
    unreadable: bool,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            kind: Kind::None,
            pttl: -2,
            digest: Digest::default(),
            unreadable: false,
        }
    }
}

enum Verdict {
    Equal,
    /// Gone from both sides.
    Vanished,
    /// Gone from one side, and its TTL on the other was about to run out.
    Expired,
    Mismatch(Class),
}

fn judge(src: &Observed, dst: &Observed, tolerance: Duration) -> Verdict {
    let tol = tolerance.as_millis() as i64;
    let expiring = |pttl: i64| (0..=tol).contains(&pttl);
    match (src.kind, dst.kind) {
        (Kind::None, Kind::None) => Verdict::Vanished,
        (Kind::None, _) if expiring(dst.pttl) => Verdict::Expired,
        (Kind::None, _) => Verdict::Mismatch(Class::ExtraOnTarget),
        (_, Kind::None) if expiring(src.pttl) => Verdict::Expired,
        (_, Kind::None) => Verdict::Mismatch(Class::MissingOnTarget),
        (a, b) if a != b => Verdict::Mismatch(Class::Type),
        _ if src.unreadable || dst.unreadable || src.digest != dst.digest => {
            Verdict::Mismatch(Class::Value)
        }
        _ => {
            let ttl_ok = match (src.pttl, dst.pttl) {
                (a, b) if a < 0 && b < 0 => a == b,
                (a, b) if a >= 0 && b >= 0 => (a - b).abs() <= tol,
                _ => false,
            };
            if ttl_ok {
                Verdict::Equal
            } else {
                Verdict::Mismatch(Class::Ttl)
            }
        }
    }
}

/// Counts and capped key lists of a pass or of several.
#[derive(Default)]
struct Tally {
    checked: u64,
    by_type: BTreeMap<&'static str, u64>,
    expired: u64,
    skipped: u64,
    /// Mismatched keys to re-check, with their latest class.
    pending: HashMap<Vec<u8>, Class>,
    /// Mismatches beyond the cap.
    unrechecked: ClassCounts,
    /// A few keys of those, for examples.
    overflow_examples: Vec<(Vec<u8>, Class)>,
}

impl Tally {
    fn mismatch(&mut self, key: Vec<u8>, class: Class, cap: usize) {
        if self.pending.len() < cap || self.pending.contains_key(&key) {
            self.pending.insert(key, class);
        } else {
            self.unrechecked.add(class, 1);
            if self.overflow_examples.len() < 16 {
                self.overflow_examples.push((key, class));
            }
        }
    }

    fn merge(&mut self, other: Tally, cap: usize) {
        self.checked += other.checked;
        for (t, n) in other.by_type {
            *self.by_type.entry(t).or_default() += n;
        }
        self.expired += other.expired;
        self.skipped += other.skipped;
        for (key, class) in other.pending {
            self.mismatch(key, class, cap);
        }
        for (class, n) in [
            (Class::MissingOnTarget, other.unrechecked.missing_on_target),
            (Class::ExtraOnTarget, other.unrechecked.extra_on_target),
            (Class::Type, other.unrechecked.type_),
            (Class::Value, other.unrechecked.value),
            (Class::Ttl, other.unrechecked.ttl),
        ] {
            self.unrechecked.add(class, n);
        }
        self.overflow_examples.extend(other.overflow_examples);
        self.overflow_examples.truncate(16);
    }
}

/// The connections to both sides.
struct Sides {
    source: Endpoint,
    target: Endpoint,
    src: Pool,
    dst: Pool,
    opts: VerifyOptions,
}

/// What a reply of a value-reading pipeline is about.
#[derive(Clone, Copy)]
enum Asked {
    Ttl,
    Value,
    Type,
}

impl Sides {
    async fn connect(
        resolver: &Resolver,
        source: &Endpoint,
        target: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Sides, VerifyError> {
        let pool = async |side: Side, endpoint: &Endpoint| {
            let mut wires = Vec::with_capacity(opts.connections);
            for _ in 0..opts.connections {
                let wire = Wire::connect(resolver, endpoint, opts.timeout)
                    .await
                    .map_err(|source| VerifyError::Connect {
                        side,
                        endpoint: endpoint.clone(),
                        source,
                    })?;
                wires.push(wire);
            }
            Ok::<_, VerifyError>(Pool::new(wires))
        };
        Ok(Sides {
            source: source.clone(),
            target: target.clone(),
            src: pool(Side::Source, source).await?,
            dst: pool(Side::Target, target).await?,
            opts: opts.clone(),
        })
    }

    fn pool(&self, side: Side) -> &Pool {
        match side {
            Side::Source => &self.src,
            Side::Target => &self.dst,
        }
    }

    fn err(&self, side: Side, source: WireError) -> VerifyError {
        VerifyError::Redis {
            side,
            endpoint: match side {
                Side::Source => self.source.clone(),
                Side::Target => self.target.clone(),
            },
            source,
        }
    }

    /// Runs `p` on a connection of `side`.
    async fn run(
        &self,
        side: Side,
        p: &Pipeline,
        each: impl FnMut(usize, Frame<'_>) -> Result<(), WireError>,
    ) -> Result<(), VerifyError> {
        self.pool(side)
            .get()
            .await
            .run(p, each)
            .await
            .map_err(|e| self.err(side, e))
    }

    /// The reply to one command, as `read` takes it.
    async fn one<T: Default>(
        &self,
        side: Side,
        args: &[&[u8]],
        read: impl Fn(Frame<'_>) -> T,
    ) -> Result<T, VerifyError> {
        let mut p = Pipeline::new();
        p.cmd(args);
        let mut value = T::default();
        self.run(side, &p, |_, r| {
            value = read(r.ok()?);
            Ok(())
        })
        .await?;
        Ok(value)
    }

    /// The reply to one command, as text (`INFO`).
    async fn text(&self, side: Side, args: &[&[u8]]) -> Result<String, VerifyError> {
        self.one(side, args, |r| {
            String::from_utf8_lossy(r.bytes().unwrap_or_default()).into_owned()
        })
        .await
    }

    async fn dbsize(&self, side: Side) -> Result<u64, VerifyError> {
        self.one(side, &[b"DBSIZE"], |r| r.int().unwrap_or(0).max(0) as u64)
            .await
    }

    /// Scans `scanned` and checks its keys against the other side: the source pass
    /// compares everything, the target pass only looks for keys the source lacks.
    async fn pass(
        self: Arc<Self>,
        scanned: Side,
        progress: &(dyn Fn(VerifyProgress) + Send + Sync),
    ) -> Result<Tally, VerifyError> {
        let opts = &self.opts;
        let mut tally = Tally::default();
        let mut tasks: JoinSet<Result<Tally, VerifyError>> = JoinSet::new();
        let mut cursor = b"0".to_vec();
        let count = opts.batch.to_string();
        let absorb = |done: Result<Result<Tally, VerifyError>, tokio::task::JoinError>,
                      tally: &mut Tally|
         -> Result<(), VerifyError> {
            let part = done.expect("a verify task does not panic")?;
            if scanned == Side::Source {
                progress(VerifyProgress::Checked(part.checked));
            }
            tally.merge(part, opts.recheck_cap);
            Ok(())
        };
        loop {
            let mut p = Pipeline::new();
            p.cmd(&[b"SCAN", &cursor, b"COUNT", count.as_bytes()]);
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let mut skipped = 0;
            self.run(scanned, &p, |_, r| {
                let mut parts = r.ok()?.items().into_iter().flatten();
                let shape = || WireError::Server("SCAN's reply is not [cursor, keys]".into());
                let (Some(next), Some(page)) = (parts.next(), parts.next()) else {
                    return Err(shape());
                };
                cursor = next.bytes().ok_or_else(shape)?.to_vec();
                for key in page.items().ok_or_else(shape)? {
                    let key = key.bytes().ok_or_else(shape)?;
                    if opts.skipped(key) {
                        skipped += 1;
                    } else {
                        keys.push(key.to_vec());
                    }
                }
                Ok(())
            })
            .await?;
            if scanned == Side::Source {
                tally.skipped += skipped;
            }
            if !keys.is_empty() {
                while tasks.len() >= opts.in_flight {
                    if let Some(done) = tasks.join_next().await {
                        absorb(done, &mut tally)?;
                    }
                }
                let sides = self.clone();
                tasks.spawn(async move {
                    match scanned {
                        Side::Source => sides.compare(keys).await,
                        Side::Target => sides.extras(keys).await,
                    }
                });
            }
            if cursor == b"0" {
                break;
            }
        }
        while let Some(done) = tasks.join_next().await {
            absorb(done, &mut tally)?;
        }
        Ok(tally)
    }

    /// Source keys: compare type, value and TTL with the target.
    async fn compare(&self, keys: Vec<Vec<u8>>) -> Result<Tally, VerifyError> {
        let mut tally = Tally::default();
        let (src, dst) = self.observe(&keys).await?;
        for ((key, s), d) in keys.into_iter().zip(&src).zip(&dst) {
            if s.kind == Kind::None {
                // Gone from the source since SCAN listed it: expired or deleted. The target
                // pass finds it if the target keeps it.
                continue;
            }
            tally.checked += 1;
            *tally.by_type.entry(s.kind.name()).or_default() += 1;
            match judge(s, d, self.opts.ttl_tolerance) {
                Verdict::Equal | Verdict::Vanished => {}
                Verdict::Expired => tally.expired += 1,
                Verdict::Mismatch(class) => tally.mismatch(key, class, self.opts.recheck_cap),
            }
        }
        Ok(tally)
    }

    /// Target keys: find the ones the source does not have. One multi-key EXISTS answers
    /// for the whole batch when the source has them all (each listed key counts once), so
    /// keys are looked at one by one only in a batch that has an extra key.
    async fn extras(&self, keys: Vec<Vec<u8>>) -> Result<Tally, VerifyError> {
        let mut tally = Tally::default();
        let mut all = Pipeline::new();
        all.cmd_with(b"EXISTS", keys.iter().map(Vec::as_slice));
        let mut on_source = 0;
        self.run(Side::Source, &all, |_, r| {
            on_source = r.ok()?.int().unwrap_or(0);
            Ok(())
        })
        .await?;
        if on_source == keys.len() as i64 {
            return Ok(tally);
        }
        let mut each = Pipeline::new();
        for key in &keys {
            each.cmd(&[b"EXISTS", key]);
        }
        let mut absent = Vec::new();
        self.run(Side::Source, &each, |i, r| {
            if r.ok()?.int() == Some(0) {
                absent.push(i);
            }
            Ok(())
        })
        .await?;
        let mut pttl = Pipeline::new();
        for &i in &absent {
            pttl.cmd(&[b"PTTL", &keys[i]]);
        }
        let mut target_ttl = vec![-2; absent.len()];
        self.run(Side::Target, &pttl, |j, r| {
            target_ttl[j] = ttl(r.ok()?);
            Ok(())
        })
        .await?;
        let tol = self.opts.ttl_tolerance.as_millis() as i64;
        for (i, ttl) in absent.into_iter().zip(target_ttl) {
            if ttl == -2 {
                continue;
            }
            tally.checked += 1;
            if (0..=tol).contains(&ttl) {
                tally.expired += 1;
            } else {
                tally.mismatch(keys[i].clone(), Class::ExtraOnTarget, self.opts.recheck_cap);
            }
        }
        Ok(tally)
    }

    /// Both sides' view of `keys`. The source is asked TYPE and PTTL; then, at once, the
    /// source is read and the target is asked PTTL and read as the source's type says. The
    /// target's own TYPE is asked only where that read says the type differs (WRONGTYPE),
    /// or where the source has no value to read: one command less per key on the target.
    async fn observe(
        &self,
        keys: &[Vec<u8>],
    ) -> Result<(Vec<Observed>, Vec<Observed>), VerifyError> {
        let mut src_conn = self.src.get().await;
        let mut p = Pipeline::new();
        for key in keys {
            p.cmd(&[b"TYPE", key]).cmd(&[b"PTTL", key]);
        }
        let mut src = vec![Observed::default(); keys.len()];
        src_conn
            .run(&p, |j, r| {
                let o = &mut src[j / 2];
                match j % 2 {
                    0 => o.kind = Kind::parse(r.ok()?),
                    _ => o.pttl = ttl(r.ok()?),
                }
                Ok(())
            })
            .await
            .map_err(|e| self.err(Side::Source, e))?;
        let kinds: Vec<Kind> = src.iter().map(|o| o.kind).collect();
        let mut dst = vec![Observed::default(); keys.len()];
        let ((), wrong_type) = tokio::try_join!(
            async {
                self.read_values(Side::Source, &mut src_conn, keys, &kinds, &mut src)
                    .await
                    .map(drop)
            },
            async {
                let mut conn = self.dst.get().await;
                self.read_values(Side::Target, &mut conn, keys, &kinds, &mut dst)
                    .await
            }
        )?;
        drop(src_conn);
        if !wrong_type.is_empty() {
            let mut p = Pipeline::new();
            for &i in &wrong_type {
                p.cmd(&[b"TYPE", &keys[i]]);
            }
            self.run(Side::Target, &p, |j, r| {
                let i = wrong_type[j];
                let o = &mut dst[i];
                o.kind = Kind::parse(r.ok()?);
                // The same type as the source's after all: it changed while being read.
                o.unreadable = o.kind == kinds[i];
                Ok(())
            })
            .await?;
        }
        Ok((src, dst))
    }

    /// Reads and digests the values of `keys` as `kinds` (the source's types) say, big keys
    /// chunk by chunk. On the target each key's PTTL is asked first, in the same pipeline,
    /// and its type taken from the answers: none when PTTL says the key is gone, the
    /// source's when the read succeeds, TYPE's when there is no value to read. Returns the
    /// keys whose read failed as another type would (their kind is still to be asked).
    async fn read_values(
        &self,
        side: Side,
        conn: &mut Wire,
        keys: &[Vec<u8>],
        kinds: &[Kind],
        observed: &mut [Observed],
    ) -> Result<Vec<usize>, VerifyError> {
        let chunk = self.opts.chunk;
        let target = side == Side::Target;
        let mut p = Pipeline::new();
        let mut asked: Vec<(usize, Asked)> = Vec::with_capacity(keys.len() * 2);
        for (i, key) in keys.iter().enumerate() {
            if target {
                p.cmd(&[b"PTTL", key]);
                asked.push((i, Asked::Ttl));
            }
            if kinds[i].read(&mut p, key, &Next::Start, chunk) {
                asked.push((i, Asked::Value));
            } else if target {
                p.cmd(&[b"TYPE", key]);
                asked.push((i, Asked::Type));
            }
        }
        if p.is_empty() {
            return Ok(Vec::new());
        }
        let mut unfinished = Vec::new();
        let mut wrong_type = Vec::new();
        conn.run(&p, |j, r| {
            let (i, what) = asked[j];
            let o = &mut observed[i];
            match what {
                Asked::Ttl => o.pttl = ttl(r.ok()?),
                Asked::Type => {
                    o.kind = if o.pttl == -2 {
                        Kind::None
                    } else {
                        Kind::parse(r.ok()?)
                    }
                }
                Asked::Value => {
                    if target {
                        o.kind = if o.pttl == -2 { Kind::None } else { kinds[i] };
                    }
                    if o.kind == Kind::None {
                        return Ok(());
                    }
                    match r.error() {
                        Some(e) if target && e.starts_with(b"WRONGTYPE") => wrong_type.push(i),
                        Some(_) => o.unreadable = true,
                        None => match o.digest.absorb(o.kind, r, chunk, 0) {
                            Ok(Next::Done) => {}
                            Ok(next) => unfinished.push((i, next)),
                            Err(_) => o.unreadable = true,
                        },
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| self.err(side, e))?;
        for (i, mut next) in unfinished {
            let o = &mut observed[i];
            loop {
                let offset = match next {
                    Next::Offset(at) => at,
                    _ => 0,
                };
                let mut p = Pipeline::new();
                if !o.kind.read(&mut p, &keys[i], &next, chunk) {
                    break;
                }
                conn.run(&p, |_, r| {
                    // An error here is WRONGTYPE or the like: the key changed while it
                    // was read.
                    next = match r.error().map_or_else(
                        || o.digest.absorb(o.kind, r, chunk, offset),
                        |_| Err(digest::Unreadable),
                    ) {
                        Ok(more) => more,
                        Err(_) => {
                            o.unreadable = true;
                            Next::Done
                        }
                    };
                    Ok(())
                })
                .await
                .map_err(|e| self.err(side, e))?;
                if next == Next::Done {
                    break;
                }
            }
        }
        Ok(wrong_type)
    }
}

/// A PTTL reply: -1 no TTL, -2 no key.
fn ttl(reply: Frame<'_>) -> i64 {
    reply.int().unwrap_or(-2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(kind: Kind, pttl: i64) -> Observed {
        Observed {
            kind,
            pttl,
            digest: Digest::default(),
            unreadable: false,
        }
    }

    fn class(v: Verdict) -> Option<Class> {
        match v {
            Verdict::Mismatch(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn judges_each_class() {
        let tol = Duration::from_secs(2);
        let s = seen(Kind::String, -1);
        assert_eq!(
            class(judge(&s, &seen(Kind::None, -2), tol)),
            Some(Class::MissingOnTarget)
        );
        assert_eq!(
            class(judge(&seen(Kind::None, -2), &s, tol)),
            Some(Class::ExtraOnTarget)
        );
        assert_eq!(
            class(judge(&s, &seen(Kind::Hash, -1), tol)),
            Some(Class::Type)
        );
        assert_eq!(
            class(judge(&s, &seen(Kind::String, 60_000), tol)),
            Some(Class::Ttl)
        );
        assert_eq!(
            class(judge(
                &seen(Kind::String, 60_000),
                &seen(Kind::String, 62_500),
                tol
            )),
            Some(Class::Ttl)
        );
        assert_eq!(
            class(judge(
                &seen(Kind::String, 60_000),
                &seen(Kind::String, 61_500),
                tol
            )),
            None
        );
        let unreadable = Observed {
            unreadable: true,
            ..s
        };
        assert_eq!(class(judge(&s, &unreadable, tol)), Some(Class::Value));
        assert!(matches!(judge(&s, &s, tol), Verdict::Equal));
    }

    #[test]
    fn keys_about_to_expire_are_not_missing() {
        let tol = Duration::from_secs(2);
        let expiring = seen(Kind::String, 1500);
        assert!(matches!(
            judge(&expiring, &seen(Kind::None, -2), tol),
            Verdict::Expired
        ));
        assert!(matches!(
            judge(&seen(Kind::None, -2), &expiring, tol),
            Verdict::Expired
        ));
        assert!(matches!(
            judge(&seen(Kind::None, -2), &seen(Kind::None, -2), tol),
            Verdict::Vanished
        ));
    }

    #[test]
    fn skips_probe_and_elasticache_keys() {
        let opts = VerifyOptions::default();
        assert!(opts.skipped(b"runbook:probe:seq"));
        assert!(opts.skipped(ELASTICACHE_TIMESTAMP_KEY.as_bytes()));
        assert!(!opts.skipped(b"user:1"));
    }

    #[test]
    fn the_recheck_set_is_capped() {
        let mut t = Tally::default();
        for i in 0..5u8 {
            t.mismatch(vec![i], Class::Value, 3);
        }
        t.mismatch(vec![0], Class::Ttl, 3);
        assert_eq!(t.pending.len(), 3);
        assert_eq!(t.pending[&vec![0]], Class::Ttl);
        assert_eq!(t.unrechecked.value, 2);
    }
}

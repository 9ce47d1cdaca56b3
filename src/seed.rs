//! Deterministic test data, so a rehearsal has something realistic to replicate, verify and
//! lose.
//!
//! Key `i`'s name, type, value and TTL are a pure function of the prefix, `i` and the
//! options: seeding again with the same options writes the same data, and a check can tell
//! what should be there. Keys are named `{prefix}{type}:{n:012}` where `n` counts the keys
//! of that type, so `redis-benchmark -r` can address the same keys (`__rand_int__` is a
//! zero-padded 12-digit number). Writes are pipelined over a few connections, the next batch
//! encoded while the last is in flight; into a cluster, each shard's primary gets the keys of
//! its slots.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::cluster::{Redirect, Topology, TopologyError};
use crate::resp::{Conn, Pipeline, Pool, RespError};
use crate::verify::pace::Pacer;

/// The value types seeding can write.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    String,
    Hash,
    List,
    Set,
    Zset,
    Stream,
}

impl DataType {
    /// The name `TYPE` answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Hash => "hash",
            DataType::List => "list",
            DataType::Set => "set",
            DataType::Zset => "zset",
            DataType::Stream => "stream",
        }
    }

    /// The default mix: every common type except streams.
    pub const COMMON: [DataType; 5] = [
        DataType::String,
        DataType::Hash,
        DataType::List,
        DataType::Set,
        DataType::Zset,
    ];
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = SeedError;

    fn from_str(s: &str) -> Result<DataType, SeedError> {
        [
            DataType::String,
            DataType::Hash,
            DataType::List,
            DataType::Set,
            DataType::Zset,
            DataType::Stream,
        ]
        .into_iter()
        .find(|t| t.as_str() == s.to_ascii_lowercase())
        .ok_or_else(|| {
            SeedError::Options(format!(
                "unknown type `{s}` (expected string, hash, list, set, zset or stream)"
            ))
        })
    }
}

impl<'de> serde::Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What to write.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// How many keys.
    pub keys: u64,
    /// Prepended to every key name.
    pub prefix: String,
    /// Bytes of a string value, of a hash field's value and of a list item.
    pub value_size: usize,
    /// Elements (fields, items, members, entries) of each collection.
    pub elements: usize,
    /// The share of keys (0 to 1) that get a TTL.
    pub ttl_share: f64,
    /// The shortest TTL; TTLs spread over `ttl` to `2 × ttl`.
    pub ttl: Duration,
    /// The types, assigned to keys in turn.
    pub types: Vec<DataType>,
    /// Connections to write over.
    pub connections: usize,
    /// Keys per pipeline.
    pub pipeline: usize,
    /// Connect and response timeout.
    pub timeout: Duration,
    /// The databases to write the keys into, each getting all of them; empty: the
    /// endpoint's.
    pub dbs: Vec<i64>,
    /// Keys per second written at most (none: as fast as it can).
    pub max_rate: Option<u64>,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            keys: 10_000,
            prefix: "seed:".into(),
            value_size: 32,
            elements: 8,
            ttl_share: 0.1,
            ttl: Duration::from_secs(3600),
            types: DataType::COMMON.to_vec(),
            connections: 4,
            pipeline: 256,
            timeout: Duration::from_secs(10),
            dbs: Vec::new(),
            max_rate: None,
        }
    }
}

impl SeedOptions {
    /// Rejects options that cannot work, saying which and why.
    pub fn validate(&self) -> Result<(), SeedError> {
        let bad = |m: &str| Err(SeedError::Options(m.to_string()));
        if !(0.0..=1.0).contains(&self.ttl_share) {
            return bad("the TTL share must be between 0 and 1, e.g. 0.1 for one key in ten");
        }
        if self.types.is_empty() {
            return bad("name at least one type");
        }
        if self.connections == 0 || self.pipeline == 0 {
            return bad("connections and pipeline must be at least 1");
        }
        if self.elements == 0 {
            return bad("collections need at least 1 element");
        }
        if self.ttl_share > 0.0 && self.ttl < Duration::from_millis(1) {
            return bad("the TTL must be at least 1ms");
        }
        if self.dbs.iter().any(|&db| db < 0) {
            return bad("a database number is 0 or more");
        }
        Ok(())
    }

    /// Key `i`'s type.
    pub fn type_of(&self, i: u64) -> DataType {
        self.types[(i % self.types.len() as u64) as usize]
    }

    /// Key `i`'s name.
    pub fn key(&self, i: u64) -> String {
        let n = i / self.types.len() as u64;
        format!("{}{}:{n:012}", self.prefix, self.type_of(i))
    }

    /// Key `i`'s TTL in milliseconds, if it has one.
    pub fn ttl_ms(&self, i: u64) -> Option<u64> {
        let roll = mix(self.salt(), i, u64::MAX);
        let has = (roll % 1_000_000) as f64 / 1_000_000.0 < self.ttl_share;
        let base = self.ttl.as_millis() as u64;
        has.then(|| base + (roll >> 20) % base.max(1))
    }

    fn salt(&self) -> u64 {
        self.prefix.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// Deterministic printable bytes for key `i`, element `e`.
    fn bytes(&self, i: u64, e: u64, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8; 64] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
        let mut out = Vec::with_capacity(len);
        let mut state = mix(self.salt(), i, e);
        while out.len() < len {
            for b in state.to_le_bytes() {
                if out.len() == len {
                    break;
                }
                out.push(ALPHABET[(b & 63) as usize]);
            }
            state = splitmix(state);
        }
        out
    }

    /// Appends key `i`'s writes to `p`.
    fn write(&self, p: &mut Pipeline, i: u64) -> DataType {
        let key = self.key(i);
        let key = key.as_bytes();
        let kind = self.type_of(i);
        let n = self.elements as u64;
        if kind != DataType::String {
            p.cmd(&[b"DEL", key]);
        }
        match kind {
            DataType::String => {
                p.cmd(&[b"SET", key, &self.bytes(i, 0, self.value_size)]);
            }
            DataType::Hash => {
                p.command(|c| {
                    c.arg("HSET").arg(key);
                    for e in 0..n {
                        c.arg(format!("f{e}"))
                            .arg(self.bytes(i, e, self.value_size));
                    }
                });
            }
            DataType::List => {
                p.command(|c| {
                    c.arg("RPUSH").arg(key);
                    for e in 0..n {
                        c.arg(self.bytes(i, e, self.value_size));
                    }
                });
            }
            DataType::Set => {
                p.command(|c| {
                    c.arg("SADD").arg(key);
                    for e in 0..n {
                        c.arg(self.member(i, e));
                    }
                });
            }
            DataType::Zset => {
                p.command(|c| {
                    c.arg("ZADD").arg(key);
                    for e in 0..n {
                        let score = (mix(self.salt(), i, e + n) % 1_000_000) as f64 / 100.0;
                        c.arg(score.to_string()).arg(self.member(i, e));
                    }
                });
            }
            DataType::Stream => {
                for e in 0..n {
                    p.command(|c| {
                        c.arg("XADD")
                            .arg(key)
                            .arg(format!("1-{}", e + 1))
                            .arg("f")
                            .arg(self.bytes(i, e, self.value_size));
                    });
                }
                // A consumer group whose consumer has read half the entries and
                // acknowledged none: groups, consumers and pending entries to carry.
                p.cmd(&[b"XGROUP", b"CREATE", key, STREAM_GROUP, b"0"]);
                p.command(|c| {
                    c.arg("XREADGROUP")
                        .arg("GROUP")
                        .arg(STREAM_GROUP)
                        .arg(STREAM_CONSUMER)
                        .arg("COUNT")
                        .int(n.div_ceil(2) as i64)
                        .arg("STREAMS")
                        .arg(key)
                        .arg(">");
                });
            }
        }
        if let Some(ms) = self.ttl_ms(i) {
            p.command(|c| {
                c.arg("PEXPIRE").arg(key).int(ms as i64);
            });
        }
        kind
    }

    /// A set or zset member, distinct within its key.
    fn member(&self, i: u64, e: u64) -> Vec<u8> {
        let mut m = format!("m{e}:").into_bytes();
        m.extend(self.bytes(i, e, self.value_size.min(16)));
        m
    }
}

/// The consumer group of every seeded stream, and its consumer.
const STREAM_GROUP: &[u8] = b"g1";
const STREAM_CONSUMER: &[u8] = b"c1";

/// What seeding wrote.
#[derive(Clone, Debug, Serialize)]
pub struct SeedSummary {
    pub endpoint: Endpoint,
    /// Keys written, in every database.
    pub keys: u64,
    /// The databases written to, each with every key.
    pub databases: Vec<i64>,
    /// Keys written per type.
    pub by_type: BTreeMap<DataType, u64>,
    /// Keys given a TTL.
    pub with_ttl: u64,
    pub elapsed_ms: u64,
    pub keys_per_sec: f64,
}

/// Why seeding stopped.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The options contradict themselves or are out of range.
    #[error("{0}")]
    Options(String),
    /// The endpoint could not be reached.
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: Endpoint,
        #[source]
        source: RespError,
    },
    /// A cluster-mode endpoint's slot map could not be read or used.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A cluster sent a slot to a node it did not list when seeding began.
    #[error(
        "the cluster redirected slot {slot} to {endpoint}, a node not in its slot map when seeding began: seed again"
    )]
    Redirected { slot: u16, endpoint: Endpoint },
    /// A cluster kept redirecting a slot.
    #[error(
        "the cluster redirected slot {slot} {times} times in a row: seed again once the cluster is stable"
    )]
    Unsettled { slot: u16, times: usize },
    /// The server refused a write (read-only replica, out of memory, wrong type…) or the
    /// connection failed.
    #[error("writing to {endpoint} failed")]
    Write {
        endpoint: Endpoint,
        #[source]
        source: RespError,
    },
}

/// Writes `opts.keys` keys to `endpoint`, in each of `opts.dbs` (or the endpoint's
/// database). `progress` is called with the number of keys written since its last call.
pub async fn seed(
    resolver: &Resolver,
    endpoint: &Endpoint,
    opts: &SeedOptions,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<SeedSummary, SeedError> {
    opts.validate()?;
    if endpoint.db != 0 && !opts.dbs.is_empty() {
        return Err(SeedError::Options(
            "name the database either in the URL (/N) or with --db, not both".into(),
        ));
    }
    let dbs = if opts.dbs.is_empty() {
        vec![endpoint.db]
    } else {
        opts.dbs.clone()
    };
    let started = Instant::now();
    let mut summary = SeedSummary {
        endpoint: endpoint.clone(),
        keys: 0,
        databases: dbs.clone(),
        by_type: BTreeMap::new(),
        with_ttl: 0,
        elapsed_ms: 0,
        keys_per_sec: 0.0,
    };
    let pacer = Pacer::new(opts.max_rate);
    for db in dbs {
        let one = Endpoint {
            db,
            ..endpoint.clone()
        };
        seed_db(resolver, &one, opts, pacer.as_ref(), progress, &mut summary).await?;
    }
    let elapsed = started.elapsed();
    summary.elapsed_ms = elapsed.as_millis() as u64;
    summary.keys_per_sec = summary.keys as f64 / elapsed.as_secs_f64().max(1e-9);
    Ok(summary)
}

/// Writes every key to `endpoint`'s database, adding to `summary`.
async fn seed_db(
    resolver: &Resolver,
    endpoint: &Endpoint,
    opts: &SeedOptions,
    pacer: Option<&Pacer>,
    progress: &(dyn Fn(u64) + Send + Sync),
    summary: &mut SeedSummary,
) -> Result<(), SeedError> {
    let connect = async |at: &Endpoint| {
        Conn::connect(resolver, at, opts.timeout)
            .await
            .map_err(|source| SeedError::Connect {
                endpoint: at.clone(),
                source,
            })
    };
    let mut first = connect(endpoint).await?;
    // In a cluster, every shard's primary gets the keys of its slots.
    let topology = Arc::new(Topology::of(&mut first, endpoint).await?);
    let mut pools = Vec::with_capacity(topology.shards.len());
    for shard in &topology.shards {
        let mut conns = Vec::with_capacity(opts.connections);
        for _ in 0..opts.connections {
            conns.push(connect(&shard.primary).await?);
        }
        pools.push(Pool::new(conns));
    }
    let pools = Arc::new(pools);
    let batch = pacer.map_or(opts.pipeline, |p| p.batch(opts.pipeline)) as u64;
    let batches = opts.keys.div_ceil(batch);
    // One batch per connection in flight, one more being encoded.
    let in_flight = opts.connections * 2;
    let shared = Arc::new(opts.clone());
    let mut tasks = JoinSet::new();
    let merge = |done: Result<Result<Tally, SeedError>, tokio::task::JoinError>,
                 summary: &mut SeedSummary| {
        let tally = done.expect("a seeding task does not panic")?;
        progress(tally.keys);
        summary.keys += tally.keys;
        summary.with_ttl += tally.with_ttl;
        for (t, n) in tally.by_type {
            *summary.by_type.entry(t).or_default() += n;
        }
        Ok::<(), SeedError>(())
    };
    for b in 0..batches {
        while tasks.len() >= in_flight {
            if let Some(done) = tasks.join_next().await {
                merge(done, summary)?;
            }
        }
        let (pools, topology) = (pools.clone(), topology.clone());
        let opts = shared.clone();
        let range = b * batch..((b + 1) * batch).min(opts.keys);
        if let Some(pacer) = pacer {
            pacer.take(range.end - range.start).await;
        }
        tasks.spawn(async move {
            let mut per_shard = vec![Writes::default(); pools.len()];
            let mut tally = Tally::default();
            for i in range {
                let shard = if topology.cluster {
                    topology.shard_of(opts.key(i).as_bytes())
                } else {
                    0
                };
                let kind = per_shard[shard].add(&opts, i);
                *tally.by_type.entry(kind).or_default() += 1;
                tally.keys += 1;
                tally.with_ttl += u64::from(opts.ttl_ms(i).is_some());
            }
            // The first refusal says it all (READONLY, OOM…); the others repeat it.
            let mut refused = None;
            let mut redirected = BTreeMap::new();
            for (shard, writes) in per_shard.iter().enumerate() {
                let at = &topology.shards[shard].primary;
                writes
                    .send(&pools[shard], at, &mut refused, &mut redirected)
                    .await?;
            }
            // A key whose slot moved (MOVED) or is being migrated (ASK) is written again,
            // whole, where the cluster said.
            for _ in 0..MAX_REDIRECTS {
                if redirected.is_empty() {
                    break;
                }
                let mut again: BTreeMap<(usize, bool), Writes> = BTreeMap::new();
                for (i, redirect) in std::mem::take(&mut redirected) {
                    let (slot, to, ask) = match redirect {
                        Redirect::Moved { slot, to } => (slot, to, false),
                        Redirect::Ask { slot, to } => (slot, to, true),
                    };
                    let shard = topology
                        .shards
                        .iter()
                        .position(|s| s.primary.host == to.host && s.primary.port == to.port)
                        .ok_or(SeedError::Redirected { slot, endpoint: to })?;
                    again
                        .entry((shard, ask))
                        .or_insert_with(|| Writes::asking(ask))
                        .add(&opts, i);
                }
                for ((shard, _), writes) in &again {
                    let at = &topology.shards[*shard].primary;
                    writes
                        .send(&pools[*shard], at, &mut refused, &mut redirected)
                        .await?;
                }
            }
            if let Some((_, redirect)) = redirected.into_iter().next() {
                return Err(SeedError::Unsettled {
                    slot: redirect.slot(),
                    times: MAX_REDIRECTS,
                });
            }
            refused.map_or(Ok(tally), |(at, text)| {
                Err(SeedError::Write {
                    endpoint: at,
                    source: RespError::Server(text),
                })
            })
        });
    }
    while let Some(done) = tasks.join_next().await {
        merge(done, summary)?;
    }
    Ok(())
}

/// How often a key is written again after a redirection before seeding gives up.
const MAX_REDIRECTS: usize = 5;

/// The writes of some keys to one node, and which key each command writes.
#[derive(Clone, Default)]
struct Writes {
    p: Pipeline,
    /// For each command, the index of the key it writes.
    keys: Vec<u64>,
}

impl Writes {
    /// Writes for a node importing their slot (ASK): each command after an `ASKING`.
    fn asking(asking: bool) -> Writes {
        Writes {
            p: Pipeline::asking(asking),
            keys: Vec::new(),
        }
    }

    /// Adds key `i`'s writes.
    fn add(&mut self, opts: &SeedOptions, i: u64) -> DataType {
        let kind = opts.write(&mut self.p, i);
        self.keys.resize(self.p.len(), i);
        kind
    }

    /// Sends the writes to `at`: the first refusal goes to `refused`, each key a cluster
    /// redirected (once) to `redirected`.
    async fn send(
        &self,
        pool: &Pool,
        at: &Endpoint,
        refused: &mut Option<(Endpoint, String)>,
        redirected: &mut BTreeMap<u64, Redirect>,
    ) -> Result<(), SeedError> {
        if self.p.is_empty() {
            return Ok(());
        }
        let step = if self.p.is_asking() { 2 } else { 1 };
        let mut n = 0;
        pool.get()
            .await
            .batch(self.p.as_bytes(), self.p.replies(), |reply| {
                let key = self.keys[n / step];
                n += 1;
                let Some(text) = reply.error else { return };
                match Redirect::of(text, at) {
                    Some(to) => {
                        redirected.entry(key).or_insert(to);
                    }
                    None => {
                        refused.get_or_insert_with(|| {
                            (at.clone(), String::from_utf8_lossy(text).into_owned())
                        });
                    }
                }
            })
            .await
            .map_err(|source| SeedError::Write {
                endpoint: at.clone(),
                source,
            })
    }
}

/// What one pipeline wrote.
#[derive(Default)]
struct Tally {
    keys: u64,
    with_ttl: u64,
    by_type: BTreeMap<DataType, u64>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix(salt: u64, i: u64, e: u64) -> u64 {
    splitmix(salt ^ splitmix(i ^ splitmix(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_a_function_of_their_index() {
        let opts = SeedOptions::default();
        assert_eq!(opts.key(0), "seed:string:000000000000");
        assert_eq!(opts.key(7), "seed:list:000000000001");
        assert_eq!(opts.type_of(9), DataType::Zset);
        assert_eq!(opts.bytes(3, 1, 40), opts.bytes(3, 1, 40));
        assert_ne!(opts.bytes(3, 1, 40), opts.bytes(4, 1, 40));
        assert_eq!(opts.bytes(3, 1, 40).len(), 40);
        let other = SeedOptions {
            prefix: "x:".into(),
            ..SeedOptions::default()
        };
        assert_ne!(opts.bytes(3, 1, 8), other.bytes(3, 1, 8));
    }

    #[test]
    fn ttl_share_is_respected() {
        let opts = SeedOptions {
            ttl_share: 0.25,
            ..SeedOptions::default()
        };
        let with = (0..100_000).filter(|&i| opts.ttl_ms(i).is_some()).count();
        assert!(
            (23_000..27_000).contains(&with),
            "{with} of 100000 have a TTL"
        );
        let ttl = (0..1000).find_map(|i| opts.ttl_ms(i)).unwrap();
        assert!((3_600_000..7_200_000).contains(&ttl));
        let none = SeedOptions {
            ttl_share: 0.0,
            ..SeedOptions::default()
        };
        assert!((0..10_000).all(|i| none.ttl_ms(i).is_none()));
    }

    #[test]
    fn bad_options_are_refused() {
        let share = SeedOptions {
            ttl_share: 1.5,
            ..SeedOptions::default()
        };
        assert!(
            share
                .validate()
                .unwrap_err()
                .to_string()
                .contains("between 0 and 1")
        );
        assert!("bitmap".parse::<DataType>().is_err());
        assert_eq!("ZSet".parse::<DataType>().unwrap(), DataType::Zset);
    }
}

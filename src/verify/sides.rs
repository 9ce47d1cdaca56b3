//! The connections to both sides of a check, and the one-command questions passes ask.
//!
//! A side is a [`Reader`]: the connections that read each shard of one endpoint (one, for
//! a standalone server), lent out one batch at a time and switched to the database a batch
//! is about. Every read names where its keys live ([`At`]), so it goes to the one node that
//! holds them and never mixes slots. A key a cluster redirects while its slot moves (MOVED)
//! or is being migrated (ASK) is asked again where the cluster says ([`Follow`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::cluster::{self, Redirect, Topology};
use crate::resp::{Conn, Frame, Lease, Pipeline, Pool, RespError};

use super::guess::Guesses;
use super::pace::Pacer;
use super::{ReadFrom, Side, VerifyError, VerifyOptions};

/// The connections that read one node.
pub(super) struct Node {
    /// The server read: a shard's primary, or its replica.
    pub endpoint: Endpoint,
    pool: Pool,
}

/// The connections that read one side: one [`Node`] per shard, in the order of the
/// side's [`Topology`] (a standalone server is one shard).
pub(super) struct Reader {
    pub topology: Topology,
    pub nodes: Vec<Node>,
    /// The server has per-field hash TTLs (`HPTTL`, Redis 7.4 and Valkey 9 on).
    pub field_ttls: bool,
    /// The server reads a stream's state in one `XINFO STREAM … FULL` (asked as
    /// `XINFO|STREAM`, which servers from 7.0 on describe; FULL itself came in 6.0).
    pub stream_full: bool,
    /// Slots a `MOVED` sent to another node since the map was read: slot → node index.
    moved: RwLock<HashMap<u16, usize>>,
}

impl Reader {
    async fn connect(
        resolver: &Resolver,
        side: Side,
        given: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Reader, VerifyError> {
        let connect_err = |endpoint: &Endpoint| {
            let endpoint = endpoint.clone();
            move |source| VerifyError::Connect {
                side,
                endpoint,
                source,
            }
        };
        let mut first = Conn::connect(resolver, given, opts.timeout)
            .await
            .map_err(connect_err(given))?;
        let topology = Topology::of(&mut first, given)
            .await
            .map_err(|source| VerifyError::Topology { side, source })?;
        // COMMAND INFO answers nil for a command the server does not have.
        let mut has = async |command: &[u8]| match first
            .call(&[b"COMMAND", b"INFO", command], |r| {
                r.items()
                    .and_then(|mut found| found.next())
                    .is_some_and(|f| !f.is_nil())
            })
            .await
        {
            Ok(has) => Ok(has),
            Err(RespError::Server(_)) => Ok(false),
            Err(e) => Err(connect_err(given)(e)),
        };
        let field_ttls = has(b"HPTTL").await?;
        let stream_full = has(b"XINFO|STREAM").await?;
        let no_replica = || VerifyError::NoReplica {
            side,
            endpoint: given.clone(),
        };
        let read: Vec<Endpoint> = match (opts.read_from, topology.cluster) {
            (ReadFrom::Primary, _) => topology.shards.iter().map(|s| s.primary.clone()).collect(),
            (ReadFrom::Replica, true) => topology
                .shards
                .iter()
                .map(|s| s.replicas.first().cloned().ok_or_else(no_replica))
                .collect::<Result<_, _>>()?,
            (ReadFrom::Replica, false) => {
                let info = first
                    .call(&[b"INFO", b"replication"], |r| r.text())
                    .await
                    .map_err(connect_err(given))?;
                vec![replica(given, &info).ok_or_else(no_replica)?]
            }
        };
        let mut nodes = Vec::with_capacity(read.len());
        for endpoint in read {
            let mut conns = Vec::with_capacity(opts.connections);
            for _ in 0..opts.connections {
                let mut conn = Conn::connect(resolver, &endpoint, opts.timeout)
                    .await
                    .map_err(connect_err(&endpoint))?;
                // A cluster replica answers reads of its primary's slots only after READONLY;
                // otherwise it redirects them to the primary.
                if topology.cluster && opts.read_from == ReadFrom::Replica {
                    conn.call(&[b"READONLY"], |_| ())
                        .await
                        .map_err(connect_err(&endpoint))?;
                }
                conns.push(conn);
            }
            nodes.push(Node {
                endpoint,
                pool: Pool::new(conns),
            });
        }
        Ok(Reader {
            topology,
            nodes,
            field_ttls,
            stream_full,
            moved: RwLock::new(HashMap::new()),
        })
    }

    /// The index in [`Reader::nodes`] of the node that serves `key`: by the slot map, or
    /// where a `MOVED` said its slot went since.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        if !self.topology.cluster {
            return 0;
        }
        let moved = self.moved.read().expect("a lock is never poisoned");
        match moved.get(&cluster::slot(key)) {
            Some(&node) => node,
            None => self.topology.shard_of(key),
        }
    }

    /// The node a redirection names: one read, or the primary of a shard read at a
    /// replica.
    fn node_at(&self, endpoint: &Endpoint) -> Option<usize> {
        let same = |e: &Endpoint| e.host == endpoint.host && e.port == endpoint.port;
        self.nodes
            .iter()
            .position(|n| same(&n.endpoint))
            .or_else(|| self.topology.shards.iter().position(|s| same(&s.primary)))
    }

    /// A connection on whatever database, for server-wide questions: the first shard's
    /// (function libraries are loaded on every node of a cluster alike).
    pub async fn any(&self) -> Lease<'_> {
        self.nodes[0].pool.get().await
    }

    /// A connection to shard `shard`, on database `db`.
    pub async fn lease(&self, shard: usize, db: i64) -> Result<Lease<'_>, RespError> {
        let mut conn = self.nodes[shard].pool.get().await;
        if conn.db() != db {
            conn.select(db).await?;
        }
        Ok(conn)
    }

    /// The server read for the report: the one node, or the cluster as given.
    pub fn shown(&self, given: &Endpoint) -> Endpoint {
        if self.topology.cluster {
            given.clone()
        } else {
            self.nodes[0].endpoint.clone()
        }
    }
}

/// Where a batch of keys lives: its database (the source's number), and its shard on each
/// side, indexed by [`Side`]. Every key of a batch hashes to the same shard on both sides,
/// so each side's commands for it go to one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct At {
    pub db: i64,
    pub shard: [usize; 2],
    /// The node is importing the keys' slot (an `ASK`): each command goes after `ASKING`.
    pub asking: [bool; 2],
}

impl At {
    pub fn new(db: i64, shard: [usize; 2]) -> At {
        At {
            db,
            shard,
            asking: [false; 2],
        }
    }

    /// An empty pipeline for `side`'s node at this place.
    pub fn pipeline(&self, side: Side) -> Pipeline {
        Pipeline::asking(self.asking[side as usize])
    }
}

/// Redirections a cluster answered during one attempt at a batch: the key (its index in
/// the batch), the side, and where to.
#[derive(Default)]
pub(super) struct Redirects(Mutex<Vec<(usize, Side, Redirect)>>);

impl Redirects {
    pub fn push(&self, key: usize, side: Side, to: Redirect) {
        self.0
            .lock()
            .expect("a lock is never poisoned")
            .push((key, side, to));
    }

    pub fn take(&self) -> Vec<(usize, Side, Redirect)> {
        std::mem::take(&mut self.0.lock().expect("a lock is never poisoned"))
    }
}

/// Following redirections for one batch: after the first attempt at `at`, the keys a
/// cluster redirected are tried again where it said ([`Follow::next`]), until none is
/// left, at most [`MAX_REDIRECTS`] times.
pub(super) struct Follow {
    at: At,
    /// What the attempt under way notes, by its keys' indices.
    pub redirects: Redirects,
    /// Where each key tried again was last asked.
    places: HashMap<usize, At>,
    /// Redirections of the attempts done, by the batch's key indices.
    pending: Vec<(usize, Side, Redirect)>,
    round: usize,
}

impl Follow {
    pub fn new(at: At) -> Follow {
        Follow {
            at,
            redirects: Redirects::default(),
            places: HashMap::new(),
            pending: Vec::new(),
            round: 0,
        }
    }

    /// The next attempts, by place, each with the batch's key indices it is about; none
    /// when no key is left to follow.
    pub fn next(&mut self, sides: &Sides) -> Result<Option<BTreeMap<At, Vec<usize>>>, VerifyError> {
        if self.round == 0 {
            self.pending = self.redirects.take();
        }
        let Some((_, side, to)) = self.pending.first() else {
            return Ok(None);
        };
        if self.round == MAX_REDIRECTS {
            return Err(VerifyError::Unsettled {
                side: *side,
                slot: to.slot(),
                times: MAX_REDIRECTS,
            });
        }
        self.round += 1;
        let (at, places) = (self.at, &self.places);
        let groups = sides.reroute(std::mem::take(&mut self.pending), |i| {
            places.get(&i).copied().unwrap_or(at)
        })?;
        Ok(Some(groups))
    }

    /// The attempt at `there` about the batch's keys `which` is done: what it noted is
    /// followed next.
    pub fn done(&mut self, there: At, which: &[usize]) {
        self.places.extend(which.iter().map(|&i| (i, there)));
        let noted = self.redirects.take();
        self.pending
            .extend(noted.into_iter().map(|(n, side, to)| (which[n], side, to)));
    }
}

/// How often a key is sent on after a redirection before the check gives up: a slot moves
/// once (MOVED), or is asked at its importing node (ASK), so a few are plenty.
pub(super) const MAX_REDIRECTS: usize = 5;

/// `given` itself when it is a replica, else its first online replica (from its
/// `INFO replication`), reached with the same credentials and TLS.
fn replica(given: &Endpoint, info: &str) -> Option<Endpoint> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
    };
    if matches!(field("role"), Some("slave" | "replica")) {
        return Some(given.clone());
    }
    info.lines().find_map(|line| {
        let (name, fields) = line.trim_end().split_once(':')?;
        name.strip_prefix("slave")?.parse::<u32>().ok()?;
        let value = |k: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
        };
        (value("state") == Some("online")).then_some(())?;
        Some(Endpoint {
            host: value("ip")?.to_string(),
            port: value("port")?.parse().ok()?,
            ..given.clone()
        })
    })
}

/// The connections to both sides, and which target database each source database is
/// compared with.
pub(super) struct Sides {
    /// The endpoints given.
    pub source: Endpoint,
    pub target: Endpoint,
    pub src: Reader,
    pub dst: Reader,
    pub opts: VerifyOptions,
    /// The cap on keys per second, one for each pass.
    pub pacers: [Option<Pacer>; 2],
    /// Source database → target database; every database of the check is a key.
    pub dbs: BTreeMap<i64, i64>,
    /// Redirections followed: MOVED, ASK.
    pub redirected: [AtomicU64; 2],
    /// The types keys named alike turned out to be, to read the next ones at once.
    pub guesses: Guesses,
}

impl Sides {
    pub async fn connect(
        resolver: &Resolver,
        source: &Endpoint,
        target: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Sides, VerifyError> {
        Ok(Sides {
            source: source.clone(),
            target: target.clone(),
            src: Reader::connect(resolver, Side::Source, source, opts).await?,
            dst: Reader::connect(resolver, Side::Target, target, opts).await?,
            opts: opts.clone(),
            pacers: [Pacer::new(opts.max_rate), Pacer::new(opts.max_rate)],
            dbs: BTreeMap::new(),
            redirected: [AtomicU64::new(0), AtomicU64::new(0)],
            guesses: Guesses::default(),
        })
    }

    /// Wraps a reply handler of `side` at `at`: a MOVED or ASK about key `key_of(j)` is
    /// noted in `redirects` instead of handled, so the key can be asked again where it is.
    pub fn noting<'a>(
        &'a self,
        redirects: &'a Redirects,
        side: Side,
        at: At,
        key_of: impl Fn(usize) -> usize + 'a,
        mut each: impl FnMut(usize, Frame<'_>) -> Result<(), RespError> + 'a,
    ) -> impl FnMut(usize, Frame<'_>) -> Result<(), RespError> + 'a {
        let from = &self.reader(side).nodes[at.shard[side as usize]].endpoint;
        move |j, r| {
            if let Some(to) = r.error().and_then(|e| Redirect::of(e, from)) {
                redirects.push(key_of(j), side, to);
                return Ok(());
            }
            each(j, r)
        }
    }

    /// Where the redirected keys are asked next, grouped by place: each key where it was
    /// asked (`at_of`) with each side that redirected it sent to the node named, asking it
    /// for an ASK. A MOVED also sends later batches of that slot there.
    pub fn reroute(
        &self,
        redirected: Vec<(usize, Side, Redirect)>,
        at_of: impl Fn(usize) -> At,
    ) -> Result<BTreeMap<At, Vec<usize>>, VerifyError> {
        let mut places: BTreeMap<usize, At> = BTreeMap::new();
        let mut counted = std::collections::HashSet::new();
        for (i, side, redirect) in redirected {
            let at = places.entry(i).or_insert_with(|| at_of(i));
            let (slot, to, ask) = match redirect {
                Redirect::Moved { slot, to } => (slot, to, false),
                Redirect::Ask { slot, to } => (slot, to, true),
            };
            let reader = self.reader(side);
            let node = reader.node_at(&to).ok_or_else(|| VerifyError::Redirected {
                side,
                slot,
                endpoint: to.clone(),
            })?;
            if !ask {
                reader
                    .moved
                    .write()
                    .expect("a lock is never poisoned")
                    .insert(slot, node);
            }
            // Once per key and side, however many of its commands were redirected.
            if counted.insert((i, side as usize)) {
                self.redirected[usize::from(ask)].fetch_add(1, Ordering::Relaxed);
            }
            at.shard[side as usize] = node;
            at.asking[side as usize] = ask;
        }
        let mut groups: BTreeMap<At, Vec<usize>> = BTreeMap::new();
        for (i, at) in places {
            groups.entry(at).or_default().push(i);
        }
        Ok(groups)
    }

    pub fn reader(&self, side: Side) -> &Reader {
        match side {
            Side::Source => &self.src,
            Side::Target => &self.dst,
        }
    }

    /// The database `side` is read in when the check is at source database `db`.
    pub fn db_on(&self, side: Side, db: i64) -> i64 {
        match side {
            Side::Source => db,
            Side::Target => self.dbs.get(&db).copied().unwrap_or(db),
        }
    }

    /// A connection of `side` to the shard of `at`, on the database that pairs with its
    /// source database.
    pub async fn lease(&self, side: Side, at: At) -> Result<Lease<'_>, VerifyError> {
        self.reader(side)
            .lease(at.shard[side as usize], self.db_on(side, at.db))
            .await
            .map_err(|e| self.err(side, e))
    }

    /// `source`, as a failure of `side` during the check.
    pub fn err(&self, side: Side, source: RespError) -> VerifyError {
        VerifyError::Failed {
            side,
            endpoint: match side {
                Side::Source => self.source.clone(),
                Side::Target => self.target.clone(),
            },
            source,
        }
    }

    /// Runs `p` on a connection of `side` at `at`.
    pub async fn run(
        &self,
        side: Side,
        at: At,
        p: &Pipeline,
        each: impl FnMut(usize, Frame<'_>) -> Result<(), RespError>,
    ) -> Result<(), VerifyError> {
        self.lease(side, at)
            .await?
            .run(p, each)
            .await
            .map_err(|e| self.err(side, e))
    }

    /// Runs the commands `build` adds on both sides at `at` at once; each reply, with its
    /// index, becomes a `T` or `None` (always `None` for a redirection about key
    /// `key_of(j)`, which is noted in `redirects`).
    pub async fn both<T: Send>(
        &self,
        at: At,
        redirects: &Redirects,
        build: impl Fn(&mut Pipeline),
        key_of: impl Fn(usize) -> usize + Sync,
        read: impl Fn(usize, Frame<'_>) -> Option<T> + Sync,
    ) -> Result<[Vec<Option<T>>; 2], VerifyError> {
        let one = |side| {
            let (read, key_of) = (&read, &key_of);
            let mut p = at.pipeline(side);
            build(&mut p);
            async move {
                let mut out = Vec::with_capacity(p.len());
                let from = &self.reader(side).nodes[at.shard[side as usize]].endpoint;
                self.run(side, at, &p, |j, r| {
                    match r.error().and_then(|e| Redirect::of(e, from)) {
                        Some(to) => {
                            redirects.push(key_of(j), side, to);
                            out.push(None);
                        }
                        None => out.push(read(j, r)),
                    }
                    Ok(())
                })
                .await?;
                Ok::<_, VerifyError>(out)
            }
        };
        let (src, dst) = tokio::try_join!(one(Side::Source), one(Side::Target))?;
        Ok([src, dst])
    }

    /// The reply of shard `shard` of `side` to a command about no database (INFO), as
    /// `read` takes it.
    pub async fn call<T>(
        &self,
        side: Side,
        shard: usize,
        args: &[&[u8]],
        read: impl FnOnce(Frame<'_>) -> T,
    ) -> Result<T, VerifyError> {
        self.reader(side).nodes[shard]
            .pool
            .get()
            .await
            .call(args, read)
            .await
            .map_err(|e| self.err(side, e))
    }

    /// The databases that hold keys on `side`, with their key counts (`INFO keyspace`),
    /// for each shard.
    pub async fn keyspaces(&self, side: Side) -> Result<Vec<BTreeMap<i64, u64>>, VerifyError> {
        let mut each = Vec::new();
        for shard in 0..self.reader(side).nodes.len() {
            let info = self
                .call(side, shard, &[b"INFO", b"keyspace"], |r| r.text())
                .await?;
            each.push(keyspace(&info));
        }
        Ok(each)
    }
}

/// `db3:keys=12,expires=1,avg_ttl=0` lines → database 3 holds 12 keys.
fn keyspace(info: &str) -> BTreeMap<i64, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim_end().split_once(':')?;
            let db = name.strip_prefix("db")?.parse().ok()?;
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db, keys))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_replica_to_read_from() {
        let primary = Endpoint::parse("redis://:pw@10.0.0.1:6379").unwrap();
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=10.0.0.2,port=6380,state=wait_bgsave,offset=0,lag=0\r\n\
            slave1:ip=10.0.0.3,port=6381,state=online,offset=9,lag=0\r\n";
        let r = replica(&primary, info).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.password.as_deref()),
            ("10.0.0.3", 6381, Some("pw"))
        );
        assert_eq!(replica(&primary, "role:slave\r\n"), Some(primary.clone()));
        assert_eq!(
            replica(&primary, "role:master\r\nconnected_slaves:0\r\n"),
            None
        );
    }

    #[test]
    fn reads_the_databases_that_hold_keys() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb15:keys=7,expires=0,avg_ttl=0,subexpiry=0\r\n";
        assert_eq!(keyspace(info), [(0, 3), (15, 7)].into_iter().collect());
        assert!(keyspace("# Keyspace\r\n").is_empty());
    }
}

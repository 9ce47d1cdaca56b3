//! One endpoint's probe: two open-loop lanes (writes and reads, each on its own
//! connection) per shard, latency from the scheduled time, and the outage state machine.
//!
//! A cluster-mode endpoint is probed shard by shard: the probe reads the slot map once, and
//! each shard gets its own key (one of its slots) and its own lanes on its primary, so a
//! failover of one shard shows on that shard only. A `MOVED` reply is what a client feels
//! (a failed request of class `moved`); the lanes then follow it, and a lane whose node is
//! gone reads the slot map again from any node it knows before it reconnects. An `ASK`
//! (the key's slot is being migrated) is followed for that one request, as a cluster client
//! does: the request goes again to the importing node after `ASKING`, and counts as
//! answered there, the extra round trip in its latency. A one-node
//! cluster (a serverless cache) is one shard; a standalone endpoint is probed as it is.
//!
//! Tick `k` is due at `start + k × interval` for both lanes, and a lane issues it then
//! whatever its earlier requests are doing: requests are pipelined on the connection and a
//! separate task reads the replies, so a slow reply never holds a tick back (no
//! coordinated omission). Each request either succeeds, is answered with an error, or
//! fails at its scheduled time: no answer within the timeout, or the connection broke
//! under it. While a lane has no connection it opens one (a fresh name lookup each time:
//! ElastiCache endpoints move on failover) and holds the ticks that come meanwhile, which
//! leave once it is open or fail with it. Every tick is counted; none is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use super::ProbeConfig;
use super::classify::{ErrorClass, OutageKind};
use super::record::{self, Op, ProbeEvent, Recorder, ShardAt};
use crate::endpoint::{Endpoint, Resolver, redact_url};
use crate::resp::cluster::{Redirect, Topology, TopologyError};
use crate::resp::{Conn, Pipeline, RespError};

/// Lifetime of the probe's key: long enough for any run, short enough to clean itself up.
const KEY_TTL_SECONDS: u64 = 86_400;

/// How many hash tags are tried to find a key of a shard: a shard owns at least one of
/// 16384 slots, and the numbers below this reach every slot.
const TAGS_TRIED: u32 = 1_000_000;

pub(super) struct Sampler {
    pub endpoint: Endpoint,
    pub name: Option<String>,
    pub resolver: Resolver,
    pub config: ProbeConfig,
    /// The probe key of this endpoint (a shard's key adds a hash tag of the shard).
    pub key: String,
    pub recorder: Arc<Recorder>,
    pub step: watch::Receiver<Option<String>>,
    /// The cluster's nodes as last seen: where the slot map is read again after a failover.
    pub nodes: std::sync::Mutex<Vec<Endpoint>>,
}

/// What the two lanes of one shard share: their key and the node they go to.
struct ShardProbe {
    /// The shard's slot ranges (`0-5460`), in a cluster of several shards.
    label: Option<String>,
    key: String,
    cluster: bool,
    /// The node the lanes use, and how often it changed: a lane that sees a newer count
    /// than its own follows to the new node.
    target: std::sync::Mutex<(u64, Endpoint)>,
}

impl ShardProbe {
    fn target(&self) -> (u64, Endpoint) {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends both lanes to `node`; returns the new count.
    fn move_to(&self, node: &Endpoint) -> u64 {
        let mut target = self.target.lock().unwrap_or_else(|e| e.into_inner());
        if target.1 != *node {
            *target = (target.0 + 1, node.clone());
        }
        target.0
    }
}

/// A shard's slot ranges as one label: `0-5460`, `0-99,200-5460`.
fn slots_label(slots: &[(u16, u16)]) -> String {
    slots
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The schedule both lanes of an endpoint share.
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
    base_wall: DateTime<Utc>,
    interval: Duration,
}

impl Clock {
    fn due(&self, tick: u64) -> Instant {
        self.base
            + Duration::from_nanos(
                u64::try_from(self.interval.as_nanos().saturating_mul(u128::from(tick)))
                    .unwrap_or(u64::MAX / 2),
            )
    }

    fn wall(&self, t: Instant) -> DateTime<Utc> {
        self.base_wall + chrono::Duration::from_std(t - self.base).unwrap_or_default()
    }
}

impl Sampler {
    fn label(&self) -> String {
        self.endpoint.to_string()
    }

    fn remember(&self, topology: &Topology) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        for shard in &topology.shards {
            for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                if !nodes.contains(node) {
                    nodes.push(node.clone());
                }
            }
        }
    }

    /// The shards to probe: each shard of a cluster with a key it owns, or the endpoint
    /// itself when it is not a cluster (or cannot be asked now: it is then probed as it is,
    /// and its failures are measured).
    async fn shards(&self) -> Vec<Arc<ShardProbe>> {
        let limit = self.config.timeout;
        let asked = timeout(limit * 4, async {
            let mut conn = Conn::connect(&self.resolver, &self.endpoint, limit)
                .await
                .ok()?;
            Topology::of(&mut conn, &self.endpoint).await.ok()
        })
        .await;
        let topology = match asked {
            Ok(Some(t)) if t.cluster => t,
            _ => {
                return vec![Arc::new(ShardProbe {
                    label: None,
                    key: self.key.clone(),
                    cluster: false,
                    target: std::sync::Mutex::new((0, self.endpoint.clone())),
                })];
            }
        };
        self.remember(&topology);
        let several = topology.shards.len() > 1;
        let mut shards = Vec::new();
        for (i, shard) in topology.shards.iter().enumerate() {
            let key = (0..TAGS_TRIED)
                .map(|n| format!("{}:{{{n}}}", self.key))
                .find(|k| topology.shard_of(k.as_bytes()) == i);
            let Some(key) = key else {
                eprintln!(
                    "warning: no probe key under the prefix `{}` hashes to the shard of slots {} of {}: it is not probed",
                    self.config.key_prefix,
                    slots_label(&shard.slots),
                    self.endpoint
                );
                continue;
            };
            shards.push(Arc::new(ShardProbe {
                label: several.then(|| slots_label(&shard.slots)),
                key,
                cluster: true,
                target: std::sync::Mutex::new((0, shard.primary.clone())),
            }));
        }
        if several {
            self.recorder.event(&ProbeEvent::Shards {
                ts: Utc::now(),
                endpoint: self.label(),
                shards: shards
                    .iter()
                    .map(|s| ShardAt {
                        shard: s.label.clone().unwrap_or_default(),
                        primary: s.target().1.host_port(),
                    })
                    .collect(),
            });
        }
        shards
    }

    /// Probes until `stop` turns true (or its sender goes away), then lets the requests
    /// in flight finish or time out, so each tick is counted.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let clock = Clock {
            base: Instant::now(),
            base_wall: Utc::now(),
            interval: self.config.interval.max(Duration::from_millis(1)),
        };
        self.recorder.event(&ProbeEvent::Started {
            ts: clock.base_wall,
            endpoint: self.label(),
            name: self.name.clone(),
            interval_ms: clock.interval.as_secs_f64() * 1000.0,
            timeout_ms: self.config.timeout.as_secs_f64() * 1000.0,
        });
        // Ticks due while the shards are found are issued late, and count from their time.
        let shards = self.shards().await;
        let sampler = Arc::new(self);
        let (end_tx, end) = watch::channel(None);
        let lanes: Vec<JoinHandle<u64>> = shards
            .iter()
            .flat_map(|shard| {
                [Op::Write, Op::Read].map(|op| {
                    let lane = Lane::new(sampler.clone(), shard.clone(), op, clock);
                    tokio::spawn(lane.run(end.clone()))
                })
            })
            .collect();
        let mut stop = stop;
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        // Both lanes end at the same tick, two intervals ahead, which neither has reached.
        let due = (Instant::now() - clock.base).as_nanos() / clock.interval.as_nanos() + 2;
        let _ = end_tx.send(Some(u64::try_from(due).unwrap_or(u64::MAX)));
        let mut ticks = 0;
        for lane in lanes {
            ticks = ticks.max(lane.await.unwrap_or(0));
        }
        sampler.recorder.event(&ProbeEvent::Stopped {
            ts: Utc::now(),
            endpoint: sampler.label(),
            ticks,
        });
    }
}

/// Why a request failed: its class, the text to keep, and what kind of trouble it is.
#[derive(Clone)]
struct Failure {
    class: ErrorClass,
    message: String,
    kind: OutageKind,
}

impl Failure {
    /// A connection that broke or could not be opened.
    fn connection(err: &RespError) -> Failure {
        Failure {
            class: ErrorClass::of(err),
            message: redact_url(&err.to_string()),
            kind: OutageKind::Disconnect,
        }
    }

    /// The slot map could not be read, or not used, while looking for a shard's primary.
    fn topology(err: &TopologyError) -> Failure {
        match err {
            TopologyError::Ask { source, .. } => Failure::connection(source),
            TopologyError::Unusable { .. } => Failure {
                class: ErrorClass::Other,
                message: redact_url(&err.to_string()),
                kind: OutageKind::Disconnect,
            },
        }
    }

    /// An error reply: the server answered, the connection is fine.
    fn reply(text: &str) -> Failure {
        let class = ErrorClass::of_reply(text.as_bytes());
        Failure {
            class,
            message: redact_url(text),
            kind: OutageKind::of_reply(class),
        }
    }

    fn timed_out(limit: Duration, kind: OutageKind) -> Failure {
        Failure {
            class: ErrorClass::Timeout,
            message: format!("no answer within {} ms", limit.as_millis()),
            kind,
        }
    }
}

/// What the reply reader of a connection hands the lane.
enum Answer {
    /// A reply completed at `at`, with the server's error text if it was one.
    Reply { at: Instant, error: Option<String> },
    /// The connection is gone.
    Closed(Failure),
}

/// A request of a tick, from its schedule to its answer.
#[derive(Clone)]
struct Pending {
    scheduled: Instant,
    /// Where its latency counts from (see [`Lane::issue`]).
    from: Instant,
    step: Option<String>,
    /// The sequence number a write sets.
    seq: u64,
    /// Already counted as timed out; its late answer is only taken off the queue.
    expired: bool,
}

/// A request answered with `ASK`, once the importing node has answered it, or failed.
struct Asked {
    request: Pending,
    /// When its answer came.
    result: Result<Instant, Failure>,
}

/// An open connection: the side requests go out on and the replies its reader passes on.
struct Live {
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    answers: mpsc::UnboundedReceiver<Answer>,
    reader: JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What a connection attempt found besides the connection.
struct Opened {
    conn: Conn,
    /// The node connected to (a shard's primary in a cluster).
    node: Endpoint,
    resolved: Vec<String>,
    address: Option<String>,
    role: Option<String>,
    /// The sequence number read back (writes' lane only).
    read_back: Option<u64>,
}

/// The failing run of requests in progress.
struct Run {
    start: DateTime<Utc>,
    start_at: Instant,
    step: Option<String>,
    kind: OutageKind,
    cause: ErrorClass,
    failed: u64,
}

/// One operation's open loop on one shard of one endpoint.
struct Lane {
    s: Arc<Sampler>,
    shard: Arc<ShardProbe>,
    /// The count of the shard's target this lane's connection was opened for.
    moves: u64,
    op: Op,
    clock: Clock,
    step: watch::Receiver<Option<String>>,
    live: Option<Live>,
    connecting: Option<JoinHandle<Result<Opened, Failure>>>,
    /// Sent on `live`, answers awaited in order.
    pending: VecDeque<Pending>,
    /// Waiting for a connection.
    held: VecDeque<Pending>,
    /// Where requests answered with `ASK` report once asked again at the importing node.
    asked: (mpsc::UnboundedSender<Asked>, mpsc::UnboundedReceiver<Asked>),
    /// How many of them are still out.
    asking: usize,
    /// The connection to the node last asked, kept for the next request of the migration.
    importing: Arc<tokio::sync::Mutex<Option<(Endpoint, Conn)>>>,
    run: Option<Run>,
    acknowledged: Option<u64>,
    /// The step of the last acknowledged write, to record each step's first one.
    acknowledged_in: Option<Option<String>>,
    /// Writes were acknowledged, then refused as by a replica: the node was demoted.
    demoted: bool,
    ticks: u64,
}

enum Wake {
    /// The lane's last tick is known (`None`: not yet).
    Stop(Option<u64>),
    Answer(Option<Answer>),
    Opened(Result<Opened, Failure>),
    Asked(Asked),
    Tick,
    Deadline,
}

async fn next_answer(live: &mut Option<Live>) -> Option<Answer> {
    match live {
        Some(live) => live.answers.recv().await,
        None => std::future::pending().await,
    }
}

async fn opened(
    connecting: &mut Option<JoinHandle<Result<Opened, Failure>>>,
) -> Result<Opened, Failure> {
    match connecting {
        Some(task) => task.await.unwrap_or_else(|e| {
            Err(Failure {
                class: ErrorClass::Other,
                message: format!("the connection attempt failed: {e}"),
                kind: OutageKind::Disconnect,
            })
        }),
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Lane {
    fn new(s: Arc<Sampler>, shard: Arc<ShardProbe>, op: Op, clock: Clock) -> Lane {
        Lane {
            step: s.step.clone(),
            s,
            shard,
            moves: 0,
            op,
            clock,
            live: None,
            connecting: None,
            pending: VecDeque::new(),
            held: VecDeque::new(),
            asked: mpsc::unbounded_channel(),
            asking: 0,
            importing: Arc::default(),
            run: None,
            acknowledged: None,
            acknowledged_in: None,
            demoted: false,
            ticks: 0,
        }
    }

    fn timeout(&self) -> Duration {
        self.s.config.timeout
    }

    fn shard(&self) -> Option<String> {
        self.shard.label.clone()
    }

    fn lane(&self) -> (String, Option<String>) {
        (self.s.label(), self.shard())
    }

    /// How long a connection may go without any answer before it is given up for a new one:
    /// a stall shorter than that is measured on the connection it happened on.
    fn dead_after(&self) -> Duration {
        (self.timeout() * 8).max(Duration::from_secs(2))
    }

    /// Runs the lane until its last tick (`end` says which, once known) has an answer or
    /// failed; returns the number of ticks it issued.
    async fn run(mut self, mut end: watch::Receiver<Option<u64>>) -> u64 {
        let mut last: Option<u64> = None;
        loop {
            let stopping = last.is_some_and(|last| self.ticks >= last);
            if stopping
                && self.pending.iter().all(|p| p.expired)
                && self.held.is_empty()
                && self.asking == 0
            {
                break;
            }
            let next = (!stopping).then(|| self.clock.due(self.ticks));
            let deadline = self.deadline();
            let wake = tokio::select! {
                biased;
                changed = end.changed(), if last.is_none() => {
                    if changed.is_err() {
                        Wake::Stop(Some(self.ticks))
                    } else {
                        Wake::Stop(*end.borrow_and_update())
                    }
                }
                answer = next_answer(&mut self.live) => Wake::Answer(answer),
                result = opened(&mut self.connecting) => Wake::Opened(result),
                Some(asked) = self.asked.1.recv() => Wake::Asked(asked),
                () = sleep_opt(next) => Wake::Tick,
                () = sleep_opt(deadline) => Wake::Deadline,
            };
            match wake {
                Wake::Stop(at) => last = at,
                Wake::Answer(Some(Answer::Reply { at, error })) => self.answered(at, error),
                Wake::Answer(Some(Answer::Closed(failure))) => self.broken(&failure),
                Wake::Answer(None) => self.broken(&Failure::connection(&RespError::Closed)),
                Wake::Opened(result) => {
                    self.connecting = None;
                    self.opened(result).await;
                }
                Wake::Asked(Asked { request, result }) => {
                    self.asking -= 1;
                    match result {
                        Ok(at) => self.succeeded(&request, at),
                        Err(failure) => self.fail(&request, &failure),
                    }
                }
                Wake::Tick => {
                    let now = Instant::now();
                    while self.clock.due(self.ticks) <= now
                        && last.is_none_or(|last| self.ticks < last)
                    {
                        let scheduled = self.clock.due(self.ticks);
                        self.ticks += 1;
                        self.issue(scheduled, now).await;
                    }
                }
                Wake::Deadline => self.expire(),
            }
        }
        if let Some(task) = self.connecting.take() {
            task.abort();
        }
        if let Some(run) = self.run.take() {
            self.close(run, None, Instant::now());
        }
        self.ticks
    }

    /// The next moment a request times out or the connection is to be given up.
    fn deadline(&self) -> Option<Instant> {
        let limit = self.timeout();
        let waiting = self
            .pending
            .iter()
            .chain(&self.held)
            .filter(|p| !p.expired)
            .map(|p| p.from + limit)
            .min();
        let dead = self.pending.front().map(|p| p.from + self.dead_after());
        waiting.into_iter().chain(dead).min()
    }

    /// Issues one tick's request. Its latency counts from the scheduled time when the lane
    /// issues it more than an interval late (held back, as by a full socket); a timer waking
    /// a little late is the probe's own jitter, and then latency counts from now.
    async fn issue(&mut self, scheduled: Instant, now: Instant) {
        // The other lane of the shard followed a redirection: follow it between requests.
        if self.live.is_some() && self.pending.is_empty() && self.shard.target().0 != self.moves {
            self.live = None;
        }
        let from = if now - scheduled > self.clock.interval {
            scheduled
        } else {
            now
        };
        let request = Pending {
            scheduled,
            from,
            step: self.step.borrow_and_update().clone(),
            seq: self.ticks,
            expired: false,
        };
        self.send(request).await;
    }

    /// The lane's request of tick `seq`: after an `ASKING` when `asking`.
    fn request(&self, seq: u64, asking: bool) -> Pipeline {
        let mut p = Pipeline::asking(asking);
        let mut n = itoa::Buffer::new();
        let mut ttl = itoa::Buffer::new();
        let key = self.shard.key.as_bytes();
        match self.op {
            Op::Write => p.cmd(&[
                b"SET",
                key,
                crate::resp::num(&mut n, seq as i64),
                b"EX",
                crate::resp::num(&mut ttl, KEY_TTL_SECONDS as i64),
            ]),
            Op::Read => p.cmd(&[b"GET", key]),
        };
        p
    }

    /// Writes a request on the live connection, or holds it until one is open.
    async fn send(&mut self, request: Pending) {
        if self.live.is_none() {
            self.held.push_back(request);
            if self.connecting.is_none() {
                self.connect();
            }
            return;
        }
        let p = self.request(request.seq, false);
        let limit = self.timeout();
        let Some(live) = &mut self.live else {
            return;
        };
        self.pending.push_back(request);
        let written = timeout(limit, async {
            live.writer.write_all(p.as_bytes()).await?;
            live.writer.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.broken(&Failure::connection(&RespError::Io(e))),
            // A request half written leaves the connection unusable.
            Err(_) => self.broken(&Failure::timed_out(limit, OutageKind::Stall)),
        }
    }

    /// The answer to the oldest request in flight.
    fn answered(&mut self, at: Instant, error: Option<String>) {
        let Some(request) = self.pending.pop_front() else {
            return;
        };
        if request.expired {
            return;
        }
        let Some(text) = error else {
            self.succeeded(&request, at);
            return;
        };
        let moved_to = match self.redirect(text.as_bytes()) {
            Some(Redirect::Ask { to, .. }) => {
                self.ask(request, to);
                return;
            }
            Some(Redirect::Moved { to, .. }) => Some(to),
            None => None,
        };
        let failure = Failure::reply(&text);
        self.fail(&request, &failure);
        if let Some(to) = moved_to {
            self.follow(&to, &failure);
        }
        if failure.class == ErrorClass::Readonly && self.acknowledged.is_some() && !self.demoted {
            self.demoted = true;
            self.writable(request.scheduled, false);
        }
    }

    /// A request answered at `at`.
    fn succeeded(&mut self, request: &Pending, at: Instant) {
        if self.op == Op::Write {
            if self.demoted {
                self.demoted = false;
                self.writable(at, true);
            }
            self.acknowledged = Some(self.acknowledged.unwrap_or(0).max(request.seq));
            if self.acknowledged_in.as_ref() != Some(&request.step) {
                self.s.recorder.event(&ProbeEvent::FirstWrite {
                    ts: self.clock.wall(at),
                    endpoint: self.s.label(),
                    shard: self.shard(),
                    step: request.step.clone(),
                });
                self.acknowledged_in = Some(request.step.clone());
            }
        }
        let latency = at.saturating_duration_since(request.from);
        let (endpoint, shard) = self.lane();
        self.s.recorder.ok(
            self.clock.wall(request.scheduled),
            record::Lane {
                endpoint: &endpoint,
                shard: shard.as_deref(),
            },
            &request.step,
            self.op,
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        );
        if let Some(run) = self.run.take() {
            self.close(run, Some(at), at);
        }
    }

    /// The redirection an error reply asks for, in a cluster: an `ASK` for this one
    /// request, or a `MOVED` the shard follows.
    fn redirect(&self, reply: &[u8]) -> Option<Redirect> {
        self.shard
            .cluster
            .then(|| Redirect::of(reply, &self.shard.target().1))?
    }

    /// Asks `request` again at the importing node `to`, after `ASKING`, within the time
    /// it has left; its answer comes back through `asked`. Asked requests share one
    /// connection to that node, one at a time: a migration is short and the probe's ticks
    /// are far apart.
    fn ask(&mut self, request: Pending, to: Endpoint) {
        let p = self.request(request.seq, true);
        let limit = self.timeout();
        let deadline = request.from + limit;
        let resolver = self.s.resolver.clone();
        let importing = self.importing.clone();
        let answers = self.asked.0.clone();
        self.asking += 1;
        tokio::spawn(async move {
            let stalled = || Err(Failure::timed_out(limit, OutageKind::Stall));
            let result = match timeout_at(deadline, importing.lock()).await {
                Err(_) => stalled(),
                Ok(mut cached) => {
                    match timeout_at(deadline, ask_at(&resolver, &mut cached, &to, &p, limit)).await
                    {
                        Ok(result) => result,
                        // The answer may still come: the connection cannot be used again.
                        Err(_) => {
                            *cached = None;
                            stalled()
                        }
                    }
                }
            };
            let _ = answers.send(Asked { request, result });
        });
    }

    fn writable(&self, at: Instant, writable: bool) {
        self.s.recorder.event(&ProbeEvent::Writable {
            ts: self.clock.wall(at),
            endpoint: self.s.label(),
            shard: self.shard(),
            writable,
        });
    }

    /// After a `MOVED` reply in a cluster, both lanes of the shard go to the node named;
    /// the requests already sent to the old one are answered the same way, and count so.
    fn follow(&mut self, to: &Endpoint, failure: &Failure) {
        self.moves = self.shard.move_to(to);
        self.broken(failure);
    }

    /// Counts as timed out every request whose time is up; gives up a connection that has
    /// answered nothing for too long.
    fn expire(&mut self) {
        let now = Instant::now();
        let limit = self.timeout();
        let alive = self.live.is_some();
        let mut late: Vec<usize> = Vec::new();
        for (i, p) in self.pending.iter().enumerate() {
            if !p.expired && p.from + limit <= now {
                late.push(i);
            }
        }
        for i in late {
            self.pending[i].expired = true;
            let kind = if alive {
                OutageKind::Stall
            } else {
                OutageKind::Disconnect
            };
            let request = self.pending[i].clone();
            self.fail(&request, &Failure::timed_out(limit, kind));
        }
        while self.held.front().is_some_and(|p| p.from + limit <= now) {
            if let Some(request) = self.held.pop_front() {
                self.fail(&request, &Failure::timed_out(limit, OutageKind::Disconnect));
            }
        }
        let dead_after = self.dead_after();
        if self
            .pending
            .front()
            .is_some_and(|p| p.from + dead_after <= now)
        {
            self.broken(&Failure {
                class: ErrorClass::Timeout,
                message: format!(
                    "no answer for {} ms: the connection is given up",
                    dead_after.as_millis()
                ),
                kind: OutageKind::Stall,
            });
        }
    }

    /// The connection broke: whatever was in flight on it failed.
    fn broken(&mut self, failure: &Failure) {
        self.live = None;
        let lost: Vec<Pending> = self.pending.drain(..).collect();
        for request in lost.iter().filter(|p| !p.expired) {
            self.fail(request, failure);
        }
    }

    fn fail(&mut self, request: &Pending, failure: &Failure) {
        let at = self.clock.wall(request.scheduled);
        let (label, shard) = self.lane();
        self.s.recorder.failed(
            at,
            record::Lane {
                endpoint: &label,
                shard: shard.as_deref(),
            },
            &request.step,
            self.op,
            failure.class,
        );
        self.s.recorder.event(&ProbeEvent::Error {
            ts: at,
            endpoint: label,
            shard,
            step: request.step.clone(),
            op: self.op,
            class: failure.class,
            message: failure.message.clone(),
        });
        match &mut self.run {
            Some(run) => {
                run.failed += 1;
                run.kind = run.kind.max(failure.kind);
            }
            None => {
                self.run = Some(Run {
                    start: at,
                    start_at: request.scheduled,
                    step: request.step.clone(),
                    kind: failure.kind,
                    cause: failure.class,
                    failed: 1,
                });
            }
        }
    }

    /// Records the end of a failing run (`end` is `None` when the probe stopped first).
    fn close(&self, run: Run, end: Option<Instant>, until: Instant) {
        self.s.recorder.event(&ProbeEvent::Outage {
            endpoint: self.s.label(),
            shard: self.shard(),
            op: self.op,
            kind: run.kind,
            step: run.step,
            start: run.start,
            end: end.map(|t| self.clock.wall(t)),
            duration_ms: until.saturating_duration_since(run.start_at).as_secs_f64() * 1000.0,
            cause: run.cause,
            failed_requests: run.failed,
        });
    }

    /// Starts opening a connection in the background.
    fn connect(&mut self) {
        let s = self.s.clone();
        let shard = self.shard.clone();
        let op = self.op;
        let (moves, target) = shard.target();
        self.moves = moves;
        self.connecting = Some(tokio::spawn(
            async move { open(&s, &shard, target, op).await },
        ));
    }

    /// A connection attempt ended: the held ticks leave on the new connection, or fail.
    async fn opened(&mut self, result: Result<Opened, Failure>) {
        match result {
            Err(failure) => {
                let held: Vec<Pending> = self.held.drain(..).collect();
                for request in &held {
                    self.fail(request, &failure);
                }
            }
            Ok(opened) => {
                // The slot map named another primary: the other lane follows too.
                self.moves = self.shard.move_to(&opened.node);
                let (label, shard) = self.lane();
                self.s.recorder.event(&ProbeEvent::Connected {
                    ts: Utc::now(),
                    endpoint: label.clone(),
                    shard: shard.clone(),
                    op: self.op,
                    resolved: opened.resolved,
                    address: opened.address,
                    role: opened.role,
                });
                if let Some(acknowledged) = self.acknowledged
                    && opened.read_back.unwrap_or(0) < acknowledged
                {
                    self.s.recorder.event(&ProbeEvent::LostWrites {
                        ts: Utc::now(),
                        endpoint: label,
                        shard,
                        step: self.step.borrow().clone(),
                        acknowledged,
                        read_back: opened.read_back,
                        lost: acknowledged - opened.read_back.unwrap_or(0),
                    });
                    // Counted once: later losses are counted from what this connection acknowledges.
                    self.acknowledged = opened.read_back;
                }
                let (read, writer, buffered) = opened.conn.split();
                let (tx, answers) = mpsc::unbounded_channel();
                let reader = tokio::spawn(read_replies(read, buffered, tx));
                self.live = Some(Live {
                    writer,
                    answers,
                    reader,
                });
                let held: Vec<Pending> = self.held.drain(..).collect();
                for request in held {
                    self.send(request).await;
                }
            }
        }
    }
}

/// The primary that owns `shard`'s key now, from the slot map of the first node that
/// answers: `target` first, then the endpoint given, then every node seen. The connection
/// the map was read on comes along when that node is the primary.
async fn owner(
    s: &Sampler,
    shard: &ShardProbe,
    target: Endpoint,
) -> Result<(Endpoint, Option<Conn>), Failure> {
    let limit = s.config.timeout;
    let mut candidates = vec![target, s.endpoint.clone()];
    for node in s.nodes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if !candidates.contains(node) {
            candidates.push(node.clone());
        }
    }
    let mut first: Option<Failure> = None;
    for node in candidates {
        let asked = timeout(limit, async {
            let mut conn = Conn::connect(&s.resolver, &node, limit)
                .await
                .map_err(|e| Failure::connection(&e))?;
            let topology = Topology::of(&mut conn, &node)
                .await
                .map_err(|e| Failure::topology(&e))?;
            Ok::<_, Failure>((conn, topology))
        })
        .await
        .unwrap_or_else(|_| Err(Failure::timed_out(limit, OutageKind::Disconnect)));
        match asked {
            Ok((conn, topology)) => {
                s.remember(&topology);
                let primary = topology.shards[topology.shard_of(shard.key.as_bytes())]
                    .primary
                    .clone();
                let conn = (primary == node).then_some(conn);
                return Ok((primary, conn));
            }
            Err(failure) => {
                first.get_or_insert(failure);
            }
        }
    }
    Err(first.unwrap_or_else(|| Failure::timed_out(limit, OutageKind::Disconnect)))
}

/// Opens a connection after resolving the name again (in a cluster, to the primary the slot
/// map names now), and records where it went and the node's role; the writes' lane also
/// reads the sequence number back, to count lost acknowledged writes.
async fn open(
    s: &Sampler,
    shard: &ShardProbe,
    target: Endpoint,
    op: Op,
) -> Result<Opened, Failure> {
    let limit = s.config.timeout;
    let (node, conn) = if shard.cluster {
        owner(s, shard, target).await?
    } else {
        (target, None)
    };
    let resolved = match s.resolver.override_for(&node) {
        Some(addr) => vec![addr.to_string()],
        None => match timeout(limit, tokio::net::lookup_host(node.host_port())).await {
            Ok(Ok(addrs)) => addrs.map(|a| a.to_string()).collect(),
            Ok(Err(e)) => {
                return Err(Failure {
                    class: ErrorClass::Other,
                    message: format!("cannot resolve {}: {e}", node.host),
                    kind: OutageKind::Disconnect,
                });
            }
            Err(_) => return Err(Failure::timed_out(limit, OutageKind::Disconnect)),
        },
    };
    let fail = |e: RespError| Failure::connection(&e);
    let mut conn = match conn {
        Some(conn) => conn,
        None => Conn::connect(&s.resolver, &node, limit)
            .await
            .map_err(fail)?,
    };
    // One round trip: the connection serves ticks as soon as possible after an outage.
    let mut p = Pipeline::new();
    p.cmd(&[b"ROLE"]).cmd(&[b"CLIENT", b"INFO"]);
    if op == Op::Write {
        p.cmd(&[b"GET", shard.key.as_bytes()]);
    }
    let (mut role, mut address, mut read_back) = (None, None, None);
    conn.run(&p, |i, reply| {
        match i {
            0 => {
                role = reply
                    .items()
                    .and_then(|mut items| items.next()?.bytes())
                    .map(|r| String::from_utf8_lossy(r).into_owned());
            }
            1 => address = local_address(&reply.text()),
            _ => {
                read_back = reply
                    .ok()?
                    .bytes()
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok());
            }
        }
        Ok(())
    })
    .await
    .map_err(fail)?;
    Ok(Opened {
        conn,
        node,
        resolved,
        address,
        role,
        read_back,
    })
}

/// Sends `p` (`ASKING` and one request) to `to` on the connection `cached` holds, opening
/// one first when it holds none to `to`; returns when the answer came.
async fn ask_at(
    resolver: &Resolver,
    cached: &mut Option<(Endpoint, Conn)>,
    to: &Endpoint,
    p: &Pipeline,
    limit: Duration,
) -> Result<Instant, Failure> {
    let (_, conn) = match cached.take() {
        Some((node, conn)) if node == *to => cached.insert((node, conn)),
        _ => {
            let conn = Conn::connect(resolver, to, limit)
                .await
                .map_err(|e| Failure::connection(&e))?;
            cached.insert((to.clone(), conn))
        }
    };
    let answered = conn.run(p, |_, reply| reply.ok().map(|_| ())).await;
    match answered {
        Ok(()) => Ok(Instant::now()),
        Err(RespError::Server(text)) => Err(Failure::reply(&text)),
        Err(broken) => {
            *cached = None;
            Err(Failure::connection(&broken))
        }
    }
}

/// Reads replies off a connection as they come and passes each on with its arrival time.
async fn read_replies(
    mut read: Box<dyn AsyncRead + Send + Unpin>,
    mut buf: Vec<u8>,
    tx: mpsc::UnboundedSender<Answer>,
) {
    let mut at = 0;
    loop {
        let arrived = Instant::now();
        loop {
            match crate::resp::span(&buf[at..]) {
                Ok(Some(span)) => {
                    let error = span
                        .error_end
                        .map(|e| String::from_utf8_lossy(&buf[at + 1..at + e]).into_owned());
                    at += span.len;
                    if tx.send(Answer::Reply { at: arrived, error }).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Answer::Closed(Failure::connection(&RespError::Protocol(
                        e.to_string(),
                    ))));
                    return;
                }
            }
        }
        buf.drain(..at);
        at = 0;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let failure = match read.read_buf(&mut buf).await {
            Ok(0) => Failure::connection(&RespError::Closed),
            Ok(_) => continue,
            Err(e) => Failure::connection(&RespError::Io(e)),
        };
        let _ = tx.send(Answer::Closed(failure));
        return;
    }
}

/// The server-side address of the connection (`laddr=` of `CLIENT INFO`): the node reached.
fn local_address(info: &str) -> Option<String> {
    info.split_whitespace()
        .find_map(|field| field.strip_prefix("laddr="))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_reached() {
        assert_eq!(
            slots_label(&[(0, 99), (200, 200), (300, 5460)]),
            "0-99,200,300-5460"
        );
        let info = "id=3 addr=127.0.0.1:50000 laddr=10.1.2.3:6379 fd=8 name= db=0";
        assert_eq!(local_address(info).as_deref(), Some("10.1.2.3:6379"));
        let clock = Clock {
            base: Instant::now(),
            base_wall: Utc::now(),
            interval: Duration::from_millis(10),
        };
        assert_eq!(clock.due(3) - clock.base, Duration::from_millis(30));
    }
}

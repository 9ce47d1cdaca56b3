//! The open loop: requests leave on a fixed schedule, whatever the answers are doing.
//!
//! A closed loop (the default) waits for each batch's replies before sending the next, so a
//! slow server also slows the client down and the stall is measured once instead of for
//! every request it held up (coordinated omission). Here each connection owns a share of
//! the schedule (`--rate`, plus `--burst` windows on top) and writes every request when it
//! is due, while a task of its own reads the replies; a request's latency counts from its
//! scheduled time as soon as it went out later than the timer's resolution, as the probe's
//! do. A request due while its connection is down fails at its time. Every request is kept
//! as a [`Sample`], and all figures are computed from those afterwards.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{IO_TIMEOUT, Plan, Rng};
use crate::endpoint::{Endpoint, Resolver};
use crate::resp::{Conn, RespError, span};

/// A request that went out this much after its time counts from its time; one that went
/// out sooner counts from when it went out (the timer's own lateness is not the server's).
pub const SLACK: Duration = Duration::from_millis(1);

/// How long a reconnection attempt may take, and the pause between attempts.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Bursts on top of the sustained rate: `extra` more requests per second for `length`,
/// starting at every multiple of `every` after the first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    pub extra: f64,
    pub length: Duration,
    pub every: Duration,
}

impl Burst {
    /// Whether a request due `at` after the start falls inside a burst.
    pub fn covers(&self, at: Duration) -> bool {
        at >= self.every && at.as_nanos() % self.every.as_nanos() < self.length.as_nanos()
    }

    /// How much of the first `total` of a phase lies inside bursts.
    pub fn inside(&self, total: Duration) -> Duration {
        let mut inside = Duration::ZERO;
        let mut start = self.every;
        while start < total {
            inside += self.length.min(total - start);
            start += self.every;
        }
        inside
    }
}

/// Parses `RATE:DURATION:EVERY`, e.g. `50000:2s:10s`.
pub fn parse_burst(text: &str) -> Result<Burst, String> {
    let bad = |why: &str| {
        format!("`{text}` is not a burst: {why} (write RATE:DURATION:EVERY, e.g. 50000:2s:10s)")
    };
    let parts: Vec<&str> = text.split(':').collect();
    let [rate, length, every] = parts[..] else {
        return Err(bad("it needs three parts"));
    };
    let extra: f64 = rate
        .trim()
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r > 0.0)
        .ok_or_else(|| bad("the rate must be a number of requests per second above 0"))?;
    let length = crate::duration::parse(length).map_err(|e| bad(&e))?;
    let every = crate::duration::parse(every).map_err(|e| bad(&e))?;
    if length.is_zero() || length >= every {
        return Err(bad("the burst must last longer than 0 and less than EVERY"));
    }
    Ok(Burst {
        extra,
        length,
        every,
    })
}

/// The requests one of `connections` connections sends: every `connections`-th of the
/// sustained schedule, and likewise of each burst's, merged in time order, until `end`.
pub struct Schedule {
    rate: f64,
    burst: Option<Burst>,
    share: u64,
    index: u64,
    end: Duration,
    base: u64,
    /// The current burst window (1 for the first) and the request within it.
    window: u64,
    in_window: u64,
}

impl Schedule {
    pub fn new(
        rate: f64,
        burst: Option<Burst>,
        connections: usize,
        index: usize,
        end: Duration,
    ) -> Schedule {
        Schedule {
            rate,
            burst,
            share: connections as u64,
            index: index as u64,
            end,
            base: 0,
            window: 1,
            in_window: 0,
        }
    }

    fn base_due(&self) -> Duration {
        Duration::from_secs_f64((self.index + self.base * self.share) as f64 / self.rate)
    }

    /// The next request of the current burst window, moving on to the next window when this
    /// one is used up.
    fn burst_due(&mut self) -> Option<Duration> {
        let burst = self.burst?;
        loop {
            let start = burst.every * u32::try_from(self.window).ok()?;
            if start >= self.end {
                return None;
            }
            let offset = (self.index + self.in_window * self.share) as f64 / burst.extra;
            let due = start + Duration::from_secs_f64(offset);
            if due < start + burst.length {
                return Some(due);
            }
            self.window += 1;
            self.in_window = 0;
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    /// When the next request is due, from the phase's start.
    fn next(&mut self) -> Option<Duration> {
        let base = self.base_due();
        let due = match self.burst_due() {
            Some(burst) if burst < base => {
                self.in_window += 1;
                burst
            }
            _ => {
                self.base += 1;
                base
            }
        };
        (due < self.end).then_some(due)
    }
}

/// One request as recorded: when it was due (µs after the start), how long its answer took
/// or, for a failure, how long until it failed (µs), which of the phase's operations it was
/// and whether it succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at_us: u32,
    pub latency_us: u32,
    pub op: u8,
    pub ok: bool,
}

/// What one connection recorded.
#[derive(Default)]
pub struct Recorded {
    pub samples: Vec<Sample>,
    pub first_error: Option<String>,
}

impl Recorded {
    /// A failed request, `after_us` after its time.
    fn fail(&mut self, at_us: u32, after_us: u32, op: u8, why: impl FnOnce() -> String) {
        self.samples.push(Sample {
            at_us,
            latency_us: after_us,
            op,
            ok: false,
        });
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    pub fn merge(&mut self, other: Recorded) {
        self.samples.extend(other.samples);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A request on its way: when it was due, where its latency counts from, its operation.
struct InFlight {
    at_us: u32,
    from: Instant,
    op: u8,
}

/// One connection's share of an open-loop phase.
pub struct OpenWorker {
    pub plan: Arc<Plan>,
    pub schedule: Schedule,
    pub start: Instant,
    pub endpoint: Endpoint,
    pub resolver: Resolver,
    pub rng: Rng,
    /// Follow the primary after a failover: a READONLY reply ends the connection, and the
    /// new one goes to the primary that the node reached names (ROLE).
    pub follow: bool,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl OpenWorker {
    /// Sends the schedule on `conn` (and on fresh connections after it breaks) and returns
    /// every request's sample.
    pub async fn run(mut self, conn: Conn) -> Recorded {
        let mut recorded = Recorded::default();
        let mut next = self.schedule.next();
        let mut conn = Some(conn);
        while next.is_some() {
            let live = match conn.take() {
                Some(c) => c,
                None => match self.reconnect(&mut next, &mut recorded).await {
                    Some(c) => c,
                    None => break,
                },
            };
            next = self.session(live, next, &mut recorded).await;
        }
        recorded
    }

    fn pick(&mut self) -> u8 {
        if self.plan.templates.len() == 1 {
            0
        } else {
            self.plan.pick(self.rng.next()) as u8
        }
    }

    /// Sends requests on `conn` as they fall due until the schedule ends or the connection
    /// breaks; returns the first request not sent.
    async fn session(
        &mut self,
        conn: Conn,
        mut next: Option<Duration>,
        recorded: &mut Recorded,
    ) -> Option<Duration> {
        let (read, mut write, buffered) = conn.split();
        let (tx, rx) = mpsc::unbounded_channel();
        // Following the primary, a READONLY reply ends this connection: what was sent is still
        // answered (and counted), the rest goes to the primary once found.
        let demoted = self.follow.then(|| Arc::new(AtomicBool::new(false)));
        let reader = tokio::spawn(read_replies(read, buffered, rx, demoted.clone()));
        let plan = self.plan.clone();
        let mut out = Vec::new();
        while let Some(due) = next {
            tokio::time::sleep_until((self.start + due).into()).await;
            if reader.is_finished() || demoted.as_ref().is_some_and(|d| d.load(Ordering::Relaxed)) {
                break;
            }
            let now = Instant::now();
            out.clear();
            while let Some(due) = next.filter(|d| self.start + *d <= now) {
                let scheduled = self.start + due;
                let op = self.pick();
                let key = self.rng.next() % plan.keyspace;
                let member = self.rng.next() % plan.elements;
                plan.templates[usize::from(op)].write(&mut out, key, member);
                let from = if now - scheduled > SLACK {
                    scheduled
                } else {
                    now
                };
                let _ = tx.send(Message::Sent(InFlight {
                    at_us: micros(due),
                    from,
                    op,
                }));
                next = self.schedule.next();
            }
            let written = tokio::time::timeout(IO_TIMEOUT, async {
                write.write_all(&out).await?;
                write.flush().await
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = tx.send(Message::Broken(RespError::Io(e).to_string()));
                    break;
                }
                Err(_) => {
                    let _ = tx.send(Message::Broken(RespError::Timeout(IO_TIMEOUT).to_string()));
                    break;
                }
            }
        }
        drop(tx);
        match reader.await {
            Ok(r) => recorded.merge(r),
            Err(e) => {
                recorded.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        next
    }

    /// Opens a new connection, failing the requests that fall due meanwhile; `None` when
    /// the schedule ended first.
    async fn reconnect(
        &mut self,
        next: &mut Option<Duration>,
        recorded: &mut Recorded,
    ) -> Option<Conn> {
        loop {
            let now = Instant::now();
            while let Some(due) = next.filter(|d| self.start + *d <= now) {
                let op = self.pick();
                recorded.fail(micros(due), 0, op, || "the connection broke".into());
                *next = self.schedule.next();
            }
            next.as_ref()?;
            match Conn::connect(&self.resolver, &self.endpoint, RECONNECT_TIMEOUT).await {
                Ok(mut conn) => match self.follow.then_some(()).and(primary_of(&mut conn).await) {
                    Some((host, port)) => {
                        self.endpoint.host = host;
                        self.endpoint.port = port;
                    }
                    None => return Some(conn),
                },
                Err(e) => {
                    if recorded.first_error.is_none() {
                        recorded.first_error = Some(crate::error::chain(&e));
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }
}

/// The primary that the replica on `conn` names (ROLE); `None` when it is a primary, or
/// cannot say.
async fn primary_of(conn: &mut Conn) -> Option<(String, u16)> {
    conn.call(&[b"ROLE"], |reply| {
        let mut items = reply.items()?;
        if items.next()?.bytes()? != b"slave" {
            return None;
        }
        let host = items.next()?.text();
        let port = u16::try_from(items.next()?.int()?).ok()?;
        Some((host, port))
    })
    .await
    .ok()
    .flatten()
}

/// What the sending side tells the reader.
enum Message {
    Sent(InFlight),
    /// The connection broke on the sending side: fail what is in flight.
    Broken(String),
}

/// Reads replies as they come and records each against the request it answers, in order,
/// until the sender is done and every request is answered, or the connection breaks (then
/// what is in flight fails). A READONLY reply sets `demoted`, when given: the node is a
/// replica now.
async fn read_replies(
    mut read: Box<dyn AsyncRead + Send + Unpin>,
    mut buf: Vec<u8>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    demoted: Option<Arc<AtomicBool>>,
) -> Recorded {
    let mut recorded = Recorded::default();
    let mut pending: VecDeque<InFlight> = VecDeque::new();
    let mut sending = true;
    let mut arrived = Instant::now();
    let fail_all = |pending: &mut VecDeque<InFlight>, recorded: &mut Recorded, why: String| {
        let now = Instant::now();
        for f in pending.drain(..) {
            let after = micros(now.saturating_duration_since(f.from));
            recorded.fail(f.at_us, after, f.op, || why.clone());
        }
    };
    loop {
        let mut at = 0;
        while !pending.is_empty() {
            match span(&buf[at..]) {
                Ok(Some(s)) => {
                    let f = pending.pop_front().expect("a reply answers a request");
                    match s.error_end {
                        None => recorded.samples.push(Sample {
                            at_us: f.at_us,
                            latency_us: micros(arrived.saturating_duration_since(f.from)).max(1),
                            op: f.op,
                            ok: true,
                        }),
                        Some(e) => {
                            let text = String::from_utf8_lossy(&buf[at + 1..at + e]).into_owned();
                            let after = micros(arrived.saturating_duration_since(f.from));
                            if text.starts_with("READONLY")
                                && let Some(demoted) = &demoted
                            {
                                demoted.store(true, Ordering::Relaxed);
                            }
                            recorded.fail(f.at_us, after, f.op, || text);
                        }
                    }
                    at += s.len;
                }
                Ok(None) => break,
                Err(e) => {
                    let why = RespError::Protocol(e.to_string()).to_string();
                    fail_all(&mut pending, &mut recorded, why);
                    return recorded;
                }
            }
        }
        buf.drain(..at);
        if !sending && pending.is_empty() {
            return recorded;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let oldest = pending.front().map(|f| f.from + IO_TIMEOUT);
        tokio::select! {
            message = rx.recv(), if sending => match message {
                Some(Message::Sent(f)) => pending.push_back(f),
                Some(Message::Broken(why)) => {
                    fail_all(&mut pending, &mut recorded, why);
                    return recorded;
                }
                None => sending = false,
            },
            read = read.read_buf(&mut buf), if !pending.is_empty() => {
                arrived = Instant::now();
                let why = match read {
                    Ok(0) => RespError::Closed.to_string(),
                    Ok(_) => continue,
                    Err(e) => RespError::Io(e).to_string(),
                };
                fail_all(&mut pending, &mut recorded, why);
                return recorded;
            }
            () = sleep_opt(oldest) => {
                fail_all(&mut pending, &mut recorded, RespError::Timeout(IO_TIMEOUT).to_string());
                return recorded;
            }
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn connections_share_the_sustained_schedule() {
        let all: Vec<Vec<Duration>> = (0..2)
            .map(|i| Schedule::new(1000.0, None, 2, i, ms(6)).collect())
            .collect();
        assert_eq!(all[0], vec![ms(0), ms(2), ms(4)]);
        assert_eq!(all[1], vec![ms(1), ms(3), ms(5)]);
    }

    #[test]
    fn bursts_add_requests_inside_their_windows() {
        let burst = Burst {
            extra: 2000.0,
            length: ms(2),
            every: ms(5),
        };
        let got: Vec<Duration> = Schedule::new(1000.0, Some(burst), 1, 0, ms(11)).collect();
        let us = Duration::from_micros;
        assert_eq!(
            got,
            vec![
                ms(0),
                ms(1),
                ms(2),
                ms(3),
                ms(4),
                ms(5),
                ms(5),
                us(5500),
                ms(6),
                ms(6),
                us(6500),
                ms(7),
                ms(8),
                ms(9),
                ms(10),
                ms(10),
                us(10500)
            ]
        );
        assert!(!burst.covers(ms(1)) && burst.covers(ms(5)) && !burst.covers(ms(7)));
        assert_eq!(burst.inside(ms(11)), ms(3));
    }

    #[test]
    fn bursts_are_parsed_with_what_to_write() {
        assert_eq!(
            parse_burst("50000:2s:10s"),
            Ok(Burst {
                extra: 50000.0,
                length: Duration::from_secs(2),
                every: Duration::from_secs(10)
            })
        );
        assert_eq!(
            parse_burst("100:2s"),
            Err("`100:2s` is not a burst: it needs three parts (write RATE:DURATION:EVERY, e.g. 50000:2s:10s)".into())
        );
        assert_eq!(
            parse_burst("100:10s:10s"),
            Err("`100:10s:10s` is not a burst: the burst must last longer than 0 and less than EVERY (write RATE:DURATION:EVERY, e.g. 50000:2s:10s)".into())
        );
        assert!(parse_burst("-5:1s:2s").is_err());
    }
}

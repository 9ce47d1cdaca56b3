//! One endpoint's probe loop: an open-loop tick, a write and a read per tick, latency
//! from the scheduled time, and the disconnect state machine.
//!
//! Ticks are scheduled at `start + k × interval` whatever happened before, and a
//! request's latency is measured from its tick's scheduled time on the monotonic clock
//! whenever an earlier slow request delayed the tick, so a stalled server shows up as
//! latency instead of as fewer samples (coordinated omission). While the endpoint is
//! down each tick tries one reconnect (a fresh name lookup each time: ElastiCache
//! endpoints move on failover); ticks missed while a connection attempt hung are skipped
//! instead of replayed in a burst.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use super::ProbeConfig;
use super::classify::ErrorClass;
use super::record::{Op, ProbeEvent, Recorder};
use crate::endpoint::{Endpoint, Resolver, redact_url};
use crate::resp::{Conn, Pipeline, RespError};

/// Lifetime of the probe's key: long enough for any run, short enough to clean itself up.
const KEY_TTL_SECONDS: u64 = 86_400;

pub(super) struct Sampler {
    pub endpoint: Endpoint,
    pub resolver: Resolver,
    pub config: ProbeConfig,
    pub key: String,
    pub recorder: Arc<Recorder>,
    pub step: watch::Receiver<Option<String>>,
}

struct Outage {
    start: DateTime<Utc>,
    start_at: Instant,
    step: Option<String>,
    cause: ErrorClass,
    failed: u64,
}

/// When a tick was due, where its latencies count from, and its wall-clock time.
struct Tick {
    scheduled: Instant,
    from: Instant,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    seq: u64,
    acknowledged: Option<u64>,
    outage: Option<Outage>,
}

type Failure = (ErrorClass, String);

fn failure(err: &RespError) -> Failure {
    (ErrorClass::of(err), redact_url(&err.to_string()))
}

fn timed_out(limit: Duration) -> Failure {
    (
        ErrorClass::Timeout,
        format!("no answer within {} ms", limit.as_millis()),
    )
}

impl Sampler {
    fn label(&self) -> String {
        self.endpoint.to_string()
    }

    /// Probes until `stop` turns true (or its sender goes away).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let interval = self.config.interval.max(Duration::from_millis(1));
        let base = Instant::now();
        let base_wall = Utc::now();
        let wall =
            |t: Instant| base_wall + chrono::Duration::from_std(t - base).unwrap_or_default();
        self.recorder.event(&ProbeEvent::Started {
            ts: base_wall,
            endpoint: self.label(),
            interval_ms: interval.as_secs_f64() * 1000.0,
            timeout_ms: self.config.timeout.as_secs_f64() * 1000.0,
        });
        let mut state = State::default();
        let mut tick: u64 = 0;
        let mut previous_done = base;
        loop {
            let mut scheduled = base + interval_times(interval, tick);
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                () = sleep_until(scheduled) => {}
            }
            if state.conn.is_none() && state.outage.is_some() {
                let behind = (Instant::now() - scheduled).as_nanos() / interval.as_nanos();
                if behind > 0 {
                    tick += u64::try_from(behind).unwrap_or(u64::MAX / 2);
                    scheduled = base + interval_times(interval, tick);
                }
            }
            // Latency counts from the scheduled time when an earlier slow request held this
            // tick back (the server's fault); a timer waking a little late is the probe's
            // own jitter, and then latency counts from the moment the tick really starts.
            let from = if previous_done > scheduled {
                scheduled
            } else {
                Instant::now()
            };
            let step = self.step.borrow_and_update().clone();
            let times = Tick {
                scheduled,
                from,
                at: wall(scheduled),
            };
            self.tick(&mut state, times, &step).await;
            previous_done = Instant::now();
            tick += 1;
        }
        let now = Utc::now();
        if let Some(outage) = state.outage.take() {
            self.recorder.event(&ProbeEvent::Disconnect {
                endpoint: self.label(),
                step: outage.step,
                start: outage.start,
                end: None,
                duration_ms: outage.start_at.elapsed().as_secs_f64() * 1000.0,
                cause: outage.cause,
                failed_requests: outage.failed,
            });
        }
        self.recorder.event(&ProbeEvent::Stopped {
            ts: now,
            endpoint: self.label(),
        });
    }

    async fn tick(&self, state: &mut State, times: Tick, step: &Option<String>) {
        let Tick {
            scheduled,
            from,
            at,
        } = times;
        let mut failed: Vec<(Op, Failure)> = Vec::new();
        if state.conn.is_none() {
            match self.connect(state, step).await {
                Ok(conn) => state.conn = Some(conn),
                Err(f) => failed = vec![(Op::Write, f.clone()), (Op::Read, f)],
            }
        }
        if let Some(conn) = &mut state.conn {
            let next = state.seq + 1;
            let mut p = Pipeline::new();
            let mut n = itoa::Buffer::new();
            let mut ttl = itoa::Buffer::new();
            // Both requests leave at the tick, in one write, so the read sees the write.
            p.cmd(&[
                b"SET",
                self.key.as_bytes(),
                crate::resp::num(&mut n, next as i64),
                b"EX",
                crate::resp::num(&mut ttl, KEY_TTL_SECONDS as i64),
            ])
            .cmd(&[b"GET", self.key.as_bytes()]);
            let mut answered: Vec<(Op, Result<Duration, Failure>)> = Vec::with_capacity(2);
            let outcome = conn
                .batch(p.as_bytes(), p.len(), |reply| {
                    let op = if answered.is_empty() {
                        Op::Write
                    } else {
                        Op::Read
                    };
                    let result = match reply.error {
                        None => Ok(reply.at.saturating_duration_since(from.into_std())),
                        Some(text) => Err((
                            ErrorClass::of_reply(text),
                            redact_url(&String::from_utf8_lossy(text)),
                        )),
                    };
                    answered.push((op, result));
                })
                .await;
            if let Err(e) = outcome {
                let f = failure(&e);
                for op in [Op::Write, Op::Read].into_iter().skip(answered.len()) {
                    answered.push((op, Err(f.clone())));
                }
            }
            for (op, result) in answered {
                match result {
                    Ok(latency) => {
                        if op == Op::Write {
                            state.seq = next;
                            state.acknowledged = Some(next);
                        }
                        self.recorder
                            .ok(at, &self.label(), step, op, micros(latency));
                    }
                    Err(f) => failed.push((op, f)),
                }
            }
            if failed
                .iter()
                .any(|(_, (class, _))| class.drops_connection())
            {
                state.conn = None;
            }
        }
        for (op, (class, message)) in &failed {
            self.recorder.failed(at, &self.label(), step, *op, *class);
            self.recorder.event(&ProbeEvent::Error {
                ts: at,
                endpoint: self.label(),
                step: step.clone(),
                op: *op,
                class: *class,
                message: message.clone(),
            });
        }
        let n = failed.len() as u64;
        match (failed.first(), &mut state.outage) {
            (None, Some(_)) => {
                if let Some(outage) = state.outage.take() {
                    self.recorder.event(&ProbeEvent::Disconnect {
                        endpoint: self.label(),
                        step: outage.step,
                        start: outage.start,
                        end: Some(at),
                        duration_ms: (scheduled - outage.start_at).as_secs_f64() * 1000.0,
                        cause: outage.cause,
                        failed_requests: outage.failed,
                    });
                }
            }
            (Some((_, (cause, _))), None) => {
                state.outage = Some(Outage {
                    start: at,
                    start_at: scheduled,
                    step: step.clone(),
                    cause: *cause,
                    failed: n,
                });
            }
            (Some(_), Some(outage)) => outage.failed += n,
            (None, None) => {}
        }
    }

    /// Opens a connection after resolving the name again, records where it went and the
    /// node's role, and reads the sequence number back to count lost acknowledged writes.
    async fn connect(&self, state: &State, step: &Option<String>) -> Result<Conn, Failure> {
        let limit = self.config.timeout;
        let resolved = match self.resolver.override_for(&self.endpoint) {
            Some(addr) => vec![addr.to_string()],
            None => {
                match timeout(limit, tokio::net::lookup_host(self.endpoint.host_port())).await {
                    Ok(Ok(addrs)) => addrs.map(|a| a.to_string()).collect(),
                    Ok(Err(e)) => {
                        return Err((
                            ErrorClass::Other,
                            format!("cannot resolve {}: {e}", self.endpoint.host),
                        ));
                    }
                    Err(_) => return Err(timed_out(limit)),
                }
            }
        };
        let mut conn = Conn::connect(&self.resolver, &self.endpoint, limit)
            .await
            .map_err(|e| failure(&e))?;
        let role = conn
            .call(&[b"ROLE"], |r| {
                r.items()?.next()?.bytes().map(<[u8]>::to_vec)
            })
            .await
            .ok()
            .flatten()
            .map(|role| String::from_utf8_lossy(&role).into_owned());
        let address = conn
            .call(&[b"CLIENT", b"INFO"], |r| local_address(&r.text()))
            .await
            .ok()
            .flatten();
        let read_back = conn
            .call(&[b"GET", self.key.as_bytes()], |r| {
                r.bytes()
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
            })
            .await
            .map_err(|e| failure(&e))?;
        self.recorder.event(&ProbeEvent::Connected {
            ts: Utc::now(),
            endpoint: self.label(),
            resolved,
            address,
            role,
        });
        if let Some(acknowledged) = state.acknowledged
            && read_back.unwrap_or(0) < acknowledged
        {
            self.recorder.event(&ProbeEvent::LostWrites {
                ts: Utc::now(),
                endpoint: self.label(),
                step: step.clone(),
                acknowledged,
                read_back,
                lost: acknowledged - read_back.unwrap_or(0),
            });
        }
        Ok(conn)
    }
}

fn interval_times(interval: Duration, n: u64) -> Duration {
    Duration::from_nanos(
        u64::try_from(interval.as_nanos().saturating_mul(u128::from(n))).unwrap_or(u64::MAX),
    )
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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
        let info = "id=3 addr=127.0.0.1:50000 laddr=10.1.2.3:6379 fd=8 name= db=0";
        assert_eq!(local_address(info).as_deref(), Some("10.1.2.3:6379"));
        assert_eq!(
            interval_times(Duration::from_millis(10), 3),
            Duration::from_millis(30)
        );
    }
}

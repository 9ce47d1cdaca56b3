//! The figures of an open-loop phase, computed from its recorded samples only: the whole
//! phase, inside and outside bursts, and a timeline for charts and recovery times.
//!
//! Percentiles are exact (nearest rank over the sorted latencies), and a request counts in
//! the stretch of time it was scheduled in, so every figure can be recomputed from the
//! samples and a stall shows where it hit, not where its answers finally arrived.

use std::time::Duration;

use serde::Serialize;

use super::open::{Burst, Sample};

/// Latency of the successful requests of a stretch, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentiles of latencies in µs (sorted here).
pub fn latency(us: &mut [u32]) -> Latency {
    if us.is_empty() {
        return Latency::default();
    }
    us.sort_unstable();
    let rank = |q: f64| {
        let i = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
        f64::from(us[i]) / 1000.0
    };
    let sum: u64 = us.iter().map(|&u| u64::from(u)).sum();
    Latency {
        mean_ms: sum as f64 / us.len() as f64 / 1000.0,
        p50_ms: rank(0.50),
        p95_ms: rank(0.95),
        p99_ms: rank(0.99),
        p999_ms: rank(0.999),
        max_ms: f64::from(us[us.len() - 1]) / 1000.0,
    }
}

/// One stretch of a phase: what was scheduled in it, what succeeded, and how fast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    pub seconds: f64,
    pub scheduled: u64,
    pub requests: u64,
    pub errors: u64,
    pub target_ops_per_sec: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Window {
    /// The figures of `samples`, scheduled over `seconds`.
    pub fn of<'a>(samples: impl Iterator<Item = &'a Sample>, seconds: f64) -> Window {
        let (mut scheduled, mut errors) = (0, 0);
        let mut ok = Vec::new();
        for s in samples {
            scheduled += 1;
            if s.ok {
                ok.push(s.latency_us);
            } else {
                errors += 1;
            }
        }
        let requests = ok.len() as u64;
        let l = latency(&mut ok);
        let per_sec = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Window {
            seconds,
            scheduled,
            requests,
            errors,
            target_ops_per_sec: per_sec(scheduled),
            ops_per_sec: per_sec(requests),
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            p999_ms: l.p999_ms,
            max_ms: l.max_ms,
        }
    }
}

/// The latency under bursts against the latency between them, with the bursts' shape
/// (`extra_ops_per_sec` for `length_s` at every `every_s`), so a chart can mark them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BurstFigures {
    pub extra_ops_per_sec: f64,
    pub length_s: f64,
    pub every_s: f64,
    pub inside: Window,
    pub outside: Window,
}

impl BurstFigures {
    pub fn of(samples: &[Sample], burst: &Burst, total: Duration) -> BurstFigures {
        let inside_secs = burst.inside(total).as_secs_f64();
        let covered = |s: &&Sample| burst.covers(Duration::from_micros(u64::from(s.at_us)));
        BurstFigures {
            extra_ops_per_sec: burst.extra,
            length_s: burst.length.as_secs_f64(),
            every_s: burst.every.as_secs_f64(),
            inside: Window::of(samples.iter().filter(covered), inside_secs),
            outside: Window::of(
                samples.iter().filter(|s| !covered(s)),
                total.as_secs_f64() - inside_secs,
            ),
        }
    }
}

/// One stretch of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Start of the stretch, seconds after the phase's start.
    pub t_s: f64,
    pub target_ops_per_sec: f64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The phase in equal stretches of `bucket_ms`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    pub points: Vec<Point>,
}

/// Stretches of 100 ms, longer for phases over a minute, so that a timeline has at most
/// about 600 points.
pub fn bucket_for(total: Duration) -> Duration {
    let minutes = total.as_secs().div_ceil(60).max(1);
    Duration::from_millis(100 * minutes)
}

impl Timeline {
    pub fn of(samples: &[Sample], total: Duration) -> Timeline {
        let bucket = bucket_for(total);
        let bucket_us = bucket.as_micros() as u64;
        let count = (total.as_micros() as u64).div_ceil(bucket_us) as usize;
        let mut by_bucket: Vec<Vec<Sample>> = vec![Vec::new(); count];
        for s in samples {
            let i = (u64::from(s.at_us) / bucket_us) as usize;
            if let Some(b) = by_bucket.get_mut(i) {
                b.push(*s);
            }
        }
        let points = by_bucket
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let start = bucket * i as u32;
                let seconds = bucket.min(total - start).as_secs_f64();
                let w = Window::of(b.iter(), seconds);
                Point {
                    t_s: start.as_secs_f64(),
                    target_ops_per_sec: w.target_ops_per_sec,
                    ops_per_sec: w.ops_per_sec,
                    errors: w.errors,
                    p50_ms: w.p50_ms,
                    p99_ms: w.p99_ms,
                    max_ms: w.max_ms,
                }
            })
            .collect();
        Timeline {
            bucket_ms: bucket.as_millis() as u64,
            points,
        }
    }
}

/// The least a p99 may exceed the worst one before the event and still count as back.
const P99_SLACK_MS: f64 = 1.0;

/// How a phase came through a restart or a failover of its server: the level before, and the
/// time until throughput and p99 were back at it: 90 % of the throughput, and a p99 within
/// 10 % or 1 ms (whichever is more) of the worst p99 of any window before the event, since
/// the p99 of a window moves with the machine's own load, and the level a window after the
/// event is held to must be one the windows before it kept.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    /// `restart`, `restart-save` or `failover`.
    pub event: &'static str,
    /// When the server was taken down, and when it answered again; for a failover, when
    /// FAILOVER was sent and when the replica was the primary (s after the start).
    pub event_s: f64,
    pub back_s: f64,
    /// Throughput and p99 in the `window_s` before the event.
    pub before_ops_per_sec: f64,
    pub before_p99_ms: f64,
    pub window_s: f64,
    /// The p99 a window after the event may have and count as back: 10 % or 1 ms above
    /// (whichever is more) the worst p99 of the windows from `window_s` after the start (the
    /// first is the clients' warm-up) to the event.
    pub p99_limit_ms: f64,
    /// Requests that failed from the event on (whenever they were due).
    pub errors_after: u64,
    /// The start of the first window after the event without a failed request, with at
    /// least 90 % of the throughput before and a p99 within `p99_limit_ms`; none when the
    /// phase ended first.
    pub recovered_s: Option<f64>,
    /// `recovered_s - event_s`.
    pub recovery_s: Option<f64>,
}

impl Recovery {
    /// Reads the recovery off the samples, windows of `window` stepped by the timeline's
    /// stretches.
    pub fn of(
        samples: &[Sample],
        event: &'static str,
        (down, back): (Duration, Duration),
        window: Duration,
        total: Duration,
    ) -> Recovery {
        let us = |d: Duration| d.as_micros() as u64;
        let within = |from: u64, to: u64| {
            samples
                .iter()
                .filter(move |s| (from..to).contains(&u64::from(s.at_us)))
        };
        let before = Window::of(
            within(us(down.saturating_sub(window)), us(down)),
            window.as_secs_f64(),
        );
        let step = us(bucket_for(total));
        let p99_of = |t: u64| Window::of(within(t, t + us(window)), window.as_secs_f64()).p99_ms;
        let last = us(down).saturating_sub(us(window));
        let worst_p99 = (us(window).min(last)..=last)
            .step_by(step as usize)
            .map(p99_of)
            .fold(before.p99_ms, f64::max);
        let p99_limit = (1.1 * worst_p99).max(worst_p99 + P99_SLACK_MS);
        let mut t = us(down) / step * step;
        let mut recovered = None;
        while t + us(window) <= us(total) {
            let w = Window::of(within(t, t + us(window)), window.as_secs_f64());
            if w.errors == 0 && w.ops_per_sec >= 0.9 * before.ops_per_sec && w.p99_ms <= p99_limit {
                recovered = Some(t);
                break;
            }
            t += step;
        }
        let secs = |us: u64| us as f64 / 1e6;
        Recovery {
            event,
            event_s: down.as_secs_f64(),
            back_s: back.as_secs_f64(),
            before_ops_per_sec: before.ops_per_sec,
            before_p99_ms: before.p99_ms,
            window_s: window.as_secs_f64(),
            p99_limit_ms: p99_limit,
            errors_after: samples
                .iter()
                .filter(|s| !s.ok && u64::from(s.at_us) + u64::from(s.latency_us) >= us(down))
                .count() as u64,
            recovered_s: recovered.map(secs),
            recovery_s: recovered.map(|r| secs(r) - down.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u32, latency_us: u32, ok: bool) -> Sample {
        Sample {
            at_us: at_ms * 1000,
            latency_us,
            op: 0,
            ok,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut us: Vec<u32> = (1..=1000).rev().collect();
        let l = latency(&mut us);
        assert_eq!(
            l,
            Latency {
                mean_ms: 0.5005,
                p50_ms: 0.5,
                p95_ms: 0.95,
                p99_ms: 0.99,
                p999_ms: 0.999,
                max_ms: 1.0
            }
        );
        assert_eq!(latency(&mut []), Latency::default());
    }

    #[test]
    fn stretches_count_requests_where_they_were_scheduled() {
        let samples = [
            sample(10, 500, true),
            sample(50, 700, true),
            sample(150, 0, false),
            sample(160, 900, true),
            sample(240, 300, true),
        ];
        let t = Timeline::of(&samples, Duration::from_millis(250));
        assert_eq!(t.bucket_ms, 100);
        let rates: Vec<(f64, f64, f64, u64, f64)> = t
            .points
            .iter()
            .map(|p| {
                (
                    p.t_s,
                    p.target_ops_per_sec,
                    p.ops_per_sec,
                    p.errors,
                    p.p99_ms,
                )
            })
            .collect();
        assert_eq!(
            rates,
            vec![
                (0.0, 20.0, 20.0, 0, 0.7),
                (0.1, 20.0, 10.0, 1, 0.9),
                (0.2, 20.0, 20.0, 0, 0.3)
            ]
        );
        assert_eq!(bucket_for(Duration::from_secs(61)).as_millis(), 200);

        let burst = Burst {
            extra: 1.0,
            length: Duration::from_millis(100),
            every: Duration::from_millis(150),
        };
        let b = BurstFigures::of(&samples, &burst, Duration::from_millis(250));
        assert_eq!((b.inside.scheduled, b.inside.errors), (3, 1));
        assert_eq!((b.outside.scheduled, b.outside.requests), (2, 2));
        assert_eq!(b.inside.seconds, 0.1);
        assert_eq!(
            (b.extra_ops_per_sec, b.length_s, b.every_s),
            (1.0, 0.1, 0.15)
        );
    }

    #[test]
    fn recovery_is_the_first_clean_window_back_at_the_level_before() {
        // 100/s for 5 s; down at 2 s (failing the request in flight), failing until 2.3 s,
        // slow until 2.6 s.
        let samples: Vec<Sample> = (0..500)
            .map(|i| {
                let at = i * 10;
                match at {
                    1990 => sample(at, 15_000, false),
                    2000..2300 => sample(at, 0, false),
                    2300..2600 => sample(at, 5000, true),
                    _ => sample(at, 1000, true),
                }
            })
            .collect();
        let s = Duration::from_millis;
        let r = Recovery::of(&samples, "restart", (s(2000), s(2250)), s(1000), s(5000));
        assert_eq!(
            r,
            Recovery {
                event: "restart",
                event_s: 2.0,
                back_s: 2.25,
                before_ops_per_sec: 99.0,
                before_p99_ms: 1.0,
                window_s: 1.0,
                p99_limit_ms: 2.0,
                errors_after: 31,
                recovered_s: Some(2.6),
                recovery_s: Some(2.6 - 2.0),
            }
        );

        // A p99 under 1 ms above the one before counts as back, though it is 90 % above.
        let jittery: Vec<Sample> = samples
            .iter()
            .map(|x| match x.at_us / 1000 {
                2300..2600 => sample(x.at_us / 1000, 1900, true),
                _ => *x,
            })
            .collect();
        let r = Recovery::of(&jittery, "restart", (s(2000), s(2250)), s(1000), s(5000));
        assert_eq!(r.recovered_s, Some(2.3));
    }

    #[test]
    fn recovery_is_judged_against_the_worst_window_before_the_event_after_the_warm_up() {
        // 100/s for 6 s; a slow start (9 ms until 0.5 s), a slow stretch at 1.2 s (3 ms),
        // down at 3 s until 3.3 s, then 2.5 ms until 3.6 s.
        let samples: Vec<Sample> = (0..600)
            .map(|i| {
                let at = i * 10;
                match at {
                    0..500 => sample(at, 9000, true),
                    1200..1300 => sample(at, 3000, true),
                    3000..3300 => sample(at, 0, false),
                    3300..3600 => sample(at, 2500, true),
                    _ => sample(at, 1000, true),
                }
            })
            .collect();
        let s = Duration::from_millis;
        let r = Recovery::of(&samples, "restart", (s(3000), s(3300)), s(1000), s(6000));
        assert_eq!(
            (r.before_p99_ms, r.p99_limit_ms, r.recovered_s),
            (1.0, 4.0, Some(3.3)),
            "held to 1 ms above the 3 ms of the window at 1.2 s, not to the warm-up's 9 ms: {r:?}"
        );
    }
}

//! A cap on keys per second, so a check or a seeding run against a production primary
//! takes no more than its share of the server.
//!
//! Work is reserved before it is sent: each batch waits until the batches before it have
//! used up their time at the rate, so over any stretch of the run the keys sent stay
//! within one batch of `rate × elapsed`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

/// Batches per second the rate is split into at least, so one batch is never a big
/// burst next to a long pause.
const SLICES_PER_SEC: u64 = 20;

pub struct Pacer {
    keys_per_sec: u64,
    /// When the next batch may start.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer when there is a rate to hold.
    pub fn new(keys_per_sec: Option<u64>) -> Option<Pacer> {
        keys_per_sec.filter(|&r| r > 0).map(|keys_per_sec| Pacer {
            keys_per_sec,
            next: Mutex::new(None),
        })
    }

    /// The batch size that holds the rate smoothly: at most a slice of a second's keys.
    pub fn batch(&self, wanted: usize) -> usize {
        wanted.min((self.keys_per_sec / SLICES_PER_SEC).max(1) as usize)
    }

    /// Waits until `keys` more may be sent.
    pub async fn take(&self, keys: u64) {
        let start = {
            let mut next = self.next.lock().expect("a pacer's lock is never poisoned");
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            *next = Some(start + Duration::from_secs_f64(keys as f64 / self.keys_per_sec as f64));
            start
        };
        sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_wait_for_the_time_the_ones_before_used() {
        let pacer = Pacer::new(Some(1000)).unwrap();
        assert_eq!(pacer.batch(1000), 50);
        let started = Instant::now();
        for _ in 0..5 {
            pacer.take(20).await;
        }
        // The fifth batch starts once four have used their 20 ms each.
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert!(Pacer::new(None).is_none() && Pacer::new(Some(0)).is_none());
    }
}

//! What the probe writes to disk, and the writer that batches it.
//!
//! Two JSON-lines files under `<run dir>/probe/`: `events.jsonl` (every connection,
//! error, outage and lost-write event) and `seconds.jsonl` (one line per second,
//! endpoint, shard, step and operation, with an HdrHistogram of that second's latencies
//! and the worst latency and the errors of each tenth of it, for a sub-second timeline). Memory
//! stays bounded (only the current seconds are held), the files survive a crash up to
//! the last second, and exact per-step percentiles are the merge of the seconds' histograms.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use super::classify::{ErrorClass, OutageKind};

/// The folder of the probe's files inside a run directory.
pub const PROBE_DIR: &str = "probe";
/// Every event, one JSON object a line.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Per-second latency summaries, one JSON object a line.
pub const SECONDS_FILE: &str = "seconds.jsonl";

/// The two requests of a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `SET` of the next sequence number.
    Write,
    /// `GET` of it.
    Read,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Read => "read",
        }
    }
}

/// Something that happened to one endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProbeEvent {
    /// Probing of an endpoint began; `name` is the runbook's name for it
    /// (`probe.endpoints[].name`).
    Started {
        ts: DateTime<Utc>,
        endpoint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        interval_ms: f64,
        timeout_ms: f64,
    },
    /// A connection (of the writes' or the reads') was (re)established: where it went
    /// after resolving the name again, and the role of the node reached.
    Connected {
        ts: DateTime<Utc>,
        endpoint: String,
        /// The shard (its slot ranges) in a cluster of several shards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        op: Op,
        resolved: Vec<String>,
        address: Option<String>,
        role: Option<String>,
    },
    /// One failed request.
    Error {
        ts: DateTime<Utc>,
        endpoint: String,
        /// The shard (its slot ranges) in a cluster of several shards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        step: Option<String>,
        op: Op,
        class: ErrorClass,
        message: String,
    },
    /// A run of failed requests of one operation: from the first failed request's
    /// scheduled time to the answer of the next successful one. `end` is absent when the
    /// probe stopped before the endpoint came back. `kind` is the worst trouble seen in the
    /// run, `cause` the class of its first failure.
    Outage {
        endpoint: String,
        /// The shard (its slot ranges) in a cluster of several shards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        op: Op,
        kind: OutageKind,
        step: Option<String>,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        duration_ms: f64,
        cause: ErrorClass,
        failed_requests: u64,
    },
    /// After reconnecting, the sequence number read back was lower than the last
    /// acknowledged one: acknowledged writes were lost.
    LostWrites {
        ts: DateTime<Utc>,
        endpoint: String,
        /// The shard (its slot ranges) in a cluster of several shards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        step: Option<String>,
        acknowledged: u64,
        read_back: Option<u64>,
        lost: u64,
    },
    /// Where the runbook says the application's clients are (`probe.clients`), step by
    /// step; recorded when the probe starts.
    Clients {
        ts: DateTime<Utc>,
        plan: Vec<ClientsAt>,
    },
    /// The first acknowledged write on an endpoint while `step` ran: where a cutover's
    /// write gap ends.
    FirstWrite {
        ts: DateTime<Utc>,
        endpoint: String,
        /// The shard (its slot ranges) in a cluster of several shards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        step: Option<String>,
    },
    /// The endpoint is a cluster of several shards: each is probed on a key of its own, on
    /// its primary. `shard` names it by its slot ranges (`0-5460`), which a failover keeps.
    Shards {
        ts: DateTime<Utc>,
        endpoint: String,
        shards: Vec<ShardAt>,
    },
    /// Writes to an endpoint that had acknowledged some are refused as by a replica
    /// (READONLY): it was demoted, as a primary is by a failover (`writable: false`); or it
    /// acknowledges writes again after that (`writable: true`).
    Writable {
        ts: DateTime<Utc>,
        endpoint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        writable: bool,
    },
    /// The runbook's endpoint of this name moved to `by` (the platform named a new
    /// primary): `endpoint` is no longer probed.
    Replaced {
        ts: DateTime<Utc>,
        endpoint: String,
        by: String,
    },
    /// Probing of an endpoint ended after `ticks` ticks (each one write and one read,
    /// every one of them counted as a success or a failure).
    Stopped {
        ts: DateTime<Utc>,
        endpoint: String,
        #[serde(default)]
        ticks: u64,
    },
}

/// A shard of a probed cluster when the probe began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAt {
    pub shard: String,
    /// The primary's address (`host:port`).
    pub primary: String,
}

/// One entry of the clients' plan: from the start of step `from` (from the start of the
/// run when `None`) the clients use the endpoint named `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientsAt {
    pub endpoint: String,
    pub from: Option<String>,
}

/// One second of one operation on one endpoint during one step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Second {
    /// Unix time of the second.
    pub second: i64,
    pub endpoint: String,
    /// The shard, in a cluster of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub step: Option<String>,
    pub op: Op,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests by class.
    #[serde(default)]
    pub errors: BTreeMap<ErrorClass, u64>,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The latencies (µs) of the successful requests: an HdrHistogram, V2 deflate, base64.
    pub histogram: String,
    /// The worst latency (µs) of each tenth of the second.
    #[serde(default)]
    pub tenths_max_us: [u64; 10],
    /// The failed requests of each tenth of the second.
    #[serde(default)]
    pub tenths_errors: [u64; 10],
}

impl Second {
    /// The latency histogram of this second.
    pub fn decode_histogram(&self) -> Option<Histogram<u64>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.histogram)
            .ok()?;
        Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
    }
}

/// An empty latency histogram (µs, 3 significant digits, growing as needed).
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).expect("3 significant digits is a valid precision");
    h.auto(true);
    h
}

#[derive(Default)]
struct Bucket {
    ok: u64,
    errors: BTreeMap<ErrorClass, u64>,
    latencies: Option<Histogram<u64>>,
    tenths_max_us: [u64; 10],
    tenths_errors: [u64; 10],
}

/// Which tenth of its second `at` falls in.
fn tenth(at: DateTime<Utc>) -> usize {
    (at.timestamp_subsec_millis() / 100).min(9) as usize
}

/// Second, endpoint, shard, step, operation.
type BucketKey = (i64, String, Option<String>, Option<String>, Op);

/// Where a request went: the endpoint as the runbook names it, and the shard in a cluster
/// of several.
#[derive(Clone, Copy, Debug)]
pub struct Lane<'a> {
    pub endpoint: &'a str,
    pub shard: Option<&'a str>,
}

/// The writer of a probe's files; shared by every endpoint task.
pub struct Recorder {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    events: BufWriter<File>,
    seconds: BufWriter<File>,
    buckets: BTreeMap<BucketKey, Bucket>,
    /// The first write error, reported once; the probe never stops the run for it.
    failed: Option<String>,
}

fn append(path: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::new(
        OpenOptions::new().create(true).append(true).open(path)?,
    ))
}

impl Recorder {
    /// Opens (appending: a resumed run adds to its files) the probe files under `run_dir`.
    pub fn open(run_dir: &Path) -> io::Result<Recorder> {
        let dir = run_dir.join(PROBE_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(Recorder {
            inner: Mutex::new(Inner {
                events: append(&dir.join(EVENTS_FILE))?,
                seconds: append(&dir.join(SECONDS_FILE))?,
                buckets: BTreeMap::new(),
                failed: None,
            }),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event (buffered; written out by [`Recorder::flush`]).
    pub fn event(&self, event: &ProbeEvent) {
        let mut inner = self.lock();
        let result = serde_json::to_writer(&mut inner.events, event)
            .map_err(io::Error::other)
            .and_then(|()| inner.events.write_all(b"\n"));
        inner.note_failure(result);
    }

    /// Counts a successful request and its latency.
    pub fn ok(
        &self,
        at: DateTime<Utc>,
        lane: Lane<'_>,
        step: &Option<String>,
        op: Op,
        latency_us: u64,
    ) {
        let mut inner = self.lock();
        let bucket = inner.bucket(at, lane, step, op);
        bucket.ok += 1;
        let worst = &mut bucket.tenths_max_us[tenth(at)];
        *worst = (*worst).max(latency_us);
        // Auto-resizing: recording only fails beyond u64 range, which a latency never reaches.
        let _ = bucket
            .latencies
            .get_or_insert_with(new_histogram)
            .record(latency_us.max(1));
    }

    /// Counts a failed request.
    pub fn failed(
        &self,
        at: DateTime<Utc>,
        lane: Lane<'_>,
        step: &Option<String>,
        op: Op,
        class: ErrorClass,
    ) {
        let mut inner = self.lock();
        let bucket = inner.bucket(at, lane, step, op);
        *bucket.errors.entry(class).or_default() += 1;
        bucket.tenths_errors[tenth(at)] += 1;
    }

    /// Writes out the seconds older than `keep_after` (all of them when `None`) and
    /// flushes both files to the operating system (no fsync: a crash loses at most the
    /// last second or so).
    pub fn flush(&self, keep_after: Option<i64>) {
        let mut inner = self.lock();
        let done: Vec<BucketKey> = inner
            .buckets
            .keys()
            .filter(|k| keep_after.is_none_or(|t| k.0 < t))
            .cloned()
            .collect();
        for key in done {
            let Some(bucket) = inner.buckets.remove(&key) else {
                continue;
            };
            let line = second_line(key, bucket);
            let result = serde_json::to_writer(&mut inner.seconds, &line)
                .map_err(io::Error::other)
                .and_then(|()| inner.seconds.write_all(b"\n"));
            inner.note_failure(result);
        }
        let result = inner.events.flush().and_then(|()| inner.seconds.flush());
        inner.note_failure(result);
    }

    /// The first write error, if any happened.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }
}

impl Inner {
    fn bucket(
        &mut self,
        at: DateTime<Utc>,
        lane: Lane<'_>,
        step: &Option<String>,
        op: Op,
    ) -> &mut Bucket {
        let key = (
            at.timestamp(),
            lane.endpoint.to_string(),
            lane.shard.map(str::to_string),
            step.clone(),
            op,
        );
        self.buckets.entry(key).or_default()
    }

    fn note_failure(&mut self, result: io::Result<()>) {
        if let Err(e) = result
            && self.failed.is_none()
        {
            self.failed = Some(e.to_string());
        }
    }
}

fn second_line((second, endpoint, shard, step, op): BucketKey, bucket: Bucket) -> Second {
    let h = bucket.latencies.unwrap_or_else(new_histogram);
    let mut bytes = Vec::new();
    let histogram = match V2DeflateSerializer::new().serialize(&h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(&bytes),
        Err(_) => String::new(),
    };
    let at = |q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    Second {
        second,
        endpoint,
        shard,
        step,
        op,
        ok: bucket.ok,
        errors: bucket.errors,
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: if h.is_empty() { 0 } else { h.max() },
        histogram,
        tenths_max_us: bucket.tenths_max_us,
        tenths_errors: bucket.tenths_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_with_their_histograms() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open(dir.path()).unwrap();
        let t: DateTime<Utc> = "2026-11-22T03:00:00.250Z".parse().unwrap();
        let step = Some("s1".to_string());
        let lane = Lane {
            endpoint: "redis://h:1",
            shard: None,
        };
        for us in [100, 200, 300, 40_000] {
            rec.ok(t, lane, &step, Op::Write, us);
        }
        rec.failed(t, lane, &step, Op::Write, ErrorClass::Refused);
        rec.flush(None);
        let text = std::fs::read_to_string(dir.path().join(PROBE_DIR).join(SECONDS_FILE)).unwrap();
        let second: Second = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!((second.ok, second.errors[&ErrorClass::Refused]), (4, 1));
        let h = second.decode_histogram().unwrap();
        assert_eq!(h.len(), 4);
        assert!((39_960..=40_040).contains(&h.max()), "max {}", h.max());
        assert_eq!(second.max_us, h.max());
        assert_eq!(second.step.as_deref(), Some("s1"));
        assert_eq!(second.tenths_max_us, [0, 0, 40_000, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(second.tenths_errors, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    }
}

//! How a check runs: batch sizes, concurrency, the TTL tolerance, re-check rounds, and
//! which keys are not data (the probe's, ElastiCache's own).

use std::time::Duration;

use super::VerifyError;

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
    /// The databases to compare; empty: every database that holds keys on either side.
    pub dbs: Vec<i64>,
    /// Keys per second each pass may read at most (none: as fast as it can).
    pub max_rate: Option<u64>,
    /// Where the keys are read: the endpoints given, or a replica of each.
    pub read_from: ReadFrom,
}

/// Which server of a side is read.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// The endpoint given.
    #[default]
    Primary,
    /// A replica of it (the endpoint itself when it is one), to spare a production primary.
    Replica,
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
            dbs: Vec::new(),
            max_rate: None,
            read_from: ReadFrom::Primary,
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
        if self.dbs.iter().any(|&db| db < 0) {
            return bad("a database number is 0 or more");
        }
        Ok(())
    }

    /// Whether `key` is left out of the comparison.
    pub(super) fn skipped(&self, key: &[u8]) -> bool {
        key == ELASTICACHE_TIMESTAMP_KEY.as_bytes()
            || self
                .skip_prefixes
                .iter()
                .any(|p| !p.is_empty() && key.starts_with(p.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_probe_and_elasticache_keys() {
        let opts = VerifyOptions::default();
        assert!(opts.skipped(b"runbook:probe:seq"));
        assert!(opts.skipped(ELASTICACHE_TIMESTAMP_KEY.as_bytes()));
        assert!(!opts.skipped(b"user:1"));
    }

    #[test]
    fn options_that_cannot_work_are_refused() {
        let zero = VerifyOptions {
            connections: 0,
            ..VerifyOptions::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "batch, in-flight batches, connections and chunk must be at least 1"
        );
        let rounds = VerifyOptions {
            rounds: 0,
            ..VerifyOptions::default()
        };
        assert_eq!(
            rounds.validate().unwrap_err().to_string(),
            "rounds must be at least 1 (1 = no re-check)"
        );
    }
}

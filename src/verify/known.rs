//! The source keys a database's source pass saw, as 64-bit fingerprints, so that the target
//! pass asks the source only about target keys it did not see. Asking the source `EXISTS`
//! for every target key cost it more than any other part of a check: the target lists its
//! keys in its own order, so each lookup misses the source's caches.
//!
//! Memory: 8 bytes a key, up to [`CAP`] keys a database (32 MiB), and an index of half a
//! byte a key. Past the cap the remaining keys are not remembered, and the target pass
//! asks the source about them as before: a key found here is one the source had, a key
//! not found is only not known.

use xxhash_rust::xxh3::xxh3_64;

/// Fingerprints kept for one database.
pub(super) const CAP: usize = 4 << 20;
/// Fingerprints in a run of the index, on average: a look-up reads the index and then
/// one or two cache lines, instead of a binary search's chain of cache misses.
const RUN: usize = 8;

/// Fingerprints being gathered by a source pass.
#[derive(Default)]
pub(super) struct Seen {
    prints: Vec<u64>,
}

impl Seen {
    /// Room for `keys`, up to the cap, so that gathering does not grow by doubling.
    pub fn with_capacity(keys: u64) -> Seen {
        Seen {
            prints: Vec::with_capacity(usize::try_from(keys).unwrap_or(CAP).min(CAP)),
        }
    }

    /// Remembers `key`, unless the cap is reached.
    pub fn add(&mut self, key: &[u8]) {
        if self.prints.len() < CAP {
            self.prints.push(xxh3_64(key));
        }
    }

    /// Takes in what another batch saw, up to the cap.
    pub fn merge(&mut self, other: Seen) {
        let room = CAP - self.prints.len();
        self.prints.extend(other.prints.into_iter().take(room));
    }

    /// Sorted and indexed for look-ups.
    pub fn known(mut self) -> Known {
        self.prints.sort_unstable();
        self.prints.dedup();
        // Runs are told apart by the top `bits` of a fingerprint.
        let bits = (self.prints.len() / RUN).max(1).ilog2() + 1;
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for &p in &self.prints {
            starts[(p >> shift) as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        Known {
            prints: self.prints,
            starts,
            shift,
        }
    }
}

/// The fingerprints of a finished source pass.
#[derive(Default)]
pub(super) struct Known {
    prints: Vec<u64>,
    /// Where the fingerprints of each run start in `prints`, and the end after the last.
    starts: Vec<u32>,
    /// A fingerprint shifted right by this much is its run.
    shift: u32,
}

impl Known {
    /// Leaves in `keys` only those the source pass did not see (by 64-bit fingerprint: two
    /// different keys share one with a chance of about one in 2^64 a pair). The look-ups
    /// go in sweeps, the index for every key first, then a read of each run's ends, then
    /// the comparisons, so that the processor has many independent cache misses under way
    /// instead of waiting on each (a comparison's early exit is a branch it cannot foresee,
    /// and would stop it from reading ahead).
    pub fn keep_unknown(&self, keys: &mut Vec<Vec<u8>>) {
        if self.prints.is_empty() {
            return;
        }
        let prints: Vec<u64> = keys.iter().map(|k| xxh3_64(k)).collect();
        let runs: Vec<(u32, u32)> = prints
            .iter()
            .map(|&p| {
                let r = (p >> self.shift) as usize;
                (self.starts[r], self.starts[r + 1])
            })
            .collect();
        // A run of eight fingerprints spans one or two cache lines: its ends bring both in.
        let ends = runs.iter().fold(0, |ends, &(from, to)| {
            let last = to.saturating_sub(1).max(from) as usize;
            ends ^ self
                .prints
                .get(from as usize)
                .map_or(0, |p| p ^ self.prints[last])
        });
        std::hint::black_box(ends);
        let mut seen = prints
            .iter()
            .zip(runs)
            .map(|(p, (from, to))| self.prints[from as usize..to as usize].contains(p));
        keys.retain(|_| !seen.next().expect("one answer a key"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(known: &Known, keys: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        known.keep_unknown(&mut keys);
        keys
    }

    #[test]
    fn knows_exactly_the_keys_it_was_given() {
        let mut a = Seen::with_capacity(3);
        a.add(b"k:1");
        a.add(b"k:2");
        let mut b = Seen::default();
        b.add(b"k:2");
        b.add(&[0xff, 0x00]);
        a.merge(b);
        let known = a.known();
        let strangers: Vec<Vec<u8>> = (0..10_000).map(|i| format!("x:{i}").into_bytes()).collect();
        let mut keys = vec![b"k:1".to_vec(), vec![0xff, 0x00]];
        keys.extend(strangers.iter().cloned());
        keys.push(b"k:2".to_vec());
        known.keep_unknown(&mut keys);
        assert_eq!(keys, strangers);
        assert_eq!(unknown(&Known::default(), &[b"k:1"]), [b"k:1"]);
    }

    #[test]
    fn stops_remembering_at_the_cap() {
        let mut seen = Seen::with_capacity(u64::MAX);
        assert_eq!(seen.prints.capacity(), CAP);
        seen.prints.resize(CAP - 1, 0);
        let mut more = Seen::default();
        more.add(b"last");
        more.add(b"past the cap");
        seen.merge(more);
        seen.add(b"also past it");
        let known = seen.known();
        assert_eq!(
            unknown(&known, &[b"last", b"past the cap", b"also past it"]),
            [&b"past the cap"[..], b"also past it"]
        );
    }
}

//! What passes count: keys by database and type, expired and skipped keys, and the
//! mismatched keys to re-check, capped so that a target missing everything does not hold
//! every key name.

use std::collections::{BTreeMap, HashMap};

use super::judge::{Class, ClassCounts, Mismatch};

/// Example keys kept of the mismatches beyond the cap.
const OVERFLOW_EXAMPLES: usize = 16;

/// A key of the check: its name in a source database (the target database it pairs with
/// follows from the check's databases).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Key {
    pub db: i64,
    pub name: Vec<u8>,
}

/// The counts of one database.
#[derive(Clone, Debug, Default)]
pub(super) struct DbTally {
    /// Keys compared: the source's, plus those only the target has.
    pub checked: u64,
    /// The same keys by type: the source's, or the target's for a key only it has.
    pub by_type: BTreeMap<&'static str, u64>,
    pub expired: u64,
    pub skipped: u64,
    /// Mismatches beyond the re-check cap.
    pub unrechecked: ClassCounts,
}

impl DbTally {
    fn merge(&mut self, other: DbTally) {
        self.checked += other.checked;
        for (t, n) in other.by_type {
            *self.by_type.entry(t).or_default() += n;
        }
        self.expired += other.expired;
        self.skipped += other.skipped;
        self.unrechecked.add_all(&other.unrechecked);
    }

    /// One more key compared, of type `kind`.
    pub fn checked(&mut self, kind: &'static str) {
        self.checked += 1;
        *self.by_type.entry(kind).or_default() += 1;
    }
}

/// Counts and capped key lists of a pass or of several.
#[derive(Default)]
pub(super) struct Tally {
    pub dbs: BTreeMap<i64, DbTally>,
    /// Mismatched keys to re-check.
    pub pending: HashMap<Key, Mismatch>,
    /// A few keys of those beyond the cap, for examples.
    pub overflow_examples: Vec<(Key, Class)>,
}

impl Tally {
    pub fn db(&mut self, db: i64) -> &mut DbTally {
        self.dbs.entry(db).or_default()
    }

    pub fn mismatch(&mut self, key: Key, m: Mismatch, cap: usize) {
        if self.pending.len() < cap || self.pending.contains_key(&key) {
            self.pending.insert(key, m);
        } else {
            self.db(key.db).unrechecked.add(m.class, 1);
            if self.overflow_examples.len() < OVERFLOW_EXAMPLES {
                self.overflow_examples.push((key, m.class));
            }
        }
    }

    pub fn merge(&mut self, other: Tally, cap: usize) {
        for (db, counts) in other.dbs {
            self.db(db).merge(counts);
        }
        for (key, m) in other.pending {
            self.mismatch(key, m, cap);
        }
        self.overflow_examples.extend(other.overflow_examples);
        self.overflow_examples.truncate(OVERFLOW_EXAMPLES);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::judge::Observed;
    use super::*;

    fn m(class: Class) -> Mismatch {
        let o = Observed::default();
        Mismatch::new(class, &o, &o, Instant::now())
    }

    fn key(db: i64, name: u8) -> Key {
        Key {
            db,
            name: vec![name],
        }
    }

    #[test]
    fn the_recheck_set_is_capped() {
        let mut t = Tally::default();
        for i in 0..5u8 {
            t.mismatch(key(0, i), m(Class::Value), 3);
        }
        t.mismatch(key(0, 0), m(Class::Ttl), 3);
        t.mismatch(key(3, 0), m(Class::Ttl), 3);
        assert_eq!(t.pending.len(), 3);
        assert_eq!(t.pending[&key(0, 0)].class, Class::Ttl);
        assert_eq!(t.dbs[&0].unrechecked.value, 2);
        assert_eq!(t.dbs[&3].unrechecked.ttl, 1);
        let mut sum = Tally::default();
        sum.merge(t, 2);
        assert_eq!(sum.pending.len(), 2);
        let over: u64 = sum.dbs.values().map(|d| d.unrechecked.total()).sum();
        assert_eq!(over, 4);
    }
}

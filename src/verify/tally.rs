//! What passes count: keys by type, expired and skipped keys, and the mismatched keys to
//! re-check, capped so that a target missing everything does not hold every key name.

use std::collections::{BTreeMap, HashMap};

use super::judge::{Class, ClassCounts};

/// Example keys kept of the mismatches beyond the cap.
const OVERFLOW_EXAMPLES: usize = 16;

/// Counts and capped key lists of a pass or of several.
#[derive(Default)]
pub(super) struct Tally {
    pub checked: u64,
    pub by_type: BTreeMap<&'static str, u64>,
    pub expired: u64,
    pub skipped: u64,
    /// Mismatched keys to re-check, with their latest class.
    pub pending: HashMap<Vec<u8>, Class>,
    /// Mismatches beyond the cap.
    pub unrechecked: ClassCounts,
    /// A few keys of those, for examples.
    pub overflow_examples: Vec<(Vec<u8>, Class)>,
}

impl Tally {
    pub fn mismatch(&mut self, key: Vec<u8>, class: Class, cap: usize) {
        if self.pending.len() < cap || self.pending.contains_key(&key) {
            self.pending.insert(key, class);
        } else {
            self.unrechecked.add(class, 1);
            if self.overflow_examples.len() < OVERFLOW_EXAMPLES {
                self.overflow_examples.push((key, class));
            }
        }
    }

    pub fn merge(&mut self, other: Tally, cap: usize) {
        self.checked += other.checked;
        for (t, n) in other.by_type {
            *self.by_type.entry(t).or_default() += n;
        }
        self.expired += other.expired;
        self.skipped += other.skipped;
        for (key, class) in other.pending {
            self.mismatch(key, class, cap);
        }
        self.unrechecked.add_all(&other.unrechecked);
        self.overflow_examples.extend(other.overflow_examples);
        self.overflow_examples.truncate(OVERFLOW_EXAMPLES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recheck_set_is_capped() {
        let mut t = Tally::default();
        for i in 0..5u8 {
            t.mismatch(vec![i], Class::Value, 3);
        }
        t.mismatch(vec![0], Class::Ttl, 3);
        assert_eq!(t.pending.len(), 3);
        assert_eq!(t.pending[&vec![0]], Class::Ttl);
        assert_eq!(t.unrechecked.value, 2);
        let mut sum = Tally::default();
        sum.merge(t, 2);
        assert_eq!((sum.pending.len(), sum.unrechecked.total()), (2, 3));
    }
}

//! The re-check rounds: the keys a full pass found different are looked at again, after a
//! replica target has caught up (or a pause), until they agree or the rounds run out. A
//! key that comes to agree was a write in flight (transient); one that never does is
//! persistent.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::judge::{self, Class, ClassCounts, Verdict};
use super::sides::{At, Sides};
use super::tally::{Key, Tally};
use super::{VerifyError, VerifyProgress, replication};

/// What the rounds found out.
pub(super) struct Rechecked {
    /// Rounds run in all, the full pass included.
    pub rounds: u32,
    /// Mismatches that went away, by database and the class they first had.
    pub transient: BTreeMap<i64, ClassCounts>,
    /// A few of those keys, for examples.
    pub transient_keys: Vec<(Key, Class)>,
}

/// Re-checks `tally.pending` until it is empty or `opts.rounds` are done; what still
/// differs stays in `tally.pending` with its latest class.
pub(super) async fn rounds(
    sides: &Sides,
    tally: &mut Tally,
    progress: &(dyn Fn(VerifyProgress) + Send + Sync),
) -> Result<Rechecked, VerifyError> {
    let opts = &sides.opts;
    let mut done = Rechecked {
        rounds: 1,
        transient: BTreeMap::new(),
        transient_keys: Vec::new(),
    };
    while done.rounds < opts.rounds && !tally.pending.is_empty() {
        done.rounds += 1;
        progress(VerifyProgress::Recheck {
            round: done.rounds,
            keys: tally.pending.len(),
        });
        replication::settle(sides, opts).await?;
        // By database and by the shards each key lives in on the two sides.
        let mut by_place: BTreeMap<(i64, [usize; 2]), Vec<Vec<u8>>> = BTreeMap::new();
        for key in tally.pending.keys() {
            let shard = [sides.src.shard_of(&key.name), sides.dst.shard_of(&key.name)];
            by_place
                .entry((key.db, shard))
                .or_default()
                .push(key.name.clone());
        }
        let mut still = HashMap::new();
        for ((db, shard), names) in by_place {
            for chunk in names.chunks(opts.batch) {
                let (src, dst) = sides.observe(At::new(db, shard), chunk).await?;
                let at = Instant::now();
                for ((name, s), d) in chunk.iter().zip(&src).zip(&dst) {
                    let key = Key {
                        db,
                        name: name.clone(),
                    };
                    let Some(mut m) = tally.pending.get(&key).cloned() else {
                        continue;
                    };
                    match judge::rejudge(&mut m, s, d, at, opts.ttl_tolerance) {
                        Verdict::Mismatch(_) => {
                            still.insert(key, m);
                        }
                        Verdict::Expired => tally.db(db).expired += 1,
                        Verdict::Equal | Verdict::Vanished => {
                            let class = m.first;
                            done.transient.entry(db).or_default().add(class, 1);
                            if done.transient_keys.len() < opts.examples {
                                done.transient_keys.push((key, class));
                            }
                        }
                    }
                }
            }
        }
        tally.pending = still;
    }
    Ok(done)
}

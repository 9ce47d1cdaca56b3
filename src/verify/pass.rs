//! The two full passes. Source → target: every source key's type, value and TTL compared
//! with the target's. Target → source, after it: the keys only the target has, asking the
//! source only about keys its pass did not see ([`Known`]). Both scan their side page by
//! page, shard by shard, and keep several batches in flight; a page is split by the shard
//! its keys live in on the other side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::resp::{Pipeline, RespError};

use super::digest::Kind;
use super::judge::{self, Class, Mismatch, Observed, Verdict};
use super::known::{Known, Seen};
use super::observe::ttl;
use super::sides::{At, Follow, Redirects, Sides};
use super::tally::{Key, Tally};
use super::{Side, VerifyError, VerifyProgress};

/// One SCAN reply.
#[derive(Default)]
struct Page {
    /// Where the next page starts; `0` after the last.
    cursor: Vec<u8>,
    /// The keys to check.
    keys: Vec<Vec<u8>>,
    /// Keys left out by `--skip-prefix`.
    skipped: u64,
}

/// What a batch of a pass found: its counts, and the source keys it saw.
#[derive(Default)]
struct Part {
    tally: Tally,
    seen: Seen,
}

impl Sides {
    /// Scans database `db` of `scanned` and checks its keys against the other side: the
    /// source pass compares everything and adds the keys it saw to `seen`; the target pass
    /// only looks for keys the source lacks among those `known` does not have.
    pub(super) async fn pass(
        self: Arc<Self>,
        (scanned, db): (Side, i64),
        (known, seen): (&Arc<Known>, &mut Seen),
        progress: &(dyn Fn(VerifyProgress) + Send + Sync),
    ) -> Result<Tally, VerifyError> {
        let opts = &self.opts;
        let mut tally = Tally::default();
        tally.db(db);
        let mut tasks: JoinSet<Result<Part, VerifyError>> = JoinSet::new();
        let pacer = self.pacers[scanned as usize].as_ref();
        let count = pacer
            .map_or(opts.batch, |p| p.batch(opts.batch))
            .to_string();
        let absorb = |done: Result<Result<Part, VerifyError>, tokio::task::JoinError>,
                      tally: &mut Tally,
                      seen: &mut Seen|
         -> Result<(), VerifyError> {
            let part = done.expect("a verify task does not panic")?;
            if scanned == Side::Source {
                progress(VerifyProgress::Checked(
                    part.tally.dbs.values().map(|d| d.checked).sum(),
                ));
            }
            tally.merge(part.tally, opts.recheck_cap);
            seen.merge(part.seen);
            Ok(())
        };
        let other = match scanned {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        };
        let reader = self.reader(other);
        for shard in 0..self.reader(scanned).nodes.len() {
            let mut at = At::new(db, [0; 2]);
            at.shard[scanned as usize] = shard;
            let mut page = Some(self.page((scanned, at), b"0".to_vec(), &count).await?);
            // Each page is asked for while the one before is handed out, so the scanned
            // side never waits for the batches to be spawned.
            while let Some(Page {
                cursor,
                keys,
                skipped,
            }) = page.take()
            {
                let next = async {
                    if cursor == b"0" {
                        Ok(None)
                    } else {
                        self.page((scanned, at), cursor, &count).await.map(Some)
                    }
                };
                let hand_out = async {
                    if scanned == Side::Source {
                        tally.db(db).skipped += skipped;
                    }
                    if let Some(pacer) = pacer.filter(|_| !keys.is_empty()) {
                        pacer.take(keys.len() as u64).await;
                    }
                    let mut by_shard: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
                    for key in keys {
                        by_shard.entry(reader.shard_of(&key)).or_default().push(key);
                    }
                    let mut at = at;
                    for (theirs, keys) in by_shard {
                        at.shard[other as usize] = theirs;
                        while tasks.len() >= opts.in_flight {
                            if let Some(done) = tasks.join_next().await {
                                absorb(done, &mut tally, seen)?;
                            }
                        }
                        let sides = self.clone();
                        let known = known.clone();
                        tasks.spawn(async move {
                            match scanned {
                                Side::Source => sides.compare(at, keys).await,
                                Side::Target => {
                                    let tally = sides.extras(at, keys, &known).await?;
                                    Ok(Part {
                                        tally,
                                        ..Part::default()
                                    })
                                }
                            }
                        });
                    }
                    Ok::<_, VerifyError>(())
                };
                let (next, handed_out) = tokio::join!(next, hand_out);
                handed_out?;
                page = next?;
            }
        }
        while let Some(done) = tasks.join_next().await {
            absorb(done, &mut tally, seen)?;
        }
        Ok(tally)
    }

    /// The page of `scanned`'s keys at `cursor`, without the skipped ones.
    async fn page(
        &self,
        (scanned, at): (Side, At),
        cursor: Vec<u8>,
        count: &str,
    ) -> Result<Page, VerifyError> {
        let mut p = Pipeline::new();
        p.cmd(&[b"SCAN", &cursor, b"COUNT", count.as_bytes()]);
        let mut page = Page::default();
        self.run(scanned, at, &p, |_, r| {
            let mut parts = r.ok()?.items().into_iter().flatten();
            let shape = || RespError::Server("SCAN's reply is not [cursor, keys]".into());
            let (Some(next), Some(keys)) = (parts.next(), parts.next()) else {
                return Err(shape());
            };
            page.cursor = next.bytes().ok_or_else(shape)?.to_vec();
            for key in keys.items().ok_or_else(shape)? {
                let key = key.bytes().ok_or_else(shape)?;
                if self.opts.skipped(key) {
                    page.skipped += 1;
                } else {
                    page.keys.push(key.to_vec());
                }
            }
            Ok(())
        })
        .await?;
        Ok(page)
    }

    /// Source keys: compare type, value and TTL with the target.
    async fn compare(&self, at: At, keys: Vec<Vec<u8>>) -> Result<Part, VerifyError> {
        let db = at.db;
        let mut part = Part {
            seen: Seen::with_capacity(keys.len() as u64),
            ..Part::default()
        };
        let tally = &mut part.tally;
        let (src, dst) = self.observe(at, &keys).await?;
        let at = Instant::now();
        for ((key, s), d) in keys.into_iter().zip(&src).zip(&dst) {
            if s.kind == Kind::None {
                // Gone from the source since SCAN listed it: expired or deleted. The target
                // pass finds it if the target keeps it.
                continue;
            }
            part.seen.add(&key);
            tally.db(db).checked(s.kind.name());
            match judge::judge(s, d, self.opts.ttl_tolerance) {
                Verdict::Equal | Verdict::Vanished => {}
                Verdict::Expired => tally.db(db).expired += 1,
                Verdict::Mismatch(class) => tally.mismatch(
                    Key { db, name: key },
                    Mismatch::new(class, s, d, at),
                    self.opts.recheck_cap,
                ),
            }
        }
        Ok(part)
    }

    /// Target keys: find the ones the source does not have among those its pass did not
    /// see (`known`, looked up here rather than while scanning, so that the target's next
    /// page is on its way meanwhile). One multi-key EXISTS answers
    /// for the whole batch when the source has them all (each listed key counts once), so
    /// keys are looked at one by one only in a batch that has an extra key. A cluster
    /// refuses keys of several slots in one command: there every key is asked alone.
    async fn extras(
        &self,
        at: At,
        mut keys: Vec<Vec<u8>>,
        known: &Known,
    ) -> Result<Tally, VerifyError> {
        known.keep_unknown(&mut keys);
        if keys.is_empty() {
            return Ok(Tally::default());
        }
        let mut follow = Follow::new(at);
        let mut tally = self.extras_once(at, &keys, &follow.redirects).await?;
        while let Some(groups) = follow.next(self)? {
            for (there, which) in groups {
                let again: Vec<Vec<u8>> = which.iter().map(|&i| keys[i].clone()).collect();
                let part = self.extras_once(there, &again, &follow.redirects).await?;
                tally.merge(part, self.opts.recheck_cap);
                follow.done(there, &which);
            }
        }
        Ok(tally)
    }

    /// One attempt at [`Sides::extras`]: the keys a cluster redirected are noted in
    /// `redirects`, not counted.
    async fn extras_once(
        &self,
        at: At,
        keys: &[Vec<u8>],
        redirects: &Redirects,
    ) -> Result<Tally, VerifyError> {
        let db = at.db;
        let mut tally = Tally::default();
        if !self.src.topology.cluster {
            let mut all = Pipeline::new();
            all.cmd_with(b"EXISTS", keys.iter().map(Vec::as_slice));
            let mut on_source = 0;
            self.run(Side::Source, at, &all, |_, r| {
                on_source = r.ok()?.int().unwrap_or(0);
                Ok(())
            })
            .await?;
            if on_source == keys.len() as i64 {
                return Ok(tally);
            }
        }
        let mut each = at.pipeline(Side::Source);
        for key in keys {
            each.cmd(&[b"EXISTS", key]);
        }
        let mut absent = Vec::new();
        self.run(
            Side::Source,
            at,
            &each,
            self.noting(
                redirects,
                Side::Source,
                at,
                |i| i,
                |i, r| {
                    if r.ok()?.int() == Some(0) {
                        absent.push(i);
                    }
                    Ok(())
                },
            ),
        )
        .await?;
        let mut pttl = at.pipeline(Side::Target);
        for &i in &absent {
            pttl.cmd(&[b"PTTL", &keys[i]]).cmd(&[b"TYPE", &keys[i]]);
        }
        // A key redirected here keeps (-2, none): it is counted in the next attempt.
        let mut target = vec![(-2, Kind::None); absent.len()];
        let key_of = |j: usize| absent[j / 2];
        self.run(
            Side::Target,
            at,
            &pttl,
            self.noting(redirects, Side::Target, at, key_of, |j, r| {
                let seen = &mut target[j / 2];
                match j % 2 {
                    0 => seen.0 = ttl(r.ok()?),
                    _ => seen.1 = Kind::parse(r.ok()?),
                }
                Ok(())
            }),
        )
        .await?;
        let at = Instant::now();
        for (i, (ttl, kind)) in absent.into_iter().zip(target) {
            if ttl == -2 || kind == Kind::None {
                continue;
            }
            tally.db(db).checked(kind.name());
            if judge::expiring(ttl, self.opts.ttl_tolerance) {
                tally.db(db).expired += 1;
            } else {
                let key = Key {
                    db,
                    name: keys[i].clone(),
                };
                let on_target = Observed {
                    kind,
                    pttl: ttl,
                    ..Observed::default()
                };
                let m = Mismatch::new(Class::ExtraOnTarget, &Observed::default(), &on_target, at);
                tally.mismatch(key, m, self.opts.recheck_cap);
            }
        }
        Ok(tally)
    }
}

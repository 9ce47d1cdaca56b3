//! Per-field hash TTLs (`HEXPIRE`, Redis 7.4 and Valkey 9 on): a field that should expire
//! and does not, or the reverse, is data a migration got wrong even when every field's
//! value is equal.
//!
//! Only where both sides have them: a side without `HPTTL` cannot hold field TTLs, and the
//! result says once that they were not compared. The source's field names are read a
//! chunk at a time (`HSCAN … NOVALUES`), and each chunk's TTLs asked on both sides at once
//! (`HPTTL key FIELDS n …`), so a hash of any size is never held whole.

use std::time::Duration;

use crate::resp::{Frame, Pipeline};

use super::sides::{At, Redirects, Sides};
use super::{Side, VerifyError, keyname};

/// Hashes whose next chunk is asked for in one pipeline.
const AT_ONCE: usize = 64;

impl Sides {
    /// For the hashes `hashes` (indices into `keys`, equal fields and values on both
    /// sides): the first field of each whose TTL differs, source first.
    pub(super) async fn field_ttls(
        &self,
        at: At,
        keys: &[Vec<u8>],
        hashes: &[usize],
        redirects: &Redirects,
    ) -> Result<Vec<(usize, String)>, VerifyError> {
        let tolerance = self.opts.ttl_tolerance;
        let count = self.opts.chunk.to_string();
        let mut found = Vec::new();
        let mut open: Vec<(usize, Vec<u8>)> = hashes.iter().map(|&i| (i, b"0".to_vec())).collect();
        while !open.is_empty() {
            let later = open.split_off(open.len().min(AT_ONCE));
            let mut scan = at.pipeline(Side::Source);
            for (i, cursor) in &open {
                scan.cmd(&[
                    b"HSCAN",
                    &keys[*i],
                    cursor,
                    b"COUNT",
                    count.as_bytes(),
                    b"NOVALUES",
                ]);
            }
            // Each hash's next cursor and the field names of this chunk.
            let mut chunks: Vec<(usize, Vec<u8>, Vec<Vec<u8>>)> = Vec::with_capacity(open.len());
            let key_of = |j: usize| open[j].0;
            self.run(
                Side::Source,
                at,
                &scan,
                self.noting(redirects, Side::Source, at, key_of, |j, r| {
                    if let Some((cursor, fields)) = page(r) {
                        chunks.push((open[j].0, cursor, fields));
                    }
                    Ok(())
                }),
            )
            .await?;
            let build = |ttls: &mut Pipeline| {
                for (i, _, fields) in &chunks {
                    ttls.command(|c| {
                        c.arg("HPTTL")
                            .arg(&keys[*i])
                            .arg("FIELDS")
                            .int(fields.len() as i64);
                        for field in fields {
                            c.arg(field);
                        }
                    });
                }
            };
            let [src, dst] = self
                .both(
                    at,
                    redirects,
                    build,
                    |j| chunks[j].0,
                    |_, r| {
                        r.items()
                            .map(|items| items.map(|t| t.int().unwrap_or(-2)).collect::<Vec<_>>())
                    },
                )
                .await?;
            open = later;
            for ((i, cursor, fields), (a, b)) in chunks.into_iter().zip(src.into_iter().zip(dst)) {
                let (Some(a), Some(b)) = (a, b) else {
                    continue;
                };
                match differ(&fields, &a, &b, tolerance) {
                    Some(d) => found.push((i, d)),
                    None if cursor != b"0" => open.push((i, cursor)),
                    None => {}
                }
            }
        }
        Ok(found)
    }
}

/// An `HSCAN … NOVALUES` reply: the next cursor and the field names.
fn page(reply: Frame<'_>) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut parts = reply.items()?;
    let cursor = parts.next()?.bytes()?.to_vec();
    let fields = parts
        .next()?
        .items()?
        .map(|f| f.bytes().map(<[u8]>::to_vec))
        .collect::<Option<_>>()?;
    Some((cursor, fields))
}

/// The first field whose TTL differs: one side has one and the other not, or both have
/// one more than `tolerance` apart. A field gone from one side (-2) changed under us: the
/// value re-check sees it.
fn differ(fields: &[Vec<u8>], a: &[i64], b: &[i64], tolerance: Duration) -> Option<String> {
    let tol = tolerance.as_millis() as i64;
    fields
        .iter()
        .zip(a.iter().zip(b))
        .find_map(|(field, (&x, &y))| {
            let same = match (x, y) {
                (-2, _) | (_, -2) => true,
                (x, y) if x >= 0 && y >= 0 => (x - y).abs() <= tol,
                (x, y) => x == y,
            };
            (!same).then(|| {
                format!(
                    "field `{}` TTL {} vs {}",
                    keyname::escape(field),
                    shown(x),
                    shown(y)
                )
            })
        })
}

/// A field TTL as a difference shows it: `none`, or whole seconds.
fn shown(ms: i64) -> String {
    if ms < 0 {
        "none".into()
    } else {
        format!("{}s", (ms + 500) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ttls_differ_beyond_the_tolerance_or_when_only_one_side_has_one() {
        let tol = Duration::from_secs(2);
        let fields = [b"a".to_vec(), b"b".to_vec()];
        assert_eq!(differ(&fields, &[-1, 60_000], &[-1, 61_500], tol), None);
        assert_eq!(
            differ(&fields, &[-1, 60_000], &[-1, 63_000], tol).as_deref(),
            Some("field `b` TTL 60s vs 63s")
        );
        assert_eq!(
            differ(&fields, &[3_599_400, -1], &[-1, -1], tol).as_deref(),
            Some("field `a` TTL 3599s vs none")
        );
        assert_eq!(
            differ(&fields, &[-1, -1], &[-1, 7_200_000], tol).as_deref(),
            Some("field `b` TTL none vs 7200s")
        );
        assert_eq!(differ(&fields, &[-2, -1], &[5_000, -1], tol), None);
    }
}

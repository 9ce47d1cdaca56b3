//! Reading what both sides say about a batch of keys (type, PTTL, value digest) in as few
//! round trips and commands as the replies allow: most keys cost a PTTL and a read on
//! each side, in one round trip.

use crate::resp::{Conn, Frame};

use super::digest::{self, Kind, Next};
use super::guess;
use super::judge::{Beyond, Class, Observed};
use super::sides::{At, Follow, Redirects, Sides};
use super::streams;
use super::{Side, VerifyError};

/// Keys whose next chunk is asked for in one pipeline.
const CONTINUED: usize = 64;

/// What a reply of a value-reading pipeline is about.
#[derive(Clone, Copy)]
enum Asked {
    Ttl,
    Value,
    /// A stream's first entries and its state, in one `XINFO STREAM … FULL`.
    Stream,
    Type,
}

impl Sides {
    /// Both sides' view of `keys`: each key's PTTL and value, read on both sides at once as
    /// the type its name suggests, or as the source's TYPE says when there is no guess or
    /// the guess was wrong ([`Sides::observe_once`]). The target's own TYPE is asked only
    /// where its read says the type differs (WRONGTYPE), or where the source has no value
    /// to read.
    ///
    /// In a cluster, a key whose slot has moved (MOVED) or is being migrated (ASK) is
    /// asked again where the redirection says ([`Follow`]).
    pub(super) async fn observe(
        &self,
        at: At,
        keys: &[Vec<u8>],
    ) -> Result<(Vec<Observed>, Vec<Observed>), VerifyError> {
        let mut follow = Follow::new(at);
        let (mut src, mut dst) = self.observe_once(at, keys, &follow.redirects).await?;
        while let Some(groups) = follow.next(self)? {
            for (there, which) in groups {
                let again: Vec<Vec<u8>> = which.iter().map(|&i| keys[i].clone()).collect();
                let (s, d) = self.observe_once(there, &again, &follow.redirects).await?;
                for ((&i, s), d) in which.iter().zip(s).zip(d) {
                    (src[i], dst[i]) = (s, d);
                }
                follow.done(there, &which);
            }
        }
        Ok((src, dst))
    }

    /// One attempt at [`Sides::observe`]: the keys a cluster redirected are noted in
    /// `redirects`, their observations left incomplete.
    ///
    /// Keys whose type the shape of their name tells ([`Guesses`]) are read as that type on
    /// both sides at once, each with its PTTL: two commands a key on each side. The others,
    /// and those the source holds as another type (`WRONGTYPE`), are asked `TYPE` on the
    /// source first and then read as it says.
    ///
    /// [`Guesses`]: super::guess::Guesses
    async fn observe_once(
        &self,
        at: At,
        keys: &[Vec<u8>],
        redirects: &Redirects,
    ) -> Result<(Vec<Observed>, Vec<Observed>), VerifyError> {
        let shapes = guess::shapes(keys);
        let guesses = self.guesses.guess(&shapes);
        let mut src = vec![Observed::default(); keys.len()];
        let mut dst = vec![Observed::default(); keys.len()];
        let (guessed, mut typed): (Vec<usize>, Vec<usize>) =
            (0..keys.len()).partition(|&i| guesses[i] != Kind::None);
        // Target keys whose read failed as another type would, with the type read as.
        let mut wrong_type: Vec<usize> = Vec::new();
        if !guessed.is_empty() {
            let read = |side, observed| {
                let (guessed, guesses) = (&guessed, &guesses);
                async move {
                    let mut conn = self.lease(side, at).await?;
                    self.read_values(
                        (side, at),
                        &mut conn,
                        (keys, guessed),
                        (guesses, true),
                        observed,
                        redirects,
                    )
                    .await
                }
            };
            let (wrong_src, wrong_dst) = tokio::try_join!(
                read(Side::Source, &mut src[..]),
                read(Side::Target, &mut dst[..])
            )?;
            let mut retry = vec![false; keys.len()];
            for &i in &wrong_src {
                (src[i], dst[i]) = (Observed::default(), Observed::default());
                retry[i] = true;
            }
            wrong_type.extend(wrong_dst.into_iter().filter(|&i| !retry[i]));
            typed.extend(wrong_src);
        }
        if !typed.is_empty() {
            let mut src_conn = self.lease(Side::Source, at).await?;
            let mut p = at.pipeline(Side::Source);
            for &i in &typed {
                p.cmd(&[b"TYPE", &keys[i]]).cmd(&[b"PTTL", &keys[i]]);
            }
            src_conn
                .run(
                    &p,
                    self.noting(
                        redirects,
                        Side::Source,
                        at,
                        |j| typed[j / 2],
                        |j, r| {
                            let o = &mut src[typed[j / 2]];
                            match j % 2 {
                                0 => o.kind = Kind::parse(r.ok()?),
                                _ => o.pttl = ttl(r.ok()?),
                            }
                            Ok(())
                        },
                    ),
                )
                .await
                .map_err(|e| self.err(Side::Source, e))?;
            let kinds: Vec<Kind> = src.iter().map(|o| o.kind).collect();
            let ((), wrong_dst) = tokio::try_join!(
                async {
                    self.read_values(
                        (Side::Source, at),
                        &mut src_conn,
                        (keys, &typed),
                        (&kinds, false),
                        &mut src,
                        redirects,
                    )
                    .await
                    .map(drop)
                },
                async {
                    let mut conn = self.lease(Side::Target, at).await?;
                    self.read_values(
                        (Side::Target, at),
                        &mut conn,
                        (keys, &typed),
                        (&kinds, true),
                        &mut dst,
                        redirects,
                    )
                    .await
                }
            )?;
            wrong_type.extend(wrong_dst);
        }
        self.guesses
            .learn(shapes.into_iter().zip(src.iter().map(|o| o.kind)));
        if !wrong_type.is_empty() {
            let mut p = at.pipeline(Side::Target);
            for &i in &wrong_type {
                p.cmd(&[b"TYPE", &keys[i]]);
            }
            self.run(
                Side::Target,
                at,
                &p,
                self.noting(
                    redirects,
                    Side::Target,
                    at,
                    |j| wrong_type[j],
                    |j, r| {
                        let i = wrong_type[j];
                        let o = &mut dst[i];
                        o.kind = Kind::parse(r.ok()?);
                        // The same type as the source's after all: it changed while being read.
                        o.unreadable = o.kind == src[i].kind;
                        Ok(())
                    },
                ),
            )
            .await?;
        }
        let streams: Vec<usize> = (0..keys.len())
            .filter(|&i| {
                let (s, d) = (&src[i], &dst[i]);
                s.kind == Kind::Stream
                    && s.same_value(d)
                    && (s.stream_state.is_none() || s.stream_state != d.stream_state)
            })
            .collect();
        if !streams.is_empty() {
            for (i, detail) in self.stream_states(at, keys, &streams, redirects).await? {
                dst[i].beyond = Some(Beyond {
                    class: Class::Stream,
                    detail,
                });
            }
        }
        if self.src.field_ttls && self.dst.field_ttls {
            let hashes: Vec<usize> = (0..keys.len())
                .filter(|&i| src[i].kind == Kind::Hash && src[i].same_value(&dst[i]))
                .collect();
            if !hashes.is_empty() {
                for (i, detail) in self.field_ttls(at, keys, &hashes, redirects).await? {
                    dst[i].beyond = Some(Beyond {
                        class: Class::FieldTtl,
                        detail,
                    });
                }
            }
        }
        Ok((src, dst))
    }

    /// Reads and digests the values of the keys `which` (indices into `keys`) as `kinds`
    /// say, big keys chunk by chunk. When `probing` (the target, or a source whose types
    /// are guessed), each key's PTTL is asked first, in the same pipeline, and its type
    /// taken from the answers: none when PTTL says the key is gone, the kind read as when
    /// the read succeeds, TYPE's when there is no value to read. Otherwise the types are
    /// known and only the values are read. Returns the keys whose read failed as another
    /// type would (their kind is still to be asked).
    async fn read_values(
        &self,
        (side, at): (Side, At),
        conn: &mut Conn,
        (keys, which): (&[Vec<u8>], &[usize]),
        (kinds, probing): (&[Kind], bool),
        observed: &mut [Observed],
        redirects: &Redirects,
    ) -> Result<Vec<usize>, VerifyError> {
        let chunk = self.opts.chunk;
        let full = self.reader(side).stream_full;
        let mut count = itoa::Buffer::new();
        let count = count.format(chunk).as_bytes();
        let mut p = at.pipeline(side);
        // Each key is named twice (PTTL and the read), with about 48 bytes of the rest.
        p.reserve(which.iter().map(|&i| 2 * keys[i].len() + 48).sum());
        let mut asked: Vec<(usize, Asked)> = Vec::with_capacity(which.len() * 2);
        for &i in which {
            let key = &keys[i];
            if probing {
                p.cmd(&[b"PTTL", key]);
                asked.push((i, Asked::Ttl));
            }
            if full && kinds[i] == Kind::Stream {
                p.cmd(&[b"XINFO", b"STREAM", key, b"FULL", b"COUNT", count]);
                asked.push((i, Asked::Stream));
            } else if kinds[i].read(&mut p, key, &Next::Start, chunk) {
                asked.push((i, Asked::Value));
            } else if probing {
                p.cmd(&[b"TYPE", key]);
                asked.push((i, Asked::Type));
            }
        }
        if p.is_empty() {
            return Ok(Vec::new());
        }
        let mut unfinished = Vec::new();
        let mut wrong_type = Vec::new();
        let key_of = |j: usize| asked[j].0;
        conn.run(
            &p,
            self.noting(redirects, side, at, key_of, |j, r| {
                let (i, what) = asked[j];
                let o = &mut observed[i];
                match what {
                    Asked::Ttl => o.pttl = ttl(r.ok()?),
                    Asked::Type => {
                        o.kind = if o.pttl == -2 {
                            Kind::None
                        } else {
                            Kind::parse(r.ok()?)
                        }
                    }
                    Asked::Value | Asked::Stream => {
                        if probing {
                            o.kind = if o.pttl == -2 { Kind::None } else { kinds[i] };
                        }
                        if o.kind == Kind::None {
                            return Ok(());
                        }
                        let values = match (r.error(), what) {
                            (Some(e), _) if probing && e.starts_with(b"WRONGTYPE") => {
                                wrong_type.push(i);
                                return Ok(());
                            }
                            (Some(_), _) => None,
                            (None, Asked::Stream) => streams::full(r).map(|(entries, state)| {
                                o.stream_state = state;
                                entries
                            }),
                            (None, _) => Some(r),
                        };
                        match values.map(|v| o.digest.absorb(o.kind, v, chunk, &Next::Start)) {
                            Some(Ok(Next::Done)) => {}
                            Some(Ok(next)) => unfinished.push((i, next)),
                            Some(Err(_)) | None => o.unreadable = true,
                        }
                    }
                }
                Ok(())
            }),
        )
        .await
        .map_err(|e| self.err(side, e))?;
        // The rest of big values, a few keys' next chunks per pipeline, so neither side
        // buffers more than that many chunks of replies.
        while !unfinished.is_empty() {
            let mut p = at.pipeline(side);
            let mut asked = Vec::new();
            let later = unfinished.split_off(unfinished.len().min(CONTINUED));
            for (i, next) in unfinished {
                if observed[i].kind.read(&mut p, &keys[i], &next, chunk) {
                    asked.push((i, next));
                }
            }
            unfinished = later;
            if asked.is_empty() {
                continue;
            }
            let key_of = |j: usize| asked[j].0;
            conn.run(
                &p,
                self.noting(redirects, side, at, key_of, |j, r| {
                    let (i, from) = &asked[j];
                    let o = &mut observed[*i];
                    // An error here is WRONGTYPE or the like: the key changed while it was read.
                    match r.error().map_or_else(
                        || o.digest.absorb(o.kind, r, chunk, from),
                        |_| Err(digest::Unreadable),
                    ) {
                        Ok(Next::Done) => {}
                        Ok(more) => unfinished.push((*i, more)),
                        Err(_) => o.unreadable = true,
                    }
                    Ok(())
                }),
            )
            .await
            .map_err(|e| self.err(side, e))?;
        }
        Ok(wrong_type)
    }
}

/// A PTTL reply: -1 no TTL, -2 no key.
pub(super) fn ttl(reply: Frame<'_>) -> i64 {
    reply.int().unwrap_or(-2)
}

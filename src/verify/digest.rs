//! Canonical values, reduced to digests as replies stream in.
//!
//! Redis 7.0 and Valkey 9 encode and dump equal values differently (RDB 10/11 vs 80,
//! listpack vs hashtable, different hash orders), so values are compared by their logical
//! content: string bytes, a list or stream in order, a hash, set or zset as an unordered
//! collection (zset scores as numbers). A digest folds the elements in one at a time, so a
//! big key is read in chunks (GETRANGE, HSCAN, SSCAN, ZSCAN, LRANGE, XRANGE) and never
//! held whole.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::resp::{Frame, Pipeline, num};

/// Bytes of a string read at a time: a value of any size costs at most this much per
/// read in flight.
pub const STRING_CHUNK: usize = 64 * 1024;

/// A key's type, as `TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    None,
    String,
    Hash,
    List,
    Set,
    Zset,
    Stream,
    /// A module type (JSON, Bloom…), compared by its name only.
    Other(u64),
}

impl Kind {
    pub fn parse(reply: Frame<'_>) -> Kind {
        match reply.bytes().unwrap_or(b"none") {
            b"none" => Kind::None,
            b"string" => Kind::String,
            b"hash" => Kind::Hash,
            b"list" => Kind::List,
            b"set" => Kind::Set,
            b"zset" => Kind::Zset,
            b"stream" => Kind::Stream,
            other => Kind::Other(hash_bytes(0, other)),
        }
    }

    /// The name used in results (`other` for module types).
    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::Zset => "zset",
            Kind::Stream => "stream",
            Kind::Other(_) => "other",
        }
    }

    /// Adds to `p` the read of `key` that continues at `next`; false when there is none.
    pub fn read(self, p: &mut Pipeline, key: &[u8], next: &Next, chunk: usize) -> bool {
        let mut a = itoa::Buffer::new();
        let mut b = itoa::Buffer::new();
        let count = chunk as i64;
        match (self, next) {
            (Kind::String, Next::Start | Next::Offset(_)) => {
                let start = match next {
                    Next::Offset(o) => *o,
                    _ => 0,
                };
                p.cmd(&[
                    b"GETRANGE",
                    key,
                    num(&mut a, start),
                    num(&mut b, start + STRING_CHUNK as i64 - 1),
                ])
            }
            (Kind::Hash | Kind::Set | Kind::Zset, Next::Start | Next::Cursor(_)) => {
                let name: &[u8] = match self {
                    Kind::Hash => b"HSCAN",
                    Kind::Set => b"SSCAN",
                    _ => b"ZSCAN",
                };
                let cursor: &[u8] = match next {
                    Next::Cursor(c) => c,
                    _ => b"0",
                };
                p.cmd(&[name, key, cursor, b"COUNT", num(&mut a, count)])
            }
            (Kind::List, Next::Start | Next::Offset(_)) => {
                let start = match next {
                    Next::Offset(o) => *o,
                    _ => 0,
                };
                p.cmd(&[
                    b"LRANGE",
                    key,
                    num(&mut a, start),
                    num(&mut b, start + count - 1),
                ])
            }
            (Kind::Stream, Next::Start | Next::After(_)) => {
                let mut exclusive = Vec::new();
                let from: &[u8] = match next {
                    Next::After(id) => {
                        exclusive.push(b'(');
                        exclusive.extend_from_slice(id);
                        &exclusive
                    }
                    _ => b"-",
                };
                p.cmd(&[b"XRANGE", key, from, b"+", b"COUNT", num(&mut a, count)])
            }
            _ => return false,
        };
        true
    }
}

/// Where the reading of a big key continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Start,
    /// The whole value has been folded in.
    Done,
    /// A SCAN-family cursor.
    Cursor(Vec<u8>),
    /// The next LRANGE start, or GETRANGE start of a string.
    Offset(i64),
    /// The last stream entry id read.
    After(Vec<u8>),
}

/// The reply did not have the shape the read promises: the key changed type or vanished
/// between `TYPE` and the read.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// A value's content, folded: equal values give equal digests whatever their encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Elements (or bytes, for a string).
    pub len: u64,
    sum: u64,
    xor: u64,
}

impl Digest {
    /// Folds one reply of the read `kind.read(..)` made at `at` and says where to
    /// continue.
    pub fn absorb(
        &mut self,
        kind: Kind,
        reply: Frame<'_>,
        chunk: usize,
        at: &Next,
    ) -> Result<Next, Unreadable> {
        let offset = match at {
            Next::Offset(o) => *o,
            _ => 0,
        };
        match kind {
            Kind::String => {
                let b = reply.bytes().ok_or(Unreadable)?;
                // The length counts bytes; chunks fold in order.
                self.sum = mix(self.sum, hash_bytes(self.len, b));
                self.len += b.len() as u64;
                Ok(if b.len() == STRING_CHUNK {
                    Next::Offset(offset + STRING_CHUNK as i64)
                } else {
                    Next::Done
                })
            }
            Kind::Hash | Kind::Set | Kind::Zset => {
                let mut parts = reply.items().ok_or(Unreadable)?;
                let (Some(cursor), Some(items), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(Unreadable);
                };
                let cursor = bytes(cursor)?;
                let mut items = items.items().ok_or(Unreadable)?;
                if kind == Kind::Set {
                    for member in items {
                        self.unordered(hash_bytes(0, bytes(member)?));
                    }
                } else {
                    if items.len() % 2 != 0 {
                        return Err(Unreadable);
                    }
                    while let (Some(a), Some(b)) = (items.next(), items.next()) {
                        let first = hash_bytes(0, bytes(a)?);
                        let second = if kind == Kind::Zset {
                            score(bytes(b)?)?.to_bits()
                        } else {
                            hash_bytes(0, bytes(b)?)
                        };
                        self.unordered(mix(first, second));
                    }
                }
                Ok(if cursor == b"0" {
                    Next::Done
                } else {
                    Next::Cursor(cursor.to_vec())
                })
            }
            Kind::List => {
                let items = reply.items().ok_or(Unreadable)?;
                let n = items.len();
                for item in items {
                    self.ordered(hash_bytes(0, bytes(item)?));
                }
                Ok(if n == chunk {
                    Next::Offset(offset + chunk as i64)
                } else {
                    Next::Done
                })
            }
            Kind::Stream => {
                let entries = reply.items().ok_or(Unreadable)?;
                let n = entries.len();
                let mut last: &[u8] = b"";
                for entry in entries {
                    let mut parts = entry.items().ok_or(Unreadable)?;
                    let (Some(id), Some(fields), None) = (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(Unreadable);
                    };
                    last = bytes(id)?;
                    let mut h = hash_bytes(0, last);
                    for field in fields.items().ok_or(Unreadable)? {
                        h = hash_bytes(h, bytes(field)?);
                    }
                    self.ordered(h);
                }
                Ok(if n == chunk {
                    Next::After(last.to_vec())
                } else {
                    Next::Done
                })
            }
            Kind::None | Kind::Other(_) => Ok(Next::Done),
        }
    }

    fn unordered(&mut self, h: u64) {
        self.len += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h.rotate_left(23).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn ordered(&mut self, h: u64) {
        self.len += 1;
        self.sum = mix(self.sum, h);
        self.xor = self.xor.wrapping_add(h);
    }
}

fn bytes(v: Frame<'_>) -> Result<&[u8], Unreadable> {
    v.bytes().ok_or(Unreadable)
}

/// A zset score as a number: servers may print the same double differently.
fn score(text: &[u8]) -> Result<f64, Unreadable> {
    let s = std::str::from_utf8(text).map_err(|_| Unreadable)?;
    let v: f64 = s.parse().map_err(|_| Unreadable)?;
    // -0 and 0 are the same score.
    Ok(if v == 0.0 { 0.0 } else { v })
}

/// XXH3: values are hashed element by element, so the hash is a good part of the check's
/// own work; SipHash's resistance to chosen keys buys nothing here.
fn hash_bytes(seed: u64, b: &[u8]) -> u64 {
    xxh3_64_with_seed(b, seed)
}

fn mix(a: u64, b: u64) -> u64 {
    let mut pair = [0u8; 16];
    pair[..8].copy_from_slice(&a.to_le_bytes());
    pair[8..].copy_from_slice(&b.to_le_bytes());
    xxh3_64_with_seed(&pair, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resp::decoded;

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    fn array(items: &[&str]) -> String {
        let body: String = items.iter().map(|s| bulk(s)).collect();
        format!("*{}\r\n{body}", items.len())
    }

    fn scan_reply(cursor: &str, items: &[&str]) -> String {
        format!("*2\r\n{}{}", bulk(cursor), array(items))
    }

    fn absorb(
        d: &mut Digest,
        kind: Kind,
        reply: &str,
        chunk: usize,
        offset: i64,
    ) -> Result<Next, Unreadable> {
        decoded(reply.as_bytes(), |f| {
            d.absorb(kind, f, chunk, &Next::Offset(offset))
        })
    }

    fn digest(kind: Kind, replies: &[String]) -> Digest {
        let mut d = Digest::default();
        for r in replies {
            absorb(&mut d, kind, r, 1000, 0).unwrap();
        }
        d
    }

    #[test]
    fn sets_and_hashes_ignore_order_and_chunking() {
        let one = digest(Kind::Set, &[scan_reply("0", &["a", "b", "c"])]);
        let two = digest(
            Kind::Set,
            &[scan_reply("7", &["c", "a"]), scan_reply("0", &["b"])],
        );
        assert_eq!(one, two);
        assert_ne!(one, digest(Kind::Set, &[scan_reply("0", &["a", "b", "d"])]));
        let h1 = digest(Kind::Hash, &[scan_reply("0", &["f", "1", "g", "2"])]);
        let h2 = digest(Kind::Hash, &[scan_reply("0", &["g", "2", "f", "1"])]);
        let swapped = digest(Kind::Hash, &[scan_reply("0", &["f", "2", "g", "1"])]);
        assert_eq!(h1, h2);
        assert_ne!(h1, swapped);
    }

    #[test]
    fn zset_scores_compare_as_numbers() {
        let a = digest(Kind::Zset, &[scan_reply("0", &["m", "1.5", "n", "0"])]);
        let b = digest(Kind::Zset, &[scan_reply("0", &["n", "-0", "m", "1.50"])]);
        let c = digest(Kind::Zset, &[scan_reply("0", &["m", "1.6", "n", "0"])]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn lists_keep_order_and_say_where_to_continue() {
        let mut d = Digest::default();
        assert_eq!(
            absorb(&mut d, Kind::List, &array(&["a", "b"]), 2, 0),
            Ok(Next::Offset(2))
        );
        assert_eq!(
            absorb(&mut d, Kind::List, &array(&["c"]), 2, 2),
            Ok(Next::Done)
        );
        let whole = digest(Kind::List, &[array(&["a", "b", "c"])]);
        let reversed = digest(Kind::List, &[array(&["c", "b", "a"])]);
        assert_eq!(d, whole);
        assert_ne!(whole, reversed);
    }

    #[test]
    fn strings_fold_range_by_range() {
        let whole = "x".repeat(STRING_CHUNK);
        let mut d = Digest::default();
        assert_eq!(
            absorb(&mut d, Kind::String, &bulk(&whole), 10, 0),
            Ok(Next::Offset(STRING_CHUNK as i64))
        );
        assert_eq!(
            absorb(&mut d, Kind::String, &bulk("yz"), 10, STRING_CHUNK as i64),
            Ok(Next::Done)
        );
        assert_eq!(d.len, STRING_CHUNK as u64 + 2);
        let mut other = Digest::default();
        absorb(&mut other, Kind::String, &bulk(&whole), 10, 0).unwrap();
        absorb(
            &mut other,
            Kind::String,
            &bulk("zy"),
            10,
            STRING_CHUNK as i64,
        )
        .unwrap();
        assert_ne!(d, other);
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_unreadable() {
        let mut d = Digest::default();
        assert_eq!(
            absorb(&mut d, Kind::String, "$-1\r\n", 10, 0),
            Err(Unreadable)
        );
        assert_eq!(
            absorb(&mut d, Kind::Hash, &bulk("x"), 10, 0),
            Err(Unreadable)
        );
        assert_eq!(decoded(b"+zset\r\n", Kind::parse), Kind::Zset);
        assert!(matches!(
            decoded(b"+ReJSON-RL\r\n", Kind::parse),
            Kind::Other(_)
        ));
    }
}

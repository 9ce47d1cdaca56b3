//! Canonical values, reduced to digests as replies stream in.
//!
//! Redis 7.0 and Valkey 9 encode and dump equal values differently (RDB 10/11 vs 80,
//! listpack vs hashtable, different hash orders), so values are compared by their logical
//! content: string bytes, a list or stream in order, a hash, set or zset as an unordered
//! collection (zset scores as numbers). A digest folds the elements in one at a time, so a
//! big key is read in chunks (HSCAN, SSCAN, ZSCAN, LRANGE, XRANGE) and never held whole.

use std::hash::{DefaultHasher, Hasher};

use redis::Value;

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
    pub fn parse(reply: &Value) -> Kind {
        let name: &[u8] = match reply {
            Value::SimpleString(s) => s.as_bytes(),
            Value::BulkString(b) => b,
            Value::Okay => b"OK",
            _ => b"none",
        };
        match name {
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

    /// The first read of a key of this kind; `None` when the value is not compared.
    pub fn first_read(self, key: &[u8], chunk: usize) -> Option<redis::Cmd> {
        self.read(key, &Next::Start, chunk)
    }

    /// The read that continues at `next`.
    pub fn read(self, key: &[u8], next: &Next, chunk: usize) -> Option<redis::Cmd> {
        let mut cmd;
        match (self, next) {
            (Kind::String, Next::Start) => {
                cmd = redis::cmd("GET");
                cmd.arg(key);
            }
            (Kind::Hash | Kind::Set | Kind::Zset, Next::Start | Next::Cursor(_)) => {
                let name = match self {
                    Kind::Hash => "HSCAN",
                    Kind::Set => "SSCAN",
                    _ => "ZSCAN",
                };
                cmd = redis::cmd(name);
                cmd.arg(key);
                match next {
                    Next::Cursor(c) => cmd.arg(c),
                    _ => cmd.arg(0),
                };
                cmd.arg("COUNT").arg(chunk);
            }
            (Kind::List, Next::Start | Next::Offset(_)) => {
                let start = match next {
                    Next::Offset(o) => *o,
                    _ => 0,
                };
                cmd = redis::cmd("LRANGE");
                cmd.arg(key).arg(start).arg(start + chunk as i64 - 1);
            }
            (Kind::Stream, Next::Start | Next::After(_)) => {
                cmd = redis::cmd("XRANGE");
                cmd.arg(key);
                match next {
                    Next::After(id) => {
                        let mut exclusive = Vec::with_capacity(id.len() + 1);
                        exclusive.push(b'(');
                        exclusive.extend_from_slice(id);
                        cmd.arg(exclusive)
                    }
                    _ => cmd.arg("-"),
                };
                cmd.arg("+").arg("COUNT").arg(chunk);
            }
            _ => return None,
        }
        Some(cmd)
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
    /// The next LRANGE start.
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
    /// Folds one reply of a read `kind.read(..)` made and says where to continue.
    /// `offset` is the LRANGE start the reply came from.
    pub fn absorb(
        &mut self,
        kind: Kind,
        reply: &Value,
        chunk: usize,
        offset: i64,
    ) -> Result<Next, Unreadable> {
        match kind {
            Kind::String => match reply {
                Value::BulkString(b) => {
                    self.len = b.len() as u64;
                    self.sum = hash_bytes(0, b);
                    Ok(Next::Done)
                }
                _ => Err(Unreadable),
            },
            Kind::Hash | Kind::Set | Kind::Zset => {
                let Value::Array(parts) = reply else {
                    return Err(Unreadable);
                };
                let [cursor, Value::Array(items)] = parts.as_slice() else {
                    return Err(Unreadable);
                };
                let cursor = bytes(cursor)?;
                if kind == Kind::Set {
                    for member in items {
                        self.unordered(hash_bytes(0, bytes(member)?));
                    }
                } else {
                    if items.len() % 2 != 0 {
                        return Err(Unreadable);
                    }
                    for pair in items.chunks_exact(2) {
                        let first = hash_bytes(0, bytes(&pair[0])?);
                        let second = if kind == Kind::Zset {
                            score(bytes(&pair[1])?)?.to_bits()
                        } else {
                            hash_bytes(0, bytes(&pair[1])?)
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
                let Value::Array(items) = reply else {
                    return Err(Unreadable);
                };
                for item in items {
                    self.ordered(hash_bytes(0, bytes(item)?));
                }
                Ok(if items.len() == chunk {
                    Next::Offset(offset + chunk as i64)
                } else {
                    Next::Done
                })
            }
            Kind::Stream => {
                let Value::Array(entries) = reply else {
                    return Err(Unreadable);
                };
                let mut last: &[u8] = b"";
                for entry in entries {
                    let Value::Array(parts) = entry else {
                        return Err(Unreadable);
                    };
                    let [id, Value::Array(fields)] = parts.as_slice() else {
                        return Err(Unreadable);
                    };
                    last = bytes(id)?;
                    let mut h = hash_bytes(0, last);
                    for field in fields {
                        h = hash_bytes(h, bytes(field)?);
                    }
                    self.ordered(h);
                }
                Ok(if entries.len() == chunk {
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

fn bytes(v: &Value) -> Result<&[u8], Unreadable> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(Unreadable),
    }
}

/// A zset score as a number: servers may print the same double differently.
fn score(text: &[u8]) -> Result<f64, Unreadable> {
    let s = std::str::from_utf8(text).map_err(|_| Unreadable)?;
    let v: f64 = s.parse().map_err(|_| Unreadable)?;
    // -0 and 0 are the same score.
    Ok(if v == 0.0 { 0.0 } else { v })
}

fn hash_bytes(seed: u64, b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u64(seed);
    h.write_usize(b.len());
    h.write(b);
    h.finish()
}

fn mix(a: u64, b: u64) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u64(a);
    h.write_u64(b);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn scan_reply(cursor: &str, items: &[&str]) -> Value {
        Value::Array(vec![
            bulk(cursor),
            Value::Array(items.iter().map(|s| bulk(s)).collect()),
        ])
    }

    fn digest(kind: Kind, replies: &[Value]) -> Digest {
        let mut d = Digest::default();
        for r in replies {
            d.absorb(kind, r, 1000, 0).unwrap();
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
        let first = Value::Array(vec![bulk("a"), bulk("b")]);
        assert_eq!(d.absorb(Kind::List, &first, 2, 0), Ok(Next::Offset(2)));
        assert_eq!(
            d.absorb(Kind::List, &Value::Array(vec![bulk("c")]), 2, 2),
            Ok(Next::Done)
        );
        let whole = digest(
            Kind::List,
            &[Value::Array(vec![bulk("a"), bulk("b"), bulk("c")])],
        );
        let reversed = digest(
            Kind::List,
            &[Value::Array(vec![bulk("c"), bulk("b"), bulk("a")])],
        );
        assert_eq!(d, whole);
        assert_ne!(whole, reversed);
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_unreadable() {
        let mut d = Digest::default();
        assert_eq!(d.absorb(Kind::String, &Value::Nil, 10, 0), Err(Unreadable));
        assert_eq!(d.absorb(Kind::Hash, &bulk("x"), 10, 0), Err(Unreadable));
        assert_eq!(Kind::parse(&Value::SimpleString("zset".into())), Kind::Zset);
        assert!(matches!(
            Kind::parse(&Value::SimpleString("ReJSON-RL".into())),
            Kind::Other(_)
        ));
    }
}

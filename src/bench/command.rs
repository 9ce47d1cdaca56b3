//! The commands each benchmark operation sends, encoded once and patched per request.
//!
//! Like redis-benchmark, a command is encoded to RESP a single time with fixed-width
//! placeholders for the key number and the member number; each request copies the
//! encoded bytes and writes its random numbers into the placeholders. Building and
//! encoding a command per request would cost more than the server spends answering it.

use serde::Serialize;

use crate::resp::Pipeline;

/// Width of the zero-padded numbers in keys and members (`key:000000001234`), the
/// same as redis-benchmark's `__rand_int__`.
pub const DIGITS: usize = 12;

/// The largest key or member number that fits [`DIGITS`].
pub const MAX_NUMBER: u64 = 999_999_999_999;

/// One benchmarked operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Get,
    Set,
    Lpush,
    Lrange,
    Hset,
    Hgetall,
    Sadd,
    Smembers,
    Zadd,
    Zrange,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Set,
        Op::Get,
        Op::Lpush,
        Op::Lrange,
        Op::Hset,
        Op::Hgetall,
        Op::Sadd,
        Op::Smembers,
        Op::Zadd,
        Op::Zrange,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Lpush => "lpush",
            Op::Lrange => "lrange",
            Op::Hset => "hset",
            Op::Hgetall => "hgetall",
            Op::Sadd => "sadd",
            Op::Smembers => "smembers",
            Op::Zadd => "zadd",
            Op::Zrange => "zrange",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The data type the operation works on, which names its keys.
    fn key_kind(self) -> &'static str {
        match self {
            Op::Get | Op::Set => "",
            Op::Lpush | Op::Lrange => "list:",
            Op::Hset | Op::Hgetall => "hash:",
            Op::Sadd | Op::Smembers => "set:",
            Op::Zadd | Op::Zrange => "zset:",
        }
    }

    /// The key of number `n`, e.g. `bench:list:000000000042`.
    pub fn key(self, prefix: &str, n: u64) -> String {
        format!("{prefix}{}{n:0width$}", self.key_kind(), width = DIGITS)
    }
}

/// What a part of a command is.
enum Part<'a> {
    Literal(&'a [u8]),
    /// A literal prefix followed by the request's key number.
    Key(&'a [u8]),
    /// A literal prefix followed by the request's member number.
    Member(&'a [u8]),
}

/// An encoded command with the offsets of its number placeholders.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    keys: Vec<usize>,
    members: Vec<usize>,
}

impl Template {
    /// The command `op` sends. `value` is the payload of writes; `elements` is how many
    /// members reads fetch and how many distinct members writes cycle through.
    pub fn new(op: Op, prefix: &str, value: &[u8], elements: u64) -> Template {
        let key = format!("{prefix}{}", op.key_kind());
        let key = Part::Key(key.as_bytes());
        let last = (elements.max(1) - 1).to_string();
        let parts: Vec<Part<'_>> = match op {
            Op::Get => vec![Part::Literal(b"GET"), key],
            Op::Set => vec![Part::Literal(b"SET"), key, Part::Literal(value)],
            Op::Lpush => vec![Part::Literal(b"LPUSH"), key, Part::Literal(value)],
            Op::Lrange => vec![
                Part::Literal(b"LRANGE"),
                key,
                Part::Literal(b"0"),
                Part::Literal(last.as_bytes()),
            ],
            Op::Hset => vec![
                Part::Literal(b"HSET"),
                key,
                Part::Member(b"f:"),
                Part::Literal(value),
            ],
            Op::Hgetall => vec![Part::Literal(b"HGETALL"), key],
            Op::Sadd => vec![Part::Literal(b"SADD"), key, Part::Member(b"m:")],
            Op::Smembers => vec![Part::Literal(b"SMEMBERS"), key],
            Op::Zadd => vec![
                Part::Literal(b"ZADD"),
                key,
                Part::Member(b""),
                Part::Member(b"m:"),
            ],
            Op::Zrange => vec![
                Part::Literal(b"ZRANGE"),
                key,
                Part::Literal(b"0"),
                Part::Literal(last.as_bytes()),
            ],
        };
        let mut t = Template {
            bytes: format!("*{}\r\n", parts.len()).into_bytes(),
            keys: Vec::new(),
            members: Vec::new(),
        };
        for part in parts {
            let (literal, slot) = match part {
                Part::Literal(l) => (l, None),
                Part::Key(p) => (p, Some(&mut t.keys)),
                Part::Member(p) => (p, Some(&mut t.members)),
            };
            let len = literal.len() + if slot.is_some() { DIGITS } else { 0 };
            t.bytes.extend_from_slice(format!("${len}\r\n").as_bytes());
            t.bytes.extend_from_slice(literal);
            if let Some(slot) = slot {
                slot.push(t.bytes.len());
                t.bytes.extend_from_slice(&[b'0'; DIGITS]);
            }
            t.bytes.extend_from_slice(b"\r\n");
        }
        t
    }

    /// Appends the command for key number `key` and member number `member` to `out`.
    pub fn write(&self, out: &mut Vec<u8>, key: u64, member: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        for &at in &self.keys {
            put_digits(&mut out[start + at..start + at + DIGITS], key);
        }
        for &at in &self.members {
            put_digits(&mut out[start + at..start + at + DIGITS], member);
        }
    }
}

/// Writes `n` zero-padded into `slot` (which is [`DIGITS`] long; `n` ≤ [`MAX_NUMBER`]).
fn put_digits(slot: &mut [u8], mut n: u64) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl Op {
    /// Whether the operation reads data that must be written first.
    pub fn reads(self) -> bool {
        matches!(
            self,
            Op::Get | Op::Lrange | Op::Hgetall | Op::Smembers | Op::Zrange
        )
    }
}

/// Appends to `p` the commands that give a read operation something to read at key number
/// `key`: a string for `get`, else a fresh key with `elements` members. Writes need none.
pub fn prepare(p: &mut Pipeline, op: Op, prefix: &str, value: &[u8], elements: u64, key: u64) {
    if !op.reads() {
        return;
    }
    let name = op.key(prefix, key);
    let name = name.as_bytes();
    if op == Op::Get {
        p.cmd(&[b"SET", name, value]);
        return;
    }
    p.cmd(&[b"DEL", name]);
    p.command(|c| {
        let command = match op {
            Op::Lrange => "RPUSH",
            Op::Hgetall => "HSET",
            Op::Smembers => "SADD",
            _ => "ZADD",
        };
        c.arg(command).arg(name);
        for i in 0..elements {
            match op {
                Op::Lrange => c.arg(value),
                Op::Hgetall => c.arg(format!("f:{i:0DIGITS$}")).arg(value),
                Op::Smembers => c.arg(format!("m:{i:0DIGITS$}")),
                _ => c.int(i as i64).arg(format!("m:{i:0DIGITS$}")),
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(args: &[&[u8]]) -> Vec<u8> {
        let mut p = Pipeline::new();
        p.cmd(args);
        p.as_bytes().to_vec()
    }

    #[test]
    fn templates_encode_like_the_pipeline() {
        let mut out = Vec::new();
        Template::new(Op::Set, "key:", b"xxx", 100).write(&mut out, 1234, 0);
        assert_eq!(out, encoded(&[b"SET", b"key:000000001234", b"xxx"]));

        out.clear();
        Template::new(Op::Zadd, "b:", b"v", 10).write(&mut out, 7, 999_999_999_999);
        assert_eq!(
            out,
            encoded(&[
                b"ZADD",
                b"b:zset:000000000007",
                b"999999999999",
                b"m:999999999999"
            ])
        );

        out.clear();
        Template::new(Op::Lrange, "b:", b"v", 100).write(&mut out, 0, 0);
        assert_eq!(
            out,
            encoded(&[b"LRANGE", b"b:list:000000000000", b"0", b"99"])
        );
    }

    #[test]
    fn every_op_has_a_name_and_a_key_kind() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::Hgetall.key("p:", 3), "p:hash:000000000003");
        let mut p = Pipeline::new();
        prepare(&mut p, Op::Smembers, "p:", b"v", 2, 0);
        let mut expected = Pipeline::new();
        expected.cmd(&[b"DEL", b"p:set:000000000000"]).cmd(&[
            b"SADD",
            b"p:set:000000000000",
            b"m:000000000000",
            b"m:000000000001",
        ]);
        assert_eq!(p.as_bytes(), expected.as_bytes());
        prepare(&mut p, Op::Sadd, "p:", b"v", 3, 0);
        assert_eq!(p.len(), 2);
    }
}

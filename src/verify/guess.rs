//! Guessing a key's type from the shape of its name, so that both sides are read at once
//! instead of the source being asked `TYPE` first: keys named alike (`user:{id}:cart`)
//! are nearly always of one type, and a `TYPE` per key is a third of the source's work on a
//! keyspace of small strings. A wrong guess costs its key another round trip, never a
//! wrong answer: the read fails with `WRONGTYPE` and the key is asked `TYPE` and read again.

use std::collections::HashMap;
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

use super::digest::Kind;

/// Shapes remembered; names past that many shapes are not guessed (asked `TYPE` first).
const SHAPES: usize = 4096;
/// Bytes of a shape that tell shapes apart.
const SHAPE_BYTES: usize = 64;
/// The confidence a guess needs: so many keys of the shape in a row had its type, or
/// about that many more than had another.
const SURE: u8 = 8;
const MOST: u8 = 16;

/// What the keys of one shape turned out to be.
#[derive(Clone, Copy)]
struct Record {
    kind: Kind,
    /// Rises by one for each key of `kind`, drops to a quarter for any other.
    confidence: u8,
}

/// The types keys of each shape had so far, shared by the batches of a check.
#[derive(Default)]
pub(super) struct Guesses(Mutex<HashMap<u64, Record>>);

impl Guesses {
    /// A guess for each key of these shapes ([`shapes`]); [`Kind::None`] where there is
    /// none to make.
    pub fn guess(&self, shapes: &[u64]) -> Vec<Kind> {
        let records = self.0.lock().expect("a lock is never poisoned");
        shapes
            .iter()
            .map(|shape| match records.get(shape) {
                Some(r) if r.confidence >= SURE => r.kind,
                _ => Kind::None,
            })
            .collect()
    }

    /// Learns from what the source said keys of these shapes are (none: gone, nothing to
    /// learn).
    pub fn learn(&self, seen: impl Iterator<Item = (u64, Kind)>) {
        let mut records = self.0.lock().expect("a lock is never poisoned");
        for (shape, kind) in seen.filter(|(_, kind)| *kind != Kind::None) {
            let full = records.len() >= SHAPES;
            match records.entry(shape) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let r = e.get_mut();
                    if r.kind == kind {
                        r.confidence = (r.confidence + 1).min(MOST);
                    } else if r.confidence >= 4 {
                        r.confidence /= 4;
                    } else {
                        *r = Record {
                            kind: guessable(kind),
                            confidence: 1,
                        };
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) if !full => {
                    e.insert(Record {
                        kind: guessable(kind),
                        confidence: 1,
                    });
                }
                std::collections::hash_map::Entry::Vacant(_) => {}
            }
        }
    }
}

/// The shape of each of `keys`, worked out once for both [`Guesses::guess`] and
/// [`Guesses::learn`].
pub(super) fn shapes(keys: &[Vec<u8>]) -> Vec<u64> {
    keys.iter().map(|k| shape(k)).collect()
}

/// `kind` if a value of it can be read, else none: a module type is never guessed.
fn guessable(kind: Kind) -> Kind {
    match kind {
        Kind::Other(_) => Kind::None,
        k => k,
    }
}

/// A name with each run of hexadecimal characters that holds a digit (an id, a number, a
/// hash) folded to `#`, cut at [`SHAPE_BYTES`], hashed: `user:1234:cart` and
/// `user:77:cart` are one shape, `user:ab3f` and `user:99` too.
fn shape(key: &[u8]) -> u64 {
    let mut out = Shape::default();
    // The hexadecimal run being read: where it started, whether it holds a digit.
    let mut run: Option<(usize, bool)> = None;
    for (i, &b) in key.iter().enumerate() {
        if b.is_ascii_hexdigit() {
            let (start, digit) = run.unwrap_or((i, false));
            run = Some((start, digit || b.is_ascii_digit()));
            continue;
        }
        if let Some((start, digit)) = run.take() {
            out.run(&key[start..i], digit);
        }
        out.byte(b);
        if out.full() {
            break;
        }
    }
    if let Some((start, digit)) = run {
        out.run(&key[start..], digit);
    }
    xxh3_64(out.bytes())
}

/// A shape being written, cut at [`SHAPE_BYTES`].
struct Shape {
    out: [u8; SHAPE_BYTES],
    len: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            out: [0; SHAPE_BYTES],
            len: 0,
        }
    }
}

impl Shape {
    fn push(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(SHAPE_BYTES - self.len);
        self.out[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
    }

    /// One byte, the most common case: no slice to cut.
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.out.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// A run of hexadecimal characters: as it is, or `#` when it holds a digit.
    fn run(&mut self, run: &[u8], digit: bool) {
        if digit {
            self.byte(b'#');
        } else {
            self.push(run);
        }
    }

    fn full(&self) -> bool {
        self.len == SHAPE_BYTES
    }

    fn bytes(&self) -> &[u8] {
        &self.out[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<u64> {
        let keys: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        shapes(&keys)
    }

    #[test]
    fn names_that_differ_by_ids_have_one_shape() {
        assert_eq!(shape(b"user:1234:cart"), shape(b"user:77:cart"));
        assert_eq!(shape(b"session:5f2a9c"), shape(b"session:0017"));
        assert_ne!(shape(b"user:1:cart"), shape(b"user:1:cards"));
        assert_ne!(shape(b"cafe"), shape(b"c4fe"));
        assert_eq!(shape(&[b'a'; 300]), shape(&[b'a'; 64]));
    }

    #[test]
    fn guesses_a_shape_once_enough_keys_agree() {
        let g = Guesses::default();
        let seen = keys(&["h:1", "h:2", "h:3", "h:4", "h:5", "h:6", "h:7"]);
        g.learn(seen.iter().map(|&k| (k, Kind::Hash)));
        assert_eq!(g.guess(&keys(&["h:8", "s:1"])), [Kind::None, Kind::None]);
        g.learn([(shape(b"h:8"), Kind::Hash)].into_iter());
        assert_eq!(g.guess(&keys(&["h:9", "s:1"])), [Kind::Hash, Kind::None]);
        // One key of another type shakes the confidence: no guess until more agree.
        g.learn([(shape(b"h:9"), Kind::String)].into_iter());
        assert_eq!(g.guess(&keys(&["h:10"])), [Kind::None]);
        // A shape whose keys keep changing type is taken over by the type they settle on.
        for _ in 0..3 {
            g.learn([(shape(b"h:0"), Kind::String)].into_iter());
        }
        let strings = keys(&["h:11"; 8]);
        g.learn(strings.iter().map(|&k| (k, Kind::String)));
        assert_eq!(g.guess(&keys(&["h:12"])), [Kind::String]);
        // Module types are never guessed.
        let modules = keys(&["json:1"; 20]);
        g.learn(modules.iter().map(|&k| (k, Kind::Other(7))));
        assert_eq!(g.guess(&keys(&["json:2"])), [Kind::None]);
    }
}

//! A stream's server state: what a migration must carry beyond its entries, or consumers
//! re-read or lose messages after the cut-over. The last generated id (new entries must
//! not reuse ids), each consumer group's last-delivered id and entries-read, its consumers
//! and their pending entries (id, consumer, delivery count).
//!
//! A stream's first read is `XINFO STREAM key FULL COUNT chunk` ([`full`]): its first
//! entries, for the value's digest, and all of the state above, digested, in one command
//! instead of five. Only where the two digests differ, or a group has more pending entries
//! than that read lists, is the state read again field by field ([`Sides::stream_states`]),
//! to name the first difference: groups and consumers whole (XINFO GROUPS, XINFO CONSUMERS:
//! a stream has few), pending entries a page at a time (XPENDING … COUNT), both sides from
//! the same id on, so a pending list of any length is never held whole. Fields one engine
//! does not report are not compared.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::Xxh3;

use crate::resp::{Frame, Pipeline};

use super::sides::{At, Redirects, Sides};
use super::{VerifyError, keyname};

/// XINFO STREAM fields compared.
const STREAM_FIELDS: [&str; 3] = ["last-generated-id", "max-deleted-entry-id", "entries-added"];
/// XINFO GROUPS fields compared, for each group.
const GROUP_FIELDS: [&str; 2] = ["last-delivered-id", "entries-read"];
/// XINFO CONSUMERS fields compared, for each consumer.
const CONSUMER_FIELDS: [&str; 1] = ["pending"];
/// The same count in a consumer of XINFO STREAM … FULL.
const FULL_CONSUMER_FIELDS: [&str; 1] = ["pel-count"];
/// Keys (or groups) whose state is asked for in one pipeline.
const AT_ONCE: usize = 64;

/// Named members (groups, consumers) with the fields compared; the stream itself is one
/// member without a name.
type Members = BTreeMap<Vec<u8>, Vec<(&'static str, String)>>;

/// One pending entry.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    id: String,
    consumer: Vec<u8>,
    deliveries: i64,
}

impl Sides {
    /// For the streams `streams` (indices into `keys`, equal entries on both sides): the
    /// first difference of each stream whose state differs, source first.
    pub(super) async fn stream_states(
        &self,
        at: At,
        keys: &[Vec<u8>],
        streams: &[usize],
        redirects: &Redirects,
    ) -> Result<Vec<(usize, String)>, VerifyError> {
        let mut found = Vec::new();
        // Stream fields and groups.
        let mut groups: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        for part in streams.chunks(AT_ONCE) {
            let build = |p: &mut Pipeline| {
                for &i in part {
                    p.cmd(&[b"XINFO", b"STREAM", &keys[i]])
                        .cmd(&[b"XINFO", b"GROUPS", &keys[i]]);
                }
            };
            let [src, dst] = self
                .both(
                    at,
                    redirects,
                    build,
                    |j| part[j / 2],
                    |j, r| match j % 2 {
                        0 => head(r),
                        _ => members(r, &GROUP_FIELDS),
                    },
                )
                .await?;
            for (n, &i) in part.iter().enumerate() {
                let (head, groups_of) = (2 * n, 2 * n + 1);
                let (Some(a), Some(b)) = (&src[head], &dst[head]) else {
                    continue;
                };
                let (Some(ga), Some(gb)) = (&src[groups_of], &dst[groups_of]) else {
                    continue;
                };
                match differ("", a, b).or_else(|| differ("group", ga, gb)) {
                    Some(d) => found.push((i, d)),
                    None if !ga.is_empty() => groups.push((i, ga.keys().cloned().collect())),
                    None => {}
                }
            }
        }
        // Consumers, group by group.
        let pairs: Vec<(usize, Vec<u8>)> = groups
            .into_iter()
            .flat_map(|(i, names)| names.into_iter().map(move |g| (i, g)))
            .collect();
        let mut differs: BTreeMap<usize, String> = BTreeMap::new();
        for part in pairs.chunks(AT_ONCE) {
            let build = |p: &mut Pipeline| {
                for (i, g) in part {
                    p.cmd(&[b"XINFO", b"CONSUMERS", &keys[*i], g]);
                }
            };
            let [src, dst] = self
                .both(
                    at,
                    redirects,
                    build,
                    |j| part[j].0,
                    |_, r| members(r, &CONSUMER_FIELDS),
                )
                .await?;
            for (n, (i, g)) in part.iter().enumerate() {
                if let (Some(a), Some(b)) = (&src[n], &dst[n]) {
                    let label = format!("group {} consumer", quoted(g));
                    if let Some(d) = differ(&label, a, b) {
                        differs.entry(*i).or_insert(d);
                    }
                }
            }
        }
        // Pending entries, a page at a time, both sides from the same id on.
        let chunk = self.opts.chunk;
        let count = chunk.to_string();
        let mut open: Vec<(usize, Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .filter(|(i, _)| !differs.contains_key(i))
            .map(|(i, g)| (i, g, b"-".to_vec()))
            .collect();
        while !open.is_empty() {
            let later = open.split_off(open.len().min(AT_ONCE));
            let build = |p: &mut Pipeline| {
                for (i, g, from) in &open {
                    p.cmd(&[b"XPENDING", &keys[*i], g, from, b"+", count.as_bytes()]);
                }
            };
            let [src, dst] = self
                .both(at, redirects, build, |j| open[j].0, |_, r| pending(r))
                .await?;
            let mut next = later;
            for ((i, g, _), (a, b)) in open.into_iter().zip(src.into_iter().zip(dst)) {
                let (Some(a), Some(b)) = (a, b) else {
                    continue;
                };
                if differs.contains_key(&i) {
                    continue;
                }
                match pending_differ(&g, &a, &b) {
                    Some(d) => {
                        differs.insert(i, d);
                    }
                    None if a.len() == chunk => {
                        let last = &a[a.len() - 1].id;
                        next.push((i, g, format!("({last}").into_bytes()));
                    }
                    None => {}
                }
            }
            open = next;
        }
        found.extend(differs);
        Ok(found)
    }
}

/// Splits the reply of `XINFO STREAM key FULL COUNT n` into its entries (shaped as XRANGE
/// gives them) and a digest of what [`Sides::stream_states`] compares: the stream's fields,
/// each group's fields and pending entries (id, consumer, delivery count), each consumer's
/// pending count. Fields are folded in a fixed order, so engines that list them in another
/// agree. The digest is none when a group has more pending entries than the reply lists;
/// the whole reply is none when it is not shaped as FULL's.
pub(super) fn full(reply: Frame<'_>) -> Option<(Frame<'_>, Option<u64>)> {
    let mut h = Xxh3::new();
    fold_fields(&mut h, fields(reply, &STREAM_FIELDS).1);
    let (mut entries, mut complete) = (None, true);
    let mut items = reply.items()?;
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        match k.bytes()? {
            b"entries" => entries = Some(v),
            b"groups" => {
                for group in v.items()? {
                    complete &= fold_group(&mut h, group)?;
                }
            }
            _ => {}
        }
    }
    Some((entries?, complete.then(|| h.digest())))
}

/// Folds one group of a FULL reply into `h`: its fields, pending entries and consumers.
/// Whether the reply listed all of its pending entries; none when it is not shaped as FULL's.
fn fold_group(h: &mut Xxh3, group: Frame<'_>) -> Option<bool> {
    let (name, named) = fields(group, &GROUP_FIELDS);
    fold(h, b"g", &name.unwrap_or_default());
    fold_fields(h, named);
    let (mut pel_count, mut listed, mut consumers) = (0, Vec::new(), Vec::new());
    let mut parts = group.items()?;
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        match k.bytes()? {
            b"pel-count" => pel_count = v.int()?,
            // Shaped as an XPENDING page: [id, consumer, delivery time, delivery count].
            b"pending" => listed = pending(v)?,
            b"consumers" => {
                consumers = v
                    .items()?
                    .map(|c| fields(c, &FULL_CONSUMER_FIELDS))
                    .collect();
            }
            _ => {}
        }
    }
    for p in &listed {
        fold(h, b"p", p.id.as_bytes());
        fold(h, b"pc", &p.consumer);
        fold(h, b"pd", &p.deliveries.to_le_bytes());
    }
    consumers.sort();
    for (name, f) in consumers {
        fold(h, b"c", &name.unwrap_or_default());
        fold_fields(h, f);
    }
    Some(listed.len() as i64 >= pel_count)
}

/// Folds `bytes` into `h` under `tag`, its length first so that no two sequences agree.
fn fold(h: &mut Xxh3, tag: &[u8], bytes: &[u8]) {
    h.update(tag);
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Folds fields into `h` in the order of their names.
fn fold_fields(h: &mut Xxh3, mut f: Vec<(&'static str, String)>) {
    f.sort();
    for (name, value) in &f {
        fold(h, name.as_bytes(), value.as_bytes());
    }
}

/// A name as a difference shows it: in backquotes, escaped like example keys.
fn quoted(name: &[u8]) -> String {
    format!("`{}`", keyname::escape(name))
}

/// A value as a difference shows it.
fn scalar(f: Frame<'_>) -> String {
    match (f.bytes(), f.int()) {
        (Some(b), _) => String::from_utf8_lossy(b).into_owned(),
        (None, Some(n)) => n.to_string(),
        _ if f.is_nil() => "nil".into(),
        _ => "?".into(),
    }
}

/// The fields `wanted` of a flat `[name, value, …]` reply.
fn fields(
    reply: Frame<'_>,
    wanted: &[&'static str],
) -> (Option<Vec<u8>>, Vec<(&'static str, String)>) {
    let mut name = None;
    let mut out = Vec::new();
    let mut items = reply.items().into_iter().flatten();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let Some(k) = k.bytes() else { continue };
        if k == b"name" {
            name = v.bytes().map(<[u8]>::to_vec);
        } else if let Some(field) = wanted.iter().find(|w| w.as_bytes() == k) {
            out.push((*field, scalar(v)));
        }
    }
    (name, out)
}

/// XINFO STREAM's reply as one member without a name. None for an error (the key changed
/// under us).
fn head(reply: Frame<'_>) -> Option<Members> {
    if reply.error().is_some() {
        return None;
    }
    Some([(Vec::new(), fields(reply, &STREAM_FIELDS).1)].into())
}

/// An XINFO GROUPS or CONSUMERS reply, a member for each element. None for an error.
fn members(reply: Frame<'_>, wanted: &[&'static str]) -> Option<Members> {
    let mut out = Members::new();
    for member in reply.items()? {
        let (name, f) = fields(member, wanted);
        out.insert(name.unwrap_or_default(), f);
    }
    Some(out)
}

/// The first difference between the source's members `a` and the target's `b`: a member
/// missing on one side, then a field both report with two values.
fn differ(label: &str, a: &Members, b: &Members) -> Option<String> {
    let named = |name: &[u8]| {
        if name.is_empty() && label.is_empty() {
            String::new()
        } else {
            format!("{label} {} ", quoted(name))
        }
    };
    if let Some(name) = a.keys().find(|n| !b.contains_key(*n)) {
        return Some(format!("{}missing on target", named(name)));
    }
    if let Some(name) = b.keys().find(|n| !a.contains_key(*n)) {
        return Some(format!("{}only on target", named(name)));
    }
    a.iter().find_map(|(name, fa)| {
        fa.iter().find_map(|(field, x)| {
            let (_, y) = b[name].iter().find(|(f, _)| f == field)?;
            (x != y).then(|| format!("{}{field} {x} vs {y}", named(name)))
        })
    })
}

/// An XPENDING page: `[[id, consumer, idle, deliveries]…]`. None for an error.
fn pending(reply: Frame<'_>) -> Option<Vec<Pending>> {
    reply
        .items()?
        .map(|entry| {
            let mut parts = entry.items()?;
            let id = scalar(parts.next()?);
            let consumer = parts.next()?.bytes()?.to_vec();
            let deliveries = parts.nth(1)?.int()?;
            Some(Pending {
                id,
                consumer,
                deliveries,
            })
        })
        .collect()
}

/// A stream id's order: `ms-seq` as two numbers.
fn order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The first difference between two pages of group `group`'s pending entries read from the
/// same id on.
fn pending_differ(group: &[u8], a: &[Pending], b: &[Pending]) -> Option<String> {
    let entry = |id: &str| format!("group {} pending entry {id}", quoted(group));
    for n in 0..a.len().max(b.len()) {
        match (a.get(n), b.get(n)) {
            (Some(x), Some(y)) if x.id != y.id => {
                return Some(if order(&x.id) < order(&y.id) {
                    format!("{} missing on target", entry(&x.id))
                } else {
                    format!("{} only on target", entry(&y.id))
                });
            }
            (Some(x), Some(y)) if x.consumer != y.consumer => {
                return Some(format!(
                    "{} consumer {} vs {}",
                    entry(&x.id),
                    quoted(&x.consumer),
                    quoted(&y.consumer)
                ));
            }
            (Some(x), Some(y)) if x.deliveries != y.deliveries => {
                return Some(format!(
                    "{} delivery count {} vs {}",
                    entry(&x.id),
                    x.deliveries,
                    y.deliveries
                ));
            }
            (Some(x), None) => return Some(format!("{} missing on target", entry(&x.id))),
            (None, Some(y)) => return Some(format!("{} only on target", entry(&y.id))),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::decoded;
    use serde_json::{Value, json};

    /// JSON as RESP: arrays as arrays, strings as bulk strings, numbers as integers.
    fn resp(v: &Value) -> String {
        match v {
            Value::Array(items) => {
                let inner: String = items.iter().map(resp).collect();
                format!("*{}\r\n{inner}", items.len())
            }
            Value::String(s) => format!("${}\r\n{s}\r\n", s.len()),
            other => format!(":{other}\r\n"),
        }
    }

    /// A FULL reply of a stream with two entries and group g1, whose consumer c1 holds
    /// `pending` of its `pel_count` pending entries.
    fn reply(head_first: bool, pending: &[(&str, i64)], pel_count: usize) -> Value {
        let head = if head_first {
            json!(["last-generated-id", "1-2", "entries-added", 2])
        } else {
            json!(["entries-added", 2, "last-generated-id", "1-2"])
        };
        let entries = json!(["entries", [["1-1", ["f", "a"]], ["1-2", ["f", "b"]]]]);
        let pel: Vec<Value> = pending
            .iter()
            .map(|(id, n)| {
                json!([
                    id,
                    "c1",
                    if head_first { 1_796_225_756_594_i64 } else { 7 },
                    n
                ])
            })
            .collect();
        let group = json!([
            "name",
            "g1",
            "last-delivered-id",
            "1-2",
            "entries-read",
            2,
            "lag",
            0,
            "pel-count",
            pel_count,
            "pending",
            pel,
            "consumers",
            [[
                "name",
                "c1",
                "seen-time",
                if head_first { 5 } else { 6 },
                "pel-count",
                pel_count,
                "pending",
                []
            ]]
        ]);
        let (head, entries) = (head.as_array().unwrap(), entries.as_array().unwrap());
        let mut all: Vec<Value> = if head_first {
            head.iter().chain(entries).cloned().collect()
        } else {
            entries.iter().chain(head).cloned().collect()
        };
        all.extend([json!("groups"), json!([group])]);
        Value::Array(all)
    }

    fn read(v: &Value) -> Option<(usize, Option<u64>)> {
        decoded(resp(v).as_bytes(), |f| {
            full(f).map(|(entries, state)| (entries.items().map_or(0, |e| e.len()), state))
        })
    }

    #[test]
    fn a_full_reply_gives_the_entries_and_a_digest_of_the_state_compared() {
        let pending = [("1-1", 1), ("1-2", 1)];
        let (entries, state) = read(&reply(true, &pending, 2)).unwrap();
        assert_eq!(entries, 2);
        assert!(state.is_some());
        // Fields in another order, and times, are not differences.
        assert_eq!(read(&reply(false, &pending, 2)), Some((2, state)));
        // A delivery count is.
        let other = read(&reply(true, &[("1-1", 1), ("1-2", 2)], 2)).unwrap().1;
        assert!(other.is_some() && other != state);
        // More pending entries than listed: the state is not known whole.
        assert_eq!(read(&reply(true, &pending, 3)), Some((2, None)));
        // Not FULL's shape.
        assert_eq!(read(&json!([["1-1", ["f", "a"]]])), None);
    }

    fn p(id: &str, consumer: &str, deliveries: i64) -> Pending {
        Pending {
            id: id.into(),
            consumer: consumer.into(),
            deliveries,
        }
    }

    #[test]
    fn pending_pages_name_their_first_difference() {
        let a = [p("1-1", "c1", 1), p("1-2", "c1", 2)];
        assert_eq!(pending_differ(b"g", &a, &a), None);
        assert_eq!(
            pending_differ(b"g", &a, &[p("1-1", "c1", 1)]).as_deref(),
            Some("group `g` pending entry 1-2 missing on target")
        );
        assert_eq!(
            pending_differ(b"g", &a, &[p("1-1", "c1", 1), p("1-10", "c1", 2)]).as_deref(),
            Some("group `g` pending entry 1-2 missing on target")
        );
        assert_eq!(
            pending_differ(b"g", &a[1..], &a).as_deref(),
            Some("group `g` pending entry 1-1 only on target")
        );
        assert_eq!(
            pending_differ(b"g", &a, &[p("1-1", "c2", 1)]).as_deref(),
            Some("group `g` pending entry 1-1 consumer `c1` vs `c2`")
        );
        assert_eq!(
            pending_differ(b"g", &a, &[p("1-1", "c1", 3)]).as_deref(),
            Some("group `g` pending entry 1-1 delivery count 1 vs 3")
        );
    }

    #[test]
    fn members_differ_by_presence_then_by_field() {
        let m = |items: &[(&str, &str)]| -> Members {
            items
                .iter()
                .map(|(name, id)| {
                    (
                        name.as_bytes().to_vec(),
                        vec![("last-delivered-id", id.to_string())],
                    )
                })
                .collect()
        };
        let a = m(&[("g1", "5-0"), ("g2", "1-0")]);
        assert_eq!(differ("group", &a, &a), None);
        assert_eq!(
            differ("group", &a, &m(&[("g1", "3-0"), ("g2", "1-0")])).as_deref(),
            Some("group `g1` last-delivered-id 5-0 vs 3-0")
        );
        assert_eq!(
            differ("group", &a, &m(&[("g1", "5-0")])).as_deref(),
            Some("group `g2` missing on target")
        );
        assert_eq!(
            differ("group", &m(&[("g1", "5-0")]), &a).as_deref(),
            Some("group `g2` only on target")
        );
        let head = |id: &str| -> Members {
            [(Vec::new(), vec![("last-generated-id", id.to_string())])].into()
        };
        assert_eq!(
            differ("", &head("1-8"), &head("1-9")).as_deref(),
            Some("last-generated-id 1-8 vs 1-9")
        );
    }
}

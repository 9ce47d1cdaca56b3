//! Judging one key: what both sides say about it (type, TTL, digest, and what a value
//! carries beyond its content: a stream's groups, a hash's field TTLs) → equal, expired,
//! vanished, or a mismatch of one class.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::digest::{Digest, Kind};

/// How a key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    MissingOnTarget,
    ExtraOnTarget,
    Type,
    Value,
    Ttl,
    /// A stream's last generated id, consumer groups, consumers or pending entries.
    Stream,
    /// A hash field's TTL.
    FieldTtl,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::MissingOnTarget => "missing_on_target",
            Class::ExtraOnTarget => "extra_on_target",
            Class::Type => "type",
            Class::Value => "value",
            Class::Ttl => "ttl",
            Class::Stream => "stream",
            Class::FieldTtl => "field_ttl",
        }
    }
}

/// Mismatches by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub missing_on_target: u64,
    pub extra_on_target: u64,
    #[serde(rename = "type")]
    pub type_: u64,
    pub value: u64,
    pub ttl: u64,
    pub stream: u64,
    pub field_ttl: u64,
}

impl ClassCounts {
    pub(super) fn add(&mut self, class: Class, n: u64) {
        *match class {
            Class::MissingOnTarget => &mut self.missing_on_target,
            Class::ExtraOnTarget => &mut self.extra_on_target,
            Class::Type => &mut self.type_,
            Class::Value => &mut self.value,
            Class::Ttl => &mut self.ttl,
            Class::Stream => &mut self.stream,
            Class::FieldTtl => &mut self.field_ttl,
        } += n;
    }

    /// Adds every class of `other`.
    pub(super) fn add_all(&mut self, other: &ClassCounts) {
        self.missing_on_target += other.missing_on_target;
        self.extra_on_target += other.extra_on_target;
        self.type_ += other.type_;
        self.value += other.value;
        self.ttl += other.ttl;
        self.stream += other.stream;
        self.field_ttl += other.field_ttl;
    }

    pub fn total(&self) -> u64 {
        self.missing_on_target
            + self.extra_on_target
            + self.type_
            + self.value
            + self.ttl
            + self.stream
            + self.field_ttl
    }
}

/// A difference in what a value carries beyond its content, found by reading both sides
/// side by side: a stream's server state, a hash's field TTLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Beyond {
    /// [`Class::Stream`] or [`Class::FieldTtl`].
    pub class: Class,
    /// What differs, source first (`group `g1` last-delivered-id 5-0 vs 3-0`).
    pub detail: String,
}

/// What one side says about a key.
#[derive(Clone, Debug)]
pub(super) struct Observed {
    pub kind: Kind,
    /// PTTL: -1 no TTL, -2 no key.
    pub pttl: i64,
    pub digest: Digest,
    /// The value could not be read as its type promised (it changed under us).
    pub unreadable: bool,
    /// On the target: how it differs from the source beyond the digest.
    pub beyond: Option<Beyond>,
    /// A stream's groups, consumers and pending entries, digested ([`super::streams::full`]);
    /// none when they were not read whole.
    pub stream_state: Option<u64>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            kind: Kind::None,
            pttl: -2,
            digest: Digest::default(),
            unreadable: false,
            beyond: None,
            stream_state: None,
        }
    }
}

impl Observed {
    /// Whether this side's value, read as `other`'s type, has the same content: the
    /// comparisons beyond the digest only make sense then.
    pub fn same_value(&self, other: &Observed) -> bool {
        self.kind == other.kind
            && self.kind != Kind::None
            && !self.unreadable
            && !other.unreadable
            && self.digest == other.digest
    }
}

pub(super) enum Verdict {
    Equal,
    /// Gone from both sides.
    Vanished,
    /// Gone from one side, and its TTL on the other was about to run out.
    Expired,
    Mismatch(Class),
}

/// Whether a key with this PTTL may be gone by now: its TTL ends within the tolerance.
pub(super) fn expiring(pttl: i64, tolerance: Duration) -> bool {
    (0..=tolerance.as_millis() as i64).contains(&pttl)
}

/// A mismatched key as the re-check rounds remember it: enough to tell, when it goes
/// missing later, whether its TTL had really run out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mismatch {
    /// The latest class.
    pub class: Class,
    /// What differs, for a class that names it (stream, field TTL).
    pub detail: Option<String>,
    /// The class it had when first found.
    pub first: Class,
    /// When its TTL ends, as first seen on the side that has the key.
    pub ends: Option<Instant>,
    /// When it was first seen missing from one side.
    pub missing_since: Option<Instant>,
}

impl Mismatch {
    /// A key first found different, as `class`, from what both sides said at `at`.
    pub fn new(class: Class, src: &Observed, dst: &Observed, at: Instant) -> Mismatch {
        let mut m = Mismatch {
            class,
            detail: None,
            first: class,
            ends: None,
            missing_since: None,
        };
        m.saw(class, src, dst, at);
        m
    }

    fn saw(&mut self, class: Class, src: &Observed, dst: &Observed, at: Instant) {
        self.class = class;
        self.detail = dst
            .beyond
            .as_ref()
            .filter(|b| b.class == class)
            .map(|b| b.detail.clone());
        let pttl = if src.kind == Kind::None {
            dst.pttl
        } else {
            src.pttl
        };
        if self.ends.is_none() && pttl >= 0 {
            self.ends = Some(at + Duration::from_millis(pttl as u64));
        }
        if matches!(class, Class::MissingOnTarget | Class::ExtraOnTarget) {
            self.missing_since.get_or_insert(at);
        }
    }

    /// Expired, not missing: its TTL as first seen ended within `tolerance` of when it
    /// went missing.
    fn expired(&self, tolerance: Duration) -> bool {
        match (self.ends, self.missing_since) {
            (Some(ends), Some(since)) => ends <= since + tolerance,
            _ => false,
        }
    }
}

/// Compares both sides' view of a key. TTLs agree when both are absent, or both set and
/// within `tolerance` of each other. A key gone from one side whose TTL on the other ends
/// within `tolerance` has expired.
pub(super) fn judge(src: &Observed, dst: &Observed, tolerance: Duration) -> Verdict {
    let left = match (src.kind, dst.kind) {
        (Kind::None, Kind::None) => None,
        (Kind::None, _) => Some(dst.pttl),
        (_, Kind::None) => Some(src.pttl),
        _ => None,
    };
    match left {
        Some(pttl) if expiring(pttl, tolerance) => Verdict::Expired,
        _ => compare(src, dst, tolerance),
    }
}

/// The re-check of a key found different before, at `at`: it has expired only if its TTL
/// as first seen ended within `tolerance` of when it went missing, however long the rounds
/// took; a key that ran out of TTL while it was missing stays missing.
pub(super) fn rejudge(
    m: &mut Mismatch,
    src: &Observed,
    dst: &Observed,
    at: Instant,
    tolerance: Duration,
) -> Verdict {
    match compare(src, dst, tolerance) {
        Verdict::Mismatch(class) => {
            m.saw(class, src, dst, at);
            if m.expired(tolerance) {
                Verdict::Expired
            } else {
                Verdict::Mismatch(class)
            }
        }
        Verdict::Vanished if m.missing_since.is_some() => {
            if m.expired(tolerance) {
                Verdict::Expired
            } else if m.ends.is_some() {
                Verdict::Mismatch(m.class)
            } else {
                Verdict::Vanished
            }
        }
        other => other,
    }
}

/// [`judge`] without forgiving keys about to expire.
fn compare(src: &Observed, dst: &Observed, tolerance: Duration) -> Verdict {
    let tol = tolerance.as_millis() as i64;
    match (src.kind, dst.kind) {
        (Kind::None, Kind::None) => Verdict::Vanished,
        (Kind::None, _) => Verdict::Mismatch(Class::ExtraOnTarget),
        (_, Kind::None) => Verdict::Mismatch(Class::MissingOnTarget),
        (a, b) if a != b => Verdict::Mismatch(Class::Type),
        _ if src.unreadable || dst.unreadable || src.digest != dst.digest => {
            Verdict::Mismatch(Class::Value)
        }
        _ if let Some(beyond) = &dst.beyond => Verdict::Mismatch(beyond.class),
        _ => {
            let ttl_ok = match (src.pttl, dst.pttl) {
                (a, b) if a < 0 && b < 0 => a == b,
                (a, b) if a >= 0 && b >= 0 => (a - b).abs() <= tol,
                _ => false,
            };
            if ttl_ok {
                Verdict::Equal
            } else {
                Verdict::Mismatch(Class::Ttl)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(kind: Kind, pttl: i64) -> Observed {
        Observed {
            kind,
            pttl,
            ..Observed::default()
        }
    }

    fn class(v: Verdict) -> Option<Class> {
        match v {
            Verdict::Mismatch(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn judges_each_class() {
        let tol = Duration::from_secs(2);
        let s = seen(Kind::String, -1);
        assert_eq!(
            class(judge(&s, &seen(Kind::None, -2), tol)),
            Some(Class::MissingOnTarget)
        );
        assert_eq!(
            class(judge(&seen(Kind::None, -2), &s, tol)),
            Some(Class::ExtraOnTarget)
        );
        assert_eq!(
            class(judge(&s, &seen(Kind::Hash, -1), tol)),
            Some(Class::Type)
        );
        assert_eq!(
            class(judge(&s, &seen(Kind::String, 60_000), tol)),
            Some(Class::Ttl)
        );
        assert_eq!(
            class(judge(
                &seen(Kind::String, 60_000),
                &seen(Kind::String, 62_500),
                tol
            )),
            Some(Class::Ttl)
        );
        assert_eq!(
            class(judge(
                &seen(Kind::String, 60_000),
                &seen(Kind::String, 61_500),
                tol
            )),
            None
        );
        let unreadable = Observed {
            unreadable: true,
            ..s.clone()
        };
        assert_eq!(class(judge(&s, &unreadable, tol)), Some(Class::Value));
        assert!(matches!(judge(&s, &s, tol), Verdict::Equal));
    }

    #[test]
    fn expired_only_if_the_ttl_first_seen_ended_within_the_tolerance() {
        let tol = Duration::from_secs(2);
        let t0 = Instant::now();
        let gone = seen(Kind::None, -2);
        // Never copied, 3.5 s of TTL left when first found missing.
        let mut m = Mismatch::new(Class::MissingOnTarget, &seen(Kind::String, 3500), &gone, t0);
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(
            rejudge(&mut m, &seen(Kind::String, 1500), &gone, later, tol),
            Verdict::Mismatch(Class::MissingOnTarget)
        ));
        // Its TTL ran out on the source while it was missing: still missing, not expired.
        assert!(matches!(
            rejudge(&mut m, &gone, &gone, t0 + Duration::from_secs(6), tol),
            Verdict::Mismatch(Class::MissingOnTarget)
        ));
        // A value mismatch whose key then goes, its TTL ending then: expired.
        let mut v = Mismatch::new(
            Class::Value,
            &seen(Kind::String, 2500),
            &seen(Kind::String, 2500),
            t0,
        );
        assert!(matches!(
            rejudge(
                &mut v,
                &seen(Kind::String, 1400),
                &gone,
                t0 + Duration::from_secs(1),
                tol
            ),
            Verdict::Expired
        ));
        // Deleted from both sides without a TTL: a write in flight, not a mismatch.
        let mut d = Mismatch::new(Class::MissingOnTarget, &seen(Kind::String, -1), &gone, t0);
        assert!(matches!(
            rejudge(&mut d, &gone, &gone, later, tol),
            Verdict::Vanished
        ));
    }

    #[test]
    fn keys_about_to_expire_are_not_missing() {
        let tol = Duration::from_secs(2);
        let expiring = seen(Kind::String, 1500);
        assert!(matches!(
            judge(&expiring, &seen(Kind::None, -2), tol),
            Verdict::Expired
        ));
        assert!(matches!(
            judge(&seen(Kind::None, -2), &expiring, tol),
            Verdict::Expired
        ));
        assert!(matches!(
            judge(&seen(Kind::None, -2), &seen(Kind::None, -2), tol),
            Verdict::Vanished
        ));
    }
}

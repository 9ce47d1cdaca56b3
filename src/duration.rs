//! Durations as runbooks write them: `250ms`, `10s`, `40m`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses a duration; the error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty duration (write e.g. 500ms, 10s, 40m, 1h30m)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration (write e.g. 500ms, 10s, 40m, 1h30m)"
            ));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| {
            format!("`{text}` is not a duration (write e.g. 500ms, 10s, 40m, 1h30m)")
        })?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim_end();
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            "" => {
                return Err(format!(
                    "`{text}` has no unit (add ms, s, m, h or d, e.g. {t}s)"
                ));
            }
            u => {
                return Err(format!(
                    "`{u}` in `{text}` is not a unit (use ms, s, m, h or d)"
                ));
            }
        };
        total += Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("`{text}` is out of range"))?;
    }
    Ok(total)
}

/// Parses a duration that must be more than zero (an interval, a timeout). Like
/// [`parse`], usable as a clap value parser.
pub fn positive(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// `1h2m3s`, `250ms`: the short form runbooks use.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    let frac = (ms % 1000) / 100;
    if s > 0 || frac > 0 || out.is_empty() {
        if frac > 0 && out.is_empty() {
            out.push_str(&format!("{s}.{frac}s"));
        } else if s > 0 {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

/// Serde support for `Duration` fields written as text, with a schema of `string`.
pub mod serde_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
        assert_eq!(positive("0ms").unwrap_err(), "must be more than zero");
        assert_eq!(positive("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(20)), "20ms");
        assert_eq!(format(Duration::from_secs(61)), "1m1s");
    }
}

//! Key names for people: shown so they can be pasted back into `redis-cli`, whatever bytes
//! they hold, since two keys that differ only in a byte that is not UTF-8 must not look
//! alike.

/// Text examples longer than this (in characters) are shortened.
const SHOWN: usize = 80;

/// `key` as `redis-cli` reads it back: as it is when it is plain text, otherwise in double
/// quotes with bytes that are not UTF-8 and control characters as `\xHH` (and `\"`, `\\`).
pub fn escape(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut quote = key.is_empty();
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => {
                    quote |= c.is_whitespace() || c == '\'';
                    out.push(c);
                    continue;
                }
            }
            quote = true;
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
            quote = true;
        }
    }
    if quote { format!("\"{out}\"") } else { out }
}

/// An escaped name cut to its start and end when it is long, with its length in bytes.
pub fn shorten(escaped: &str, bytes: usize) -> String {
    let chars = escaped.chars().count();
    if chars <= SHOWN {
        return escaped.to_string();
    }
    let head: String = escaped.chars().take(SHOWN - 24).collect();
    let tail: String = escaped.chars().skip(chars - 16).collect();
    format!("{head}…{tail} ({bytes} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_losslessly() {
        assert_eq!(escape(b"user:1"), "user:1");
        assert_eq!(escape("café:ü".as_bytes()), "café:ü");
        assert_eq!(escape(b"a\xffb"), "\"a\\xffb\"");
        assert_ne!(escape(b"\xfe"), escape(b"\xff"));
        assert_eq!(escape(b"two words"), "\"two words\"");
        assert_eq!(escape(b"q\"\\\n\x01"), "\"q\\\"\\\\\\n\\x01\"");
        assert_eq!(escape(b""), "\"\"");
    }

    #[test]
    fn long_names_keep_their_start_and_end() {
        let name = format!("{}end-of-the-key", "x".repeat(200));
        let short = shorten(&name, name.len());
        assert_eq!(
            short,
            format!("{}…xxend-of-the-key (214 bytes)", "x".repeat(56))
        );
        assert_eq!(shorten("short", 5), "short");
    }
}

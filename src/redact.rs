//! Keeps secrets out of everything the tool writes.
//!
//! Values of `secret` params and passwords inside URLs are replaced by `***` before any
//! text reaches the journal, a plan, a report or the terminal. One redactor per run,
//! shared by every writer, so a new writer cannot forget it.
//!
//! [`printable`] does the same for another danger of text from outside (what a command
//! printed, a server's reply): control characters, which on a terminal or in a report
//! could recolour, overwrite or forge the lines around them.

use std::sync::{Arc, RwLock};

use crate::endpoint::redact_url;

/// The mask written in place of a secret.
pub const MASK: &str = "***";

/// The set of secret strings of a run. Cloning shares the set.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

/// The shortest form derived from a secret (an encoding of part of it, a value a template
/// computed from it) that is masked: shorter ones would hide ordinary text — `true`, a
/// count, a port — and tell little of the secret.
pub const MIN_DERIVED: usize = 6;

impl Redactor {
    /// Adds a secret; empty strings are ignored. Longer secrets are replaced first so a
    /// secret that contains another is masked whole. What a command may turn it into is
    /// added too (see [`derived_forms`]).
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut forms = vec![secret.to_string()];
        forms.extend(
            derived_forms(secret)
                .into_iter()
                .filter(|f| f.len() >= MIN_DERIVED),
        );
        self.insert(forms);
    }

    /// Adds a value computed from a secret, and what a command may turn it into, unless it
    /// is shorter than [`MIN_DERIVED`].
    pub fn add_derived(&self, value: &str) {
        if value.chars().count() >= MIN_DERIVED {
            self.add(value);
        }
    }

    fn insert(&self, forms: Vec<String>) {
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        let before = secrets.len();
        for form in forms {
            if !form.is_empty() && !secrets.contains(&form) {
                secrets.push(form);
            }
        }
        if secrets.len() != before {
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// The length in bytes of the longest form masked.
    fn longest(&self) -> usize {
        self.secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .map_or(0, String::len)
    }

    /// Where the first occurrence of a masked form that starts before `cut` and ends after
    /// it starts.
    fn spanning(&self, text: &str, cut: usize) -> Option<usize> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        secrets
            .iter()
            .filter_map(|s| {
                let from = text.floor_char_boundary(cut.saturating_sub(s.len() - 1));
                let to = text.ceil_char_boundary((cut + s.len() - 1).min(text.len()));
                text[from..to]
                    .match_indices(s.as_str())
                    .map(|(i, _)| from + i)
                    .find(|&start| start < cut && start + s.len() > cut)
            })
            .min()
    }

    /// `text` with every known secret and every URL password masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = redact_url(text);
        for s in self
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// A JSON value with every string (keys too) redacted.
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.redact(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// What a command may turn a secret into: reversed (`rev`); base64 (`base64`,
/// `openssl base64`), standard and URL-safe, of the secret's whole 3-byte groups at each of
/// the three places it may start in a group, which are encoded the same whatever comes
/// around it; percent-encoded (`curl --data-urlencode`, `urllib.parse.quote`), with
/// upper- and lower-case hex, and form-encoded (`+` for a space).
pub fn derived_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let bytes = secret.as_bytes();
    let mut forms = vec![secret.chars().rev().collect::<String>()];
    for skip in 0..3.min(bytes.len()) {
        let rest = &bytes[skip..];
        let whole = &rest[..rest.len() / 3 * 3];
        forms.push(STANDARD.encode(whole));
        forms.push(URL_SAFE.encode(whole));
    }
    let percent: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    forms.push(lower_hex_escapes(&percent));
    forms.push(percent);
    forms.push(url::form_urlencoded::byte_serialize(bytes).collect());
    forms.retain(|f| f != secret);
    forms.dedup();
    forms
}

/// `%2F` written `%2f`.
fn lower_hex_escapes(percent: &str) -> String {
    let mut out = String::with_capacity(percent.len());
    let mut hex_left = 0;
    for c in percent.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Masks text that arrives in pieces (what a command prints) as [`Redactor::redact`]
/// masks it whole: a piece is given out only up to a place no secret spans — the end of a
/// line where there is one — and bytes of a UTF-8 character cut in two wait for the rest.
/// A URL password is masked when the URL arrives on one line or in one piece.
pub struct StreamMasker {
    redactor: Redactor,
    /// Bytes of a character not yet whole.
    raw: Vec<u8>,
    /// Text not yet given out.
    pending: String,
}

impl StreamMasker {
    /// Text is held back until this much waits, so most pieces are whole lines.
    const BATCH: usize = 16 * 1024;

    pub fn new(redactor: Redactor) -> StreamMasker {
        StreamMasker {
            redactor,
            raw: Vec::new(),
            pending: String::new(),
        }
    }

    /// Takes the next bytes; returns the masked text that can be given out now.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.raw.extend_from_slice(bytes);
        let mut taken = 0;
        loop {
            match std::str::from_utf8(&self.raw[taken..]) {
                Ok(text) => {
                    self.pending.push_str(text);
                    taken = self.raw.len();
                    break;
                }
                Err(e) => {
                    let valid = taken + e.valid_up_to();
                    let text = std::str::from_utf8(&self.raw[taken..valid]).expect("valid");
                    self.pending.push_str(text);
                    match e.error_len() {
                        Some(bad) => {
                            self.pending.push(char::REPLACEMENT_CHARACTER);
                            taken = valid + bad;
                        }
                        // A character cut in two: the rest comes with the next bytes.
                        None => {
                            taken = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.raw.drain(..taken);
        if self.pending.len() < Self::BATCH {
            return String::new();
        }
        // Every form that starts before `safe` ends in what has arrived.
        let longest = self.redactor.longest();
        let safe = self
            .pending
            .floor_char_boundary(self.pending.len().saturating_sub(longest));
        let mut cut = match self.pending[..safe].rfind('\n') {
            Some(i) => i + 1,
            None => match self.pending[..safe].rfind(char::is_whitespace) {
                Some(i) => self.pending.ceil_char_boundary(i + 1),
                None => safe,
            },
        };
        while let Some(start) = self.redactor.spanning(&self.pending, cut) {
            cut = start;
        }
        let rest = self.pending.split_off(cut);
        let out = self.redactor.redact(&self.pending);
        self.pending = rest;
        out
    }

    /// The masked text still held back, once the input has ended.
    pub fn finish(mut self) -> String {
        if !self.raw.is_empty() {
            self.pending.push(char::REPLACEMENT_CHARACTER);
        }
        self.redactor.redact(&self.pending)
    }
}

/// `text` with its control characters (ANSI escape sequences, carriage returns,
/// backspaces…) written as visible escapes like `\u{1b}`; newlines and tabs stay.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let is_bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(is_bad) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if is_bad(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(
            printable("\x1b[32mok\x1b[0m\r\tdone\n"),
            "\\u{1b}[32mok\\u{1b}[0m\\u{d}\tdone\n"
        );
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn pieces_are_masked_as_the_whole_text_is() {
        let r = Redactor::default();
        r.add("s3cr3t-Tok€n");
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("line {i} s3cr3t-Tok€n and redis://u:pw{i}@h:1 "));
            if i % 7 == 0 {
                text.push('\n');
            }
        }
        let whole = r.redact(&text);
        for piece in [1, 5, 4093, 20_000] {
            let mut m = StreamMasker::new(r.clone());
            let mut out = String::new();
            for chunk in text.as_bytes().chunks(piece) {
                out.push_str(&m.push(chunk));
            }
            out.push_str(&m.finish());
            assert_eq!(out, whole, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn encodings_of_a_secret_are_masked_wherever_it_starts() {
        use base64::Engine as _;
        let r = Redactor::default();
        r.add("p@ss word/42!");
        for before in ["", "a", "ab", "abc"] {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{before}p@ss word/42!\n"));
            let masked = r.redact(&encoded);
            assert!(masked.contains(MASK), "{before:?}: {masked}");
        }
        assert_eq!(
            r.redact("p%40ss%20word%2F42%21 p%40ss%20word%2f42%21 p%40ss+word%2F42%21"),
            "*** *** ***"
        );
        r.add_derived("true");
        assert_eq!(r.redact("true"), "true", "too short to be masked");
    }

    #[test]
    fn masks_secrets_and_url_passwords() {
        let r = Redactor::default();
        r.add("hunter2");
        r.add("");
        assert_eq!(
            r.redact("pw=hunter2 url=redis://:tok@h:1"),
            "pw=*** url=redis://:***@h:1"
        );
        let v = serde_json::json!({"a": ["x hunter2 y"], "hunter2": 1});
        assert_eq!(
            r.redact_json(&v),
            serde_json::json!({"a": ["x *** y"], "***": 1})
        );
    }
}

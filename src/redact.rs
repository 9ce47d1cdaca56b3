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

impl Redactor {
    /// Adds a secret; empty strings are ignored. Longer secrets are replaced first so a
    /// secret that contains another is masked whole. What a command may turn it into is
    /// added too: reversed (`rev`), and base64 (`base64`) of its leading whole 3-byte
    /// groups, which encode the same wherever the secret starts a base64 text.
    pub fn add(&self, secret: &str) {
        use base64::Engine as _;
        if secret.is_empty() {
            return;
        }
        let reversed: String = secret.chars().rev().collect();
        let whole_groups = secret.len() / 3 * 3;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(&secret.as_bytes()[..whole_groups]);
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for form in [secret.to_string(), reversed, encoded] {
            if !form.is_empty() && !secrets.contains(&form) {
                secrets.push(form);
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
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

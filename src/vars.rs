//! Parameter values: from `--var`, `--vars-file`, `RUNBOOK_VAR_<name>`, an earlier run
//! (resume) and the runbook's defaults, in that order of precedence.
//!
//! Secrets are best passed through the environment so they stay out of shell history;
//! they are never stored, so a resumed run asks for them again.

use std::path::Path;

use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, Loc, render, suggest};
use crate::error::invalid;
use crate::redact::{MASK, Redactor};
use crate::runbook::Runbook;

/// The resolved parameters of a run and the redactor that knows their secrets.
pub struct Params {
    pub values: Map<String, Value>,
    pub redactor: Redactor,
}

impl Params {
    /// The values with secrets masked, as they may be written down.
    pub fn redacted(&self, rb: &Runbook) -> Map<String, Value> {
        self.values
            .iter()
            .map(|(k, v)| {
                let secret = rb.param(k).is_some_and(|p| p.secret);
                (
                    k.clone(),
                    if secret {
                        Value::String(MASK.into())
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }

    /// Names of secret params that have a value.
    pub fn secrets_given(&self, rb: &Runbook) -> Vec<String> {
        rb.params
            .iter()
            .filter(|p| p.secret && self.values.get(&p.name).is_some_and(|v| !v.is_null()))
            .map(|p| p.name.clone())
            .collect()
    }
}

/// Resolves every param of `rb`. `previous` holds the non-secret values of the run being
/// resumed, `secrets_needed` the secret params that run had.
pub fn resolve(
    rb: &Runbook,
    vars: &[String],
    vars_file: Option<&Path>,
    previous: Option<&Map<String, Value>>,
    secrets_needed: &[String],
) -> anyhow::Result<Params> {
    let mut given: Map<String, Value> = Map::new();
    // Each problem is a whole message: a one-line `error: …`, or the vars file's
    // diagnostics drawn with their places.
    let mut problems = Vec::new();
    let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
    let hint = |k: &str| match suggest(k, names.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None if names.is_empty() => "the runbook declares no params".into(),
        None => format!("its params: {}", names.join(", ")),
    };
    if let Some(path) = vars_file {
        let text = crate::load::read_text(path)
            .map_err(|e| invalid(format!("cannot read the vars file {}: {e}", path.display())))?;
        let node = crate::load::parse(&text, crate::load::Document::Vars)
            .map_err(|d| invalid(render(path, &text, &[d])))?;
        let unknown: Vec<Diagnostic> = node
            .as_mapping()
            .into_iter()
            .flat_map(|map| map.keys())
            .filter(|k| rb.param(k.as_str()).is_none())
            .map(|k| {
                let at = k.span().start().map_or_else(Loc::default, |m| {
                    Loc::new(m.line(), m.column(), k.as_str().chars().count())
                });
                Diagnostic::at(
                    at,
                    format!("`{}` is not a param of runbook `{}`", k.as_str(), rb.name),
                )
                .help(hint(k.as_str()))
            })
            .collect();
        if !unknown.is_empty() {
            problems.push(render(path, &text, &unknown));
        }
        if let Value::Object(map) = crate::validate::to_json(&node, true) {
            given.extend(map);
        }
    }
    for var in vars {
        match var.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                let k = k.trim();
                if rb.param(k).is_none() {
                    problems.push(format!(
                        "error: `{k}` is not a param of runbook `{}`: {}",
                        rb.name,
                        hint(k)
                    ));
                }
                given.insert(k.to_string(), typed(v));
            }
            _ => problems.push(format!("error: --var `{var}` is not NAME=VALUE")),
        }
    }
    let redactor = Redactor::default();
    let mut values = Map::new();
    for p in &rb.params {
        let from_env = std::env::var(format!("RUNBOOK_VAR_{}", p.name))
            .ok()
            .map(|v| typed(&v));
        let earlier = previous
            .and_then(|m| m.get(&p.name))
            .filter(|_| !p.secret)
            .cloned();
        let value = given
            .get(&p.name)
            .cloned()
            .or(from_env)
            .or(earlier)
            .or_else(|| p.default.clone());
        match value {
            Some(v) if size(&v) > MAX_VALUE_BYTES => problems.push(format!(
                "error: the value of param `{}` is {} bytes; at most {MAX_VALUE_BYTES} are taken (put large data in a file and pass its path)",
                p.name,
                size(&v)
            )),
            Some(v) if p.required && !p.allow_empty && is_empty(&v) => problems.push(format!(
                "error: param `{0}` is empty: a required param needs a value (pass --var {0}=VALUE; or declare `allow_empty: true` if empty is meant)",
                p.name
            )),
            Some(v) => {
                if p.secret {
                    redactor.add(&plain(&v));
                }
                values.insert(p.name.clone(), v);
            }
            None if p.secret && secrets_needed.contains(&p.name) => problems.push(format!(
                "error: the secret param `{0}` is not stored with the run: give it again with RUNBOOK_VAR_{0}=... or --var {0}=...",
                p.name
            )),
            None if p.required => problems.push(format!(
                "error: param `{0}` is required: pass --var {0}=VALUE{1}",
                p.name,
                if p.secret { format!(" (better: set RUNBOOK_VAR_{})", p.name) } else { String::new() }
            )),
            None => {
                values.insert(p.name.clone(), Value::Null);
            }
        }
    }
    if problems.is_empty() {
        Ok(Params { values, redactor })
    } else {
        Err(invalid(redactor.redact(&problems.join("\n\n"))))
    }
}

/// The longest a param's value may be, in bytes (as JSON, for a list or a mapping): a
/// value is copied into every template that reads it, so a huge one multiplies.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

fn size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    }
}

/// A value given as text: whole numbers and booleans become typed, the rest stays text.
fn typed(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
    }
}

/// Nothing in it: `--var x=`, `RUNBOOK_VAR_x=`, or `x:` / `x: ""` in a vars file.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

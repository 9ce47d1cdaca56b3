//! Templates in runbook values: Tera over `params`, `steps.<id>.outputs`, `run`, `env`
//! (and `failed_step` in rollback steps).
//!
//! Secrets stay secret through templates: `env.NAME` is secret unless the runbook lists
//! `NAME` under `env:` (a bare `env` holds only those), `__tera_context` is refused, and a
//! value computed from a secret (`{{ env.TOKEN | upper }}`) is rendered a second time with
//! stand-ins for the secrets; what differs is registered with the redactor, so it is masked
//! wherever it shows up.
//!
//! Rendering gives text; an action's input schema then says which inputs are numbers or
//! booleans, and [`coerce`] converts them, so `keys: "{{ params.keys }}"` reaches the
//! action as a number while `engine_version: "8.0"` stays text — and text that is not a
//! number where one is wanted is an error naming the input, never a default.

use std::sync::LazyLock;

use regex::Regex;

use crate::redact::Redactor;
use serde_json::{Map, Value};

/// Marks a value `plan` cannot know yet: it comes from a step that has not run.
const PLACEHOLDER_OPEN: &str = "⟨";
const PLACEHOLDER_CLOSE: &str = "⟩";

/// Whether any string inside `value` is a template.
pub fn has_template(value: &Value) -> bool {
    strings(value).iter().any(|s| is_template(s))
}

pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Every string inside a value, in order.
pub fn strings(value: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    collect_strings(value, &mut out);
    out
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Tera's name for the whole context: it would dump every secret in it.
const WHOLE_CONTEXT: &str = "__tera_context";

/// A template that does not parse: what was expected, and the byte offset in the text
/// where it was not found.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
}

/// Parses a template without rendering it.
pub fn check_syntax(text: &str) -> Result<(), SyntaxError> {
    if !is_template(text) {
        return Ok(());
    }
    if let (Err(message), Some(offset)) = (refuse_whole_context(text), text.find(WHOLE_CONTEXT)) {
        return Err(SyntaxError { message, offset });
    }
    with_tera(|tera| tera.add_raw_template("value", text))
        .map_err(|e| syntax_error(text, &error_text(&e)))
}

thread_local! {
    /// One Tera for every template of this thread: a new one registers all its filters and
    /// functions again, which cost more than parsing and rendering a short template.
    static TERA: std::cell::RefCell<tera::Tera> = std::cell::RefCell::new(tera::Tera::default());
}

fn with_tera<T>(f: impl FnOnce(&mut tera::Tera) -> T) -> T {
    TERA.with(|tera| f(&mut tera.borrow_mut()))
}

/// Renders `text` on its own, without autoescaping (as `Tera::one_off` does).
fn one_off(text: &str, ctx: &tera::Context) -> tera::Result<String> {
    with_tera(|tera| tera.render_str(text, ctx))
}

/// Tera tells a parse error as a drawing of its own (` --> 1:7`, the line, a caret,
/// `= expected …`); the runbook's diagnostic draws the place itself, so only the position
/// and the expectation are kept.
fn syntax_error(text: &str, drawn: &str) -> SyntaxError {
    static AT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"--> (\d+):(\d+)").expect("static regex"));
    let message = drawn
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("= "))
        .unwrap_or(drawn)
        .to_string();
    let offset = AT
        .captures(drawn)
        .and_then(|c| Some((c[1].parse::<usize>().ok()?, c[2].parse::<usize>().ok()?)))
        .and_then(|(line, column)| {
            let start: usize = text
                .split_inclusive('\n')
                .take(line - 1)
                .map(str::len)
                .sum();
            let rest = text.get(start..)?;
            let within = rest
                .char_indices()
                .nth(column - 1)
                .map_or(rest.len(), |(i, _)| i);
            Some(start + within)
        })
        .unwrap_or(0);
    SyntaxError { message, offset }
}

/// A dotted name a template reads (`params.keys`, `steps.deploy.outputs.Endpoint`), and
/// where it starts in the text.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: String,
    pub offset: usize,
}

/// The dotted names read inside `{{ }}` and `{% %}`; text in quotes is not a name.
pub fn references(text: &str) -> Vec<Reference> {
    static BLOCK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}").expect("static regex"));
    static QUOTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""[^"]*"|'[^']*'|`[^`]*`"#).expect("static regex"));
    static PATH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:^|[^A-Za-z0-9_.])((?:params|steps|run|env|failed_step)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)").expect("static regex")
    });
    let mut out = Vec::new();
    for block in BLOCK.find_iter(text) {
        // Blank out quoted text, keeping offsets.
        let blanked =
            QUOTED.replace_all(block.as_str(), |c: &regex::Captures| " ".repeat(c[0].len()));
        for cap in PATH.captures_iter(&blanked) {
            let m = cap.get(1).expect("group 1");
            out.push(Reference {
                path: m.as_str().to_string(),
                offset: block.start() + m.start(),
            });
        }
    }
    out
}

/// What templates can read: params, step outputs, run facts, the environment.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub params: Map<String, Value>,
    /// Step id → outputs.
    pub steps: Map<String, Value>,
    pub run: Map<String, Value>,
    pub failed_step: Option<String>,
    /// The params whose values are secret.
    pub secret_params: Vec<String>,
    /// The environment variables whose values are not secret.
    pub public_env: Vec<String>,
    /// Learns the secrets read from the environment and the values computed from secrets.
    pub redactor: Redactor,
}

impl Scope {
    /// An empty scope that knows which of `rb`'s values are secret, and tells `redactor`.
    pub fn for_runbook(rb: &crate::runbook::Runbook, redactor: &Redactor) -> Scope {
        Scope {
            secret_params: rb
                .params
                .iter()
                .filter(|p| p.secret)
                .map(|p| p.name.clone())
                .collect(),
            public_env: rb.env.clone(),
            redactor: redactor.clone(),
            ..Scope::default()
        }
    }

    pub fn set_outputs(&mut self, step: &str, outputs: &Map<String, Value>) {
        self.steps
            .insert(step.to_string(), serde_json::json!({ "outputs": outputs }));
    }

    /// The context for rendering `texts`: only the steps and environment names they read,
    /// so a template's cost does not grow with the number of steps before it (a runbook of
    /// n steps would otherwise plan in n² time). A bare `steps` gets all of them, a bare
    /// `env` the public variables. With `masked`, every secret stands as a stand-in text.
    /// Also says whether a secret was read.
    fn context<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a str>,
        masked: bool,
    ) -> (tera::Context, bool) {
        let (mut step_ids, mut env_names) = (Vec::new(), Vec::new());
        let mut all_steps = false;
        let mut secret_read = false;
        for text in texts {
            for r in references(text) {
                let mut parts = r.path.splitn(3, '.');
                match (parts.next(), parts.next()) {
                    (Some("steps"), Some(id)) => step_ids.push(id.to_string()),
                    (Some("steps"), None) => all_steps = true,
                    (Some("env"), Some(name)) => env_names.push(name.to_string()),
                    (Some("env"), None) => env_names.extend(self.public_env.iter().cloned()),
                    (Some("params"), Some(name)) => {
                        secret_read |= self.secret_params.iter().any(|p| p == name)
                    }
                    (Some("params"), None) => secret_read |= !self.secret_params.is_empty(),
                    _ => {}
                }
            }
        }
        let stand_in = |name: &str| Value::String(format!("\u{1}secret {name}\u{1}"));
        let mut ctx = tera::Context::new();
        let mut params = self.params.clone();
        if masked {
            for name in &self.secret_params {
                if let Some(v) = params.get_mut(name) {
                    *v = stand_in(name);
                }
            }
        }
        ctx.insert("params", &params);
        if all_steps {
            ctx.insert("steps", &self.steps);
        } else {
            let steps: Map<String, Value> = step_ids
                .iter()
                .filter_map(|id| Some((id.clone(), self.steps.get(id)?.clone())))
                .collect();
            ctx.insert("steps", &steps);
        }
        ctx.insert("run", &self.run);
        let mut env = Map::new();
        for name in env_names {
            let Ok(value) = std::env::var(&name) else {
                continue;
            };
            let value = if self.public_env.contains(&name) {
                Value::String(value)
            } else {
                self.redactor.add(&value);
                secret_read = true;
                if masked {
                    stand_in(&name)
                } else {
                    Value::String(value)
                }
            };
            env.insert(name, value);
        }
        ctx.insert("env", &env);
        if let Some(f) = &self.failed_step {
            ctx.insert("failed_step", f);
        }
        (ctx, secret_read)
    }

    /// A value with every template string rendered.
    pub fn render(&self, value: &Value) -> Result<Value, String> {
        if !has_template(value) {
            return Ok(value.clone());
        }
        let texts = strings(value);
        for text in &texts {
            refuse_whole_context(text)?;
        }
        let (ctx, secret_read) = self.context(texts.iter().copied(), false);
        let rendered = render_with(value, &ctx)?;
        if secret_read {
            self.learn_computed(value, &rendered);
        }
        Ok(rendered)
    }

    /// Registers as secret what the secrets made of `value`: each `{{ }}` of it rendered
    /// with the secrets and with stand-ins, and kept when the two differ (`{{ env.TOKEN !=
    /// "" }}` gives `true` either way: nothing secret). Where the stand-ins cannot be
    /// computed with (`{{ params.pin + 1 }}`), what an expression that reads a secret gives
    /// is kept. Text under `{% %}` cannot be cut so: where such a string differs, its
    /// differing middle is kept, or all of it when it cannot be rendered with stand-ins.
    fn learn_computed(&self, value: &Value, real: &Value) {
        match (value, real) {
            (Value::String(t), Value::String(r)) if is_template(t) => {
                if t.contains("{%") {
                    let (masked_ctx, reads) = self.context([t.as_str()], true);
                    match one_off(t, &masked_ctx) {
                        Ok(m) if &m != r => self.redactor.add_derived(differing_middle(r, &m)),
                        Ok(_) => {}
                        Err(_) if reads => self.redactor.add_derived(r),
                        Err(_) => {}
                    }
                }
                static EXPR: LazyLock<Regex> =
                    LazyLock::new(|| Regex::new(r"(?s)\{\{.*?\}\}").expect("static regex"));
                for expr in EXPR.find_iter(t) {
                    let one = |masked| {
                        let (ctx, reads) = self.context([expr.as_str()], masked);
                        (one_off(expr.as_str(), &ctx).ok(), reads)
                    };
                    match (one(false), one(true)) {
                        ((Some(r), _), (Some(m), _)) if r != m => self.redactor.add_derived(&r),
                        ((Some(r), true), (None, _)) => self.redactor.add_derived(&r),
                        _ => {}
                    }
                }
            }
            (Value::Array(t), Value::Array(r)) => {
                for (t, r) in t.iter().zip(r) {
                    self.learn_computed(t, r);
                }
            }
            (Value::Object(t), Value::Object(r)) => {
                for (k, t) in t {
                    if let Some(r) = r.get(k) {
                        self.learn_computed(t, r);
                    }
                }
            }
            _ => {}
        }
    }

    /// A `when` / condition: a template rendering to `true` or `false`, or a bare expression.
    pub fn condition(&self, text: &str) -> Result<bool, String> {
        let template = if is_template(text) {
            text.to_string()
        } else {
            format!("{{{{ {text} }}}}")
        };
        refuse_whole_context(&template)?;
        let (ctx, _) = self.context([template.as_str()], false);
        let rendered = one_off(&template, &ctx).map_err(|e| error_text(&e))?;
        match rendered.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other if contains_placeholder(other) => Err(format!("decided at run time ({other})")),
            other => Err(format!(
                "the condition gives `{other}`, not `true` or `false`"
            )),
        }
    }
}

fn render_with(value: &Value, ctx: &tera::Context) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) if is_template(s) => {
            Value::String(one_off(s, ctx).map_err(|e| error_text(&e))?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_with(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_with(v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn refuse_whole_context(text: &str) -> Result<(), String> {
    if text.contains(WHOLE_CONTEXT) {
        return Err(format!(
            "`{WHOLE_CONTEXT}` is not available: name the values you need (`params.NAME`, `env.NAME`, …)"
        ));
    }
    Ok(())
}

/// The part of `real` between what it shares with `masked` at the start and at the end.
fn differing_middle<'a>(real: &'a str, masked: &str) -> &'a str {
    let prefix = real
        .char_indices()
        .zip(masked.chars())
        .find(|((_, a), b)| a != b)
        .map_or(real.len().min(masked.len()), |((i, _), _)| i);
    let suffix: usize = real[prefix..]
        .chars()
        .rev()
        .zip(masked[prefix..].chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    &real[prefix..real.len() - suffix]
}

/// Tera's error chain in one line, without its generic first line.
fn error_text(e: &tera::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts
        .join(": ")
        .replace(" while rendering 'value'", "")
        .replace(" while rendering '__tera_one_off'", "")
}

/// The text standing for a value `plan` cannot know yet.
pub fn placeholder(path: &str) -> String {
    format!("{PLACEHOLDER_OPEN}{path}{PLACEHOLDER_CLOSE}")
}

pub fn contains_placeholder(text: &str) -> bool {
    text.contains(PLACEHOLDER_OPEN)
}

/// Whether a rendered value still holds placeholders.
pub fn value_has_placeholder(value: &Value) -> bool {
    strings(value).iter().any(|s| contains_placeholder(s))
}

/// The property names of an action's input schema.
pub fn schema_fields(schema: &schemars::Schema) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The required property names of an action's input schema.
pub fn schema_required(schema: &schemars::Schema) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An input the schema wants as a number or a boolean whose text is not one: `keys:
/// "{{ params.keys }}"` with `keys` set to `abc` must not become a default, or a panic.
#[derive(Debug, PartialEq, Eq)]
pub struct NotA {
    /// Where in the inputs: `keys`, `ok_status[0]`, `parameters.Port`.
    pub field: String,
    /// What the schema wants: "a whole number", "`true` or `false`", ….
    pub wanted: String,
    /// The text found.
    pub got: String,
}

impl std::fmt::Display for NotA {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` must be {}, not `{}`",
            self.field, self.wanted, self.got
        )
    }
}

impl NotA {
    /// The top-level input it is in.
    pub fn input(&self) -> &str {
        self.field.split(['.', '[']).next().unwrap_or(&self.field)
    }
}

/// Turns text inputs into the numbers and booleans the schema asks for. Text that is
/// still a template or holds a value not known yet (in `plan`) is left as it is.
pub fn coerce(schema: &schemars::Schema, inputs: Value) -> Result<Value, NotA> {
    let root = schema.as_value();
    coerce_at(root, root, inputs, "")
}

fn coerce_at(root: &Value, schema: &Value, value: Value, at: &str) -> Result<Value, NotA> {
    let schema = resolve(root, schema);
    Ok(match value {
        Value::String(s) => {
            let types = types_of(root, schema);
            if types.is_empty() || types.iter().any(|t| t == "string") {
                return Ok(Value::String(s));
            }
            let t = s.trim();
            for ty in &types {
                let parsed = match ty.as_str() {
                    "integer" => t
                        .parse::<i64>()
                        .ok()
                        .map(Value::from)
                        .or_else(|| t.parse::<u64>().ok().map(Value::from)),
                    "number" => t
                        .parse::<f64>()
                        .ok()
                        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number)),
                    "boolean" => match t {
                        "true" | "True" | "yes" => Some(Value::Bool(true)),
                        "false" | "False" | "no" => Some(Value::Bool(false)),
                        _ => None,
                    },
                    "null" if matches!(t, "" | "~" | "null" | "none" | "None") => Some(Value::Null),
                    // A list or mapping an output holds, passed on as JSON text
                    // (`{{ steps.x.outputs.objects | json_encode() }}`).
                    "array" => serde_json::from_str::<Value>(t)
                        .ok()
                        .filter(Value::is_array),
                    "object" => serde_json::from_str::<Value>(t)
                        .ok()
                        .filter(Value::is_object),
                    _ => None,
                };
                if let Some(v) = parsed {
                    return if v.is_array() || v.is_object() {
                        coerce_at(root, schema, v, at)
                    } else {
                        Ok(v)
                    };
                }
            }
            let wanted: Vec<&str> = types
                .iter()
                .filter_map(|t| match t.as_str() {
                    "integer" => Some("a whole number"),
                    "number" => Some("a number"),
                    "boolean" => Some("`true` or `false`"),
                    "array" => Some("a list"),
                    "object" => Some("a mapping"),
                    _ => None,
                })
                .collect();
            if wanted.is_empty() || is_template(&s) || contains_placeholder(&s) {
                return Ok(Value::String(s));
            }
            return Err(NotA {
                field: at.to_string(),
                wanted: wanted.join(" or "),
                got: s,
            });
        }
        Value::Array(items) => {
            let item_schema = schema.get("items").cloned().unwrap_or(Value::Bool(true));
            Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| coerce_at(root, &item_schema, v, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema
                .get("additionalProperties")
                .cloned()
                .unwrap_or(Value::Bool(true));
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let s = props
                            .and_then(|p| p.get(&k))
                            .cloned()
                            .unwrap_or_else(|| extra.clone());
                        let field = if at.is_empty() {
                            k.clone()
                        } else {
                            format!("{at}.{k}")
                        };
                        let v = coerce_at(root, &s, v, &field)?;
                        Ok((k, v))
                    })
                    .collect::<Result<_, NotA>>()?,
            )
        }
        other => other,
    })
}

/// Follows `$ref` to `#/$defs/...`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .and_then(|p| p.split('/').try_fold(root, |v, k| v.get(k)))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The JSON types a schema allows (`type`, or the types of `anyOf`/`oneOf` branches).
fn types_of(root: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(root, schema);
    let mut out = Vec::new();
    match schema.get("type") {
        Some(Value::String(t)) => out.push(t.clone()),
        Some(Value::Array(ts)) => {
            out.extend(ts.iter().filter_map(|t| t.as_str().map(str::to_string)))
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(key) {
            for b in branches {
                out.extend(types_of(root, b));
            }
        }
    }
    if schema.get("enum").is_some() && out.is_empty() {
        out.push("string".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_says_what_was_expected_and_where() {
        let e = check_syntax("ok\n{{ a }} {% if %}").unwrap_err();
        assert_eq!(
            e,
            SyntaxError {
                message: "expected a value that can be negated".into(),
                offset: 17,
            }
        );
    }

    #[test]
    fn finds_references_outside_quotes() {
        let refs = references(
            "x {{ steps.deploy.outputs.Endpoint | default(value='params.no') }} {{ params.keys + 1 }}",
        );
        let paths: Vec<_> = refs.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["steps.deploy.outputs.Endpoint", "params.keys"]);
        assert_eq!(refs[0].offset, 5);
    }

    #[test]
    fn renders_and_coerces_by_schema() {
        // An action's input schema: a number, a boolean, text, and an optional number.
        let schema = schemars::json_schema!({
            "type": "object",
            "properties": {
                "keys": {"type": "integer", "minimum": 0},
                "force": {"type": "boolean"},
                "version": {"type": "string"},
                "maybe": {"type": ["integer", "null"], "minimum": 0}
            }
        });
        let mut scope = Scope::default();
        scope.params.insert("n".into(), 5.into());
        let v = scope
            .render(&serde_json::json!({"keys": "{{ params.n * 2 }}", "force": "true", "version": "8.0", "maybe": "3"}))
            .unwrap();
        let c = coerce(&schema, v).unwrap();
        assert_eq!(
            c,
            serde_json::json!({"keys": 10, "force": true, "version": "8.0", "maybe": 3})
        );
        let e = coerce(&schema, serde_json::json!({"keys": "ten"})).unwrap_err();
        assert_eq!(e.to_string(), "`keys` must be a whole number, not `ten`");
        let e = coerce(&schema, serde_json::json!({"maybe": "x"})).unwrap_err();
        assert_eq!(e.to_string(), "`maybe` must be a whole number, not `x`");
    }

    #[test]
    fn a_list_an_output_holds_fills_a_list_input_as_json_text() {
        let schema = schemars::json_schema!({
            "type": "object",
            "properties": {
                "arns": {"type": "array", "items": {"type": "string"}},
                "sizes": {"type": "array", "items": {"type": "integer"}}
            }
        });
        let mut scope = Scope::default();
        scope.params.insert(
            "arns".into(),
            serde_json::json!(["arn:aws:s3:::b/x-0001.rdb", "arn:aws:s3:::b/x-0002.rdb"]),
        );
        let v = scope
            .render(&serde_json::json!({"arns": "{{ params.arns | json_encode() }}", "sizes": "[\"1\", 2]"}))
            .unwrap();
        assert_eq!(
            coerce(&schema, v).unwrap(),
            serde_json::json!({"arns": ["arn:aws:s3:::b/x-0001.rdb", "arn:aws:s3:::b/x-0002.rdb"], "sizes": [1, 2]})
        );
        let e = coerce(&schema, serde_json::json!({"arns": "{\"a\": 1}"})).unwrap_err();
        assert_eq!(e.to_string(), "`arns` must be a list, not `{\"a\": 1}`");
    }

    #[test]
    fn undefined_names_are_errors() {
        let scope = Scope::default();
        let e = scope
            .render(&serde_json::json!("{{ params.nope }}"))
            .unwrap_err();
        assert!(e.contains("params.nope"), "{e}");
        assert!(scope.condition("1 == 1").unwrap());
        assert!(scope.condition("{{ 2 < 1 }}").is_ok_and(|b| !b));
        assert!(scope.condition("'x'").is_err());
    }
}

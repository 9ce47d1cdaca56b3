//! Templates in runbook values: Tera over `params`, `steps.<id>.outputs`, `run`, `env`
//! (and `failed_step` in rollback steps).
//!
//! Rendering gives text; an action's input schema then says which inputs are numbers or
//! booleans, and [`coerce`] converts them, so `keys: "{{ params.keys }}"` reaches the
//! action as a number while `engine_version: "8.0"` stays text.

use std::sync::LazyLock;

use regex::Regex;
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

/// Parses a template without rendering it.
pub fn check_syntax(text: &str) -> Result<(), String> {
    if !is_template(text) {
        return Ok(());
    }
    let mut tera = tera::Tera::default();
    tera.add_raw_template("value", text)
        .map(|_| ())
        .map_err(|e| error_text(&e))
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
}

impl Scope {
    pub fn set_outputs(&mut self, step: &str, outputs: &Map<String, Value>) {
        self.steps
            .insert(step.to_string(), serde_json::json!({ "outputs": outputs }));
    }

    /// The context for rendering `texts`: only the steps and environment names they read,
    /// so a template's cost does not grow with the number of steps before it (a runbook of
    /// n steps would otherwise plan in n² time). A bare `steps` or `env` gets all of it.
    fn context<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> tera::Context {
        let (mut step_ids, mut env_names) = (Vec::new(), Vec::new());
        let (mut all_steps, mut all_env) = (false, false);
        for text in texts {
            for r in references(text) {
                let mut parts = r.path.splitn(3, '.');
                match (parts.next(), parts.next()) {
                    (Some("steps"), Some(id)) => step_ids.push(id.to_string()),
                    (Some("steps"), None) => all_steps = true,
                    (Some("env"), Some(name)) => env_names.push(name.to_string()),
                    (Some("env"), None) => all_env = true,
                    _ => {}
                }
            }
        }
        let mut ctx = tera::Context::new();
        ctx.insert("params", &self.params);
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
        let env: Map<String, Value> = if all_env {
            std::env::vars()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        } else {
            env_names
                .iter()
                .filter_map(|k| Some((k.clone(), Value::String(std::env::var(k).ok()?))))
                .collect()
        };
        ctx.insert("env", &env);
        if let Some(f) = &self.failed_step {
            ctx.insert("failed_step", f);
        }
        ctx
    }

    /// A value with every template string rendered.
    pub fn render(&self, value: &Value) -> Result<Value, String> {
        if !has_template(value) {
            return Ok(value.clone());
        }
        let ctx = self.context(strings(value));
        render_with(value, &ctx)
    }

    /// A `when` / condition: a template rendering to `true` or `false`, or a bare expression.
    pub fn condition(&self, text: &str) -> Result<bool, String> {
        let template = if is_template(text) {
            text.to_string()
        } else {
            format!("{{{{ {text} }}}}")
        };
        let rendered = tera::Tera::one_off(&template, &self.context([template.as_str()]), false)
            .map_err(|e| error_text(&e))?;
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
            Value::String(tera::Tera::one_off(s, ctx, false).map_err(|e| error_text(&e))?)
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

/// Turns text inputs into the numbers and booleans the schema asks for.
pub fn coerce(schema: &schemars::Schema, inputs: Value) -> Value {
    let root = schema.as_value();
    coerce_at(root, root, inputs)
}

fn coerce_at(root: &Value, schema: &Value, value: Value) -> Value {
    let schema = resolve(root, schema);
    match value {
        Value::String(s) => {
            let types = types_of(root, schema);
            if types.iter().any(|t| t == "string") {
                return Value::String(s);
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
                    _ => None,
                };
                if let Some(v) = parsed {
                    return v;
                }
            }
            Value::String(s)
        }
        Value::Array(items) => {
            let item_schema = schema.get("items").cloned().unwrap_or(Value::Bool(true));
            Value::Array(
                items
                    .into_iter()
                    .map(|v| coerce_at(root, &item_schema, v))
                    .collect(),
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
                        let v = coerce_at(root, &s, v);
                        (k, v)
                    })
                    .collect(),
            )
        }
        other => other,
    }
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
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct In {
            keys: u64,
            force: bool,
            version: String,
            maybe: Option<u32>,
        }
        let mut scope = Scope::default();
        scope.params.insert("n".into(), 5.into());
        let v = scope
            .render(&serde_json::json!({"keys": "{{ params.n * 2 }}", "force": "true", "version": "8.0", "maybe": "3"}))
            .unwrap();
        let c = coerce(&schemars::schema_for!(In), v);
        assert_eq!(
            c,
            serde_json::json!({"keys": 10, "force": true, "version": "8.0", "maybe": 3})
        );
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

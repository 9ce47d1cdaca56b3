//! `runbook schema`: the JSON Schema of the runbook format, so editors validate as you type.

use serde_json::{Value, json};

use crate::actions::REGISTRY;
use crate::cli::Global;
use crate::error::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_global: &Global, _args: Args) -> anyhow::Result<Outcome> {
    println!("{}", serde_json::to_string_pretty(&schema())?);
    Ok(Outcome::Success)
}

/// The schema: the top-level fields, and one step shape per action with its own inputs.
pub fn schema() -> Value {
    let duration = json!({"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+$",
                          "description": "e.g. 500ms, 10s, 40m, 1h30m"});
    let mut defs = serde_json::Map::new();
    let mut variants = Vec::new();
    for spec in REGISTRY {
        let mut with = (spec.schema)().to_value();
        // Lift each action's own definitions to the top so their `$ref`s resolve.
        if let Some(Value::Object(inner)) = with.as_object_mut().and_then(|o| o.remove("$defs")) {
            defs.extend(inner);
        }
        if let Some(o) = with.as_object_mut() {
            o.remove("$schema");
            o.remove("title");
        }
        variants.push(json!({
            "if": {"properties": {"action": {"const": spec.name}}, "required": ["action"]},
            "then": {"properties": {"with": with}},
        }));
    }
    let actions: Vec<&str> = REGISTRY.iter().map(|a| a.name).collect();
    let step = json!({
        "type": "object",
        "required": ["id", "action"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "action": {"enum": actions},
            "with": {"type": "object"},
            "description": {"type": "string"},
            "timeout": {"$ref": "#/$defs/duration"},
            "retry": {"type": "object", "additionalProperties": false, "properties": {
                "attempts": {"type": "integer", "minimum": 1},
                "backoff": {"$ref": "#/$defs/duration"}}},
            "on_failure": {"enum": ["rollback", "continue"]},
            "when": {"type": "string", "description": "a condition template, e.g. \"{{ run.platform == 'local' }}\""}
        },
        "allOf": variants,
    });
    defs.insert("duration".into(), duration);
    defs.insert("step".into(), step);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "runbook (version 1)",
        "type": "object",
        "required": ["version", "name", "steps"],
        "additionalProperties": false,
        "properties": {
            "version": {"const": 1},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "params": {"type": "object", "additionalProperties": {
                "anyOf": [
                    {"type": "object", "additionalProperties": false, "properties": {
                        "default": {}, "description": {"type": "string"},
                        "required": {"type": "boolean"}, "allow_empty": {"type": "boolean"},
                        "secret": {"type": "boolean"}}},
                    {"type": ["string", "number", "boolean"]}
                ]}},
            "env": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "description": "Environment variables whose values are not secret; any other `env.NAME` is masked."},
            "probe": {"type": "object", "required": ["endpoints"], "additionalProperties": false, "properties": {
                "endpoints": {"type": "array", "items": {"oneOf": [
                    {"type": "string"},
                    {"type": "object", "required": ["name", "endpoint"], "additionalProperties": false,
                     "properties": {"name": {"type": "string"}, "endpoint": {"type": "string"}}}]}},
                "clients": {"type": "array", "items": {"oneOf": [
                    {"type": "string"},
                    {"type": "object", "required": ["endpoint"], "additionalProperties": false,
                     "properties": {"endpoint": {"type": "string"}, "from": {"type": "string"}}}]}},
                "interval": {"$ref": "#/$defs/duration"},
                "timeout": {"$ref": "#/$defs/duration"},
                "key_prefix": {"type": "string"}}},
            "fleet": {"type": "object", "additionalProperties": false, "properties": {
                "approve": {"enum": ["each", "once"],
                    "description": "In a fleet (`run --for-each`): approve each member at its own approve steps, or once for the whole fleet."}}},
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "rollback": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "finally": {"type": "array", "items": {"$ref": "#/$defs/step"}}
        },
        "$defs": defs,
    })
}

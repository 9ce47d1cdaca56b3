//! `data.info`: chosen `INFO` fields of several endpoints side by side (the memory of a
//! source and its target after a migration), read over the same connections as verify,
//! so `--resolve`, TLS and AUTH apply where a shell with `redis-cli` has none of them.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::resp::Conn;

pub const SPEC: ActionSpec = ActionSpec {
    name: "data.info",
    summary: "Read chosen INFO fields of several endpoints, side by side.",
    outputs: super::Declared::Listed(&["values"]),
    effect: Effect::Observes,
    build: super::build::<DataInfo>,
    schema: super::schema::<DataInfo>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataInfo {
    /// The endpoints to ask.
    #[serde(deserialize_with = "endpoints")]
    #[schemars(with = "Vec<String>")]
    endpoints: Vec<Endpoint>,
    /// A short name per endpoint, for the outputs (default `host:port`).
    #[serde(default)]
    labels: Option<Vec<String>>,
    /// The INFO fields, e.g. `used_memory`, `used_memory_human`, `connected_clients`.
    fields: Vec<String>,
    /// The INFO section to ask for (default: the default sections; `everything` for all).
    #[serde(default)]
    section: Option<String>,
}

fn endpoints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Endpoint>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| Endpoint::parse(text).map_err(serde::de::Error::custom))
        .collect()
}

impl DataInfo {
    fn labels(&self) -> Result<Vec<String>, ActionError> {
        match &self.labels {
            Some(l) if l.len() != self.endpoints.len() => Err(ActionError::fatal(format!(
                "{} labels for {} endpoints: give one label per endpoint",
                l.len(),
                self.endpoints.len()
            ))),
            Some(l) => Ok(l.clone()),
            None => Ok(self.endpoints.iter().map(Endpoint::host_port).collect()),
        }
    }
}

/// A field's value: a number when it reads as one, so an `assert` can compare it.
fn value(text: &str) -> serde_json::Value {
    if let Ok(n) = text.parse::<i64>() {
        n.into()
    } else if let Some(n) = text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        n.into()
    } else {
        text.into()
    }
}

/// `fields` of an INFO reply, each `null` when the server does not report it.
fn pick(info: &str, fields: &[String]) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .map(|name| {
            let found = info.lines().find_map(|line| {
                let (k, v) = line.trim_end().split_once(':')?;
                (k == name).then(|| value(v))
            });
            (name.clone(), found.unwrap_or(serde_json::Value::Null))
        })
        .collect()
}

#[async_trait]
impl Action for DataInfo {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        self.endpoints
            .iter()
            .map(|e| {
                Operation::new(
                    "redis",
                    format!("INFO {} on {e}", self.section.as_deref().unwrap_or("")),
                )
                .param("fields", &self.fields)
            })
            .collect()
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let labels = self.labels()?;
        let mut values = serde_json::Map::new();
        let mut lines = Vec::new();
        for (endpoint, label) in self.endpoints.iter().zip(labels) {
            let failed = |e: crate::resp::RespError| {
                ActionError::transient(format!(
                    "INFO on {endpoint} failed: {}",
                    crate::error::chain(&e)
                ))
            };
            let mut conn = Conn::connect(ctx.resolver, endpoint, Duration::from_secs(10))
                .await
                .map_err(failed)?;
            let info = match &self.section {
                Some(s) => conn.call(&[b"INFO", s.as_bytes()], |r| r.text()).await,
                None => conn.call(&[b"INFO"], |r| r.text()).await,
            }
            .map_err(failed)?;
            let picked = pick(&info, &self.fields);
            let shown: Vec<String> = picked.iter().map(|(k, v)| format!("{k} {v}")).collect();
            lines.push(format!("{label}: {}", shown.join(", ")));
            values.insert(label, picked.into());
        }
        ctx.note(lines.join("; "));
        let mut out = Outputs::new();
        out.insert("values".into(), values.into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_fields_as_numbers_or_text() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmem_fragmentation_ratio:1.5\r\n";
        let fields = [
            "used_memory",
            "used_memory_human",
            "mem_fragmentation_ratio",
            "nope",
        ]
        .map(String::from);
        assert_eq!(
            serde_json::Value::from(pick(info, &fields)),
            serde_json::json!({"used_memory": 1048576, "used_memory_human": "1.00M",
                "mem_fragmentation_ratio": 1.5, "nope": null})
        );
    }
}

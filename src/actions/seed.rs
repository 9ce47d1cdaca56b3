//! `data.seed`: deterministic test data as a step, so a rehearsal migrates something
//! realistic and a later `data.verify` has every type to compare.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::seed::{DataType, SeedError, SeedOptions, seed};

pub const SPEC: ActionSpec = ActionSpec {
    name: "data.seed",
    summary: "Write deterministic keys of every common type (some with TTLs) to an endpoint.",
    outputs: super::Declared::Listed(&["keys", "databases", "by_type", "with_ttl", "keys_per_sec"]),
    effect: Effect::Changes,
    build: super::build::<DataSeed>,
    schema: super::schema::<DataSeed>,
};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSeed {
    /// The server to write to, e.g. `redis://127.0.0.1:6379`.
    #[serde(deserialize_with = "super::verify::endpoint")]
    #[schemars(with = "String")]
    endpoint: Endpoint,
    /// How many keys.
    keys: u64,
    /// Prepended to every key name (default `seed:`).
    #[serde(default)]
    prefix: Option<String>,
    /// Bytes of a string value, a hash field's value and a list item (default 32).
    #[serde(default)]
    value_size: Option<usize>,
    /// Elements of each collection (default 8).
    #[serde(default)]
    elements: Option<usize>,
    /// The share of keys (0 to 1) that get a TTL (default 0.1).
    #[serde(default)]
    ttl_share: Option<f64>,
    /// The shortest TTL; TTLs spread from it to twice it (default `1h`).
    #[serde(
        default,
        deserialize_with = "super::verify::optional_duration::deserialize"
    )]
    #[schemars(with = "Option<String>")]
    ttl: Option<Duration>,
    /// The types, assigned to keys in turn (default string, hash, list, set, zset).
    #[serde(default)]
    types: Option<Vec<DataType>>,
    /// The databases to write the keys into, each getting all of them (default the
    /// endpoint's).
    #[serde(default)]
    db: Option<Vec<i64>>,
    /// Keys per second written at most (default: as fast as it can).
    #[serde(default)]
    max_rate: Option<u64>,
}

impl DataSeed {
    fn options(&self) -> SeedOptions {
        let d = SeedOptions::default();
        SeedOptions {
            keys: self.keys,
            prefix: self.prefix.clone().unwrap_or(d.prefix.clone()),
            value_size: self.value_size.unwrap_or(d.value_size),
            elements: self.elements.unwrap_or(d.elements),
            ttl_share: self.ttl_share.unwrap_or(d.ttl_share),
            ttl: self.ttl.unwrap_or(d.ttl),
            types: self.types.clone().unwrap_or(d.types.clone()),
            dbs: self.db.clone().unwrap_or_default(),
            max_rate: self.max_rate,
            ..d
        }
    }
}

#[async_trait]
impl Action for DataSeed {
    fn effect(&self) -> Effect {
        Effect::Changes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        let o = self.options();
        let types: Vec<&str> = o.types.iter().map(|t| t.as_str()).collect();
        vec![
            Operation::new(
                "redis",
                format!("write {} keys {}* to {}", o.keys, o.prefix, self.endpoint),
            )
            .param("types", types)
            .param("ttl_share", o.ttl_share)
            .param("databases", &o.dbs)
            .param("max_rate", o.max_rate)
            .param("commands", "SET, DEL + HSET/RPUSH/SADD/ZADD/XADD, PEXPIRE"),
        ]
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let opts = self.options();
        // Seeding writes the same data again, so a resumed step simply runs again.
        let summary = seed(ctx.resolver, &self.endpoint, &opts, &|_| {})
            .await
            .map_err(|e| match e {
                SeedError::Options(m) => ActionError::fatal(m),
                other => ActionError::transient(crate::error::chain(&other)),
            })?;
        ctx.note(format!(
            "wrote {} keys to {} ({:.0} keys/s)",
            summary.keys, summary.endpoint, summary.keys_per_sec
        ));
        let mut out = Outputs::new();
        out.insert("keys".into(), summary.keys.into());
        out.insert("databases".into(), summary.databases.clone().into());
        out.insert(
            "by_type".into(),
            serde_json::to_value(&summary.by_type).unwrap_or_default(),
        );
        out.insert("with_ttl".into(), summary.with_ttl.into());
        out.insert("keys_per_sec".into(), summary.keys_per_sec.round().into());
        Ok(out)
    }
}

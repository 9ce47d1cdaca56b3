//! `data.sync_check`: proof that a live migration replicates now — a key written to the
//! source is read on the target within a deadline — over the same connections as verify
//! (`--resolve`, TLS, AUTH), where a shell with `redis-cli -u` has none of them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::{Instant, sleep};

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::resp::Conn;

pub const SPEC: ActionSpec = ActionSpec {
    name: "data.sync_check",
    summary: "Write a key to the source and wait until the target has it (live replication works).",
    outputs: super::Declared::Listed(&["key", "latency_ms"]),
    effect: Effect::Changes,
    build: super::build::<SyncCheck>,
    schema: super::schema::<SyncCheck>,
};

/// How often the target is asked.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncCheck {
    /// Where the key is written, e.g. `redis://10.0.1.5:6379`.
    #[serde(deserialize_with = "super::verify::endpoint")]
    #[schemars(with = "String")]
    source: Endpoint,
    /// Where it must arrive.
    #[serde(deserialize_with = "super::verify::endpoint")]
    #[schemars(with = "String")]
    target: Endpoint,
    /// How long the key may take to arrive (default `10s`).
    #[serde(
        default,
        deserialize_with = "super::verify::optional_duration::deserialize"
    )]
    #[schemars(with = "Option<String>")]
    deadline: Option<Duration>,
    /// The key written (default `runbook:sync-check`); it expires after an hour.
    #[serde(default)]
    key: Option<String>,
}

impl SyncCheck {
    fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("runbook:sync-check")
    }

    fn deadline(&self) -> Duration {
        self.deadline.unwrap_or(Duration::from_secs(10))
    }
}

#[async_trait]
impl Action for SyncCheck {
    fn effect(&self) -> Effect {
        Effect::Changes
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Vec<Operation> {
        vec![
            Operation::new("redis", format!("SET {} on {}", self.key(), self.source))
                .param("expires", "1h"),
            Operation::new(
                "check",
                format!(
                    "GET {} on {} returns it within {}",
                    self.key(),
                    self.target,
                    crate::duration::format(self.deadline())
                ),
            ),
        ]
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let timeout = self.deadline().max(Duration::from_secs(5));
        let connect = async |which: &str, endpoint: &Endpoint| {
            Conn::connect(ctx.resolver, endpoint, timeout)
                .await
                .map_err(|e| {
                    ActionError::transient(format!(
                        "cannot connect to the {which} {endpoint}: {}",
                        crate::error::chain(&e)
                    ))
                })
        };
        let mut source = connect("source", &self.source).await?;
        let mut target = connect("target", &self.target).await?;
        // A value of this run only, so a key left by an earlier check does not count.
        let token = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_string();
        let key = self.key().as_bytes();
        let failed = |which: &str, endpoint: &Endpoint, e: crate::resp::RespError| {
            ActionError::transient(format!(
                "the {which} {endpoint} failed: {}",
                crate::error::chain(&e)
            ))
        };
        source
            .call(&[b"SET", key, token.as_bytes(), b"EX", b"3600"], |_| ())
            .await
            .map_err(|e| failed("source", &self.source, e))?;
        let written = Instant::now();
        let until = written + self.deadline();
        loop {
            let seen = target
                .call(&[b"GET", key], |r| r.bytes() == Some(token.as_bytes()))
                .await
                .map_err(|e| failed("target", &self.target, e))?;
            if seen {
                let latency = written.elapsed();
                ctx.note(format!(
                    "{} reached {} in {} ms",
                    self.key(),
                    self.target,
                    latency.as_millis()
                ));
                let mut out = Outputs::new();
                out.insert("key".into(), self.key().into());
                out.insert("latency_ms".into(), (latency.as_millis() as u64).into());
                return Ok(out);
            }
            if Instant::now() >= until {
                return Err(ActionError::fatal(format!(
                    "the key {} written to the source {} did not reach the target {} within {}: is the migration replicating?",
                    self.key(),
                    self.source,
                    self.target,
                    crate::duration::format(self.deadline())
                )));
            }
            sleep(POLL).await;
        }
    }
}

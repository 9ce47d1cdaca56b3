//! `migration.preflight`: the prerequisites of an online migration, checked before anything
//! changes (DESIGN.md, "Facts the runbooks must respect").
//!
//! The source-side checks speak the Redis protocol to the source and are the same code for
//! both targets; the target-side checks (status, Multi-AZ, in-transit encryption, the
//! source reachable from the target) go through the target as `CheckMigrationTarget`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Action, ActionError, ActionSpec, Effect, Operation, Outputs, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::{ControlOp, GroupInfo, PlatformKind};

pub const SPEC: ActionSpec = ActionSpec {
    name: "migration.preflight",
    summary: "Check an online migration's prerequisites on the source and the target; fails listing every unmet one.",
    outputs: &[
        "ok",
        "checks",
        "source_engine",
        "source_version",
        "source_used_memory",
    ],
    effect: Effect::Observes,
    build: super::build::<Preflight>,
    schema: super::schema::<Preflight>,
};

/// ElastiCache's `databases`, which its CONFIG command does not show.
const ELASTICACHE_DATABASES: u64 = 16;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preflight {
    /// The replication group that will receive the data.
    replication_group: String,
    /// The self-hosted source, `host:port` or `redis://host:port`.
    source: String,
}

#[async_trait]
impl Action for Preflight {
    fn effect(&self) -> Effect {
        Effect::Observes
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        let mut ops = vec![
            Operation::new("redis", "PING, INFO server, INFO memory on the source"),
            Operation::new(
                "redis",
                "CONFIG GET protected-mode / bind / databases on the source",
            ),
            Operation::new(
                "check",
                "the source's RDB version loads on the target engine",
            ),
        ];
        ops.extend(ctx.platform.explain(&ControlOp::CheckMigrationTarget {
            group: self.replication_group.clone(),
            sources: Endpoint::parse(&self.source).into_iter().collect(),
        }));
        ops
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let source = super::migration::source(&self.source)?;
        let described = ctx
            .platform
            .apply(
                ctx,
                &ControlOp::DescribeGroup {
                    group: self.replication_group.clone(),
                },
            )
            .await?;
        let target: GroupInfo = serde_json::from_value(Value::Object(described))
            .map_err(|e| ActionError::fatal(format!("the target's description: {e}")))?;
        let mut checks = Checks::default();
        let facts = source_checks(ctx, &source, &target, &mut checks).await;

        let target_side = ctx
            .platform
            .apply(
                ctx,
                &ControlOp::CheckMigrationTarget {
                    group: self.replication_group.clone(),
                    sources: vec![source.clone()],
                },
            )
            .await?;
        if let Some(Value::Array(items)) = target_side.get("checks") {
            checks.items.extend(items.iter().cloned());
        }
        for c in &checks.items {
            let mark = if c["ok"] == true { "ok" } else { "FAILED" };
            ctx.note(format!(
                "{mark} {}: {}",
                c["name"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            ));
        }
        let failed: Vec<String> = checks
            .items
            .iter()
            .filter(|c| c["ok"] != true)
            .map(|c| {
                format!(
                    "{}: {}",
                    c["name"].as_str().unwrap_or(""),
                    c["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !failed.is_empty() {
            return Err(ActionError::fatal(format!(
                "{} migration prerequisite(s) not met: {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        let mut out = Outputs::new();
        out.insert("ok".into(), true.into());
        out.insert("checks".into(), Value::Array(checks.items));
        out.insert("source_engine".into(), facts.engine.into());
        out.insert("source_version".into(), facts.version.into());
        out.insert("source_used_memory".into(), facts.used_memory.into());
        Ok(out)
    }
}

#[derive(Default)]
struct Checks {
    items: Vec<Value>,
}

impl Checks {
    fn add(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.items
            .push(json!({"name": name, "ok": ok, "detail": detail.into()}));
    }
}

#[derive(Default)]
struct SourceFacts {
    engine: String,
    version: String,
    used_memory: u64,
}

async fn source_checks(
    ctx: &StepCtx<'_>,
    source: &Endpoint,
    target: &GroupInfo,
    checks: &mut Checks,
) -> SourceFacts {
    let mut facts = SourceFacts::default();
    checks.add(
        "source_no_tls",
        !source.tls,
        if source.tls {
            "the source uses TLS; online migration needs a plain connection"
        } else {
            "no TLS"
        },
    );
    let mut conn = match ctx.resolver.connect(source, Duration::from_secs(5)).await {
        Ok(c) => c,
        Err(e) => {
            checks.add(
                "source_ping",
                false,
                format!("{source} cannot be reached: {e}"),
            );
            return facts;
        }
    };
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(_) => checks.add("source_ping", true, format!("{source} answers PONG")),
        Err(e) if e.to_string().contains("NOAUTH") => {
            checks.add(
                "source_no_auth",
                false,
                "the source requires AUTH; online migration needs a source without AUTH",
            );
            return facts;
        }
        Err(e) => {
            checks.add("source_ping", false, format!("{source}: {e}"));
            return facts;
        }
    }
    checks.add(
        "source_no_auth",
        source.password.is_none(),
        if source.password.is_some() {
            "a password was given; online migration needs a source without AUTH"
        } else {
            "no AUTH"
        },
    );
    let info = |section: &'static str| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("INFO")
                .arg(section)
                .query_async::<String>(&mut conn)
                .await
                .map(|t| crate::platform::local::server::parse_info(&t))
        }
    };
    match info("server").await {
        Ok(server) => {
            let (engine, version) = crate::platform::local::server::engine_of(&server);
            facts.engine = engine.to_string();
            facts.version = version;
            let (ok, detail) = rdb_compatible(
                &facts.engine,
                &facts.version,
                &target.engine,
                &target.engine_version,
            );
            checks.add("rdb_compatible", ok, detail);
        }
        Err(e) => checks.add("source_version", false, format!("INFO server: {e}")),
    }
    let config = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async::<BTreeMap<String, String>>(&mut conn)
                .await
                .map(|m| m.get(name).cloned().unwrap_or_default())
        }
    };
    match config("protected-mode").await {
        Ok(v) => checks.add(
            "source_protected_mode_off",
            v == "no",
            format!("protected-mode is {v}"),
        ),
        Err(e) => checks.add(
            "source_protected_mode_off",
            false,
            format!("CONFIG GET protected-mode: {e}"),
        ),
    }
    match config("bind").await {
        Ok(bind) => {
            let loopback_only = !bind.is_empty()
                && bind.split_whitespace().all(|a| {
                    a.trim_start_matches('-').starts_with("127.")
                        || a.trim_start_matches('-') == "::1"
                });
            let ok = !(loopback_only && ctx.platform.kind() == PlatformKind::Aws);
            let detail = if ok {
                format!("bind `{bind}` lets the target's nodes in")
            } else {
                format!(
                    "bind `{bind}` only accepts loopback clients; bind an address the ElastiCache nodes can reach"
                )
            };
            checks.add("source_bind", ok, detail);
        }
        Err(e) => checks.add("source_bind", false, format!("CONFIG GET bind: {e}")),
    }
    let target_databases = target_databases(ctx, target).await;
    match config("databases").await {
        Ok(v) => {
            let n: u64 = v.parse().unwrap_or(0);
            checks.add(
                "same_databases",
                n == target_databases,
                format!("source has {n} databases, target {target_databases}"),
            );
        }
        Err(e) => checks.add(
            "same_databases",
            false,
            format!("CONFIG GET databases: {e}"),
        ),
    }
    match info("memory").await {
        Ok(mem) => {
            facts.used_memory = mem
                .get("used_memory")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let max = target_maxmemory(ctx, target).await;
            let (ok, detail) = match max {
                Some(max) if max > 0 => (
                    facts.used_memory < max,
                    format!(
                        "source uses {} bytes, target holds {max}",
                        facts.used_memory
                    ),
                ),
                _ => (
                    true,
                    format!(
                        "source uses {} bytes; the target sets no memory limit",
                        facts.used_memory
                    ),
                ),
            };
            checks.add("memory_fits", ok, detail);
        }
        Err(e) => checks.add("memory_fits", false, format!("INFO memory: {e}")),
    }
    facts
}

/// Whether an RDB written by `source` loads on `target` (engine names and versions).
fn rdb_compatible(
    source: &str,
    source_version: &str,
    target: &str,
    target_version: &str,
) -> (bool, String) {
    let (s, t) = (major_minor(source_version), major_minor(target_version));
    let what = format!("{source} {source_version} → {target} {target_version}");
    match (source, target) {
        ("redis", "valkey") if s >= (7, 4) && t < (9, 0) => (
            false,
            format!(
                "{what}: Redis 7.4 and later write RDB 12, which Valkey 7.x/8.x refuses (a failed full sync leaves the target empty)"
            ),
        ),
        ("valkey", "redis") => (
            false,
            format!("{what}: Redis cannot load the RDB format Valkey writes"),
        ),
        ("redis", "redis") if s > t => (
            false,
            format!("{what}: an older Redis cannot load a newer Redis's RDB"),
        ),
        _ => (true, format!("{what}: the target loads the source's RDB")),
    }
}

fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A connection to the target's primary endpoint, if it answers.
async fn target_conn(
    ctx: &StepCtx<'_>,
    target: &GroupInfo,
) -> Option<redis::aio::MultiplexedConnection> {
    let endpoint = Endpoint::parse(&target.primary_endpoint).ok()?;
    ctx.resolver
        .connect(&endpoint, Duration::from_secs(5))
        .await
        .ok()
}

/// The target's `databases` (ElastiCache hides CONFIG: its fixed value then).
async fn target_databases(ctx: &StepCtx<'_>, target: &GroupInfo) -> u64 {
    let Some(mut conn) = target_conn(ctx, target).await else {
        return ELASTICACHE_DATABASES;
    };
    redis::cmd("CONFIG")
        .arg("GET")
        .arg("databases")
        .query_async::<BTreeMap<String, String>>(&mut conn)
        .await
        .ok()
        .and_then(|m| m.get("databases").and_then(|v| v.parse().ok()))
        .unwrap_or(ELASTICACHE_DATABASES)
}

async fn target_maxmemory(ctx: &StepCtx<'_>, target: &GroupInfo) -> Option<u64> {
    let mut conn = target_conn(ctx, target).await?;
    let text: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .ok()?;
    crate::platform::local::server::parse_info(&text)
        .get("maxmemory")
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdb_rules_follow_the_facts() {
        assert!(!rdb_compatible("redis", "7.4.6", "valkey", "8.2").0);
        assert!(!rdb_compatible("redis", "7.4.0", "valkey", "7.2.5").0);
        assert!(rdb_compatible("redis", "7.0.15", "valkey", "8.2").0);
        assert!(rdb_compatible("redis", "7.0.15", "valkey", "9.1.0").0);
        assert!(!rdb_compatible("valkey", "9.1.0", "redis", "7.0.15").0);
        assert!(!rdb_compatible("redis", "7.2.4", "redis", "7.0").0);
    }
}

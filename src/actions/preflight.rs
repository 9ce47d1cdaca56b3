//! `migration.preflight`: the prerequisites of an online migration, checked before anything
//! changes (DESIGN.md, "Facts the runbooks must respect").
//!
//! The source-side checks speak the Redis protocol to the source and are the same code for
//! both platforms; the target-side checks (status, Multi-AZ, in-transit encryption, the
//! source reachable from the target) go through the platform as [`CheckMigrationTarget`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Action, ActionError, ActionSpec, Declared, Effect, Operation, Outputs, PlanCtx, StepCtx,
};
use crate::endpoint::Endpoint;
use crate::platform::contract::Check;
use crate::platform::{CheckMigrationTarget, DescribeGroup, GroupInfo, PlatformKind};

pub const SPEC: ActionSpec = ActionSpec {
    name: "migration.preflight",
    summary: "Check an online migration's prerequisites on the source and the target; fails listing every unmet one.",
    outputs: Declared::Reply(super::schema::<Passed>),
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

/// Every prerequisite met (an unmet one fails the step).
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Passed {
    ok: bool,
    checks: Vec<Check>,
    source_engine: String,
    source_version: String,
    source_used_memory: u64,
}

impl Preflight {
    fn target(&self) -> CheckMigrationTarget {
        CheckMigrationTarget {
            replication_group: self.replication_group.clone(),
            source: self.source.clone(),
        }
    }
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
        ops.extend(ctx.platform.plan(ctx, &self.target()));
        ops
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let request = self.target();
        let source = request.source()?;
        let target = ctx
            .platform
            .serve(
                ctx,
                &DescribeGroup {
                    replication_group: self.replication_group.clone(),
                },
            )
            .await?;
        let mut checks = Vec::new();
        let facts = source_checks(ctx, &source, &target, &mut checks).await;
        checks.extend(ctx.platform.serve(ctx, &request).await?.checks);
        for c in &checks {
            let mark = if c.ok { "ok" } else { "FAILED" };
            ctx.note(format!("{mark} {}: {}", c.name, c.detail));
        }
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            return Err(ActionError::fatal(format!(
                "{} migration prerequisite(s) not met: {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        super::outputs_of(&Passed {
            ok: true,
            checks,
            source_engine: facts.engine,
            source_version: facts.version,
            source_used_memory: facts.used_memory,
        })
    }
}

fn add(checks: &mut Vec<Check>, name: &str, ok: bool, detail: impl Into<String>) {
    checks.push(Check::new(name, ok, detail));
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
    checks: &mut Vec<Check>,
) -> SourceFacts {
    let mut facts = SourceFacts::default();
    add(
        checks,
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
            add(
                checks,
                "source_ping",
                false,
                format!("{source} cannot be reached: {e}"),
            );
            return facts;
        }
    };
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(_) => add(
            checks,
            "source_ping",
            true,
            format!("{source} answers PONG"),
        ),
        Err(e) if e.to_string().contains("NOAUTH") => {
            add(
                checks,
                "source_no_auth",
                false,
                "the source requires AUTH; online migration needs a source without AUTH",
            );
            return facts;
        }
        Err(e) => {
            add(checks, "source_ping", false, format!("{source}: {e}"));
            return facts;
        }
    }
    add(
        checks,
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
            add(checks, "rdb_compatible", ok, detail);
        }
        Err(e) => add(checks, "source_version", false, format!("INFO server: {e}")),
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
        Ok(v) => add(
            checks,
            "source_protected_mode_off",
            v == "no",
            format!("protected-mode is {v}"),
        ),
        Err(e) => add(
            checks,
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
            add(checks, "source_bind", ok, detail);
        }
        Err(e) => add(
            checks,
            "source_bind",
            false,
            format!("CONFIG GET bind: {e}"),
        ),
    }
    let target_databases = target_databases(ctx, target).await;
    match config("databases").await {
        Ok(v) => {
            let n: u64 = v.parse().unwrap_or(0);
            add(
                checks,
                "same_databases",
                n == target_databases,
                format!("source has {n} databases, target {target_databases}"),
            );
        }
        Err(e) => add(
            checks,
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
            add(checks, "memory_fits", ok, detail);
        }
        Err(e) => add(checks, "memory_fits", false, format!("INFO memory: {e}")),
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

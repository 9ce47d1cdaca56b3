//! The in-place engine change of a replication group (Redis OSS → Valkey), the way AWS
//! documents it for ElastiCache: ModifyReplicationGroup with the new engine, then a wait.

use super::group::{
    AVAILABLE, clusters_call, describe, describe_call, engine_version, events_call, info, status,
    wait_group,
};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{GroupInfo, ModifyEngine};

#[async_trait::async_trait]
impl Handles<ModifyEngine> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &ModifyEngine) -> Vec<Operation> {
        let group = &request.replication_group;
        let engine = &request.engine;
        let mut call = Operation::new("aws", "elasticache:ModifyReplicationGroup")
            .param("ReplicationGroupId", group)
            .param("Engine", engine);
        if let Some(v) = &request.engine_version {
            call = call.param("EngineVersion", v);
        }
        if let Some(p) = &request.parameter_group {
            call = call.param("CacheParameterGroupName", p);
        }
        vec![
            describe_call(group),
            clusters_call(),
            call.param("ApplyImmediately", true)
                .param("when", "the group does not run this engine and version yet")
                .destructive(),
            Operation::wait(format!("until {group} is `{AVAILABLE}` on {engine}")),
            events_call(group),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &ModifyEngine,
    ) -> Result<GroupInfo, ActionError> {
        modify_engine(
            self,
            ctx,
            &request.replication_group,
            &request.engine,
            request.engine_version.as_deref(),
            request.parameter_group.as_deref(),
        )
        .await
    }
}

/// `valkey 8.2`, or `valkey` when the version is not known.
fn engine_and_version(engine: &str, version: Option<&str>) -> String {
    match version.filter(|v| !v.is_empty()) {
        Some(v) => format!("{engine} {v}"),
        None => engine.to_string(),
    }
}

/// True when the group runs `engine` (and `version`, when given and known).
fn runs(engine_now: &str, version_now: Option<&str>, engine: &str, version: Option<&str>) -> bool {
    engine_now.eq_ignore_ascii_case(engine)
        && match (version, version_now) {
            (Some(want), Some(have)) => have == want || have.starts_with(&format!("{want}.")),
            _ => true,
        }
}

/// elasticache:ModifyReplicationGroup to another engine (unless it already runs it),
/// then waits for `available` on the new engine.
async fn modify_engine(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    engine: &str,
    version: Option<&str>,
    parameter_group: Option<&str>,
) -> Result<GroupInfo, ActionError> {
    let current = describe(aws, group).await?;
    let version_now = engine_version(aws, &current).await?;
    let engine_now = current.engine().unwrap_or_default();
    let state = status(&current);
    if state == AVAILABLE && runs(engine_now, version_now.as_deref(), engine, version) {
        ctx.note(format!(
            "{group} already runs {}: nothing to change",
            engine_and_version(engine_now, version_now.as_deref())
        ));
    } else if state == "modifying" {
        ctx.note(format!("{group} is already being modified: waiting for it"));
    } else {
        aws.clients
            .elasticache
            .modify_replication_group()
            .replication_group_id(group)
            .engine(engine)
            .set_engine_version(version.map(str::to_string))
            .set_cache_parameter_group_name(parameter_group.map(str::to_string))
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:ModifyReplicationGroup", e))?;
        ctx.note(format!(
            "ModifyReplicationGroup accepted: {group} from {} to {}",
            engine_and_version(engine_now, version_now.as_deref()),
            engine_and_version(engine, version)
        ));
    }
    let what = format!("{group} to be `{AVAILABLE}` on {engine}");
    let done = wait_group(aws, ctx, group, &what, |g| {
        status(g) == AVAILABLE && g.engine().is_none_or(|e| e.eq_ignore_ascii_case(engine))
    })
    .await?;
    let info = info(aws, &done).await?;
    if !runs(
        &info.engine,
        Some(&info.engine_version)
            .filter(|v| !v.is_empty())
            .map(String::as_str),
        engine,
        version,
    ) {
        return Err(ActionError::fatal(format!(
            "{group} is `{AVAILABLE}` but runs {}, not {}",
            engine_and_version(&info.engine, Some(&info.engine_version)),
            engine_and_version(engine, version)
        )));
    }
    Ok(info)
}

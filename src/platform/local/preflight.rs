//! The target-side prerequisites of an online migration, as a rehearsal can check them:
//! the group's status and settings from the template, the source answering, and the two
//! sides sharded alike (as many shards, each with the same slots).

use async_trait::async_trait;

use super::{Local, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::endpoint::Endpoint;
use crate::platform::Handles;
use crate::platform::contract::{Check, CheckMigrationTarget, TargetChecks};

#[async_trait]
impl Handles<CheckMigrationTarget> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &CheckMigrationTarget) -> Vec<Operation> {
        vec![
            Operation::new(
                "check",
                format!(
                    "{} is available, Multi-AZ, without in-transit encryption",
                    request.replication_group
                ),
            )
            .param("source", &request.source),
            Operation::new(
                "redis",
                "INFO cluster, CLUSTER SLOTS on the source: as many shards as the target, each with the same slots",
            ),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CheckMigrationTarget,
    ) -> Result<TargetChecks, ActionError> {
        let source = request.source()?;
        let run = self.open(ctx).await?;
        Ok(TargetChecks {
            checks: run
                .check_target(&request.replication_group, &source)
                .await?,
        })
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

impl Run<'_, '_> {
    async fn check_target(&self, id: &str, source: &Endpoint) -> Result<Vec<Check>> {
        let info = self.describe(id).await?;
        let g = self.group(id)?;
        let mut checks = vec![
            Check::new(
                "target_available",
                info.status == "available",
                format!("{id} is {}", info.status),
            ),
            Check::new(
                "target_multi_az",
                g.multi_az,
                format!("Multi-AZ is {}", on_off(g.multi_az)),
            ),
            Check::new(
                "target_in_transit_encryption_off",
                !g.transit_encryption,
                format!("in-transit encryption is {}", on_off(g.transit_encryption)),
            ),
        ];
        checks.push(match self.source_shards(source).await {
            Ok(topology) => match self.matching_sources(g, source, &topology) {
                Ok(_) => Check::new(
                    "target_shard_count",
                    true,
                    format!(
                        "{source} and {id} have {} shard(s) with the same slots ({})",
                        info.shards.len(),
                        info.shards
                            .iter()
                            .map(|s| format!("{} {}", s.id, s.slots))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ),
                Err(why) => Check::new("target_shard_count", false, why),
            },
            Err(e) => Check::new("target_shard_count", false, e.to_string()),
        });
        let reached = self.source_info(source).await;
        checks.push(Check::new(
            "source_reachable_from_target",
            reached.is_ok(),
            match reached {
                Ok(_) => format!("{source} answers on loopback"),
                Err(e) => e.to_string(),
            },
        ));
        Ok(checks)
    }
}

//! Seed 004's S3 path for node-based groups: a snapshot exported to a bucket as RDB files
//! (CopySnapshot with TargetBucket), checked first against what AWS requires, and a new
//! group seeded from those files (CreateReplicationGroup with SnapshotArns).
//!
//! The bucket's region and its grant to ElastiCache are read from S3 ([`bucket`]) before
//! anything is exported or created.

use aws_sdk_elasticache::types::DataTieringStatus;

use super::bucket::{self, Use};
use super::group::{AVAILABLE, describe_call, events_call, find, info, status, wait_group};
use super::snapshot::{find_snapshot, node_layout};
use super::wait::{self, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    Check, CheckSnapshotExport, ExportSnapshot, GroupInfo, ImportSnapshot, S3_ARN,
    SnapshotExported, TargetChecks, bucket_name_problem, even_slots, exported_object, rdb_problem,
};

/// The node type of a group seeded from S3 when the request names none.
const NODE_TYPE: &str = "cache.t4g.small";

fn snapshots_call(snapshot: &str) -> Operation {
    Operation::new("aws", "elasticache:DescribeSnapshots").param("SnapshotName", snapshot)
}

/// The node groups of a group seeded from `files` RDB files: one a file, in order, over
/// ElastiCache's even slot split; none (no cluster mode) for one file.
fn seeded_shards(files: usize) -> Vec<(String, Option<String>)> {
    if files <= 1 {
        return Vec::new();
    }
    even_slots(u16::try_from(files).unwrap_or(u16::MAX))
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| (format!("{:04}", i + 1), Some(format!("{a}-{b}"))))
        .collect()
}

/// The S3 reads of a bucket preflight.
pub(super) fn bucket_calls(bucket: &str) -> Operation {
    Operation::new(
        "aws",
        "s3:GetBucketLocation, s3:GetBucketAcl, s3:GetBucketPolicy",
    )
    .param("Bucket", bucket)
}

/// The S3 reads that check RDB files before a cache is seeded from them.
pub(super) fn seed_calls(arns: &[String]) -> [Operation; 2] {
    [
        Operation::new("aws", "s3:HeadObject, s3:GetObjectAcl of each RDB file")
            .param("SnapshotArns", arns),
        Operation::new(
            "aws",
            "s3:GetBucketLocation, s3:GetBucketPolicy of their buckets",
        ),
    ]
}

impl Aws {
    /// The bucket's region against ours, and its grant to ElastiCache for `usage`.
    async fn bucket_checks(&self, name: &str, usage: Use<'_>) -> Result<Vec<Check>, ActionError> {
        let s3 = &self.clients.s3;
        let ours = s3
            .config()
            .region()
            .map_or_else(String::new, |r| r.to_string());
        let theirs = bucket::region(s3, name).await?;
        let grant = bucket::grant(s3, name, usage).await?;
        Ok(vec![
            Check::new(
                "bucket_region",
                theirs == ours,
                if theirs == ours {
                    format!("s3://{name} is in {ours}")
                } else {
                    format!(
                        "s3://{name} is in {theirs}, ElastiCache here is in {ours}: ElastiCache uses only a bucket in its own region"
                    )
                },
            ),
            Check::new(
                "bucket_grant",
                grant.is_ok(),
                grant.unwrap_or_else(|why| why),
            ),
        ])
    }

    /// Refuses a bucket ElastiCache could not export into.
    pub(super) async fn check_export_bucket(&self, name: &str) -> Result<(), ActionError> {
        Check::refuse_first("S3 check", &self.bucket_checks(name, Use::Export).await?)
    }

    /// Refuses RDB files ElastiCache could not load: a missing object, a bucket in another
    /// region, or a file ElastiCache may not read. ARNs of other kinds (a serverless
    /// snapshot's) are ElastiCache's own and not looked at.
    pub(super) async fn check_seed_objects(&self, arns: &[String]) -> Result<(), ActionError> {
        for arn in arns.iter().filter(|a| a.starts_with(S3_ARN)) {
            let (bucket, key) = crate::platform::contract::s3_object(arn)?;
            if !bucket::object_exists(&self.clients.s3, bucket, key).await? {
                return Err(ActionError::fatal(format!(
                    "{arn} does not exist: the RDB file must be in S3 before a cache is seeded from it"
                )));
            }
            Check::refuse_first(
                "S3 check",
                &self.bucket_checks(bucket, Use::Seed(key)).await?,
            )?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Handles<CheckSnapshotExport> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &CheckSnapshotExport) -> Vec<Operation> {
        vec![
            snapshots_call(&r.snapshot),
            Operation::new(
                "check",
                format!(
                    "available, no data tiering, an RDB version {} loads, bucket name {}",
                    r.engine, r.bucket
                ),
            ),
            bucket_calls(&r.bucket),
        ]
    }

    async fn call(
        &self,
        _: &StepCtx<'_>,
        r: &CheckSnapshotExport,
    ) -> Result<TargetChecks, ActionError> {
        let mut checks = Vec::new();
        match find_snapshot(self, &r.snapshot).await? {
            None => checks.push(Check::new(
                "snapshot_available",
                false,
                format!("snapshot `{}` does not exist", r.snapshot),
            )),
            Some(s) => {
                let state = s.snapshot_status().unwrap_or("unknown");
                checks.push(Check::new(
                    "snapshot_available",
                    state == AVAILABLE,
                    format!("status {state}"),
                ));
                let tiering = s.data_tiering() == Some(&DataTieringStatus::Enabled);
                checks.push(Check::new(
                    "data_tiering",
                    !tiering,
                    if tiering {
                        "the snapshot was taken with data tiering, which cannot be exported to S3"
                    } else {
                        "off"
                    },
                ));
                let (engine, version) = (
                    s.engine().unwrap_or("redis").to_ascii_lowercase(),
                    s.engine_version().unwrap_or_default().to_string(),
                );
                let problem = rdb_problem(
                    &engine,
                    &version,
                    &r.engine.to_ascii_lowercase(),
                    r.engine_version.as_deref(),
                );
                checks.push(Check::new(
                    "rdb_version",
                    problem.is_none(),
                    problem.unwrap_or_else(|| {
                        format!(
                            "{} {} loads an RDB of {engine} {version}",
                            r.engine,
                            r.engine_version.as_deref().unwrap_or("(latest)")
                        )
                    }),
                ));
            }
        }
        let name = bucket_name_problem(&r.bucket);
        checks.push(Check::new(
            "bucket",
            name.is_none(),
            name.clone()
                .unwrap_or_else(|| format!("s3://{} is a bucket name", r.bucket)),
        ));
        if name.is_none() {
            checks.extend(self.bucket_checks(&r.bucket, Use::Export).await?);
        }
        Check::refuse_first("S3 preflight", &checks)?;
        Ok(TargetChecks { checks })
    }
}

#[async_trait::async_trait]
impl Handles<ExportSnapshot> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &ExportSnapshot) -> Vec<Operation> {
        vec![
            snapshots_call(&r.snapshot),
            Operation::new("aws", "elasticache:CopySnapshot")
                .param("SourceSnapshotName", &r.snapshot)
                .param("TargetSnapshotName", &r.snapshot)
                .param("TargetBucket", &r.bucket),
            Operation::wait(format!(
                "until snapshot {} is `{AVAILABLE}` again",
                r.snapshot
            )),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &ExportSnapshot,
    ) -> Result<SnapshotExported, ActionError> {
        let (snapshot, bucket) = (&r.snapshot, &r.bucket);
        if let Some(why) = bucket_name_problem(bucket) {
            return Err(ActionError::fatal(why));
        }
        let source = find_snapshot(self, snapshot)
            .await?
            .ok_or_else(|| ActionError::fatal(format!("snapshot `{snapshot}` does not exist")))?;
        if source.snapshot_status() == Some("exporting") {
            ctx.note(format!("{snapshot} is being exported already: waiting"));
        } else {
            let result = self
                .clients
                .elasticache
                .copy_snapshot()
                .source_snapshot_name(snapshot)
                .target_snapshot_name(snapshot)
                .target_bucket(bucket)
                .send()
                .await;
            match result {
                Ok(_) => ctx.note(format!(
                    "CopySnapshot accepted: {snapshot} to s3://{bucket}"
                )),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_snapshot_already_exists_fault()) =>
                {
                    ctx.note(format!("{snapshot} is already in s3://{bucket}"));
                }
                Err(e) => return Err(sdk_error("elasticache:CopySnapshot", e)),
            }
        }
        let done = wait::until(
            ctx,
            &self.wait,
            &format!("the export of {snapshot}"),
            None,
            || async {
                let s = find_snapshot(self, snapshot).await?.ok_or_else(|| {
                    ActionError::fatal(format!("snapshot {snapshot} disappeared"))
                })?;
                Ok(match s.snapshot_status().unwrap_or("unknown") {
                    AVAILABLE => Poll::Done(s),
                    "failed" => Poll::Failed(format!("the export of {snapshot} failed")),
                    other => Poll::Pending(format!("status {other}")),
                })
            },
        )
        .await?;
        let shards = usize::try_from(done.num_node_groups().unwrap_or(1).max(1)).unwrap_or(1);
        Ok(SnapshotExported::new(
            snapshot,
            bucket,
            (1..=shards)
                .map(|i| exported_object(bucket, snapshot, i))
                .collect(),
        ))
    }
}

#[async_trait::async_trait]
impl Handles<ImportSnapshot> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, r: &ImportSnapshot) -> Vec<Operation> {
        let group = &r.replication_group;
        let mut call = Operation::new("aws", "elasticache:CreateReplicationGroup")
            .param("ReplicationGroupId", group)
            .param("SnapshotArns", &r.snapshot_arns)
            .param("Engine", &r.engine)
            .param("CacheNodeType", r.node_type.as_deref().unwrap_or(NODE_TYPE));
        call = match r.snapshot_arns.len() {
            0 | 1 => call.param("NumCacheClusters", r.replicas + 1),
            n => call
                .param("NumNodeGroups", n)
                .param("ReplicasPerNodeGroup", r.replicas)
                .param(
                    "NodeGroupConfiguration.Slots",
                    seeded_shards(n)
                        .into_iter()
                        .filter_map(|(_, s)| s)
                        .collect::<Vec<_>>(),
                ),
        };
        if let Some(v) = &r.engine_version {
            call = call.param("EngineVersion", v);
        }
        let [head, bucket] = seed_calls(&r.snapshot_arns);
        vec![
            describe_call(group),
            head,
            bucket,
            call.param("when", "the group does not exist yet"),
            Operation::wait(format!("until {group} is `{AVAILABLE}`")),
            events_call(group),
        ]
    }

    async fn call(&self, ctx: &StepCtx<'_>, r: &ImportSnapshot) -> Result<GroupInfo, ActionError> {
        let group = &r.replication_group;
        for arn in &r.snapshot_arns {
            crate::platform::contract::s3_object(arn)?;
        }
        if find(self, group).await?.is_some() {
            ctx.note(format!("{group} already exists: not creating it again"));
        } else {
            self.check_seed_objects(&r.snapshot_arns).await?;
            let replicated = r.replicas > 0;
            let shards = seeded_shards(r.snapshot_arns.len());
            let call = self
                .clients
                .elasticache
                .create_replication_group()
                .replication_group_id(group)
                .replication_group_description(format!(
                    "seeded from {}",
                    r.snapshot_arns.join(", ")
                ))
                .set_snapshot_arns(Some(r.snapshot_arns.clone()))
                .engine(&r.engine)
                .set_engine_version(r.engine_version.clone())
                .cache_node_type(r.node_type.as_deref().unwrap_or(NODE_TYPE))
                .automatic_failover_enabled(replicated || shards.len() > 1)
                .multi_az_enabled(replicated);
            node_layout(
                call,
                &shards,
                r.replicas,
                &r.engine,
                r.engine_version.as_deref(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("elasticache:CreateReplicationGroup", e))?;
            ctx.note(format!(
                "CreateReplicationGroup accepted: {group} seeded from S3"
            ));
        }
        let done = wait_group(
            self,
            ctx,
            group,
            &format!("{group} to be `{AVAILABLE}`"),
            |g| status(g) == AVAILABLE,
        )
        .await?;
        info(self, &done).await
    }
}

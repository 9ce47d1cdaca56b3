//! Seed 004's S3 path rehearsed: a bucket is a folder of the run directory (`s3/BUCKET/`),
//! an export copies a snapshot's RDB files into it under the names ElastiCache gives them
//! (`SNAPSHOT-0001.rdb`, one a shard), and a group seeded from `SnapshotArns` loads them:
//! one file, or a cluster with one shard a file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::cluster;
use super::server::Engine;
use super::state::{Group, GroupKind, Shard};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{
    Check, CheckSnapshotExport, ExportSnapshot, GroupInfo, ImportSnapshot, SnapshotExported,
    TargetChecks, bucket_name_problem, exported_object, rdb_problem,
};

#[async_trait]
impl Handles<ExportSnapshot> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &ExportSnapshot) -> Vec<Operation> {
        vec![Operation::new(
            "process",
            format!(
                "copy snapshots/{}.rdb into the bucket folder s3/{}/",
                r.snapshot, r.bucket
            ),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &ExportSnapshot,
    ) -> Result<SnapshotExported, ActionError> {
        let run = self.open(ctx).await?;
        Ok(run.export_to_bucket(&r.snapshot, &r.bucket)?)
    }
}

#[async_trait]
impl Handles<CheckSnapshotExport> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &CheckSnapshotExport) -> Vec<Operation> {
        vec![Operation::new(
            "check",
            format!(
                "snapshot {} exists, its RDB loads into {}, bucket folder s3/{}/",
                r.snapshot, r.engine, r.bucket
            ),
        )]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        r: &CheckSnapshotExport,
    ) -> Result<TargetChecks, ActionError> {
        let run = self.open(ctx).await?;
        let mut checks = Vec::new();
        match run.state.snapshots.get(&r.snapshot) {
            None => checks.push(Check::new(
                "snapshot_available",
                false,
                format!("there is no snapshot `{}` in this rehearsal", r.snapshot),
            )),
            Some(s) => {
                checks.push(Check::new(
                    "snapshot_available",
                    s.file.is_file(),
                    format!("{} ({} {})", s.file.display(), s.engine, s.engine_version),
                ));
                let problem = rdb_problem(
                    s.engine.name(),
                    &s.engine_version,
                    &r.engine.to_ascii_lowercase(),
                    r.engine_version.as_deref(),
                );
                checks.push(Check::new(
                    "rdb_version",
                    problem.is_none(),
                    problem.unwrap_or_else(|| {
                        format!(
                            "{} {} loads an RDB of {} {}",
                            r.engine,
                            r.engine_version.as_deref().unwrap_or("(latest)"),
                            s.engine,
                            s.engine_version
                        )
                    }),
                ));
            }
        }
        checks.push(Check::new(
            "data_tiering",
            true,
            "the rehearsal's nodes keep everything in memory (no data tiering)",
        ));
        let bucket = run.bucket_dir(&r.bucket);
        let ok =
            bucket_name_problem(&r.bucket).is_none() && std::fs::create_dir_all(&bucket).is_ok();
        checks.push(Check::new(
            "bucket",
            ok,
            bucket_name_problem(&r.bucket)
                .unwrap_or_else(|| format!("the bucket is the folder {}", bucket.display())),
        ));
        checks.push(Check::new(
            "bucket_region",
            true,
            "a folder of the rehearsal: the same machine as its servers",
        ));
        checks.push(Check::new(
            "bucket_grant",
            true,
            "the rehearsal's servers write the folder themselves",
        ));
        Check::refuse_first("S3 preflight", &checks)?;
        Ok(TargetChecks { checks })
    }
}

#[async_trait]
impl Handles<ImportSnapshot> for Local {
    fn explain(&self, _: &PlanCtx<'_>, r: &ImportSnapshot) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!(
                    "start {}: {}-server loading the RDB file from the bucket folder, with {} replica(s) (several files: a cluster, one shard a file)",
                    r.replication_group, r.engine, r.replicas
                ),
            )
            .param("snapshot_arns", &r.snapshot_arns),
        ]
    }

    async fn call(&self, ctx: &StepCtx<'_>, r: &ImportSnapshot) -> Result<GroupInfo, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(run.import(r).await?)
    }
}

impl Run<'_, '_> {
    /// The folder that stands for the S3 bucket `bucket`.
    pub(super) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.join("s3").join(bucket)
    }

    /// Copies the snapshot's RDB file into the bucket folder (unless it is there already).
    pub(super) fn export_to_bucket(
        &self,
        snapshot: &str,
        bucket: &str,
    ) -> Result<SnapshotExported> {
        if let Some(why) = bucket_name_problem(bucket) {
            return Err(LocalError::Refused(why));
        }
        let s = self.state.snapshots.get(snapshot).ok_or_else(|| {
            LocalError::Refused(format!(
                "there is no snapshot `{snapshot}` in this rehearsal; take it first"
            ))
        })?;
        let files: Vec<&Path> = if s.shards.is_empty() {
            vec![&s.file]
        } else {
            s.shards.iter().map(|shard| shard.file.as_path()).collect()
        };
        let dir = self.bucket_dir(bucket);
        let mut arns = Vec::new();
        for (i, from) in files.into_iter().enumerate() {
            let arn = exported_object(bucket, snapshot, i + 1);
            let (_, key) = crate::platform::contract::s3_object(&arn)
                .map_err(|e| LocalError::Refused(e.message))?;
            let file = dir.join(key);
            if file.is_file() {
                self.ctx.note(format!(
                    "{arn} is already in the bucket: not exporting again"
                ));
            } else {
                let copy = || -> std::io::Result<()> {
                    std::fs::create_dir_all(&dir)?;
                    let tmp = file.with_extension("rdb.tmp");
                    std::fs::copy(from, &tmp)?;
                    std::fs::rename(&tmp, &file)
                };
                copy().map_err(|e| {
                    LocalError::Refused(format!("cannot write {}: {e}", file.display()))
                })?;
                self.ctx.note(format!("exported {snapshot} to {arn}"));
            }
            arns.push(arn);
        }
        Ok(SnapshotExported::new(snapshot, bucket, arns))
    }

    async fn import(&mut self, r: &ImportSnapshot) -> Result<GroupInfo> {
        let id = &r.replication_group;
        if self.state.groups.contains_key(id) {
            self.ensure_group(id).await?;
            self.ctx.note(format!("{id} already exists"));
            return self.describe(id).await;
        }
        const MAX_SHARDS: usize = 500;
        let count = r.snapshot_arns.len();
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(LocalError::Refused(format!(
                "{count} snapshot ARNs: a group loads 1 RDB file, or one per shard of a cluster (at most {MAX_SHARDS})"
            )));
        }
        let files = r
            .snapshot_arns
            .iter()
            .map(|arn| self.rdb_of(arn))
            .collect::<Result<Vec<_>>>()?;
        let engine = Engine::parse(&r.engine).ok_or_else(|| {
            LocalError::Refused(format!("engine `{}` is neither redis nor valkey", r.engine))
        })?;
        let group = Group {
            id: id.clone(),
            kind: GroupKind::ReplicationGroup,
            stack: None,
            requested_version: r.engine_version.clone(),
            node_type: None,
            multi_az: r.replicas > 0,
            transit_encryption: false,
            auth: false,
            cluster_mode: count > 1,
            // Like ElastiCache, one RDB file a shard, in order, over the even slot split.
            shards: if count > 1 {
                cluster::even_slots(u16::try_from(count).unwrap_or(u16::MAX))
                    .into_iter()
                    .enumerate()
                    .map(|(i, slots)| Shard {
                        id: format!("{:04}", i + 1),
                        slots: vec![slots],
                    })
                    .collect()
            } else {
                Vec::new()
            },
            configuration_port: None,
            nodes: Vec::new(),
            migration: None,
            completed_migration: None,
        };
        if count > 1 {
            self.create_cluster_from(group, &files, r.replicas + 1, engine)
                .await?;
        } else {
            self.create_group(group, &[r.replicas + 1], engine, Some(&files[0]))
                .await?;
        }
        for i in 0..self.group(id)?.nodes.len() {
            self.wait_serving(id, i).await?;
        }
        self.ctx
            .note(format!("{id} seeded from {}", r.snapshot_arns.join(", ")));
        self.describe(id).await
    }
}

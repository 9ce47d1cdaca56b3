//! Metrics of a rehearsal's nodes: there is no CloudWatch on this machine, so each metric
//! with an `INFO` equivalent is read once per node when the step runs, as one sample
//! labelled with the capturing step; the earlier steps' windows are those of the journal.

use async_trait::async_trait;
use chrono::Utc;

use super::server;
use super::{Local, Result, Run};
use crate::actions::metrics::step_windows;
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{CaptureMetrics, MetricsCaptured, Series, Window};

/// ElastiCache's metric names and the `INFO` section and field that say the same locally.
const INFO_FIELDS: &[(&str, &str, &str)] = &[
    ("CurrConnections", "clients", "connected_clients"),
    ("NewConnections", "stats", "total_connections_received"),
    ("CacheHits", "stats", "keyspace_hits"),
    ("CacheMisses", "stats", "keyspace_misses"),
    ("Evictions", "stats", "evicted_keys"),
    ("NetworkBytesIn", "stats", "total_net_input_bytes"),
    ("NetworkBytesOut", "stats", "total_net_output_bytes"),
    ("BytesUsedForCache", "memory", "used_memory"),
];

#[async_trait]
impl Handles<CaptureMetrics> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &CaptureMetrics) -> Vec<Operation> {
        vec![
            Operation::new(
                "redis",
                format!("INFO of the nodes of {}", request.replication_group),
            )
            .param("MetricNames", request.chosen()),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CaptureMetrics,
    ) -> Result<MetricsCaptured, ActionError> {
        let run = self.open(ctx).await?;
        let metrics = run
            .sample(&request.replication_group, &request.chosen())
            .await?;
        let windows = step_windows(&ctx.journal.replay(), ctx.step_id, Utc::now());
        Ok(MetricsCaptured {
            group: request.replication_group.clone(),
            metrics,
            windows: windows.into_iter().map(Window::from).collect(),
        })
    }
}

impl Run<'_, '_> {
    /// One reading per node of each metric that has a local equivalent.
    async fn sample(&self, id: &str, metrics: &[String]) -> Result<Vec<Series>> {
        let g = self.group(id)?;
        let mut series = Vec::new();
        for n in &g.nodes {
            for (metric, section, field) in INFO_FIELDS {
                if !metrics.iter().any(|m| m == metric) {
                    continue;
                }
                let info = server::info(&self.access(g, n)?, section).await?;
                if let Some(value) = info.get(*field).and_then(|v| v.parse::<f64>().ok()) {
                    series.push(Series {
                        metric: metric.to_string(),
                        node: n.id.clone(),
                        step: self.ctx.step_id.to_string(),
                        stat: "Sample".into(),
                        period_secs: 0,
                        timestamps: vec![Utc::now().to_rfc3339()],
                        values: vec![value],
                    });
                }
            }
        }
        Ok(series)
    }
}

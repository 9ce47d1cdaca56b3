//! CloudWatch metrics of a group's nodes, cut into the run's step windows.
//!
//! What the probe measures is what clients feel; CloudWatch says what the nodes went
//! through at the same time (CPU, memory, connections, replication lag). One
//! GetMetricData query per metric, node and step, so the report can put them side by side.

use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy,
};
use aws_smithy_types::DateTime;
use chrono::{DateTime as ChronoTime, DurationRound, TimeDelta, Utc};

use super::group::{describe, describe_call, info};
use super::{Aws, sdk_error};
use crate::actions::metrics::{StepWindow, step_windows};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{CaptureMetrics, MetricsCaptured, Series, Window};

/// ElastiCache publishes its host and engine metrics per minute.
const PERIOD_SECS: i32 = 60;
/// GetMetricData takes at most this many queries per call.
const QUERIES_PER_CALL: usize = 500;

/// Counters are summed over a period; gauges are averaged.
fn stat(metric: &str) -> &'static str {
    match metric {
        "NewConnections" | "CacheHits" | "CacheMisses" | "Evictions" | "NetworkBytesIn"
        | "NetworkBytesOut" => "Sum",
        _ => "Average",
    }
}

#[async_trait::async_trait]
impl Handles<CaptureMetrics> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &CaptureMetrics) -> Vec<Operation> {
        vec![
            describe_call(&request.replication_group),
            Operation::new("aws", "cloudwatch:GetMetricData")
                .param("Namespace", "AWS/ElastiCache")
                .param("MetricNames", request.chosen())
                .param("Dimensions", "CacheClusterId=<each node>, CacheNodeId=0001")
                .param("Period", PERIOD_SECS)
                .param("window", "each earlier step of the run"),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &CaptureMetrics,
    ) -> Result<MetricsCaptured, ActionError> {
        capture(self, ctx, &request.replication_group, &request.chosen()).await
    }
}

/// One query's meaning, to label its result.
struct Query {
    metric: String,
    node: String,
    step: usize,
}

/// Every page of one GetMetricData request: `on(index, result)` for each result whose
/// query id is `m<index>`, as the queries here are named.
pub(super) async fn metric_results(
    aws: &Aws,
    queries: Vec<MetricDataQuery>,
    (start, end): (ChronoTime<Utc>, ChronoTime<Utc>),
    scan_by: Option<ScanBy>,
    mut on: impl FnMut(usize, &MetricDataResult),
) -> Result<(), ActionError> {
    let mut pages = aws
        .clients
        .cloudwatch
        .get_metric_data()
        .set_metric_data_queries(Some(queries))
        .start_time(to_aws(start))
        .end_time(to_aws(end))
        .set_scan_by(scan_by)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("cloudwatch:GetMetricData", e))?;
        for result in page.metric_data_results() {
            if let Some(index) = result
                .id()
                .and_then(|id| id.strip_prefix('m'))
                .and_then(|i| i.parse::<usize>().ok())
            {
                on(index, result);
            }
        }
    }
    Ok(())
}

pub(super) fn to_aws(t: ChronoTime<Utc>) -> DateTime {
    DateTime::from_millis(t.timestamp_millis())
}

/// The window widened to whole periods: CloudWatch buckets by period start.
fn widen(window: &StepWindow) -> (ChronoTime<Utc>, ChronoTime<Utc>) {
    let period = TimeDelta::seconds(i64::from(PERIOD_SECS));
    let start = window.start.duration_trunc(period).unwrap_or(window.start);
    let mut end = window.end.duration_trunc(period).unwrap_or(window.end);
    if end < window.end || end <= start {
        end += period;
    }
    (start, end)
}

/// GetMetricData for every metric, node and earlier step of the run.
async fn capture(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    group: &str,
    metrics: &[String],
) -> Result<MetricsCaptured, ActionError> {
    let info = info(aws, &describe(aws, group).await?).await?;
    let nodes: Vec<String> = info.nodes.iter().map(|n| n.id.clone()).collect();
    let windows = step_windows(&ctx.journal.replay(), ctx.step_id, Utc::now());
    ctx.note(format!(
        "{} metrics x {} nodes x {} steps from CloudWatch",
        metrics.len(),
        nodes.len(),
        windows.len()
    ));
    let mut results = Vec::new();
    for (step_index, window) in windows.iter().enumerate() {
        let queries: Vec<Query> = metrics
            .iter()
            .flat_map(|m| {
                nodes.iter().map(move |n| Query {
                    metric: m.clone(),
                    node: n.clone(),
                    step: step_index,
                })
            })
            .collect();
        let (start, end) = widen(window);
        for chunk in queries.chunks(QUERIES_PER_CALL) {
            results.extend(fetch(aws, chunk, start, end, &windows).await?);
        }
    }
    let with_data = results.iter().filter(|r| !r.values.is_empty()).count();
    ctx.note(format!(
        "{with_data} of {} series have data points",
        results.len()
    ));
    Ok(MetricsCaptured {
        group: group.to_string(),
        metrics: results,
        windows: windows.into_iter().map(Window::from).collect(),
    })
}

/// One GetMetricData round (all pages) for up to [`QUERIES_PER_CALL`] queries.
async fn fetch(
    aws: &Aws,
    queries: &[Query],
    start: ChronoTime<Utc>,
    end: ChronoTime<Utc>,
    windows: &[StepWindow],
) -> Result<Vec<Series>, ActionError> {
    let data_queries: Vec<MetricDataQuery> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let metric = Metric::builder()
                .namespace("AWS/ElastiCache")
                .metric_name(&q.metric)
                .dimensions(
                    Dimension::builder()
                        .name("CacheClusterId")
                        .value(&q.node)
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("CacheNodeId")
                        .value("0001")
                        .build(),
                )
                .build();
            MetricDataQuery::builder()
                .id(format!("m{i}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(PERIOD_SECS)
                        .stat(stat(&q.metric))
                        .build(),
                )
                .return_data(true)
                .build()
        })
        .collect();
    let mut series: Vec<(Vec<String>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); queries.len()];
    metric_results(
        aws,
        data_queries,
        (start, end),
        Some(ScanBy::TimestampAscending),
        |index, result| {
            if let Some((timestamps, values)) = series.get_mut(index) {
                let mut points: Vec<(DateTime, f64)> = result
                    .timestamps()
                    .iter()
                    .copied()
                    .zip(result.values().iter().copied())
                    .collect();
                points.sort_by_key(|(t, _)| (t.secs(), t.subsec_nanos()));
                for (t, v) in points {
                    timestamps.push(super::wait::format_date(t));
                    values.push(v);
                }
            }
        },
    )
    .await?;
    Ok(queries
        .iter()
        .zip(series)
        .map(|(q, (timestamps, values))| Series {
            metric: q.metric.clone(),
            node: q.node.clone(),
            step: windows[q.step].step.clone(),
            stat: stat(&q.metric).to_string(),
            period_secs: PERIOD_SECS,
            timestamps,
            values,
        })
        .collect())
}

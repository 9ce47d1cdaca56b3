//! `metrics.capture` on the aws target: CloudWatch data points come back cut into the step
//! windows the journal records. The group lives in moto; CloudWatch is an aws-smithy-mocks
//! rule that answers GetMetricData from a list of data points by the requested window,
//! because the SDK speaks CloudWatch's CBOR protocol, which moto does not serve.

use std::sync::Arc;

use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataInput, GetMetricDataOutput};
use aws_sdk_cloudwatch::types::MetricDataResult;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use chrono::{DateTime, TimeDelta, Utc};
use runbook::journal::{Event, Phase, Record};
use runbook::platform::aws::Aws;

use crate::aws_support::{Moto, RunDir};

fn record(seq: u64, ts: DateTime<Utc>, event: Event) -> Record {
    Record { seq, ts, event }
}

fn started(step: &str) -> Event {
    Event::StepStarted {
        step: step.into(),
        action: "sleep".into(),
        phase: Phase::Steps,
        attempt: 1,
        inputs: serde_json::Value::Null,
    }
}

fn succeeded(step: &str) -> Event {
    Event::StepSucceeded {
        step: step.into(),
        phase: Phase::Steps,
        attempt: 1,
        outputs: Default::default(),
    }
}

/// One stored data point: metric, node, time, value.
type Point = (&'static str, &'static str, DateTime<Utc>, f64);

/// GetMetricData over `points`, as CloudWatch answers it: per query, the points of its
/// metric and node inside [StartTime, EndTime).
fn answer(points: &[Point], input: &GetMetricDataInput) -> GetMetricDataOutput {
    let ms = |t: &aws_smithy_types::DateTime| t.to_millis().unwrap();
    let (start, end) = (
        ms(input.start_time().unwrap()),
        ms(input.end_time().unwrap()),
    );
    let mut out = GetMetricDataOutput::builder();
    for q in input.metric_data_queries() {
        let metric = q.metric_stat().unwrap().metric().unwrap();
        let node = metric
            .dimensions()
            .iter()
            .find(|d| d.name() == Some("CacheClusterId"))
            .and_then(|d| d.value())
            .unwrap();
        let mut result = MetricDataResult::builder().id(q.id().unwrap());
        for (m, n, t, v) in points {
            let t = t.timestamp_millis();
            if Some(*m) == metric.metric_name() && *n == node && start <= t && t < end {
                result = result
                    .timestamps(aws_smithy_types::DateTime::from_millis(t))
                    .values(*v);
            }
        }
        out = out.metric_data_results(result.build());
    }
    out.build()
}

#[tokio::test]
async fn metrics_come_back_per_step_and_node() {
    let moto = Moto::start();
    moto.clients()
        .elasticache
        .create_replication_group()
        .replication_group_id("cache-w")
        .replication_group_description("metrics")
        .engine("redis")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(1)
        .send()
        .await
        .unwrap();
    let node = "cache-w-001";
    // Two earlier steps, each in its own whole minutes, and the capturing step.
    let minute = TimeDelta::minutes(1);
    let base = DateTime::from_timestamp(Utc::now().timestamp() / 60 * 60, 0).unwrap() - minute * 10;
    let journal = runbook::journal::encode(&[
        record(
            1,
            base,
            Event::RunStarted {
                run_id: "test-run".into(),
                runbook: "metrics".into(),
                file: "metrics.yaml".into(),
                digest: "sha256:00".into(),
                platform: "aws".into(),
                params: Default::default(),
            },
        ),
        record(2, base, started("baseline")),
        record(
            3,
            base + minute * 2 - TimeDelta::seconds(1),
            succeeded("baseline"),
        ),
        record(4, base + minute * 4, started("engine")),
        record(
            5,
            base + minute * 6 - TimeDelta::seconds(1),
            succeeded("engine"),
        ),
        record(
            6,
            base + minute * 9,
            Event::StepStarted {
                step: "metrics".into(),
                action: "metrics.capture".into(),
                phase: Phase::Steps,
                attempt: 1,
                inputs: serde_json::Value::Null,
            },
        ),
    ])
    .unwrap();
    let run = RunDir::with_journal(&journal);
    let points: Arc<Vec<Point>> = Arc::new(vec![
        ("CPUUtilization", node, base + TimeDelta::seconds(30), 11.0),
        (
            "CPUUtilization",
            node,
            base + minute * 4 + TimeDelta::seconds(30),
            73.0,
        ),
        (
            "CPUUtilization",
            node,
            base + minute * 5 + TimeDelta::seconds(10),
            75.0,
        ),
        // Between the steps: in no window.
        ("CPUUtilization", node, base + minute * 3, 99.0),
        (
            "CurrConnections",
            node,
            base + minute * 4 + TimeDelta::seconds(5),
            42.0,
        ),
        // Another node's.
        (
            "CPUUtilization",
            "other-001",
            base + minute * 4 + TimeDelta::seconds(30),
            5.0,
        ),
    ]);
    let get = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .then_compute_output(move |input| answer(&points, input));
    let mut clients = moto.clients();
    clients.cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[&get]);
    let aws = Aws::from_clients(clients).with_wait(crate::aws_support::fast_waits());
    let out = run
        .step(
            &aws,
            "metrics",
            "metrics.capture",
            serde_json::json!({"replication_group": "cache-w", "metrics": ["CPUUtilization", "CurrConnections"]}),
        )
        .await
        .expect("capture");
    let series = out["metrics"].as_array().unwrap();
    assert_eq!(series.len(), 4, "2 metrics x 1 node x 2 steps: {series:?}");
    let find = |metric: &str, step: &str| {
        series
            .iter()
            .find(|s| s["metric"] == metric && s["step"] == step)
            .unwrap_or_else(|| panic!("{metric} of {step} missing"))
    };
    let values = |metric: &str, step: &str| -> Vec<f64> {
        find(metric, step)["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    assert_eq!(values("CPUUtilization", "baseline"), vec![11.0]);
    assert_eq!(values("CPUUtilization", "engine"), vec![73.0, 75.0]);
    assert_eq!(values("CurrConnections", "engine"), vec![42.0]);
    assert!(values("CurrConnections", "baseline").is_empty());
    assert_eq!(find("CPUUtilization", "engine")["node"], node);
    assert_eq!(
        find("CPUUtilization", "engine")["timestamps"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        out["windows"].as_array().unwrap().len(),
        2,
        "the capturing step has no window"
    );
    assert_eq!(get.num_calls(), 2, "one GetMetricData per step window");

    // The captured series reach the run's report, step by step.
    run.journal
        .append(Event::StepSucceeded {
            step: "metrics".into(),
            phase: Phase::Steps,
            attempt: 1,
            outputs: out.clone(),
        })
        .unwrap();
    runbook::report::write_run_reports(run.dir.path()).expect("report");
    let md = std::fs::read_to_string(run.dir.path().join("report.md")).unwrap();
    let section = &md[md.find("CloudWatch").expect("a CloudWatch section")..];
    for expected in [
        "CPUUtilization",
        "CurrConnections",
        node,
        "engine",
        "baseline",
        "74",
    ] {
        assert!(
            section.contains(expected),
            "{expected} missing from:\n{section}"
        );
    }
}

//! `--target aws` through the binary: `plan` names the AWS operations without calling
//! AWS, and a run without a region stops before anything happens.

use crate::aws_support::MOTO_ENV;
use crate::support::Workspace;

const CAPTURE: &str = r#"version: 1
name: capture
params:
  replication_group: { default: orders }
steps:
  - id: settle
    action: sleep
    with: { duration: 10ms }
  - id: metrics
    action: metrics.capture
    with:
      replication_group: "{{ params.replication_group }}"
      metrics: [CPUUtilization, ReplicationLag]
"#;

#[test]
fn plan_lists_the_aws_operations_by_their_reference_names_without_credentials() {
    let ws = Workspace::new();
    ws.write("capture.yaml", CAPTURE);
    // No credentials and no region: a plan that called AWS could not succeed.
    let ran = ws
        .cmd(&[
            "plan",
            "capture.yaml",
            "--target",
            "aws",
            "--format",
            "json",
        ])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .expect(0);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json plan");
    let step = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "metrics")
        .expect("the metrics step");
    let names: Vec<&str> = step["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "elasticache:DescribeReplicationGroups",
            "cloudwatch:GetMetricData"
        ],
        "{step}"
    );
    let get = &step["operations"][1];
    assert_eq!(get["kind"], "aws");
    assert_eq!(
        get["params"]["MetricNames"],
        serde_json::json!(["CPUUtilization", "ReplicationLag"])
    );
    assert_eq!(
        step["operations"][0]["params"]["ReplicationGroupId"],
        "orders"
    );
    assert_eq!(get["destructive"], false);
}

#[test]
fn a_run_without_a_region_is_invalid_input() {
    let ws = Workspace::new();
    ws.write("capture.yaml", CAPTURE);
    let mut cmd = ws.cmd(&["run", "capture.yaml", "--target", "aws", "--yes"]);
    for (k, v) in MOTO_ENV.iter().filter(|(k, _)| *k != "AWS_REGION") {
        cmd = cmd.env(k, v);
    }
    cmd.command
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    let ran = cmd.expect(2);
    assert!(ran.stderr.contains("no AWS region"), "{}", ran.stderr);
    assert!(ran.stderr.contains("--region"), "{}", ran.stderr);
}

#[test]
fn a_bad_endpoint_url_is_invalid_input() {
    let ws = Workspace::new();
    ws.write("capture.yaml", CAPTURE);
    let mut cmd = ws.cmd(&[
        "run",
        "capture.yaml",
        "--target",
        "aws",
        "--endpoint-url",
        "ftp://127.0.0.1:1",
        "--yes",
    ]);
    for (k, v) in MOTO_ENV {
        cmd = cmd.env(k, v);
    }
    let ran = cmd.expect(2);
    assert!(
        ran.stderr
            .contains("--endpoint-url `ftp://127.0.0.1:1` is not usable"),
        "{}",
        ran.stderr
    );
}

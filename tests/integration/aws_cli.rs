//! `--platform aws` through the binary: `plan` names the AWS operations without calling
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
            "--platform",
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

/// The platform's configuration is settled before anything is written: no run folder, no
/// ghost "interrupted" run.
#[test]
fn a_run_without_a_region_is_invalid_input_and_leaves_no_run() {
    let ws = Workspace::new();
    ws.write("capture.yaml", CAPTURE);
    let mut cmd = ws.cmd(&["run", "capture.yaml", "--platform", "aws", "--yes"]);
    for (k, v) in MOTO_ENV.iter().filter(|(k, _)| *k != "AWS_REGION") {
        cmd = cmd.env(k, v);
    }
    cmd.command
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    let ran = cmd.expect(2);
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            "",
            "error: no AWS region: pass --region, set AWS_REGION, or set `region` in the profile\n"
        )
    );
    assert!(!ws.state_dir().exists(), "no run folder may be left behind");
}

#[test]
fn a_bad_endpoint_url_is_invalid_input() {
    let ws = Workspace::new();
    ws.write("capture.yaml", CAPTURE);
    let mut cmd = ws.cmd(&[
        "run",
        "capture.yaml",
        "--platform",
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

/// The shipped engine-change runbook on `--platform aws`: the group lives in moto, and its
/// primary endpoint is sent by `--resolve` to a real Redis server, so the seeding and the
/// probe run for real while the control plane goes through the AWS SDK.
#[tokio::test]
async fn the_engine_change_runbook_runs_end_to_end_against_moto() {
    let moto = crate::aws_support::Moto::start();
    let created = moto
        .clients()
        .elasticache
        .create_replication_group()
        .replication_group_id("orders")
        .replication_group_description("engine change end to end")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(2)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .expect("CreateReplicationGroup in moto");
    let primary = created.replication_group().unwrap().node_groups()[0]
        .primary_endpoint()
        .unwrap()
        .address()
        .unwrap()
        .to_string();
    let server = crate::support::Server::start(crate::support::Engine::Redis);
    let ws = Workspace::new();
    let runbook =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/engine-change.yaml");
    let resolve = format!("{primary}:6379=127.0.0.1:{}", server.port);
    let mut cmd = ws.cmd(&[
        "run",
        runbook.to_str().unwrap(),
        "--platform",
        "aws",
        "--endpoint-url",
        &moto.url(),
        "--resolve",
        &resolve,
        "--var",
        "replication_group=orders",
        "--var",
        "key_count=300",
        "--var",
        "seed_on_aws=true",
        "--yes",
    ]);
    for (k, v) in MOTO_ENV {
        cmd = cmd.env(k, v);
    }
    let ran = cmd.expect(0);
    let run_id = ran.stdout.lines().next().unwrap().trim().to_string();

    // The control plane changed in moto; the data plane was really written through the tunnel.
    let after = moto
        .clients()
        .elasticache
        .describe_replication_groups()
        .replication_group_id("orders")
        .send()
        .await
        .unwrap();
    assert_eq!(after.replication_groups()[0].engine(), Some("valkey"));
    let keys: u64 = server.cli(&["DBSIZE"]).parse().unwrap();
    assert!(keys >= 300, "seeded through --resolve: {keys} keys");
    let snapshots = moto
        .clients()
        .elasticache
        .describe_snapshots()
        .send()
        .await
        .unwrap();
    assert_eq!(
        snapshots.snapshots()[0].snapshot_name(),
        Some(format!("{run_id}-before-valkey").as_str())
    );
    let journal = std::fs::read_to_string(
        ws.state_dir()
            .join("runs")
            .join(&run_id)
            .join("journal.jsonl"),
    )
    .unwrap();
    assert!(
        journal.contains("ModifyReplicationGroup accepted"),
        "{journal}"
    );
    assert!(
        journal.contains("\"step\":\"rehearsal_group\""),
        "the local-only step is recorded as skipped"
    );
}

//! `stack.deploy` and `stack.delete` on the aws target, against moto's CloudFormation.
//! moto cannot make ElastiCache resources through CloudFormation, so the shipped template's
//! EC2 part (VPC, subnets, security groups, a self-hosted source on EC2) is what gets deployed.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::aws_support::{Moto, RunDir};

/// The shipped template without its ElastiCache resources and without outputs (they name them).
fn ec2_part(template: &Path) -> String {
    let text = std::fs::read_to_string(template).expect("the shipped template");
    let mut out = Vec::new();
    let mut section = "";
    let mut block: Vec<&str> = Vec::new();
    let flush = |block: &mut Vec<&str>, out: &mut Vec<String>| {
        if !block
            .iter()
            .any(|l| l.trim_start().starts_with("Type: AWS::ElastiCache::"))
        {
            out.extend(block.iter().map(|l| l.to_string()));
        }
        block.clear();
    };
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            flush(&mut block, &mut out);
            section = line.trim_end_matches(':');
        }
        match section {
            "Outputs" => {}
            "Resources" if line.starts_with("  ") && !line.starts_with("   ") => {
                flush(&mut block, &mut out);
                block.push(line);
            }
            "Resources" if !block.is_empty() => block.push(line),
            _ => out.push(line.to_string()),
        }
    }
    flush(&mut block, &mut out);
    out.join("\n") + "\n"
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cloudformation")
        .join(name)
}

async fn security_groups_described(moto: &Moto, description: &str) -> usize {
    let out = moto
        .ec2()
        .describe_security_groups()
        .send()
        .await
        .expect("DescribeSecurityGroups");
    out.security_groups()
        .iter()
        .filter(|g| g.description() == Some(description))
        .count()
}

#[tokio::test]
async fn deploys_updates_and_deletes_the_ec2_part_of_the_engine_change_template() {
    let moto = Moto::start();
    let aws = moto.aws();
    let run = RunDir::new();
    let template = run.path().join("engine-change-ec2.yaml");
    let body = ec2_part(&shipped("engine-change.yaml"));
    assert!(
        body.contains("AWS::EC2::SecurityGroup") && !body.contains("AWS::ElastiCache"),
        "{body}"
    );
    std::fs::write(&template, &body).unwrap();
    let deploy = json!({
        "stack_name": "engine-change",
        "template": "engine-change-ec2.yaml",
        "parameters": {"NodeType": "cache.t4g.micro"},
    });

    let out = run
        .step(&aws, "deploy", "stack.deploy", deploy.clone())
        .await
        .expect("create");
    assert_eq!(out["stack_status"], "CREATE_COMPLETE");
    assert!(out["stack_id"].as_str().unwrap().contains("engine-change"));
    assert_eq!(
        security_groups_described(&moto, "Clients of the cache").await,
        1
    );
    let notes = run.notes("deploy");
    assert!(
        notes.iter().any(|n| n.contains("CreateStack accepted")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("AWS::CloudFormation::Stack CREATE_COMPLETE")),
        "{notes:?}"
    );

    // The same template again: a change set with no changes, nothing executed.
    let again = run
        .step(&aws, "redeploy", "stack.deploy", deploy.clone())
        .await
        .expect("no-op update");
    assert_eq!(again["stack_status"], "CREATE_COMPLETE");
    assert!(
        run.notes("redeploy")
            .iter()
            .any(|n| n.contains("up to date")),
        "{:?}",
        run.notes("redeploy")
    );

    // A changed template goes through a change set and is executed.
    let extra = body.replacen(
        "Resources:\n",
        "Resources:\n  ExtraGroup:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: Added by an update\n      VpcId: !Ref Vpc\n\n",
        1,
    );
    std::fs::write(&template, extra).unwrap();
    let updated = run
        .step(&aws, "update", "stack.deploy", deploy.clone())
        .await
        .expect("update");
    assert_eq!(updated["stack_status"], "UPDATE_COMPLETE");
    assert!(
        run.notes("update")
            .iter()
            .any(|n| n.contains("ExecuteChangeSet")),
        "{:?}",
        run.notes("update")
    );
    assert_eq!(
        security_groups_described(&moto, "Added by an update").await,
        1
    );

    let delete = json!({"stack_name": "engine-change"});
    let gone = run
        .step(&aws, "delete", "stack.delete", delete.clone())
        .await
        .expect("delete");
    assert_eq!(
        serde_json::Value::Object(gone),
        json!({"stack_name": "engine-change", "deleted": true})
    );
    assert_eq!(
        security_groups_described(&moto, "Clients of the cache").await,
        0
    );
    // Deleting what is gone is a no-op, as a resumed run needs.
    let again = run
        .step(&aws, "delete-again", "stack.delete", delete)
        .await
        .expect("delete again");
    assert_eq!(again["deleted"], false);
    assert!(
        run.notes("delete-again")
            .iter()
            .any(|n| n.contains("nothing to delete"))
    );
}

/// moto checks the template's references when the stack is created, so the failure comes
/// from CreateStack itself (the rollback path with failed stack events is in `aws_mocks`).
#[tokio::test]
async fn a_template_moto_refuses_is_a_clear_failure() {
    let moto = Moto::start();
    let aws = moto.aws();
    let run = RunDir::new();
    let template = run.path().join("bad.yaml");
    std::fs::write(
        &template,
        "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Subnet:\n    Type: AWS::EC2::Subnet\n    Properties:\n      VpcId: vpc-does-not-exist\n      CidrBlock: 10.9.0.0/24\n",
    )
    .unwrap();
    let err = run
        .step(
            &aws,
            "deploy",
            "stack.deploy",
            json!({"stack_name": "bad", "template": "bad.yaml"}),
        )
        .await
        .unwrap_err();
    assert!(!err.transient);
    assert!(
        err.message.contains("cloudformation:CreateStack"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("vpc-does-not-exist"),
        "{}",
        err.message
    );
}

#[test]
fn every_shipped_template_passes_cfn_lint() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudformation");
    let templates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("cloudformation/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(!templates.is_empty());
    let out = std::process::Command::new("cfn-lint")
        .args(&templates)
        .output()
        .expect("cfn-lint (run scripts/setup)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_snapshot_restore_template_ec2_part_deploys_and_deletes() {
    let moto = Moto::start();
    let aws = moto.aws();
    let run = RunDir::new();
    let template = run.path().join("snapshot-restore-ec2.yaml");
    let body = ec2_part(&shipped("snapshot-restore.yaml"));
    assert!(!body.contains("AWS::ElastiCache"), "{body}");
    std::fs::write(&template, &body).unwrap();
    let out = run
        .step(
            &aws,
            "deploy",
            "stack.deploy",
            json!({"stack_name": "snapshot-restore", "template": "snapshot-restore-ec2.yaml"}),
        )
        .await
        .expect("create");
    assert_eq!(out["stack_status"], "CREATE_COMPLETE");
    run.step(
        &aws,
        "delete",
        "stack.delete",
        json!({"stack_name": "snapshot-restore"}),
    )
    .await
    .expect("delete");
    let stacks = moto
        .clients()
        .cloudformation
        .describe_stacks()
        .send()
        .await
        .unwrap();
    assert!(
        stacks
            .stacks()
            .iter()
            .all(|s| s.stack_name() != Some("snapshot-restore")
                || s.stack_status().unwrap().as_str() == "DELETE_COMPLETE"),
        "{stacks:?}"
    );
}

/// The EC2 part of both serverless templates deploys in moto (the serverless cache is not
/// in moto's CloudFormation): the VPC, its two subnets, the security groups, and for the
/// migration the self-hosted source on EC2 (its AMI from the SSM parameter), whose security
/// group lets the cache's group reach its port.
#[tokio::test]
async fn the_serverless_templates_ec2_parts_deploy_and_delete() {
    let moto = Moto::start();
    let aws = moto.aws();
    let run = RunDir::new();
    let cf = moto.clients().cloudformation;
    for (name, types) in [
        (
            "serverless-migration",
            &[
                "AWS::EC2::Instance",
                "AWS::EC2::SecurityGroup",
                "AWS::EC2::SecurityGroup",
                "AWS::EC2::SecurityGroupIngress",
                "AWS::EC2::SecurityGroupIngress",
                "AWS::EC2::Subnet",
                "AWS::EC2::Subnet",
                "AWS::EC2::VPC",
            ][..],
        ),
        (
            "serverless-engine-change",
            &[
                "AWS::EC2::SecurityGroup",
                "AWS::EC2::Subnet",
                "AWS::EC2::Subnet",
                "AWS::EC2::VPC",
            ][..],
        ),
    ] {
        let file = format!("{name}-ec2.yaml");
        let body = ec2_part(&shipped(&format!("{name}.yaml")));
        assert!(!body.contains("AWS::ElastiCache"), "{body}");
        std::fs::write(run.path().join(&file), &body).unwrap();
        let out = run
            .step(
                &aws,
                &format!("deploy-{name}"),
                "stack.deploy",
                json!({"stack_name": name, "template": file}),
            )
            .await
            .expect("create");
        assert_eq!(out["stack_status"], "CREATE_COMPLETE", "{name}");
        let resources = cf
            .describe_stack_resources()
            .stack_name(name)
            .send()
            .await
            .expect("DescribeStackResources in moto");
        let mut made: Vec<&str> = resources
            .stack_resources()
            .iter()
            .filter_map(|r| r.resource_type())
            .collect();
        made.sort();
        assert_eq!(made, types, "{name}");
    }
    let groups = moto
        .ec2()
        .describe_security_groups()
        .send()
        .await
        .expect("DescribeSecurityGroups");
    let described = |description: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.description() == Some(description))
            .unwrap_or_else(|| panic!("a security group `{description}`"))
    };
    let cache = described("ElastiCache Serverless for Valkey target")
        .group_id()
        .unwrap();
    let source = described("Self-hosted Redis source; the serverless cache connects to it");
    let from_cache: Vec<(Option<i32>, Option<i32>, Vec<&str>)> = source
        .ip_permissions()
        .iter()
        .map(|p| {
            (
                p.from_port(),
                p.to_port(),
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(from_cache, [(Some(6379), Some(6379), vec![cache])]);
    for name in ["serverless-migration", "serverless-engine-change"] {
        let out = run
            .step(
                &aws,
                &format!("delete-{name}"),
                "stack.delete",
                json!({"stack_name": name}),
            )
            .await
            .expect("delete");
        assert_eq!(
            Value::Object(out),
            json!({"stack_name": name, "deleted": true})
        );
    }
}

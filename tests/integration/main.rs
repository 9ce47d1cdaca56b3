//! The integration tests, compiled into one binary (one link instead of one per file).
//! They run the real `runbook` binary against real servers on free loopback ports.

mod bench;
mod cli;
mod cluster_data;
mod docs;
mod engine;
mod error_messages;
mod fleet;
mod local_changes;
mod local_cluster;
mod local_platform;
mod local_runbooks;
mod local_serverless;
mod probe;
mod regression;
mod report;
mod seed;
mod state_s3;
mod support;
mod verify;

mod aws_changes;
mod aws_cli;
mod aws_elasticache;
mod aws_metrics;
mod aws_mocks;
mod aws_runbooks;
mod aws_serverless;
mod aws_serverless_runbooks;
mod aws_stack;
mod aws_support;

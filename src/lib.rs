//! `runbook` runs YAML runbooks that move Redis OSS caches to Valkey, on AWS ElastiCache or
//! rehearsed on local servers, while a probe measures what the cache's clients feel.
//!
//! The pipeline reads in file order: [`load`] (YAML with spans) → [`validate`] (typed
//! [`runbook::Runbook`], no raw YAML past here) → [`plan`] or [`executor`] (with
//! [`journal`], [`lock`], [`probe`]) → [`report`]. Control-plane work goes through a
//! [`target`]; data-plane work ([`seed`], [`verify`], [`probe`], [`bench`]) speaks the
//! Redis protocol to [`endpoint`]s through one client, [`resp`].

pub mod actions;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod diagnostic;
pub mod duration;
pub mod endpoint;
pub mod error;
pub mod executor;
pub mod fleet;
pub mod journal;
pub mod load;
pub mod lock;
pub mod plan;
pub mod platform;
pub mod probe;
pub mod progress;
pub mod redact;
pub mod report;
pub mod resp;
pub mod runbook;
pub mod seed;
pub mod state;
pub mod template;
pub mod validate;
pub mod vars;
pub mod verify;

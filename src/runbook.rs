//! The typed runbook: what `validate` produces and everything after it consumes.
//!
//! No raw YAML goes past this point. Input values are kept as JSON values whose strings
//! may be templates; they are rendered, coerced and parsed into an action's typed inputs
//! when a step is planned or run.

use std::path::PathBuf;
use std::time::Duration;

use crate::actions::ActionSpec;
use crate::diagnostic::Loc;
use crate::journal::Phase;

/// A validated runbook.
#[derive(Debug)]
pub struct Runbook {
    pub name: String,
    pub description: Option<String>,
    pub params: Vec<Param>,
    /// The environment variables whose values are not secret (`env:`); every other
    /// `env.NAME` a template reads is masked like a secret param.
    pub env: Vec<String>,
    pub probe: Option<ProbeSpec>,
    /// How a fleet of runs of this runbook is approved (`fleet: { approve: once }`).
    pub fleet_approval: FleetApproval,
    pub steps: Vec<Step>,
    pub rollback: Vec<Step>,
    pub finally: Vec<Step>,
    pub source: Source,
}

/// The file a runbook came from.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// `sha256:<hex>` of the text: how `resume` notices a changed file.
    pub digest: String,
}

/// Who approves in a fleet (`runbook run --for-each`): each member at its own `approve`
/// steps, or one person once for the whole fleet before any member starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetApproval {
    #[default]
    Each,
    Once,
}

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub default: Option<serde_json::Value>,
    pub description: Option<String>,
    pub required: bool,
    /// An empty value (`--var x=`, `x:` in a vars file) counts as given. Off by default:
    /// `rm -rf {{ params.dir }}/` must not become `rm -rf /` because a value was left out.
    pub allow_empty: bool,
    pub secret: bool,
    pub loc: Loc,
}

/// What the probe watches during a run.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Endpoint templates; one is probed once its value is known.
    pub endpoints: Vec<ProbeEndpoint>,
    /// Where the application's clients are, step by step; empty: on every endpoint,
    /// throughout.
    pub clients: Vec<ClientsAt>,
    pub interval: Duration,
    pub timeout: Duration,
    pub key_prefix: String,
}

/// One endpoint the probe watches, with the name `probe.clients` calls it by.
#[derive(Debug, Clone)]
pub struct ProbeEndpoint {
    pub name: Option<String>,
    pub name_loc: Loc,
    pub value: Value,
}

/// From the start of step `from` (of the run, without one) the clients use the endpoint
/// named `endpoint`.
#[derive(Debug, Clone)]
pub struct ClientsAt {
    pub endpoint: String,
    pub from: Option<String>,
    pub loc: Loc,
    /// Where `from` was written, for a step that does not exist.
    pub from_loc: Loc,
}

/// A value of the runbook with where it was written.
#[derive(Debug, Clone)]
pub struct Value {
    pub value: serde_json::Value,
    pub loc: Loc,
}

/// What a failing step does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Rollback,
    Continue,
}

/// Retries of a step's transient failures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    #[serde(with = "crate::duration::serde_text")]
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            backoff: Duration::ZERO,
        }
    }
}

/// One step.
#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub action: &'static ActionSpec,
    /// Input name → value (strings may be templates), with locations.
    pub with: Vec<(String, Value)>,
    pub description: Option<String>,
    pub timeout: Option<Duration>,
    pub retry: Retry,
    pub on_failure: OnFailure,
    /// A condition template; the step is skipped when it renders `false`.
    pub when: Option<Value>,
    pub phase: Phase,
    pub loc: Loc,
}

impl Step {
    /// The inputs as one JSON object, still unrendered.
    pub fn inputs(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.with
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        )
    }
}

impl Runbook {
    /// Every step in the order of the file: steps, rollback, finally.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.rollback).chain(&self.finally)
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.all_steps().find(|s| s.id == id)
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

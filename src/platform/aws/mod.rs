//! The aws platform: ElastiCache, CloudFormation, EC2 and CloudWatch through the AWS SDK.
//!
//! Each request of the contract becomes AWS API calls that observe first and then do only
//! what is missing, so a resumed run never repeats a change that already happened; long
//! changes are waited for with a deadline ([`wait`]). `explain` names the same calls, as
//! the AWS API reference does, without making any of them. One file per noun: stack,
//! group, migration (and its preflight), engine, snapshot, metrics.

use std::sync::atomic::AtomicBool;

use aws_sdk_elasticache::config::http::HttpResponse;
use aws_sdk_elasticache::error::{ProvideErrorMetadata, SdkError};

use crate::actions::ActionError;
use crate::platform::{Platform, PlatformKind};

mod bucket;
mod changes;
pub mod clients;
pub mod ec2;
mod engine;
mod group;
mod metrics;
mod migration;
mod preflight;
mod s3;
mod serverless;
mod snapshot;
mod stack;
pub mod wait;

pub use clients::Clients;
pub use wait::WaitSettings;

/// The command line's choices for reaching AWS; everything else comes from the default chain.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Why the aws target could not be set up. Both are invalid input (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region from `--region`, the environment or the profile.
    #[error("no AWS region: pass --region, set AWS_REGION, or set `region` in the profile")]
    NoRegion,
    /// `--endpoint-url` is not a URL the SDK can use.
    #[error("--endpoint-url `{url}` is not usable: {why}")]
    EndpointUrl { url: String, why: String },
}

/// The real thing: AWS API calls.
pub struct Aws {
    clients: Clients,
    wait: WaitSettings,
    /// Set once DescribeEvents turns out not to exist (an emulator): stop asking.
    events_unsupported: AtomicBool,
}

impl Aws {
    /// Clients from aws-config's default chain plus `opts`. Makes no AWS call.
    pub async fn new(opts: &AwsOptions) -> Result<Aws, AwsError> {
        let config = clients::sdk_config(opts).await?;
        Ok(Aws::from_clients(Clients::from_config(&config)))
    }

    /// A target over prebuilt clients (for example aws-smithy-mocks' `mock_client!`).
    pub fn from_clients(clients: Clients) -> Aws {
        Aws {
            clients,
            wait: WaitSettings::default(),
            events_unsupported: AtomicBool::new(false),
        }
    }

    /// A target for `plan`: it explains ops and never calls AWS, so it needs no
    /// credentials, region or network (its clients are never used).
    pub fn for_plan() -> Aws {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        Aws::from_clients(Clients::from_config(&config))
    }

    /// Other polling intervals and deadline for every wait.
    pub fn with_wait(mut self, wait: WaitSettings) -> Aws {
        self.wait = wait;
        self
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }
}

impl Platform for Aws {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Aws
    }
}

/// Error codes AWS uses when it throttles a caller.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
];

/// An AWS call's failure as a step's error: what was called, AWS's code and message, and
/// what to do. Throttling and network trouble are transient (the SDK has already retried).
fn sdk_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = format!("HTTP {}", service.raw().status().as_u16());
            let code = e.code().unwrap_or(&status);
            let message = e.message().unwrap_or("no message");
            if THROTTLING.contains(&code) {
                ActionError::transient(format!(
                    "AWS kept throttling {operation} ({code}: {message}) through every retry; give the step `retry:` or resume the run later"
                ))
            } else if code == "InvalidServerlessCacheStateFault"
                || code == "InvalidServerlessCacheState"
            {
                ActionError::fatal(format!(
                    "{operation} was refused in the serverless cache's current state ({code}: {message}); StopMigration is refused during the cutover, other changes while the cache is not `available`: describe it, wait, then resume the run"
                ))
            } else if service.raw().status().as_u16() >= 500 {
                ActionError::transient(format!(
                    "AWS failed {operation} on its side through every retry ({code}: {message}); give the step `retry:` or resume the run later"
                ))
            } else if code == "InvalidReplicationGroupState" {
                ActionError::fatal(format!(
                    "{operation} was refused because the replication group is busy ({code}: {message}); wait until it is `available`, then resume the run"
                ))
            } else {
                ActionError::fatal(format!("{operation} failed: {code}: {message}"))
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ActionError::transient(format!(
                "could not get an answer from AWS for {operation}: {}",
                crate::error::chain(&err)
            ))
        }
        _ => ActionError::fatal(format!("{operation} failed: {}", crate::error::chain(&err))),
    }
}

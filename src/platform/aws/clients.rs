//! The one place AWS clients are built.
//!
//! Every client shares a single `SdkConfig` from aws-config's default chain (environment,
//! profiles, SSO, IMDS) with the command line's `--profile`, `--region` and
//! `--endpoint-url` on top, and the same retry and timeout settings, so a throttled or
//! slow AWS is handled the same way by every call the tool makes.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::{AwsError, AwsOptions};

/// Attempts per AWS call (the first one included) before a throttling or a 5xx is given up.
const MAX_ATTEMPTS: u32 = 5;

/// The clients of the five services the aws target uses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub ec2: super::ec2::Ec2,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    /// Every client from one shared configuration.
    pub fn from_config(config: &SdkConfig) -> Clients {
        Clients {
            cloudformation: aws_sdk_cloudformation::Client::new(config),
            elasticache: aws_sdk_elasticache::Client::new(config),
            ec2: super::ec2::Ec2::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            s3: s3_client(config),
        }
    }
}

/// S3 addressed by path (`ENDPOINT/bucket/key`) behind an `--endpoint-url`, where a
/// bucket's own host name (`bucket.127.0.0.1`) would not resolve; by host name otherwise.
fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// The shared configuration: the default chain, then the command line's choices, with
/// standard retries (exponential backoff with jitter on throttling and 5xx) and timeouts.
pub async fn sdk_config(opts: &AwsOptions) -> Result<SdkConfig, AwsError> {
    let retry = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(20));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(profile) = &opts.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &opts.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &opts.endpoint_url {
        let parsed = url::Url::parse(url).map_err(|e| AwsError::EndpointUrl {
            url: url.clone(),
            why: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(AwsError::EndpointUrl {
                url: url.clone(),
                why: "expected http://HOST:PORT or https://HOST:PORT".into(),
            });
        }
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(AwsError::NoRegion);
    }
    Ok(config)
}

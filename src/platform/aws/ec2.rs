//! The two read-only EC2 calls the migration preflight makes (DescribeInstances by private
//! address, DescribeSecurityGroups by id), over EC2's Query protocol.
//!
//! Why not `aws-sdk-ec2`: that crate alone took 4.5 of the 9 minutes of a first build, the
//! wait a newcomer has before the first rehearsal, for two calls. These requests use the same
//! shared configuration as every other client (region, credentials chain, `--endpoint-url`),
//! are signed by `aws-sigv4` (the SDK's own signer) and answered in XML read with serde.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// The API version every EC2 Query request names.
const VERSION: &str = "2016-11-15";
/// How long one call may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong with an EC2 call, said in the terms of its operation.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// The shared configuration has no credentials provider or region.
    #[error("the AWS configuration has no {0}")]
    Config(&'static str),
    /// The credentials chain found nothing usable.
    #[error("no AWS credentials")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The request could not be signed.
    #[error("cannot sign the request")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No answer: connection refused, TLS, or the timeout.
    #[error("no answer from {endpoint}")]
    Transport {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// EC2 answered with an error (`code` as AWS names it, e.g. `UnauthorizedOperation`).
    #[error("{code}: {message} (HTTP {status})")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer is not the XML the operation returns.
    #[error("an answer that is not EC2's XML")]
    Decode(#[source] quick_xml::DeError),
}

impl Ec2Error {
    /// Worth trying again later: no answer, throttling, or a server-side failure.
    pub fn is_transient(&self) -> bool {
        match self {
            Ec2Error::Transport { .. } => true,
            Ec2Error::Service { status, code, .. } => {
                *status >= 500 || code.contains("Throttl") || code == "RequestLimitExceeded"
            }
            _ => false,
        }
    }
}

/// An EC2 client on the run's shared configuration.
#[derive(Clone, Debug)]
pub struct Ec2 {
    config: SdkConfig,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Both EC2 lists arrive as `<item>` elements.
#[derive(Debug, Deserialize)]
struct Items<T> {
    #[serde(rename = "item", default = "Vec::new")]
    items: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { items: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstancesResponse {
    #[serde(default)]
    reservation_set: Items<Reservation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    #[serde(default)]
    instances_set: Items<Instance>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instance {
    #[serde(default)]
    group_set: Items<GroupRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupRef {
    group_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityGroupsResponse {
    #[serde(default)]
    security_group_info: Items<SecurityGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityGroup {
    #[serde(default)]
    ip_permissions: Items<Permission>,
}

/// One inbound rule of a security group.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// `tcp`, `udp`, `icmp`, or `-1` for every protocol.
    pub ip_protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    #[serde(default, rename = "groups")]
    groups: Items<GroupRef>,
    #[serde(default)]
    ip_ranges: Items<IpRange>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpRange {
    cidr_ip: Option<String>,
}

impl Items<GroupRef> {
    fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter_map(|g| g.group_id.as_deref())
    }
}

impl Permission {
    /// Whether the rule lets TCP `port` in.
    pub fn allows_tcp(&self, port: i32) -> bool {
        self.ip_protocol == "-1"
            || (self.ip_protocol == "tcp"
                && self.from_port.unwrap_or(0) <= port
                && port <= self.to_port.unwrap_or(65535))
    }

    /// The security groups the rule admits.
    pub fn source_groups(&self) -> impl Iterator<Item = &str> {
        self.groups.group_ids()
    }

    /// The address ranges the rule admits.
    pub fn cidrs(&self) -> impl Iterator<Item = &str> {
        self.ip_ranges
            .items
            .iter()
            .filter_map(|r| r.cidr_ip.as_deref())
    }
}

impl Ec2 {
    pub fn new(config: &SdkConfig) -> Ec2 {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ec2 {
            config: config.clone(),
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The security groups of the instances whose private address is `address`.
    pub async fn security_groups_of_instance(
        &self,
        address: &str,
    ) -> Result<Vec<String>, Ec2Error> {
        let reply: InstancesResponse = self
            .call(
                "DescribeInstances",
                &[
                    ("Filter.1.Name", "private-ip-address"),
                    ("Filter.1.Value.1", address),
                ],
            )
            .await?;
        Ok(reply
            .reservation_set
            .items
            .iter()
            .flat_map(|r| &r.instances_set.items)
            .flat_map(|i| i.group_set.group_ids())
            .map(str::to_string)
            .collect())
    }

    /// The inbound rules of the security groups `ids`.
    pub async fn inbound_rules(&self, ids: &[String]) -> Result<Vec<Permission>, Ec2Error> {
        let keys: Vec<String> = (1..=ids.len()).map(|i| format!("GroupId.{i}")).collect();
        let params: Vec<(&str, &str)> = keys
            .iter()
            .map(String::as_str)
            .zip(ids.iter().map(String::as_str))
            .collect();
        let reply: SecurityGroupsResponse = self.call("DescribeSecurityGroups", &params).await?;
        Ok(reply
            .security_group_info
            .items
            .into_iter()
            .flat_map(|g| g.ip_permissions.items)
            .collect())
    }

    /// Where EC2 is: `--endpoint-url` when given, else the region's endpoint.
    fn endpoint(&self) -> Result<String, Ec2Error> {
        if let Some(url) = self.config.endpoint_url() {
            return Ok(format!("{}/", url.trim_end_matches('/')));
        }
        let region = self.config.region().ok_or(Ec2Error::Config("region"))?;
        Ok(format!("https://ec2.{region}.amazonaws.com/"))
    }

    /// One signed Query request, its XML answer decoded as `T`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<T, Ec2Error> {
        let endpoint = self.endpoint()?;
        let region = self.config.region().ok_or(Ec2Error::Config("region"))?;
        let credentials = self
            .config
            .credentials_provider()
            .ok_or(Ec2Error::Config("credentials provider"))?
            .provide_credentials()
            .await
            .map_err(Ec2Error::Credentials)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", action)
            .append_pair("Version", VERSION)
            .extend_pairs(params)
            .finish();
        let identity = credentials.into();
        let signing = v4::SigningParams::builder()
            .identity(&identity)
            .region(region.as_ref())
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Ec2Error::Sign(e.into()))?
            .into();
        const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
        let signable = SignableRequest::new(
            "POST",
            endpoint.as_str(),
            [("content-type", CONTENT_TYPE)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| Ec2Error::Sign(e.into()))?;
        let (instructions, _signature) = sign(signable, &signing)
            .map_err(|e| Ec2Error::Sign(e.into()))?
            .into_parts();
        let mut request = http::Request::post(&endpoint)
            .header("content-type", CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Ec2Error::Sign(e.into()))?;
        instructions.apply_to_request_http1x(&mut request);

        let transport = |source: Box<dyn std::error::Error + Send + Sync>| Ec2Error::Transport {
            endpoint: endpoint.clone(),
            source,
        };
        let response = tokio::time::timeout(TIMEOUT, self.http.request(request))
            .await
            .map_err(|e| transport(e.into()))?
            .map_err(|e| transport(e.into()))?;
        let status = response.status().as_u16();
        let bytes = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .map_err(|e| transport(e.into()))?
            .map_err(|e| transport(e.into()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if status >= 300 {
            return Err(service_error(status, &text));
        }
        quick_xml::de::from_str(&text).map_err(Ec2Error::Decode)
    }
}

/// EC2's error answer: `<Response><Errors><Error><Code>..</Code><Message>..</Message>`.
fn service_error(status: u16, text: &str) -> Ec2Error {
    #[derive(Deserialize)]
    struct Response {
        #[serde(rename = "Errors")]
        errors: Errors,
    }
    #[derive(Deserialize)]
    struct Errors {
        #[serde(rename = "Error")]
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(rename = "Code")]
        code: String,
        #[serde(rename = "Message", default)]
        message: String,
    }
    match quick_xml::de::from_str::<Response>(text) {
        Ok(r) => Ec2Error::Service {
            status,
            code: r.errors.error.code,
            message: r.errors.error.message,
        },
        Err(_) => Ec2Error::Service {
            status,
            code: "Unknown".into(),
            message: text.chars().take(200).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rules_of_a_describe_security_groups_answer() {
        let xml = r#"<DescribeSecurityGroupsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r</requestId>
  <securityGroupInfo>
    <item>
      <groupId>sg-1</groupId>
      <ipPermissions>
        <item>
          <ipProtocol>tcp</ipProtocol><fromPort>6379</fromPort><toPort>6380</toPort>
          <groups><item><userId>1</userId><groupId>sg-cache</groupId></item></groups>
          <ipRanges><item><cidrIp>10.0.0.0/16</cidrIp></item></ipRanges>
        </item>
        <item><ipProtocol>-1</ipProtocol><groups/><ipRanges/></item>
      </ipPermissions>
      <ipPermissionsEgress/>
    </item>
  </securityGroupInfo>
</DescribeSecurityGroupsResponse>"#;
        let reply: SecurityGroupsResponse = quick_xml::de::from_str(xml).expect("decodes");
        let rules = &reply.security_group_info.items[0].ip_permissions.items;
        assert_eq!(rules.len(), 2);
        assert!(rules[0].allows_tcp(6379) && !rules[0].allows_tcp(6381));
        assert_eq!(rules[0].source_groups().collect::<Vec<_>>(), ["sg-cache"]);
        assert_eq!(rules[0].cidrs().collect::<Vec<_>>(), ["10.0.0.0/16"]);
        assert!(rules[1].allows_tcp(1));
    }

    #[test]
    fn an_error_answer_names_the_code_and_message() {
        let xml = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors><RequestID>x</RequestID></Response>";
        let err = service_error(503, xml);
        assert_eq!(
            err.to_string(),
            "RequestLimitExceeded: slow down (HTTP 503)"
        );
        assert!(err.is_transient());
    }
}

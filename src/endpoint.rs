//! Where a Redis-protocol client connects, and how.
//!
//! Every data-plane feature (probe, verify, seed, bench) talks to endpoints given as URLs.
//! Keeping the parsing, the `--resolve` overrides, AUTH, TLS and the redaction of
//! passwords in one place means no feature can leak a password or forget a tunnel.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
};

/// A parse failure of an endpoint URL or a `--resolve` entry.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The text is not `redis://[user:password@]host:port[/db]`, `rediss://…` or `host:port`.
    #[error(
        "`{text}` is not an endpoint: {why} (expected redis://[user:password@]host:port[/db], rediss://… for TLS, or host:port)"
    )]
    Invalid { text: String, why: String },
    /// A `--resolve` entry is not `HOST:PORT=ADDR:PORT`.
    #[error(
        "`{0}` is not a --resolve entry (expected HOST:PORT=ADDR:PORT, e.g. my-cache.abc.use1.cache.amazonaws.com:6379=127.0.0.1:16379)"
    )]
    InvalidResolve(String),
}

/// A Redis or Valkey endpoint. Its `Display` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

impl Endpoint {
    /// Parses `redis://…`, `rediss://…` or a bare `host:port` (port 6379 when left out).
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let invalid = |why: &str| EndpointError::Invalid {
            text: redact_url(text),
            why: why.to_string(),
        };
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("redis://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        let tls = match url.scheme() {
            "redis" | "valkey" => false,
            "rediss" | "valkeys" => true,
            other => return Err(invalid(&format!("unknown scheme `{other}`"))),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let password = url.password().map(decode);
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            d => d
                .parse()
                .map_err(|_| invalid("the database after `/` is not a number"))?,
        };
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(6379),
            tls,
            username,
            password,
            db,
        })
    }

    /// A local endpoint on loopback without credentials.
    pub fn local(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            tls: false,
            username: None,
            password: None,
            db: 0,
        }
    }

    /// `host:port`, the form ElastiCache and `--resolve` use.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL with the password, for handing to a client. Never print it.
    pub fn url_with_secret(&self) -> String {
        self.url(self.password.as_deref())
    }

    fn url(&self, password: Option<&str>) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let auth = match (&self.username, password) {
            (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
            (None, Some(p)) => format!(":{}@", enc(p)),
            (Some(u), None) => format!("{}@", enc(u)),
            (None, None) => String::new(),
        };
        let db = if self.db == 0 {
            String::new()
        } else {
            format!("/{}", self.db)
        };
        format!("{scheme}://{auth}{}{db}", self.host_port())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url(self.password.as_ref().map(|_| "***")))
    }
}

/// Serialized as its redacted URL, so an endpoint in a journal or a report never carries a password.
impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// Replaces the password of anything that looks like a URL with `***`.
pub fn redact_url(text: &str) -> String {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")
            .expect("static regex")
    });
    RE.replace_all(text, "${pre}***@").into_owned()
}

/// `--resolve HOST:PORT=ADDR:PORT` overrides: where to really connect for a given endpoint,
/// so that an ElastiCache endpoint can be reached through an SSH tunnel or a bastion.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    overrides: BTreeMap<(String, u16), SocketAddr>,
}

impl Resolver {
    pub fn parse(entries: &[String]) -> Result<Resolver, EndpointError> {
        let mut overrides = BTreeMap::new();
        for entry in entries {
            let bad = || EndpointError::InvalidResolve(entry.clone());
            let (from, to) = entry.split_once('=').ok_or_else(bad)?;
            let (host, port) = from.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let to: SocketAddr = to.parse().map_err(|_| bad())?;
            overrides.insert(
                (host.trim_matches(['[', ']']).to_ascii_lowercase(), port),
                to,
            );
        }
        Ok(Resolver { overrides })
    }

    /// The address to connect to instead of `endpoint`, if one was given.
    pub fn override_for(&self, endpoint: &Endpoint) -> Option<SocketAddr> {
        self.overrides
            .get(&(endpoint.host.to_ascii_lowercase(), endpoint.port))
            .copied()
    }

    /// Connection details for the `redis` crate, with the override applied. TLS keeps the
    /// original host name for certificate checks only when no override redirects it.
    pub fn connection_info(&self, endpoint: &Endpoint) -> ConnectionInfo {
        let (host, port) = match self.override_for(endpoint) {
            Some(addr) => (addr.ip().to_string(), addr.port()),
            None => (endpoint.host.clone(), endpoint.port),
        };
        let addr = if endpoint.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                // Through a tunnel the certificate names the real endpoint, not 127.0.0.1.
                insecure: self.override_for(endpoint).is_some(),
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(endpoint.db);
        if let Some(u) = &endpoint.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &endpoint.password {
            redis = redis.set_password(p);
        }
        addr.into_connection_info()
            .expect("a connection address is always valid connection info")
            .set_redis_settings(redis)
            // Without TCP_NODELAY a pipelined request waits for a delayed ACK (~40 ms).
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
    }

    /// Opens one multiplexed connection with connect and response timeouts.
    pub async fn connect(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let client = redis::Client::open(self.connection_info(endpoint))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_hides_passwords() {
        let e = Endpoint::parse("redis://app:s3cr%40t@cache.example:6380/2").unwrap();
        assert_eq!(e.host, "cache.example");
        assert_eq!(e.port, 6380);
        assert_eq!(e.db, 2);
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.password.as_deref(), Some("s3cr@t"));
        assert!(!e.to_string().contains("s3cr"));
        assert_eq!(e.to_string(), "redis://app:***@cache.example:6380/2");
        let bare = Endpoint::parse("127.0.0.1:7000").unwrap();
        assert_eq!((bare.port, bare.tls), (7000, false));
        assert!(Endpoint::parse("rediss://h").unwrap().tls);
        assert!(Endpoint::parse("http://h:1").is_err());
    }

    #[test]
    fn redacts_urls_inside_text() {
        assert_eq!(
            redact_url("connect redis://u:pw@h:1 and rediss://:tok@x:2/0"),
            "connect redis://u:***@h:1 and rediss://:***@x:2/0"
        );
    }

    #[test]
    fn resolve_overrides_the_address() {
        let r = Resolver::parse(&["Cache.Example:6379=127.0.0.1:16379".into()]).unwrap();
        let e = Endpoint::parse("cache.example:6379").unwrap();
        assert_eq!(r.override_for(&e), Some("127.0.0.1:16379".parse().unwrap()));
        assert!(Resolver::parse(&["nope".into()]).is_err());
    }
}

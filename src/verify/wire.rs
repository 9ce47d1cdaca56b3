//! The key-parity check's own connections: pipelined RESP2, replies read in place.
//!
//! A check reads every value of the cache on both sides. The `redis` crate turns each reply
//! element into an owned `Value` (an allocation and a copy per hash field or set member),
//! which made the client, not the servers, the slowest part of a check. Here a pipeline's
//! replies are decoded with `redis-protocol` into ranges of the read buffer and handed to
//! the caller one by one, so values are digested without being copied. Plain TCP or TLS,
//! AUTH and SELECT as the endpoint says, `--resolve` overrides as everywhere else.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::endpoint::{Endpoint, Resolver};

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server's reply is not RESP: {0}")]
    Protocol(String),
    /// AUTH or SELECT was refused, or the server closed the connection.
    #[error("{0}")]
    Refused(String),
    /// A command the check needs was answered with an error.
    #[error("{0}")]
    Server(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Commands to send at once, encoded as they are added.
#[derive(Default)]
pub struct Pipeline {
    out: Vec<u8>,
    len: usize,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Adds one command.
    pub fn cmd(&mut self, args: &[&[u8]]) -> &mut Self {
        let (name, rest) = args.split_first().expect("a command has a name");
        self.cmd_with(name, rest.iter().copied())
    }

    /// Adds a command with many arguments after its name (a multi-key EXISTS).
    pub fn cmd_with<'a>(
        &mut self,
        name: &[u8],
        args: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> &mut Self {
        self.header(b'*', args.len() + 1);
        self.bulk(name);
        for arg in args {
            self.bulk(arg);
        }
        self.len += 1;
        self
    }

    /// Commands added so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bulk(&mut self, arg: &[u8]) {
        self.header(b'$', arg.len());
        self.out.extend_from_slice(arg);
        self.out.extend_from_slice(b"\r\n");
    }

    fn header(&mut self, kind: u8, n: usize) {
        self.out.push(kind);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// A number as a command argument.
pub fn num(buf: &mut itoa::Buffer, n: i64) -> &[u8] {
    buf.format(n).as_bytes()
}

/// One reply, or one element of it, borrowed from the read buffer.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    frame: &'a RangeFrame,
    buf: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A bulk or simple string's bytes.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self.frame {
            RangeFrame::BulkString((s, e)) | RangeFrame::SimpleString((s, e)) => {
                Some(&self.buf[*s..*e])
            }
            _ => None,
        }
    }

    pub fn int(self) -> Option<i64> {
        match self.frame {
            RangeFrame::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// An array's elements.
    pub fn items(self) -> Option<impl ExactSizeIterator<Item = Frame<'a>>> {
        match self.frame {
            RangeFrame::Array(items) => Some(items.iter().map(move |frame| Frame {
                frame,
                buf: self.buf,
            })),
            _ => None,
        }
    }

    /// The reply itself, or the error it carries.
    pub fn ok(self) -> Result<Frame<'a>, WireError> {
        match self.error() {
            Some(text) => Err(WireError::Server(
                String::from_utf8_lossy(text).into_owned(),
            )),
            None => Ok(self),
        }
    }

    /// An error reply's text (`WRONGTYPE Operation against…`).
    pub fn error(self) -> Option<&'a [u8]> {
        match self.frame {
            RangeFrame::Error((s, e)) => Some(&self.buf[*s..*e]),
            _ => None,
        }
    }

    pub fn is_nil(self) -> bool {
        matches!(self.frame, RangeFrame::Null)
    }
}

/// Hands `f` the reply encoded in `resp` (for tests of what reads replies).
#[cfg(test)]
pub fn decoded<R>(resp: &[u8], f: impl FnOnce(Frame<'_>) -> R) -> R {
    let (frame, _) = decode_range(resp)
        .expect("valid RESP")
        .expect("a whole reply");
    f(Frame {
        frame: &frame,
        buf: resp,
    })
}

/// One connection.
pub struct Wire {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Wire {
    /// Connects, then authenticates and selects the endpoint's database.
    pub async fn connect(
        resolver: &Resolver,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Wire, WireError> {
        let redirected = resolver.override_for(endpoint);
        let tcp = tokio::time::timeout(timeout, async {
            match redirected {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await,
            }
        })
        .await
        .map_err(|_| WireError::Timeout(timeout))??;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = if endpoint.tls {
            Box::new(tls(tcp, endpoint, redirected, timeout).await?)
        } else {
            Box::new(tcp)
        };
        let mut wire = Wire {
            io,
            buf: Vec::with_capacity(64 * 1024),
            timeout,
        };
        let mut hello = Pipeline::new();
        if let Some(password) = &endpoint.password {
            match &endpoint.username {
                Some(user) => hello.cmd(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => hello.cmd(&[b"AUTH", password.as_bytes()]),
            };
        }
        if endpoint.db != 0 {
            let mut n = itoa::Buffer::new();
            hello.cmd(&[b"SELECT", num(&mut n, endpoint.db)]);
        }
        if !hello.is_empty() {
            wire.run(&hello, |_, reply| reply.ok().map(drop))
                .await
                .map_err(|e| match e {
                    WireError::Server(why) => WireError::Refused(why),
                    other => other,
                })?;
        }
        Ok(wire)
    }

    /// Sends `pipeline` and hands each reply, in order, to `each`. Every reply is read
    /// even after `each` fails, so the connection stays usable; the first failure is
    /// returned.
    pub async fn run(
        &mut self,
        pipeline: &Pipeline,
        mut each: impl FnMut(usize, Frame<'_>) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.io.write_all(&pipeline.out).await?;
            self.io.flush().await?;
            self.buf.clear();
            let mut at = 0;
            let mut done = 0;
            let mut failed = None;
            while done < pipeline.len {
                let decoded = decode_range(&self.buf[at..])
                    .map_err(|e| WireError::Protocol(e.to_string()))?;
                match decoded {
                    Some((frame, used)) => {
                        let reply = Frame {
                            frame: &frame,
                            buf: &self.buf[at..],
                        };
                        if let Err(e) = each(done, reply) {
                            failed.get_or_insert(e);
                        }
                        at += used;
                        done += 1;
                    }
                    None => {
                        self.buf.drain(..at);
                        at = 0;
                        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                            self.buf.reserve(self.buf.capacity().max(64 * 1024));
                        }
                        if self.io.read_buf(&mut self.buf).await? == 0 {
                            return Err(WireError::Refused(
                                "the server closed the connection".into(),
                            ));
                        }
                    }
                }
            }
            failed.map_or(Ok(()), Err)
        })
        .await
        .map_err(|_| WireError::Timeout(timeout))?
    }
}

async fn tls(
    tcp: TcpStream,
    endpoint: &Endpoint,
    redirected: Option<SocketAddr>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, WireError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| WireError::Refused(e.to_string()))?;
    let config = match redirected {
        // Through a tunnel the certificate names the real endpoint, not the tunnel's
        // address: as for every other connection, the name is not checked then.
        Some(_) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        None => builder
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|e| WireError::Refused(format!("`{}`: {e}", endpoint.host)))?;
    tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| WireError::Timeout(timeout))?
    .map_err(WireError::Io)
}

/// Accepts the server's certificate whatever name it carries (signatures still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connections to one endpoint, lent out one batch at a time.
pub struct Pool {
    idle: Mutex<Vec<Wire>>,
    permits: Arc<Semaphore>,
}

/// A connection lent by a [`Pool`]; it goes back when dropped.
pub struct Lease<'a> {
    pool: &'a Pool,
    wire: Option<Wire>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(wires: Vec<Wire>) -> Pool {
        Pool {
            permits: Arc::new(Semaphore::new(wires.len())),
            idle: Mutex::new(wires),
        }
    }

    pub async fn get(&self) -> Lease<'_> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let wire = self
            .idle
            .lock()
            .expect("a pool's lock is never poisoned")
            .pop();
        Lease {
            pool: self,
            wire,
            _permit: permit,
        }
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Wire;
    fn deref(&self) -> &Wire {
        self.wire
            .as_ref()
            .expect("a permit guarantees an idle connection")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Wire {
        self.wire
            .as_mut()
            .expect("a permit guarantees an idle connection")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(wire) = self.wire.take() {
            self.pool
                .idle
                .lock()
                .expect("a pool's lock is never poisoned")
                .push(wire);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_resp_arrays() {
        let mut p = Pipeline::new();
        p.cmd(&[b"GET", b"k"])
            .cmd_with(b"EXISTS", [&b"a"[..], b"bc"].into_iter());
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.out,
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$6\r\nEXISTS\r\n$1\r\na\r\n$2\r\nbc\r\n"
        );
    }

    #[test]
    fn frames_borrow_from_the_buffer() {
        let buf = b"*3\r\n$2\r\nab\r\n:7\r\n$-1\r\n-WRONGTYPE no\r\n";
        let (frame, used) = decode_range(buf).unwrap().unwrap();
        let f = Frame { frame: &frame, buf };
        let items: Vec<Frame> = f.items().unwrap().collect();
        assert_eq!(items[0].bytes(), Some(&b"ab"[..]));
        assert_eq!(items[1].int(), Some(7));
        assert!(items[2].is_nil());
        let (err, _) = decode_range(&buf[used..]).unwrap().unwrap();
        let e = Frame {
            frame: &err,
            buf: &buf[used..],
        };
        assert_eq!(e.error(), Some(&b"WRONGTYPE no"[..]));
    }
}

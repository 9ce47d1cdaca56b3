//! One connection: opened with the `--resolve` rule, TLS, AUTH and SELECT, then used for
//! pipelines whose replies are read in place.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{self, Frame, Span};
use super::{Pipeline, tls};
use crate::endpoint::{Endpoint, Resolver};

/// Why a connection or a request failed. After anything but [`RespError::Server`] (and a
/// refused login or database, which end the connection anyway), replies may still be on
/// their way: drop the connection.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The socket could not be opened or broke (refused, reset).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// No answer within the connection's timeout.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent something that is not RESP2.
    #[error("the server's reply is not RESP: {0}")]
    Protocol(String),
    /// TLS could not be set up for this endpoint.
    #[error("cannot set up TLS")]
    Tls(#[source] Box<rustls::Error>),
    /// The endpoint's host is not a name a certificate can carry.
    #[error("`{host}` cannot be checked against a TLS certificate")]
    TlsName {
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// AUTH was refused (the text is the server's: WRONGPASS…).
    #[error("the server refused the login: {0}")]
    Login(String),
    /// SELECT was refused (the text is the server's: the database is out of range).
    #[error("the server refused the database: {0}")]
    Select(String),
    /// A command was answered with an error.
    #[error("{0}")]
    Server(String),
}

impl RespError {
    /// Whether the connection cannot be used any more (the server answered otherwise).
    pub fn drops_connection(&self) -> bool {
        !matches!(self, RespError::Server(_))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// A connection, authenticated and on its database.
pub struct Conn {
    io: Box<dyn Io>,
    /// Bytes read and not yet handed out start at `buf[0]`.
    buf: Vec<u8>,
    timeout: Duration,
    /// The database selected.
    db: i64,
}

/// A reply as [`Conn::batch`] hands it out: framed, not decoded.
pub struct Reply<'a> {
    /// When the bytes that completed the reply arrived.
    pub at: Instant,
    /// The error text when the server answered with an error.
    pub error: Option<&'a [u8]>,
}

impl Conn {
    /// Connects to `endpoint` (or where a `--resolve` override sends it), then
    /// authenticates and selects the endpoint's database. `timeout` bounds connecting, and
    /// later each pipeline.
    pub async fn connect(
        resolver: &Resolver,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Conn, RespError> {
        let redirected = resolver.override_for(endpoint);
        let tcp = bounded(timeout, async {
            let tcp = match redirected {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await,
            }?;
            // Without it a pipelined request can wait for a delayed ACK (~40 ms).
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
        .await?;
        let io: Box<dyn Io> = if endpoint.tls {
            let config =
                tls::config(redirected.is_some()).map_err(|e| RespError::Tls(Box::new(e)))?;
            let name = tls::server_name(&endpoint.host).map_err(|source| RespError::TlsName {
                host: endpoint.host.clone(),
                source,
            })?;
            let connector = tokio_rustls::TlsConnector::from(config);
            Box::new(bounded(timeout, async { Ok(connector.connect(name, tcp).await?) }).await?)
        } else {
            Box::new(tcp)
        };
        let mut conn = Conn {
            io,
            buf: Vec::with_capacity(64 * 1024),
            timeout,
            db: 0,
        };
        if let Some(password) = &endpoint.password {
            let mut p = Pipeline::new();
            match &endpoint.username {
                Some(user) => p.cmd(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => p.cmd(&[b"AUTH", password.as_bytes()]),
            };
            conn.run(&p, |_, reply| reply.ok().map(drop))
                .await
                .map_err(|e| match e {
                    RespError::Server(why) => RespError::Login(why),
                    other => other,
                })?;
        }
        if endpoint.db != 0 {
            conn.select(endpoint.db).await?;
        }
        Ok(conn)
    }

    /// The connection's two directions apart, and the bytes already read: for a caller that
    /// keeps requests in flight while another task reads the replies (the probe's open loop).
    pub fn split(
        self,
    ) -> (
        Box<dyn AsyncRead + Send + Unpin>,
        Box<dyn AsyncWrite + Send + Unpin>,
        Vec<u8>,
    ) {
        let (read, write) = tokio::io::split(self.io);
        (Box::new(read), Box::new(write), self.buf)
    }

    /// Switches to database `db`.
    pub async fn select(&mut self, db: i64) -> Result<(), RespError> {
        let mut n = itoa::Buffer::new();
        self.call(&[b"SELECT", super::num(&mut n, db)], |_| ())
            .await
            .map_err(|e| match e {
                RespError::Server(reply) => RespError::Select(reply),
                other => other,
            })?;
        self.db = db;
        Ok(())
    }

    /// The database selected, so a connection shared by the checks of several databases
    /// switches only when it must.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// Sends one command and hands its reply, unless it is an error, to `read`.
    pub async fn call<T>(
        &mut self,
        args: &[&[u8]],
        read: impl FnOnce(Frame<'_>) -> T,
    ) -> Result<T, RespError> {
        let mut p = Pipeline::new();
        p.cmd(args);
        let mut read = Some(read);
        let mut value = None;
        self.run(&p, |_, reply| {
            let reply = reply.ok()?;
            value = read.take().map(|read| read(reply));
            Ok(())
        })
        .await?;
        Ok(value.expect("one command has one reply"))
    }

    /// Sends `pipeline` and hands each reply, decoded, in order, to `each` (the replies to
    /// an asking pipeline's `ASKING`s left out). Every reply is read even after `each`
    /// fails, so the connection stays usable; the first failure is returned.
    pub async fn run(
        &mut self,
        pipeline: &Pipeline,
        mut each: impl FnMut(usize, Frame<'_>) -> Result<(), RespError>,
    ) -> Result<(), RespError> {
        let mut failed = None;
        let asking = pipeline.is_asking();
        let mut index = frame::Index::default();
        self.exchange(pipeline.as_bytes(), pipeline.replies(), |i, buf, _| {
            let Some(used) = index
                .frame(buf)
                .map_err(|e| RespError::Protocol(e.to_string()))?
            else {
                return Ok(None);
            };
            let (i, skip) = if asking {
                (i / 2, i % 2 == 0)
            } else {
                (i, false)
            };
            if !skip && let Err(e) = each(i, index.reply(&buf[..used])) {
                failed.get_or_insert(e);
            }
            Ok(Some(used))
        })
        .await?;
        failed.map_or(Ok(()), Err)
    }

    /// Writes `requests` (holding `count` commands, encoded) and hands each reply, framed
    /// only, in order, to `on_reply`: the fast path of the benchmark and the probe.
    pub async fn batch(
        &mut self,
        requests: &[u8],
        count: usize,
        mut on_reply: impl FnMut(Reply<'_>),
    ) -> Result<(), RespError> {
        self.exchange(requests, count, |_, buf, at| {
            let Some(Span { len, error_end }) =
                frame::span(buf).map_err(|e| RespError::Protocol(e.to_string()))?
            else {
                return Ok(None);
            };
            on_reply(Reply {
                at,
                error: error_end.map(|e| &buf[1..e]),
            });
            Ok(Some(len))
        })
        .await
    }

    /// Writes `requests`, then reads until `take` has taken `count` replies. `take` gets
    /// the reply's index, the unread bytes and when the last of them arrived, and says how
    /// many bytes the reply at their start takes, or `None` when it is not all there yet.
    async fn exchange(
        &mut self,
        requests: &[u8],
        count: usize,
        mut take: impl FnMut(usize, &[u8], Instant) -> Result<Option<usize>, RespError>,
    ) -> Result<(), RespError> {
        let timeout = self.timeout;
        bounded(timeout, async {
            self.io.write_all(requests).await?;
            self.io.flush().await?;
            let mut at = 0;
            let mut done = 0;
            let mut arrived = Instant::now();
            while done < count {
                match take(done, &self.buf[at..], arrived)? {
                    Some(used) => {
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
                            return Err(RespError::Closed);
                        }
                        arrived = Instant::now();
                    }
                }
            }
            self.buf.drain(..at);
            Ok(())
        })
        .await
    }
}

/// Runs `work` within `limit`.
async fn bounded<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, RespError>>,
) -> Result<T, RespError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| RespError::Timeout(limit))?
}

//! One benchmark connection: a plain TCP socket with a pipelined writer and reader.
//!
//! Each batch of up to `pipeline` requests goes out in one write; the replies are framed
//! as they arrive and timed against the moment the batch was written. Nothing is
//! allocated per request, so one core of client keeps up with one core of server.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;
use super::reply::{self, Frame};
use crate::endpoint::{Endpoint, Resolver};

/// How long connecting, or one batch, may take before it counts as failed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection, authenticated and on the endpoint's database.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// A reply as [`Conn::batch`] hands it to its caller.
pub struct Reply<'a> {
    /// When the bytes that completed the reply arrived.
    pub at: Instant,
    /// The error text when the server answered with an error.
    pub error: Option<&'a [u8]>,
}

impl Conn {
    /// Connects (through `--resolve` overrides), then AUTH and SELECT as the URL asks.
    /// Plain TCP only: [`super::run`] refuses TLS endpoints up front.
    pub async fn open(endpoint: &Endpoint, resolver: &Resolver) -> Result<Conn, BenchError> {
        let failed = |why: String| BenchError::Connect {
            endpoint: endpoint.to_string(),
            why,
        };
        let connect = async {
            match resolver.override_for(endpoint) {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await,
            }
        };
        let stream = tokio::time::timeout(IO_TIMEOUT, connect)
            .await
            .map_err(|_| failed(format!("no answer within {}s", IO_TIMEOUT.as_secs())))?
            .map_err(|e| failed(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        let mut conn = Conn {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        };
        let mut hello = Vec::new();
        if let Some(password) = &endpoint.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &endpoint.username {
                auth.arg(user);
            }
            hello.push(auth.arg(password).to_owned());
        }
        if endpoint.db != 0 {
            hello.push(redis::cmd("SELECT").arg(endpoint.db).to_owned());
        }
        if !hello.is_empty() {
            let errors = conn
                .run_commands(&hello)
                .await
                .map_err(|e| failed(e.to_string()))?;
            if let Some(first) = errors.into_iter().next() {
                return Err(failed(format!(
                    "the server refused the login or database: {first}"
                )));
            }
        }
        Ok(conn)
    }

    /// Sends `commands` in one write and returns the error replies' texts.
    pub async fn run_commands(
        &mut self,
        commands: &[redis::Cmd],
    ) -> Result<Vec<String>, BenchError> {
        let mut out = Vec::new();
        for c in commands {
            c.write_packed_command(&mut out);
        }
        let mut errors = Vec::new();
        self.batch(&out, commands.len(), |r| {
            if let Some(e) = r.error {
                errors.push(String::from_utf8_lossy(e).into_owned());
            }
        })
        .await?;
        Ok(errors)
    }

    /// Writes `requests` (holding `count` commands) and hands each reply, in order, to
    /// `on_reply`. Fails when the connection breaks or the batch takes longer than
    /// [`IO_TIMEOUT`]; the caller then counts the unanswered requests as errors.
    pub async fn batch(
        &mut self,
        requests: &[u8],
        count: usize,
        mut on_reply: impl FnMut(Reply<'_>),
    ) -> Result<(), BenchError> {
        let io = async {
            self.stream.write_all(requests).await?;
            let mut answered = 0;
            while answered < count {
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                } else if self.end == self.buf.len() {
                    if self.start > 0 {
                        self.buf.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    } else {
                        let len = self.buf.len();
                        self.buf.resize(len * 2, 0);
                    }
                }
                let n = self.stream.read(&mut self.buf[self.end..]).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
                let at = Instant::now();
                self.end += n;
                while answered < count {
                    let pending = &self.buf[self.start..self.end];
                    let Some(Frame { len, error_end }) =
                        reply::frame(pending).map_err(std::io::Error::other)?
                    else {
                        break;
                    };
                    on_reply(Reply {
                        at,
                        error: error_end.map(|e| &pending[1..e]),
                    });
                    self.start += len;
                    answered += 1;
                }
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(IO_TIMEOUT, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BenchError::Io(e.to_string())),
            Err(_) => Err(BenchError::Io(format!(
                "no reply within {}s",
                IO_TIMEOUT.as_secs()
            ))),
        }
    }
}

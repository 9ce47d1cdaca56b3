//! The connections to both sides of a check, and the one-command questions passes ask.

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::{Conn, Frame, Pipeline, Pool, RespError};

use super::{Side, VerifyError, VerifyOptions};

/// The connections to both sides.
pub(super) struct Sides {
    pub source: Endpoint,
    pub target: Endpoint,
    pub src: Pool,
    pub dst: Pool,
    pub opts: VerifyOptions,
}

impl Sides {
    pub async fn connect(
        resolver: &Resolver,
        source: &Endpoint,
        target: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Sides, VerifyError> {
        let pool = async |side: Side, endpoint: &Endpoint| {
            let mut conns = Vec::with_capacity(opts.connections);
            for _ in 0..opts.connections {
                let conn = Conn::connect(resolver, endpoint, opts.timeout)
                    .await
                    .map_err(|source| VerifyError::Connect {
                        side,
                        endpoint: endpoint.clone(),
                        source,
                    })?;
                conns.push(conn);
            }
            Ok::<_, VerifyError>(Pool::new(conns))
        };
        Ok(Sides {
            source: source.clone(),
            target: target.clone(),
            src: pool(Side::Source, source).await?,
            dst: pool(Side::Target, target).await?,
            opts: opts.clone(),
        })
    }

    fn pool(&self, side: Side) -> &Pool {
        match side {
            Side::Source => &self.src,
            Side::Target => &self.dst,
        }
    }

    /// `source`, as a failure of `side` during the check.
    pub fn err(&self, side: Side, source: RespError) -> VerifyError {
        VerifyError::Failed {
            side,
            endpoint: match side {
                Side::Source => self.source.clone(),
                Side::Target => self.target.clone(),
            },
            source,
        }
    }

    /// Runs `p` on a connection of `side`.
    pub async fn run(
        &self,
        side: Side,
        p: &Pipeline,
        each: impl FnMut(usize, Frame<'_>) -> Result<(), RespError>,
    ) -> Result<(), VerifyError> {
        self.pool(side)
            .get()
            .await
            .run(p, each)
            .await
            .map_err(|e| self.err(side, e))
    }

    /// The reply to one command, as `read` takes it.
    pub async fn call<T>(
        &self,
        side: Side,
        args: &[&[u8]],
        read: impl FnOnce(Frame<'_>) -> T,
    ) -> Result<T, VerifyError> {
        self.pool(side)
            .get()
            .await
            .call(args, read)
            .await
            .map_err(|e| self.err(side, e))
    }

    pub async fn dbsize(&self, side: Side) -> Result<u64, VerifyError> {
        self.call(side, &[b"DBSIZE"], |r| r.int().unwrap_or(0).max(0) as u64)
            .await
    }
}

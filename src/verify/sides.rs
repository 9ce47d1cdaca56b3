//! The connections to both sides of a check, and the one-command questions passes ask.
//!
//! A side is a [`Reader`]: the connections that read one endpoint, lent out one batch at a
//! time and switched to the database a batch is about. Every read names the database (and
//! the key it is about), so a side made of several nodes can route it.

use std::collections::BTreeMap;

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::{Conn, Frame, Lease, Pipeline, Pool, RespError};

use super::{Side, VerifyError, VerifyOptions};

/// The connections that read one side.
pub(super) struct Reader {
    pub endpoint: Endpoint,
    pool: Pool,
}

impl Reader {
    async fn connect(
        resolver: &Resolver,
        side: Side,
        endpoint: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Reader, VerifyError> {
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
        Ok(Reader {
            endpoint: endpoint.clone(),
            pool: Pool::new(conns),
        })
    }

    /// A connection on database `db`.
    pub async fn lease(&self, db: i64) -> Result<Lease<'_>, RespError> {
        let mut conn = self.pool.get().await;
        if conn.db() != db {
            conn.select(db).await?;
        }
        Ok(conn)
    }
}

/// The connections to both sides, and which target database each source database is
/// compared with.
pub(super) struct Sides {
    pub src: Reader,
    pub dst: Reader,
    pub opts: VerifyOptions,
    /// Source database → target database; every database of the check is a key.
    pub dbs: BTreeMap<i64, i64>,
}

impl Sides {
    pub async fn connect(
        resolver: &Resolver,
        source: &Endpoint,
        target: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Sides, VerifyError> {
        Ok(Sides {
            src: Reader::connect(resolver, Side::Source, source, opts).await?,
            dst: Reader::connect(resolver, Side::Target, target, opts).await?,
            opts: opts.clone(),
            dbs: BTreeMap::new(),
        })
    }

    pub fn reader(&self, side: Side) -> &Reader {
        match side {
            Side::Source => &self.src,
            Side::Target => &self.dst,
        }
    }

    /// The database `side` is read in when the check is at source database `db`.
    pub fn db_on(&self, side: Side, db: i64) -> i64 {
        match side {
            Side::Source => db,
            Side::Target => self.dbs.get(&db).copied().unwrap_or(db),
        }
    }

    /// A connection of `side` on the database that pairs with source database `db`.
    pub async fn lease(&self, side: Side, db: i64) -> Result<Lease<'_>, VerifyError> {
        self.reader(side)
            .lease(self.db_on(side, db))
            .await
            .map_err(|e| self.err(side, e))
    }

    /// `source`, as a failure of `side` during the check.
    pub fn err(&self, side: Side, source: RespError) -> VerifyError {
        VerifyError::Failed {
            side,
            endpoint: self.reader(side).endpoint.clone(),
            source,
        }
    }

    /// Runs `p` on a connection of `side` at source database `db`.
    pub async fn run(
        &self,
        side: Side,
        db: i64,
        p: &Pipeline,
        each: impl FnMut(usize, Frame<'_>) -> Result<(), RespError>,
    ) -> Result<(), VerifyError> {
        self.lease(side, db)
            .await?
            .run(p, each)
            .await
            .map_err(|e| self.err(side, e))
    }

    /// The reply to one command that is about no database (INFO), as `read` takes it.
    pub async fn call<T>(
        &self,
        side: Side,
        args: &[&[u8]],
        read: impl FnOnce(Frame<'_>) -> T,
    ) -> Result<T, VerifyError> {
        self.reader(side)
            .pool
            .get()
            .await
            .call(args, read)
            .await
            .map_err(|e| self.err(side, e))
    }

    /// The databases that hold keys on `side`, with their key counts (`INFO keyspace`).
    pub async fn keyspace(&self, side: Side) -> Result<BTreeMap<i64, u64>, VerifyError> {
        let info = self
            .call(side, &[b"INFO", b"keyspace"], |r| r.text())
            .await?;
        Ok(keyspace(&info))
    }
}

/// `db3:keys=12,expires=1,avg_ttl=0` lines → database 3 holds 12 keys.
fn keyspace(info: &str) -> BTreeMap<i64, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim_end().split_once(':')?;
            let db = name.strip_prefix("db")?.parse().ok()?;
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db, keys))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::keyspace;

    #[test]
    fn reads_the_databases_that_hold_keys() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb15:keys=7,expires=0,avg_ttl=0,subexpiry=0\r\n";
        assert_eq!(keyspace(info), [(0, 3), (15, 7)].into_iter().collect());
        assert!(keyspace("# Keyspace\r\n").is_empty());
    }
}

//! The connections to both sides of a check, and the one-command questions passes ask.
//!
//! A side is a [`Reader`]: the connections that read one endpoint, lent out one batch at a
//! time and switched to the database a batch is about. Every read names the database (and
//! the key it is about), so a side made of several nodes can route it.

use std::collections::BTreeMap;

use crate::endpoint::{Endpoint, Resolver};
use crate::resp::{Conn, Frame, Lease, Pipeline, Pool, RespError};

use super::pace::Pacer;
use super::{ReadFrom, Side, VerifyError, VerifyOptions};

/// The connections that read one side.
pub(super) struct Reader {
    /// The server read: the endpoint given, or its replica.
    pub endpoint: Endpoint,
    pool: Pool,
}

impl Reader {
    async fn connect(
        resolver: &Resolver,
        side: Side,
        given: &Endpoint,
        opts: &VerifyOptions,
    ) -> Result<Reader, VerifyError> {
        let connect_err = |endpoint: &Endpoint| {
            let endpoint = endpoint.clone();
            move |source| VerifyError::Connect {
                side,
                endpoint,
                source,
            }
        };
        let endpoint = match opts.read_from {
            ReadFrom::Primary => given.clone(),
            ReadFrom::Replica => {
                let mut conn = Conn::connect(resolver, given, opts.timeout)
                    .await
                    .map_err(connect_err(given))?;
                let info = conn
                    .call(&[b"INFO", b"replication"], |r| r.text())
                    .await
                    .map_err(connect_err(given))?;
                replica(given, &info).ok_or_else(|| VerifyError::NoReplica {
                    side,
                    endpoint: given.clone(),
                })?
            }
        };
        let endpoint = &endpoint;
        let mut conns = Vec::with_capacity(opts.connections);
        for _ in 0..opts.connections {
            let conn = Conn::connect(resolver, endpoint, opts.timeout)
                .await
                .map_err(connect_err(endpoint))?;
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

/// `given` itself when it is a replica, else its first online replica (from its
/// `INFO replication`), reached with the same credentials and TLS.
fn replica(given: &Endpoint, info: &str) -> Option<Endpoint> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
    };
    if matches!(field("role"), Some("slave" | "replica")) {
        return Some(given.clone());
    }
    info.lines().find_map(|line| {
        let (name, fields) = line.trim_end().split_once(':')?;
        name.strip_prefix("slave")?.parse::<u32>().ok()?;
        let value = |k: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
        };
        (value("state") == Some("online")).then_some(())?;
        Some(Endpoint {
            host: value("ip")?.to_string(),
            port: value("port")?.parse().ok()?,
            ..given.clone()
        })
    })
}

/// The connections to both sides, and which target database each source database is
/// compared with.
pub(super) struct Sides {
    pub src: Reader,
    pub dst: Reader,
    pub opts: VerifyOptions,
    /// The cap on keys per second, one for each pass.
    pub pacers: [Option<Pacer>; 2],
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
            pacers: [Pacer::new(opts.max_rate), Pacer::new(opts.max_rate)],
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
    use super::*;

    #[test]
    fn finds_a_replica_to_read_from() {
        let primary = Endpoint::parse("redis://:pw@10.0.0.1:6379").unwrap();
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=10.0.0.2,port=6380,state=wait_bgsave,offset=0,lag=0\r\n\
            slave1:ip=10.0.0.3,port=6381,state=online,offset=9,lag=0\r\n";
        let r = replica(&primary, info).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.password.as_deref()),
            ("10.0.0.3", 6381, Some("pw"))
        );
        assert_eq!(replica(&primary, "role:slave\r\n"), Some(primary.clone()));
        assert_eq!(
            replica(&primary, "role:master\r\nconnected_slaves:0\r\n"),
            None
        );
    }

    #[test]
    fn reads_the_databases_that_hold_keys() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb15:keys=7,expires=0,avg_ttl=0,subexpiry=0\r\n";
        assert_eq!(keyspace(info), [(0, 3), (15, 7)].into_iter().collect());
        assert!(keyspace("# Keyspace\r\n").is_empty());
    }
}

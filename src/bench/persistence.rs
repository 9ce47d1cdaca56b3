//! The cost of persistence: the same workloads with persistence off, with RDB snapshots
//! taken during the load, and with the append-only file fsynced every second or on every
//! write (seed 001's durability part).
//!
//! The benchmark sets each mode itself with CONFIG SET (`appendonly`, `appendfsync`,
//! `save`), waits for the rewrite that turning the AOF on starts, reads the settings back
//! for the results, and puts the server's own settings back at the end. In `rdb` mode it
//! keeps a BGSAVE going during each phase, at most one a second, and counts the saves.
//! ElastiCache refuses CONFIG; there persistence is the parameter group's choice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{BenchError, Lane};
use crate::endpoint::Resolver;
use crate::resp::{Conn, RespError};

/// The settings a mode is made of.
const PARAMETERS: [&str; 3] = ["appendonly", "appendfsync", "save"];

/// How long the rewrite after turning the AOF on, or one BGSAVE, may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// How the server keeps its data while a workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// No RDB saves and no AOF.
    Off,
    /// No AOF; the benchmark takes RDB snapshots (BGSAVE) during the load.
    Rdb,
    /// AOF, fsynced once a second.
    AofEverysec,
    /// AOF, fsynced before each write is answered.
    AofAlways,
}

impl Persistence {
    pub const ALL: [Persistence; 4] = [
        Persistence::Off,
        Persistence::Rdb,
        Persistence::AofEverysec,
        Persistence::AofAlways,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Persistence::Off => "off",
            Persistence::Rdb => "rdb",
            Persistence::AofEverysec => "aof-everysec",
            Persistence::AofAlways => "aof-always",
        }
    }

    /// `appendonly`, `appendfsync` and `save` in this mode, in the order they are set: the
    /// fsync policy before the AOF is turned on.
    fn settings(self) -> [(&'static str, &'static str); 3] {
        let (appendonly, appendfsync) = match self {
            Persistence::Off | Persistence::Rdb => ("no", "everysec"),
            Persistence::AofEverysec => ("yes", "everysec"),
            Persistence::AofAlways => ("yes", "always"),
        };
        [
            ("save", ""),
            ("appendfsync", appendfsync),
            ("appendonly", appendonly),
        ]
    }
}

/// Parses `off,rdb,aof-everysec,aof-always` lists (comma-separated or repeated).
pub fn parse_modes(lists: &[String]) -> Result<Vec<Persistence>, BenchError> {
    let mut out = Vec::new();
    for name in lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let mode = Persistence::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                BenchError::Invalid(format!(
                    "`{name}` is not a persistence mode; use off, rdb, aof-everysec or aof-always"
                ))
            })?;
        if !out.contains(&mode) {
            out.push(mode);
        }
    }
    Ok(out)
}

fn failed(lane: &Lane, what: String) -> impl FnOnce(RespError) -> BenchError {
    let endpoint = lane.endpoint.to_string();
    move |source| {
        let refused = matches!(&source, RespError::Server(why)
            if why.contains("unknown command") || why.contains("CONFIG"));
        BenchError::Persistence {
            what,
            endpoint,
            hint: if refused {
                " (a server that refuses CONFIG, as ElastiCache does, keeps the persistence of its parameter group: leave out --persistence there)"
            } else {
                ""
            },
            source,
        }
    }
}

/// The server's own `appendonly`, `appendfsync` and `save`.
pub async fn read(lane: &Lane, resolver: &Resolver) -> Result<Settings, BenchError> {
    let mut conn = connect(lane, resolver).await?;
    current(&mut conn)
        .await
        .map_err(failed(lane, "read the persistence settings of".into()))
}

/// `appendonly`, `appendfsync` and `save` as the server has them.
pub type Settings = BTreeMap<String, String>;

async fn current(conn: &mut Conn) -> Result<Settings, RespError> {
    let mut args: Vec<&[u8]> = vec![b"CONFIG", b"GET"];
    args.extend(PARAMETERS.iter().map(|p| p.as_bytes()));
    conn.call(&args, |reply| {
        let items: Vec<String> = reply
            .items()
            .into_iter()
            .flatten()
            .map(|f| f.text())
            .collect();
        items
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
            .collect()
    })
    .await
}

async fn connect(lane: &Lane, resolver: &Resolver) -> Result<Conn, BenchError> {
    super::open(&lane.endpoint, resolver).await
}

/// Puts `settings` in place on the lane's server, one parameter at a time (older servers
/// take one per CONFIG SET), in the order given.
async fn set(conn: &mut Conn, settings: &[(&str, &str)]) -> Result<(), RespError> {
    for (name, value) in settings {
        conn.call(
            &[b"CONFIG", b"SET", name.as_bytes(), value.as_bytes()],
            |_| (),
        )
        .await?;
    }
    Ok(())
}

/// Sets `mode` on the lane's server and waits until no AOF rewrite or save is running, so
/// that the phase measures the mode and not the switch to it; returns the settings read back.
pub async fn apply(
    lane: &Lane,
    mode: Persistence,
    resolver: &Resolver,
) -> Result<Settings, BenchError> {
    let fail = || failed(lane, format!("set persistence `{}` on", mode.name()));
    let mut conn = connect(lane, resolver).await?;
    set(&mut conn, &mode.settings()).await.map_err(fail())?;
    idle(&mut conn).await.map_err(fail())?;
    current(&mut conn).await.map_err(fail())
}

/// Puts the server's own settings back (AOF last, with its fsync policy already in place).
pub async fn restore(
    lane: &Lane,
    settings: &Settings,
    resolver: &Resolver,
) -> Result<(), BenchError> {
    let fail = || failed(lane, "put the persistence settings back on".into());
    let mut conn = connect(lane, resolver).await?;
    let ordered: Vec<(&str, &str)> = ["save", "appendfsync", "appendonly"]
        .into_iter()
        .filter_map(|p| Some((p, settings.get(p)?.as_str())))
        .collect();
    set(&mut conn, &ordered).await.map_err(fail())?;
    idle(&mut conn).await.map_err(fail())
}

/// The server's `INFO persistence` fields.
async fn info(conn: &mut Conn) -> Result<BTreeMap<String, String>, RespError> {
    conn.call(&[b"INFO", b"persistence"], |reply| {
        reply
            .text()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    })
    .await
}

/// Waits until neither an RDB save nor an AOF rewrite runs or is scheduled.
async fn idle(conn: &mut Conn) -> Result<(), RespError> {
    let deadline = Instant::now() + SAVE_TIMEOUT;
    loop {
        let info = info(conn).await?;
        let busy = [
            "rdb_bgsave_in_progress",
            "aof_rewrite_in_progress",
            "aof_rewrite_scheduled",
        ]
        .iter()
        .any(|k| info.get(*k).is_some_and(|v| v != "0"));
        if !busy {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(RespError::Timeout(SAVE_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps an RDB snapshot going on the lane's server until `stop`, starting one at most once
/// a second; returns how many finished.
pub async fn keep_saving(
    lane: &Lane,
    resolver: &Resolver,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, BenchError> {
    let fail = || failed(lane, "take an RDB snapshot on".into());
    let mut conn = connect(lane, resolver).await?;
    let mut saves = 0;
    while !*stop.borrow_and_update() {
        let started = Instant::now();
        match conn.call(&[b"BGSAVE"], |_| ()).await {
            Ok(()) => {}
            // One of the server's own, or an AOF rewrite: wait for it like for ours.
            Err(RespError::Server(why)) if why.contains("in progress") => {}
            Err(e) => return Err(fail()(e)),
        }
        idle(&mut conn).await.map_err(fail())?;
        saves += 1;
        let next = started + Duration::from_secs(1);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(saves)
}

/// Starts [`keep_saving`] on every lane; the handle's result is the saves of all lanes.
pub fn start_saving(
    lanes: &[Lane],
    resolver: &Resolver,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<u64, BenchError>>,
) {
    let (tx, rx) = watch::channel(false);
    let savers: Vec<_> = lanes
        .iter()
        .map(|lane| {
            let (lane, resolver, rx) = (lane.clone(), resolver.clone(), rx.clone());
            tokio::spawn(async move { keep_saving(&lane, &resolver, rx).await })
        })
        .collect();
    let all = tokio::spawn(async move {
        let mut total = 0;
        for saver in futures::future::join_all(savers).await {
            total += saver.map_err(BenchError::Stopped)??;
        }
        Ok(total)
    });
    (tx, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_parsed_once_each_in_order() {
        let modes = parse_modes(&["aof-always,off".into(), "rdb".into(), "off".into()]).unwrap();
        assert_eq!(
            modes,
            vec![Persistence::AofAlways, Persistence::Off, Persistence::Rdb]
        );
        let err = parse_modes(&["aof".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "`aof` is not a persistence mode; use off, rdb, aof-everysec or aof-always"
        );
        assert_eq!(
            Persistence::AofAlways.settings(),
            [
                ("save", ""),
                ("appendfsync", "always"),
                ("appendonly", "yes")
            ]
        );
    }
}

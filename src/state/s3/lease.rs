//! The lock of a run on S3: the object `runs/<id>/lease.json`, created with
//! `If-None-Match: *` so only one process gets it, naming its holder and renewed (each write
//! conditional on the ETag of the one before) while the holder lives.
//!
//! An OS lock dies with its holder; an object does not. A lease that ran out says the holder
//! stopped renewing — killed, or cut off from S3 while it still drives the run — and nothing
//! here can tell which, so it is broken only by `runbook unlock RUN_ID --holder HOLDER`, by
//! someone who checked that the holder is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{Cond, Remote, S3Error};

/// The lease's name in a run's folder, on S3 and in the working copy that pulled it.
pub const OBJECT: &str = "lease.json";

/// How long a lease lasts unless renewed: `RUNBOOK_S3_LEASE` (`30s`, `2m`), else this.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// What the lease object holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    /// `user@host:pid`, what `unlock --holder` must name.
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Holder {
    /// Whether the holder renewed the lease recently enough.
    pub fn live(&self) -> bool {
        self.expires_at > Utc::now()
    }
}

/// Why a run's lease could not be taken or broken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "run {run} is being driven by another process ({holder} since {since}; its lease runs until {until}); wait for it to finish, or stop that process first"
    )]
    Held {
        run: String,
        holder: String,
        since: String,
        until: String,
    },
    #[error(
        "run {run} is locked by {holder} (since {since}), whose lease ran out at {until}: that process was stopped, or cannot reach S3 and may still be driving the run. Once you know it no longer runs, break the lock with `runbook unlock {run} --holder {holder} --state-dir {url}`"
    )]
    Stale {
        run: String,
        holder: String,
        since: String,
        until: String,
        url: String,
    },
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    S3(#[from] S3Error),
}

/// A held lease, renewed in the background; given back when dropped.
pub struct Lease {
    remote: Arc<Remote>,
    rel: String,
    holder: Holder,
    etag: Arc<std::sync::Mutex<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("object", &self.rel)
            .field("holder", &self.holder.holder)
            .finish()
    }
}

impl Lease {
    /// Creates run `run`'s lease, or says who holds it. `lost` is set if the lease is
    /// taken from this process (broken by `unlock` while it could not renew).
    pub fn take(
        remote: Arc<Remote>,
        run: &str,
        lost: Arc<AtomicBool>,
    ) -> Result<Lease, LeaseError> {
        let rel = format!("runs/{run}/{OBJECT}");
        let span = lease_time().map_err(LeaseError::Unreadable)?;
        let now = Utc::now();
        let host = crate::lock::hostname();
        let user = user();
        let pid = std::process::id();
        let holder = Holder {
            holder: format!("{user}@{host}:{pid}"),
            pid,
            host,
            user,
            since: now,
            expires_at: until(now, span),
        };
        // Twice: a lease given back between our write and our read is free again.
        for _ in 0..2 {
            match remote.put(&rel, body(&holder), &Cond::Absent) {
                Ok(etag) => {
                    let etag = Arc::new(std::sync::Mutex::new(etag));
                    let (stop, stopped) = tokio::sync::oneshot::channel();
                    let renewer = remote.spawn(renew(
                        remote.clone(),
                        rel.clone(),
                        holder.clone(),
                        span,
                        etag.clone(),
                        lost.clone(),
                        stopped,
                    ));
                    return Ok(Lease {
                        remote,
                        rel,
                        holder,
                        etag,
                        stop: Some(stop),
                        renewer: Some(renewer),
                    });
                }
                Err(S3Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some((other, _)) = read(&remote, run)? {
                return Err(refusal(&remote, run, &other));
            }
        }
        Err(LeaseError::Unreadable(format!(
            "the lease of run {run} changes hands too fast to take; try again"
        )))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(renewer) = self.renewer.take() {
            // A renewal under way ends first, so the ETag is that of the last write.
            let _ = self.remote.block(renewer);
        }
        let etag = self.etag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = self.remote.delete(&self.rel, &etag) {
            eprintln!(
                "warning: the lease {} of {} could not be given back ({e}); `runbook unlock` breaks it once it runs out",
                self.rel, self.holder.holder
            );
        }
    }
}

/// Renews the lease every third of its span until told to stop, or until the lease turns
/// out to be another's.
async fn renew(
    remote: Arc<Remote>,
    rel: String,
    mut holder: Holder,
    span: Duration,
    etag: Arc<std::sync::Mutex<String>>,
    lost: Arc<AtomicBool>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(span / 3) => {}
        }
        holder.expires_at = until(Utc::now(), span);
        let current = etag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match remote
            .put_async(&rel, body(&holder), &Cond::Is(current))
            .await
        {
            Ok(new) => *etag.lock().unwrap_or_else(|e| e.into_inner()) = new,
            Err(S3Error::Conflict { .. }) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // S3 unreachable for now: the next renewal tries again.
            Err(_) => {}
        }
    }
}

fn body(holder: &Holder) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(holder).expect("a lease serializes");
    text.push(b'\n');
    text
}

/// Run `run`'s lease as S3 has it, with its ETag.
fn read(remote: &Remote, run: &str) -> Result<Option<(Holder, String)>, LeaseError> {
    let rel = format!("runs/{run}/{OBJECT}");
    let Some((bytes, etag)) = remote.get(&rel)? else {
        return Ok(None);
    };
    let holder = serde_json::from_slice(&bytes).map_err(|e| {
        LeaseError::Unreadable(format!(
            "the lease s3://{}/{} does not name a holder ({e}); remove it only once you know no process drives run {run}",
            remote.url.bucket,
            remote.url.key(&rel)
        ))
    })?;
    Ok(Some((holder, etag)))
}

fn refusal(remote: &Remote, run: &str, other: &Holder) -> LeaseError {
    let since = other.since.to_rfc3339_opts(SecondsFormat::Secs, true);
    let until = other.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    if other.live() {
        LeaseError::Held {
            run: run.to_string(),
            holder: other.holder.clone(),
            since,
            until,
        }
    } else {
        LeaseError::Stale {
            run: run.to_string(),
            holder: other.holder.clone(),
            since,
            until,
            url: remote.url.to_string(),
        }
    }
}

/// What `unlock` did.
pub enum Unlocked {
    /// The lease of this holder was broken.
    Broken(Holder),
    /// There was no lease.
    Free,
}

/// Why `unlock` did not break a lease.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error(
        "run {run} is locked by {actual}, not by {given}: check that {actual} no longer runs, then name it with --holder"
    )]
    OtherHolder {
        run: String,
        actual: String,
        given: String,
    },
    #[error(
        "the lease of {holder} on run {run} is live (renewed until {until}): that process still drives the run; stop it, and its lease is given back"
    )]
    Live {
        run: String,
        holder: String,
        until: String,
    },
    #[error("the lease of run {run} changed while it was being broken; look again")]
    Changed { run: String },
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// Breaks run `run`'s lease if `holder` holds it and it ran out.
pub fn unlock(remote: &Remote, run: &str, holder: &str) -> Result<Unlocked, UnlockError> {
    let Some((current, etag)) = read(remote, run)? else {
        return Ok(Unlocked::Free);
    };
    if current.holder != holder {
        return Err(UnlockError::OtherHolder {
            run: run.to_string(),
            actual: current.holder,
            given: holder.to_string(),
        });
    }
    if current.live() {
        return Err(UnlockError::Live {
            run: run.to_string(),
            holder: current.holder,
            until: current
                .expires_at
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        });
    }
    match remote.delete(&format!("runs/{run}/{OBJECT}"), &etag) {
        Ok(()) => Ok(Unlocked::Broken(current)),
        Err(S3Error::Conflict { .. }) => Err(UnlockError::Changed {
            run: run.to_string(),
        }),
        Err(e) => Err(UnlockError::Lease(e.into())),
    }
}

/// Whether the lease that a pull left in `run_dir` is live: someone drives the run.
pub fn pulled_live(run_dir: &std::path::Path) -> bool {
    std::fs::read(run_dir.join(OBJECT))
        .ok()
        .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
        .is_some_and(|h| h.live())
}

/// The lease's span: `RUNBOOK_S3_LEASE` or a minute.
fn lease_time() -> Result<Duration, String> {
    match std::env::var("RUNBOOK_S3_LEASE") {
        Ok(text) => crate::duration::positive(&text)
            .map_err(|e| format!("RUNBOOK_S3_LEASE `{text}`: {e}"))
            .and_then(|d| {
                chrono::Duration::from_std(d)
                    .map(|_| d)
                    .map_err(|e| format!("RUNBOOK_S3_LEASE `{text}`: {e}"))
            }),
        Err(_) => Ok(DEFAULT_LEASE),
    }
}

/// `span` after `from` (a span [`lease_time`] accepted).
fn until(from: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX)
}

fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }))
}

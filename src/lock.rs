//! One process drives a run at a time.
//!
//! The lock is an OS lock (`flock`) on the run directory itself, so it vanishes with its
//! holder — a killed run's lock is free for `resume` to take — and nobody can take it from
//! under a live holder by deleting a file: a directory in use cannot be unlinked and
//! recreated while its holder keeps it open. The `lock` file only names the holder (pid,
//! host, since) for the refusal message. With state on S3 the lock also holds the run's
//! lease there ([`crate::state::s3::lease`]), which keeps other machines out.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::Path;

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _dir: File,
    /// Given back after the OS lock, when dropped (fields drop in order).
    _lease: Option<crate::state::s3::lease::Lease>,
}

/// Why a run could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process drives the run.
    #[error(
        "run {run} is being driven by another process ({holder}); wait for it to finish, or stop that process first"
    )]
    Held { run: String, holder: String },
    /// The run directory could not be opened or locked.
    #[error("cannot lock run {run}")]
    Io {
        run: String,
        #[source]
        source: std::io::Error,
    },
}

impl RunLock {
    /// Takes the lock of the run in `run_dir`, or says who holds it.
    pub fn acquire(run_dir: &Path, run: &str) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            run: run.to_string(),
            source,
        };
        let dir = File::open(run_dir).map_err(io)?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    run: run.to_string(),
                    holder: holder(run_dir),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut file = File::create(run_dir.join("lock")).map_err(io)?;
        write!(
            file,
            "pid {}\nhost {}\nsince {}\n",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
        .map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(RunLock {
            _dir: dir,
            _lease: None,
        })
    }

    /// This lock, holding the run's lease on S3 too.
    pub fn with_lease(mut self, lease: crate::state::s3::lease::Lease) -> RunLock {
        self._lease = Some(lease);
        self
    }

    /// A shared hold on the run directory, for replacing its files with what S3 has:
    /// `None` while a process of this machine drives the run (its files are the newest).
    pub fn shared(run_dir: &Path) -> Option<File> {
        let dir = File::open(run_dir).ok()?;
        dir.try_lock_shared().ok()?;
        Some(dir)
    }

    /// Whether some live process holds the lock of the run in `run_dir` right now: a
    /// process of this machine, or (state on S3) one whose lease a pull found live.
    pub fn is_held(run_dir: &Path) -> bool {
        crate::state::s3::lease::pulled_live(run_dir) || Self::held_here(run_dir)
    }

    fn held_here(run_dir: &Path) -> bool {
        let Ok(dir) = File::open(run_dir) else {
            return false;
        };
        match dir.try_lock_shared() {
            Ok(()) => {
                let _ = dir.unlock();
                false
            }
            Err(_) => true,
        }
    }
}

/// The holder as its `lock` file names it: `pid 123, host db1, since 2026-…`.
fn holder(run_dir: &Path) -> String {
    let text = std::fs::read_to_string(run_dir.join("lock")).unwrap_or_default();
    let text = text.trim().replace('\n', ", ");
    if text.is_empty() {
        "its `lock` file, which names it, is gone".into()
    } else {
        text
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "r1").unwrap();
        assert!(RunLock::is_held(dir.path()));
        let err = RunLock::acquire(dir.path(), "r1").unwrap_err();
        let since = std::fs::read_to_string(dir.path().join("lock")).unwrap();
        let since = since.lines().nth(2).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "run r1 is being driven by another process (pid {}, host {}, {since}); wait for it to finish, or stop that process first",
                std::process::id(),
                hostname()
            )
        );
        drop(first);
        assert!(!RunLock::is_held(dir.path()));
        RunLock::acquire(dir.path(), "r1").unwrap();
    }

    #[test]
    fn deleting_the_lock_file_does_not_free_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RunLock::acquire(dir.path(), "r1").unwrap();
        std::fs::remove_file(dir.path().join("lock")).unwrap();
        assert!(RunLock::is_held(dir.path()));
        let err = RunLock::acquire(dir.path(), "r1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "run r1 is being driven by another process (its `lock` file, which names it, is gone); wait for it to finish, or stop that process first"
        );
    }
}

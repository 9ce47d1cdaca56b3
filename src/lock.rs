//! One process drives a run at a time.
//!
//! The lock is an OS file lock (`flock`) on `lock` in the run directory, so it vanishes
//! with its holder — a killed run's lock is free for `resume` to take, with nothing stale
//! to break by hand. The file names the holder (pid, host, since) for the refusal message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Why a run could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process drives the run.
    #[error(
        "run {run} is being driven by another process ({holder}); wait for it to finish, or stop that process first"
    )]
    Held { run: String, holder: String },
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
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(run_dir.join("lock"))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().replace('\n', ", ");
                return Err(LockError::Held {
                    run: run.to_string(),
                    holder: if holder.is_empty() {
                        "unknown holder".into()
                    } else {
                        holder
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(
            file,
            "pid {}\nhost {}\nsince {}\n",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
        .map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(RunLock { _file: file })
    }

    /// Whether some live process holds the lock of the run in `run_dir` right now.
    pub fn is_held(run_dir: &Path) -> bool {
        let Ok(file) = File::open(run_dir.join("lock")) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }
}

fn hostname() -> String {
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
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!RunLock::is_held(dir.path()));
        RunLock::acquire(dir.path(), "r1").unwrap();
    }
}

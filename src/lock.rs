//! One run at a time per results file.
//!
//! A run holds an exclusive lock on `RESULTS.lock` beside its results file
//! for as long as it lives. The operating system releases the lock when the
//! process ends, however it ends, so a crashed run never blocks the next.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for the whole run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another run (pid {pid}) is already working on `{results}`; nothing was done. Wait for it to finish, or choose another `--results`")]
    Held { pid: String, results: PathBuf },
    #[error("cannot create the lock file `{path}`")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock file that guards `results`.
pub fn lock_path(results: &Path) -> PathBuf {
    let mut name = results.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    results.with_file_name(name)
}

pub fn acquire(results: &Path) -> Result<RunLock, LockError> {
    let path = lock_path(results);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;

    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held {
                pid: pid.trim().to_string(),
                results: results.to_path_buf(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }

    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_results_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("x.results.csv");
        let held = acquire(&results).unwrap();
        let err = acquire(&results).unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(held);
        assert!(acquire(&results).is_ok());
    }
}

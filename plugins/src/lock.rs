//! One run at a time per output: an advisory lock (`flock`) on `.NAME.lock` beside the output,
//! taken when the sink is built (before any row moves) and given up once the sink has committed or
//! dropped what it staged. A second run that would write the same output fails at once, naming
//! the run that holds it, instead of the two committing over each other.
//!
//! The lock file is removed when the lock is given up, so outputs do not collect lock files. That
//! opens a race, which [`OutputLock::acquire`] closes: a run may lock a file that its holder has
//! just removed; it then finds that the path no longer names the file it locked, and tries again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use flowengine_engine::error::{BuildError, IoError};

/// The lock on one output, held until dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    /// Holds the lock while it is open.
    _file: File,
}

impl OutputLock {
    /// Lock `target` for sink `node`, or fail naming the process that holds it.
    pub fn acquire(node: &str, target: &Path) -> Result<OutputLock, BuildError> {
        let path = lock_path(target);
        let io = |action, source| BuildError::from(IoError::new(node, action, &path, source));
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io("create the lock file", e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(held(node, target, &mut file));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", e)),
            }
            if !names_file(&path, &file) {
                // Its holder removed it between our open and our lock: lock the new one.
                continue;
            }
            let pid = format!("{}\n", std::process::id());
            let written = file
                .set_len(0)
                .and_then(|()| file.write_all(pid.as_bytes()));
            written.map_err(|e| io("write the lock file", e))?;
            return Ok(OutputLock { path, _file: file });
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can have locked this file meanwhile; the
        // lock goes with the handle, right after.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `.NAME.lock` in the directory of `target`.
pub(crate) fn lock_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.lock"))
}

/// Whether `path` still names the file `file` has open.
fn names_file(path: &Path, file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(path), file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// The error for an output another run holds, naming its process when the lock file says.
fn held(node: &str, target: &Path, file: &mut File) -> BuildError {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let holder = match text.trim().parse::<u32>() {
        Ok(pid) => format!("another run (process {pid})"),
        Err(_) => "another run".to_string(),
    };
    BuildError::Invalid {
        node: node.to_string(),
        message: format!(
            "{} is being written by {holder}, which holds {}; wait for it to finish, or write \
             to another file",
            target.display(),
            lock_path(target).display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_output_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let first = OutputLock::acquire("write", &target).unwrap();
        let lock_file = dir.path().join(".out.csv.lock");
        assert!(lock_file.exists());
        let second = OutputLock::acquire("write", &target)
            .unwrap_err()
            .to_string();
        let pid = std::process::id();
        assert!(second.contains(&format!("process {pid}")), "{second}");
        assert!(second.contains("out.csv is being written by"), "{second}");
        // Another output in the same directory is not held.
        drop(OutputLock::acquire("write", &dir.path().join("other.csv")).unwrap());
        drop(first);
        assert!(
            !lock_file.exists(),
            "the lock file is removed with the lock"
        );
        drop(OutputLock::acquire("write", &target).unwrap());
    }

    #[test]
    fn a_lock_file_removed_under_a_waiting_run_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let path = lock_path(&target);
        let stale = File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!names_file(&path, &stale));
        let lock = OutputLock::acquire("write", &target).unwrap();
        assert!(names_file(&path, &lock._file));
    }
}

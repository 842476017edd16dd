//! Ctrl-C on the client of a job on a remote cluster, carried to its tasks through a directory
//! they share with it: the client writes a marker there ([`Cancel::ask`]), and each task
//! watches for it ([`Cancel::watch`]) and stops as a local run stops on Ctrl-C, committing
//! nothing. Ballista's own `cancel_job` needs the job's id, which its client keeps to itself
//! (`execute_physical_plan` in `ballista-core` 55.0.0). A split run uses its parts directory; a
//! one-task job gets a control directory of its own ([`JobDir`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flowengine_engine::error::{BuildError, IoError};
use flowengine_engine::plan::{NodeKind, Plan};

use crate::run::build_cx;
use crate::Error;

/// A directory of one job, next to the sink's output (where executors see it too; in the
/// temporary directory for a sink without a file), removed with everything in it when dropped.
pub(crate) struct JobDir(PathBuf);

impl JobDir {
    /// A split run's parts: named as the sink's staging files are (`.NAME.XXXXXX.tmp`), so that
    /// what a killed client leaves is removed as theirs is, by the next run that writes the
    /// output or by the memory guard of the run itself.
    pub(crate) const PARTS: &'static str = "";
    /// A one-task job's control directory (`.NAME.job-XXXXXX.tmp`): not a staging name, since
    /// the task's own sink removes those as it stages. The next job that makes one for the same
    /// output removes what a killed client left.
    pub(crate) const CONTROL: &'static str = "job-";

    /// Creates one of `kind` ([`JobDir::PARTS`] or [`JobDir::CONTROL`]) for `plan`'s first
    /// sink.
    pub(crate) fn create(plan: &Plan, kind: &str) -> Result<JobDir, Error> {
        let output = plan
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Sink(s) => s.files_written().into_iter().next(),
                _ => None,
            })
            .next();
        let beside = output.as_deref().and_then(|f| {
            let dir = f.parent()?;
            // Not a directory it would create for the sink, which may not be allowed to.
            let name = f.file_name()?.to_string_lossy().into_owned();
            dir.is_dir().then_some((dir.to_path_buf(), name))
        });
        let (parent, name) = beside.unwrap_or_else(|| {
            let temp = build_cx(plan, "parts").temp_dir;
            (temp, "flowengine-parts".to_string())
        });
        if !kind.is_empty() {
            remove_left(&parent, &format!(".{name}.{kind}"));
        }
        let dir = parent.join(format!(".{name}.{kind}{}.tmp", letters()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BuildError::from(IoError::new(&plan.name, "create", &dir, e)))?;
        Ok(JobDir(dir))
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Six letters and digits, different from one call (and process) to the next.
fn letters() -> String {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id()) << 64;
    (0..6)
        .map(|i| {
            let digit = (unique >> (i * 6)) % 36;
            char::from_digit(digit as u32, 36).unwrap_or('0')
        })
        .collect()
}

/// Removes the directories in `parent` named `PREFIX` + six letters + `.tmp`.
fn remove_left(parent: &Path, prefix: &str) {
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let middle = name
            .strip_prefix(prefix)
            .and_then(|m| m.strip_suffix(".tmp"));
        let ours = middle.is_some_and(|m| m.len() == 6 && m.chars().all(|c| c.is_alphanumeric()));
        if ours && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The marker the client writes in a job's directory on Ctrl-C.
fn marker(dir: &Path) -> PathBuf {
    dir.join("cancel")
}

/// A task's watch for the client's Ctrl-C; it ends when dropped.
pub(crate) struct Cancel {
    /// The task's own interrupt flag: the executor's, or the marker seen.
    flag: &'static AtomicBool,
    done: Arc<AtomicBool>,
}

/// How often a task looks for the marker, and the client for Ctrl-C.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Cancel {
    /// Watches, until dropped, for the marker in `dir` and for `executor`'s own interrupt.
    pub(crate) fn watch(dir: &Path, executor: &'static AtomicBool) -> Cancel {
        // A run takes a flag that lives as long as the process (its operators hold it); one
        // byte per task is the price.
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let done = Arc::new(AtomicBool::new(false));
        let (marker, finished) = (marker(dir), done.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                if executor.load(Ordering::SeqCst) || marker.exists() {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(CANCEL_POLL);
            }
        });
        Cancel { flag, done }
    }

    /// The flag the task's run stops on.
    pub(crate) fn flag(&self) -> &'static AtomicBool {
        self.flag
    }

    /// Until `done`, writes the marker in `dir` as soon as `interrupt` is set (on the client,
    /// while its job runs).
    pub(crate) fn ask(dir: &Path, interrupt: &AtomicBool, done: &AtomicBool) {
        while !done.load(Ordering::SeqCst) {
            if interrupt.load(Ordering::SeqCst) {
                let _ = File::create(marker(dir));
                return;
            }
            std::thread::sleep(CANCEL_POLL);
        }
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

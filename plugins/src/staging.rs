//! Staged output files, shared by every sink that writes a file.
//!
//! Output goes to a temporary file in the target's directory. [`Staging::sync`] flushes and
//! fsyncs it; [`Staging::commit`] renames it over the target and fsyncs the directory. Dropped
//! before `commit` (a failed or interrupted run), it deletes the temporary file, so the target is
//! never half-written.
//!
//! Data written through [`Staging::write_all`] is written back to disk while the run goes on: every
//! [`WRITEBACK_BYTES`], a short-lived thread fsyncs a second handle, then tells the kernel that the
//! pages it wrote back are not needed in the page cache. Without the first, the kernel keeps a large
//! output dirty until the final fsync, which then writes all of it while nothing else happens (0.5 s
//! of a 10M-row J1 run, 1.5 GB of output). Without the second, a large output fills the page cache,
//! evicting what the machine had cached, and every page of it is a new page for the kernel to find
//! (on this machine, copying 1.5 GB into fresh pages cost about 2 s more system time than into pages
//! just freed; reusing the pages just written back keeps that copy cheap).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use flowengine_engine::component::SpaceNeed;
use flowengine_engine::error::{BuildError, IoError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use tempfile::NamedTempFile;

use crate::faults::{injected, Writes};
use crate::lock::OutputLock;

/// What to do when the target exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Replace it (atomically).
    Replace,
    /// Refuse to run.
    Create,
    /// Add rows after its existing rows (no second header).
    Append,
}

/// Read `OutputMode`; `append` only where the format can append (`appends`).
fn read_output_mode(m: &mut MapReader<'_>, cx: &mut ConfigCx, appends: bool) -> OutputMode {
    let mut choices = vec![
        ("replace", OutputMode::Replace),
        ("create", OutputMode::Create),
    ];
    if appends {
        choices.push(("append", OutputMode::Append));
    }
    m.choice(cx, "OutputMode", &choices)
        .unwrap_or(OutputMode::Replace)
}

/// Where a file sink writes: its `FilePath`, `OutputMode` and `CreateDirectories` keys.
#[derive(Debug, Clone)]
pub struct Target {
    /// The file, resolved against the pipeline file's directory.
    pub path: PathBuf,
    /// What to do when the file exists.
    pub mode: OutputMode,
    pub(crate) create_directories: bool,
    /// Whether the format can append (and so offers `OutputMode: append`).
    pub(crate) appends: bool,
    /// `FilePath: "-"`: standard output, written as rows come, with no staging and no commit.
    pub(crate) stdout: bool,
    /// `Backup: true`: the output this run replaces is kept as `NAME.bak`.
    pub(crate) backup: bool,
}

impl Target {
    /// Read the keys; `append` is a choice only where the format `appends`.
    pub fn read(m: &mut MapReader<'_>, cx: &mut ConfigCx, appends: bool) -> Option<Target> {
        let label = m.required_string(cx, "FilePath");
        if label.as_deref() == Some("") {
            m.invalid(
                cx,
                "FilePath",
                "a non-empty path (or `-` for standard output)",
                "\"\"",
            );
            return None;
        }
        let stdout = label.as_deref() == Some("-");
        let path = label.map(|p| match stdout {
            true => PathBuf::from(p),
            false => cx.resolve_path(&p),
        });
        let explicit_mode = m.has("OutputMode");
        let mode = read_output_mode(m, cx, appends);
        let create_directories = m.bool(cx, "CreateDirectories").unwrap_or(true);
        let backup = m.bool(cx, "Backup").unwrap_or(false);
        if stdout && backup {
            let why = "no `Backup` with `FilePath: \"-\"` (standard output has no file to keep)";
            m.invalid(cx, "Backup", why, "true");
            return None;
        }
        if stdout && explicit_mode && mode != OutputMode::Replace {
            m.invalid(
                cx,
                "OutputMode",
                "no `OutputMode` with `FilePath: \"-\"` (standard output has no file to keep or append to)",
                if mode == OutputMode::Create {
                    "create"
                } else {
                    "append"
                },
            );
            return None;
        }
        Some(Target {
            path: path?,
            mode,
            create_directories,
            appends,
            stdout,
            backup,
        })
    }

    /// The files this target writes (none for standard output).
    pub fn files(&self) -> Vec<PathBuf> {
        match self.stdout {
            true => Vec::new(),
            false => vec![self.path.clone()],
        }
    }

    /// The space the staged output takes: `estimated` for the rows, and under append the
    /// existing file, which is copied first. Standard output takes none.
    pub fn space(&self, estimated: u64) -> SpaceNeed {
        if self.stdout {
            return SpaceNeed::default();
        }
        let certain = match self.mode {
            OutputMode::Append => fs::metadata(&self.path).map_or(0, |m| m.len()),
            _ => 0,
        };
        SpaceNeed { certain, estimated }
    }

    /// A configuration error unless this target is a file: for formats that cannot be streamed.
    pub fn require_file(&self, m: &mut MapReader<'_>, cx: &mut ConfigCx, format: &str) -> bool {
        if self.stdout {
            m.invalid(
                cx,
                "FilePath",
                &format!("a file ({format} cannot be written to standard output; `-` is for DelimitedSink and JsonLinesSink)"),
                "\"-\"",
            );
        }
        !self.stdout
    }

    /// Stage a temporary file for the target (see [`Staging::new`]).
    pub fn stage(&self, node: &str) -> Result<Staging, BuildError> {
        if self.stdout {
            return Ok(Staging::stdout(node));
        }
        let mut staging = Staging::new(
            node,
            &self.path,
            self.mode,
            self.create_directories,
            self.appends,
        )?;
        staging.backup = self.backup;
        Ok(staging)
    }

    /// Stage a temporary directory for the target (see [`StagingDir::new`]).
    pub fn stage_dir(&self, node: &str) -> Result<StagingDir, BuildError> {
        let mut staging = StagingDir::new(node, &self.path, self.mode, self.create_directories)?;
        staging.backup = self.backup;
        Ok(staging)
    }
}

/// A temporary file that becomes the target on commit.
#[derive(Debug)]
pub struct Staging {
    node: String,
    target: PathBuf,
    dir: PathBuf,
    temp: Option<NamedTempFile>,
    no_clobber: bool,
    /// Bytes written through `write_all` since the last writeback started.
    unsynced: u64,
    /// Where in the file the last writeback ended (appending starts past the old contents).
    synced_to: u64,
    /// The writeback in progress, if any.
    writeback: Option<JoinHandle<std::io::Result<()>>>,
    /// Writing to standard output instead: no file, no staging, no commit.
    stdout: Option<std::io::Stdout>,
    /// Keep the file the commit replaces as `NAME.bak`.
    backup: bool,
    /// Staging files of killed runs, removed when this one was made.
    removed: Vec<String>,
    /// This run's hold on the target, until the staging file is committed or dropped.
    _lock: Option<OutputLock>,
}

/// Bytes written between two background writebacks.
pub const WRITEBACK_BYTES: u64 = 64 << 20;

impl Staging {
    /// Create the staging file for `target` (and its directory when `create_directories`). With
    /// `OutputMode::Create`, an existing target is refused now and never overwritten at commit;
    /// the message offers `append` when the format `appends`.
    pub fn new(
        node: &str,
        target: &Path,
        mode: OutputMode,
        create_directories: bool,
        appends: bool,
    ) -> Result<Staging, BuildError> {
        let (dir, lock, removed) = prepare(node, target, mode, create_directories, appends)?;
        let io = |action, path: &Path, source| {
            BuildError::from(IoError::new(node, action, path, source))
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // Temporary files are private (0600); the output should get the ordinary mode, or keep the
        // mode of the file it replaces.
        #[cfg(unix)]
        builder.permissions(output_permissions(target));
        let temp = injected("staging::create")
            .and_then(|()| builder.tempfile_in(&dir))
            .map_err(|e| io("create a temporary file in", &dir, e))?;
        Ok(Staging {
            node: node.to_string(),
            target: target.to_path_buf(),
            dir,
            temp: Some(temp),
            no_clobber: mode == OutputMode::Create,
            unsynced: 0,
            synced_to: 0,
            writeback: None,
            stdout: None,
            backup: false,
            removed,
            _lock: Some(lock),
        })
    }

    /// Standard output, written as rows come: what is written stays written, even if the run
    /// fails later (there is no file to stage and rename).
    pub fn stdout(node: &str) -> Staging {
        Staging {
            node: node.to_string(),
            target: PathBuf::from("-"),
            dir: PathBuf::from("."),
            temp: None,
            no_clobber: false,
            unsynced: 0,
            synced_to: 0,
            writeback: None,
            stdout: Some(std::io::stdout()),
            backup: false,
            removed: Vec::new(),
            _lock: None,
        }
    }

    /// What the sink should say in the summary: the leftovers of killed runs it removed.
    pub fn warnings(&self) -> Vec<String> {
        leftovers_warning(&self.removed, &self.target)
    }

    /// The temporary file's path, for messages.
    pub fn temp_path(&self) -> &Path {
        self.temp.as_ref().map_or(&self.target, |t| t.path())
    }

    /// The staging file.
    pub fn file_mut(&mut self) -> Result<&mut File, RunError> {
        let node = &self.node;
        self.temp
            .as_mut()
            .map(|t| t.as_file_mut())
            .ok_or_else(|| RunError::Internal(format!("sink `{node}` used after commit")))
    }

    /// A second handle on the staging file, for writers that want to own theirs.
    pub fn handle(&self) -> Result<Writes<File>, RunError> {
        let temp = self
            .temp
            .as_ref()
            .ok_or_else(|| RunError::Internal(format!("sink `{}` used after commit", self.node)))?;
        temp.as_file()
            .try_clone()
            .map(Writes)
            .map_err(|e| self.io("write", e))
    }

    /// An I/O error on the target, for this sink.
    pub fn io(&self, action: &'static str, source: std::io::Error) -> RunError {
        IoError::new(&self.node, action, &self.target, source).into()
    }

    /// Write `bytes` to the staging file, starting a writeback of what came before every
    /// [`WRITEBACK_BYTES`] (unless the last one is still running).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        if let Some(out) = &self.stdout {
            let written = out.lock().write_all(bytes);
            return written.map_err(|e| self.io("write", e));
        }
        injected("staging::write").map_err(|e| self.io("write", e))?;
        let written = self.file_mut()?.write_all(bytes);
        written.map_err(|e| self.io("write", e))?;
        self.unsynced += bytes.len() as u64;
        let idle = self.writeback.as_ref().is_none_or(JoinHandle::is_finished);
        if self.unsynced >= WRITEBACK_BYTES && idle {
            self.wait_for_writeback()?;
            let end = self.file_mut()?.stream_position();
            let end = end.map_err(|e| self.io("write", e))?;
            let file = self.handle()?;
            let range = (self.synced_to.min(end), end);
            self.writeback = Some(std::thread::spawn(move || write_back(&file.0, range)));
            self.synced_to = end;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Wait for the writeback in progress; its failure is this sink's write error.
    fn wait_for_writeback(&mut self) -> Result<(), RunError> {
        let Some(running) = self.writeback.take() else {
            return Ok(());
        };
        match running.join() {
            Ok(synced) => synced.map_err(|e| self.io("write", e)),
            Err(_) => Err(RunError::Internal("the writeback thread panicked".into())),
        }
    }

    /// Flush and fsync the staging file, without making it visible.
    pub fn sync(&mut self) -> Result<(), RunError> {
        if let Some(out) = &self.stdout {
            let flushed = out.lock().flush();
            return flushed.map_err(|e| self.io("write", e));
        }
        self.wait_for_writeback()?;
        let file = self.file_mut()?;
        let synced = file.flush().and_then(|()| file.sync_all());
        let synced = synced.and_then(|()| injected("staging::fsync"));
        synced.map_err(|e| self.io("sync", e))
    }

    /// Rename the staging file over the target, then make the rename durable.
    pub fn commit(mut self) -> Result<(), RunError> {
        if self.stdout.is_some() {
            return Ok(());
        }
        let temp = self
            .temp
            .take()
            .ok_or_else(|| RunError::Internal("sink committed twice".into()))?;
        if self.backup {
            keep_backup(&self.target).map_err(|e| self.io("keep the backup of", e))?;
        }
        injected("staging::rename").map_err(|e| self.io("replace", e))?;
        let persisted = if self.no_clobber {
            temp.persist_noclobber(&self.target)
        } else {
            temp.persist(&self.target)
        };
        persisted.map_err(|e| self.io("replace", e.error))?;
        // The rename is durable only once the directory entry is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .and_then(|()| injected("staging::dirsync"))
            .map_err(|e| self.io("sync the directory of", e))
    }
}

/// A temporary directory that becomes the target directory on commit: a partitioned output, all
/// of whose files appear at once. Dropped before `commit`, it deletes itself and what it holds.
#[derive(Debug)]
pub struct StagingDir {
    node: String,
    target: PathBuf,
    /// The directory holding the target.
    parent: PathBuf,
    temp: Option<tempfile::TempDir>,
    no_clobber: bool,
    /// Keep the directory the commit replaces as `NAME.bak`.
    backup: bool,
    /// Staging directories of killed runs, removed when this one was made.
    removed: Vec<String>,
    /// This run's hold on the target, until the staging directory is committed or dropped.
    _lock: OutputLock,
}

impl StagingDir {
    /// Create the staging directory beside `target`, as [`Staging::new`] creates a file.
    pub fn new(
        node: &str,
        target: &Path,
        mode: OutputMode,
        create_directories: bool,
    ) -> Result<StagingDir, BuildError> {
        let (parent, lock, removed) = prepare(node, target, mode, create_directories, false)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempdir_in(&parent)
            .map_err(|e| {
                BuildError::from(IoError::new(
                    node,
                    "create a temporary directory in",
                    &parent,
                    e,
                ))
            })?;
        Ok(StagingDir {
            node: node.to_string(),
            target: target.to_path_buf(),
            parent,
            temp: Some(temp),
            no_clobber: mode == OutputMode::Create,
            backup: false,
            removed,
            _lock: lock,
        })
    }

    /// What the sink should say in the summary: the leftovers of killed runs it removed.
    pub fn warnings(&self) -> Vec<String> {
        leftovers_warning(&self.removed, &self.target)
    }

    /// The staging directory, where the output's files are written.
    pub fn path(&self) -> &Path {
        self.temp.as_ref().map_or(&self.target, |t| t.path())
    }

    /// An I/O error on the target, for this sink.
    pub fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> RunError {
        IoError::new(&self.node, action, path, source).into()
    }

    /// Put the staging directory in the target's place in one rename and make that durable; an
    /// existing target (under `replace`) is swapped out atomically, then removed.
    pub fn commit(mut self) -> Result<(), RunError> {
        let temp = self
            .temp
            .take()
            .ok_or_else(|| RunError::Internal("sink committed twice".into()))?;
        let staged = temp.keep();
        let moved = injected("staging::rename")
            .and_then(|()| swap_into(&staged, &self.target, self.no_clobber));
        if let Err(e) = moved {
            let _ = fs::remove_dir_all(&staged);
            return Err(self.io("replace", &self.target, e));
        }
        let synced = File::open(&self.parent)
            .and_then(|d| d.sync_all())
            .and_then(|()| injected("staging::dirsync"))
            .map_err(|e| self.io("sync the directory of", &self.target, e));
        // The new output is in place whether or not that sync worked: what it replaced is put
        // away either way, so no staging directory outlives the run.
        let put_away = self.put_away(&staged);
        synced.and(put_away)
    }

    /// `staged` names what the target was before the swap, if anything: keep it as the backup,
    /// or remove it.
    fn put_away(&self, staged: &Path) -> Result<(), RunError> {
        if self.backup && fs::symlink_metadata(staged).is_ok() {
            let backup = backup_path(&self.target);
            let kept = swap_into(staged, &backup, false)
                .and_then(|()| File::open(&self.parent).and_then(|d| d.sync_all()));
            kept.map_err(|e| self.io("keep the backup at", &backup, e))?;
        }
        match fs::symlink_metadata(staged) {
            Ok(old) if old.is_dir() => fs::remove_dir_all(staged),
            Ok(_) => fs::remove_file(staged),
            Err(_) => Ok(()),
        }
        .map_err(|e| self.io("remove the replaced output at", staged, e))
    }
}

/// Give up on `target` in a process about to exit without unwinding (`run`'s memory guard):
/// what this run staged for it and its lock file are removed. Only for a process that holds the
/// target's lock, or whose sink was never built.
pub fn abandon(target: &Path) {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    remove_leftovers(dir, target);
    let _ = fs::remove_file(crate::lock::lock_path(target));
}

/// Remove what killed runs staged for `target` in `dir`: `.NAME.XXXXXX.tmp` files or directories
/// (six letters or digits, as [`Staging::new`] names them) and `.NAME.bak.PID.tmp` backups in
/// the making. Another output's staging files never match (`.NAME.x.XXXXXX.tmp` has more between
/// the dots). The names removed; a name that cannot be removed is left, and the run goes on.
pub fn remove_leftovers(dir: &Path, target: &Path) -> Vec<String> {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let prefix = format!(".{name}.");
    let staged = |middle: &str| {
        let random = middle.len() == 6 && middle.chars().all(|c| c.is_ascii_alphanumeric());
        let backup = middle
            .strip_prefix("bak.")
            .is_some_and(|pid| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()));
        random || backup
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let middle = file
            .strip_prefix(&prefix)
            .and_then(|m| m.strip_suffix(".tmp"));
        if !middle.is_some_and(staged) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if gone.is_ok() {
            removed.push(file);
        }
    }
    removed.sort();
    removed
}

fn leftovers_warning(removed: &[String], target: &Path) -> Vec<String> {
    if removed.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "removed {} staging file(s) that a killed run had left beside {}: {}",
        removed.len(),
        target.display(),
        removed.join(", ")
    )]
}

/// `NAME.bak` beside `target`.
fn backup_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    target.with_file_name(name)
}

/// Make `NAME.bak` the file `target` is now, if there is one, in one rename: a hard link to it is
/// made beside it first (a copy where the file system has no hard links), so until the commit
/// renames the new output over `target`, both names hold the old output, and `NAME.bak` is
/// never partial.
fn keep_backup(target: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(target).is_err() {
        return Ok(());
    }
    let backup = backup_path(target);
    let staged = backup.with_file_name(format!(
        ".{}.{}.tmp",
        backup.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&staged);
    if fs::hard_link(target, &staged).is_err() {
        fs::copy(target, &staged)?;
        File::open(&staged)?.sync_all()?;
    }
    fs::rename(&staged, &backup).inspect_err(|_| {
        let _ = fs::remove_file(&staged);
    })
}

/// Rename `staged` to `target`. Under `no_clobber` an existing target stays and is an error;
/// otherwise an existing target is exchanged with `staged` in one step (Linux `RENAME_EXCHANGE`),
/// so readers see the old output or the new one, never neither.
fn swap_into(staged: &Path, target: &Path, no_clobber: bool) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        let flags = match (no_clobber, target.symlink_metadata().is_ok()) {
            (true, _) => RenameFlags::NOREPLACE,
            (false, true) => RenameFlags::EXCHANGE,
            (false, false) => RenameFlags::NOREPLACE,
        };
        match renameat_with(CWD, staged, CWD, target, flags) {
            Ok(()) => return Ok(()),
            // A file system without the flags falls back to the steps below.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    if target.symlink_metadata().is_ok() {
        if no_clobber {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target exists",
            ));
        }
        // Without an exchange: move the old output aside first (a moment without either).
        let aside = staged.with_extension("old");
        fs::rename(target, &aside)?;
        fs::rename(staged, target)?;
        return fs::rename(&aside, staged);
    }
    fs::rename(staged, target)
}

/// The directory `target` goes in, created when `create_directories`, the lock on `target` (so
/// that no other run writes it meanwhile), and the names of the staging files a killed run had
/// left, now removed; with `OutputMode::Create` an existing target is refused (the message offers
/// `append` when the format `appends`).
fn prepare(
    node: &str,
    target: &Path,
    mode: OutputMode,
    create_directories: bool,
    appends: bool,
) -> Result<(PathBuf, OutputLock, Vec<String>), BuildError> {
    let io =
        |action, path: &Path, source| BuildError::from(IoError::new(node, action, path, source));
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    if !dir.is_dir() {
        if !create_directories {
            let e = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "directory does not exist (CreateDirectories is false)",
            );
            return Err(io("write to", &dir, e));
        }
        fs::create_dir_all(&dir).map_err(|e| io("create directory", &dir, e))?;
    }
    let lock = OutputLock::acquire(node, target)?;
    // With the lock held, no other run is staging this output: what is staged here was left by a
    // run that was killed.
    let removed = remove_leftovers(&dir, target);
    if mode == OutputMode::Create && target.exists() {
        return Err(BuildError::Invalid {
            node: node.to_string(),
            message: format!(
                "{} already exists and `OutputMode` is create; use `OutputMode: replace`{}",
                target.display(),
                if appends { " or `append`" } else { "" }
            ),
        });
    }
    Ok((dir, lock, removed))
}

/// Make the bytes written so far durable, then drop `range` of them (written back by now, and
/// never read by the run) from the page cache.
fn write_back(file: &File, range: (u64, u64)) -> std::io::Result<()> {
    file.sync_data()?;
    #[cfg(unix)]
    if let Some(len) = std::num::NonZeroU64::new(range.1 - range.0) {
        // Only advice: where the kernel ignores it, the pages stay cached, which is no error.
        let _ = rustix::fs::fadvise(file, range.0, Some(len), rustix::fs::Advice::DontNeed);
    }
    #[cfg(not(unix))]
    let _ = range;
    Ok(())
}

#[cfg(unix)]
fn output_permissions(target: &Path) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    // For a new file the process umask still applies at creation, as for any file.
    fs::metadata(target).map_or_else(|_| fs::Permissions::from_mode(0o666), |m| m.permissions())
}

/// Copy all of `existing` into `temp`, the start of an output that appends to it; whether it ends
/// with a line break (if not, the caller adds one before its first row).
pub fn copy_existing(existing: &mut File, temp: &mut File) -> std::io::Result<bool> {
    existing.seek(SeekFrom::Start(0))?;
    let len = std::io::copy(existing, temp)?;
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8];
    existing.seek(SeekFrom::Start(len - 1))?;
    existing.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_several_writebacks_arrives_whole_after_earlier_contents() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let mut staging = Staging::new("sink", &target, OutputMode::Replace, true, true).unwrap();
        // Bytes written around `write_all` (as appending does) shift where writebacks start.
        staging.file_mut().unwrap().write_all(b"old\n").unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let chunks = (2 * WRITEBACK_BYTES as usize) / chunk.len() + 3;
        for _ in 0..chunks {
            staging.write_all(&chunk).unwrap();
        }
        staging.sync().unwrap();
        staging.commit().unwrap();
        let written = fs::read(&target).unwrap();
        assert_eq!(written.len(), 4 + chunks * chunk.len());
        assert_eq!(&written[..4], b"old\n");
        assert!(written[4..]
            .chunks(chunk.len())
            .all(|c| c == chunk.as_slice()));
    }

    #[test]
    fn a_staged_directory_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let write = |mode, files: &[&str]| {
            let staging =
                StagingDir::new("sink", &target, mode, true).map_err(|e| e.to_string())?;
            for f in files {
                fs::write(staging.path().join(f), f.as_bytes()).unwrap();
            }
            assert!(staging.path().starts_with(dir.path()));
            staging.commit().map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        write(OutputMode::Create, &["a", "b"]).unwrap();
        assert!(write(OutputMode::Create, &["c"]).is_err(), "create refuses");
        write(OutputMode::Replace, &["c"]).unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["out"], "no staging or replaced directory is left");
        let inside: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(inside, ["c"]);
        // A failed run's staging directory goes with it.
        drop(StagingDir::new("sink", &target, OutputMode::Replace, true).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

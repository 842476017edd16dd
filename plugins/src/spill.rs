//! Spill files, shared by every transform that may hold more rows than its share of
//! `MemoryLimit` (`Sort` today).
//!
//! A [`SpillDir`] is a directory `flowengine-spill-*` in `Settings.TempDirectory` (else the
//! system's temporary directory), made when the node is built, so a directory that cannot be
//! written fails the run before any row moves. Runs are Arrow IPC streams in it. The directory is
//! removed when the `SpillDir` is dropped, which every exit path does (success, error, Ctrl-C).
//!
//! A killed run cannot remove its directory, so each one holds an exclusive lock on a `lock` file
//! inside it for as long as it lives. The next run to make a spill directory in the same place
//! removes every `flowengine-spill-*` directory whose lock it can take: the process that held it is
//! gone. A live run's directory is never touched.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use flowengine_engine::error::{BuildError, IoError, RunError};

const PREFIX: &str = "flowengine-spill-";

/// A node's spill directory; removed on drop.
#[derive(Debug)]
pub struct SpillDir {
    node: String,
    dir: tempfile::TempDir,
    /// Held for the directory's lifetime: the sign that its run is alive.
    _lock: File,
    next: usize,
    /// Leftover directories of killed runs this one removed.
    pub cleaned: usize,
}

/// One spilled run: a file of batches, in order.
#[derive(Debug)]
pub struct SpillFile {
    /// The file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

impl SpillDir {
    /// Make a spill directory for `node` in `parent`, after removing those of killed runs.
    pub fn create(parent: &Path, node: &str) -> Result<SpillDir, BuildError> {
        let io = |action, path: &Path, e| IoError::new(node, action, path, e);
        let action = "create a spill directory in";
        fs::read_dir(parent).map_err(|e| io(action, parent, e))?;
        let cleaned = clean_leftovers(parent);
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(parent)
            // tempfile's message names the random directory it tried: keep the kind alone.
            .map_err(|e| io(action, parent, std::io::Error::from(e.kind())))?;
        let lock_path = dir.path().join("lock");
        let lock = File::create(&lock_path).map_err(|e| io("create", &lock_path, e))?;
        lock.try_lock()
            .map_err(|e| io("lock", &lock_path, std::io::Error::other(e.to_string())))?;
        Ok(SpillDir {
            node: node.to_string(),
            dir,
            _lock: lock,
            next: 0,
            cleaned,
        })
    }

    /// Write `batches` (all of `schema`) as the next run.
    pub fn write(
        &mut self,
        schema: &SchemaRef,
        batches: impl IntoIterator<Item = Result<RecordBatch, RunError>>,
    ) -> Result<SpillFile, RunError> {
        let mut writer = self.writer(schema, 1 << 20)?;
        for batch in batches {
            writer.write(&batch?)?;
        }
        writer.finish()
    }

    /// A new run to write a batch at a time, through a buffer of `buffer` bytes.
    pub fn writer(&mut self, schema: &SchemaRef, buffer: usize) -> Result<SpillWriter, RunError> {
        let path = self.dir.path().join(format!("run-{:05}.arrows", self.next));
        self.next += 1;
        let io = |action, e| RunError::Io(IoError::new(&self.node, action, &path, e));
        let file = File::create(&path).map_err(|e| io("create", e))?;
        let writer = StreamWriter::try_new(BufWriter::with_capacity(buffer, file), schema)
            .map_err(|e| io("write", std::io::Error::other(e)))?;
        Ok(SpillWriter {
            node: self.node.clone(),
            path,
            writer,
            rows: 0,
        })
    }

    /// Read a run back, a batch at a time.
    pub fn read(&self, run: &SpillFile) -> Result<SpillReader, RunError> {
        let io = |action, e| RunError::Io(IoError::new(&self.node, action, &run.path, e));
        let file = File::open(&run.path).map_err(|e| io("open", e))?;
        let reader = StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None)
            .map_err(|e| io("read", std::io::Error::other(e)))?;
        Ok(SpillReader {
            node: self.node.clone(),
            path: run.path.clone(),
            reader,
        })
    }

    /// The directory (for messages and tests).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A run being written.
pub struct SpillWriter {
    node: String,
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    rows: u64,
}

impl SpillWriter {
    fn error(
        &self,
        action: &'static str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> RunError {
        RunError::Io(IoError::new(
            &self.node,
            action,
            &self.path,
            std::io::Error::other(e),
        ))
    }

    /// Append a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), RunError> {
        self.rows += batch.num_rows() as u64;
        let result = self.writer.write(batch);
        result.map_err(|e| self.error("write", e))
    }

    /// Close the run.
    pub fn finish(mut self) -> Result<SpillFile, RunError> {
        let result = self.writer.finish();
        result.map_err(|e| self.error("write", e))?;
        let bytes = fs::metadata(&self.path)
            .map_err(|e| RunError::Io(IoError::new(&self.node, "read the size of", &self.path, e)))?
            .len();
        Ok(SpillFile {
            path: self.path.clone(),
            rows: self.rows,
            bytes,
        })
    }
}

/// The batches of one spilled run, in order.
pub struct SpillReader {
    node: String,
    path: PathBuf,
    reader: StreamReader<BufReader<File>>,
}

impl SpillReader {
    /// The next batch, or `None` at the end of the run.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, RunError> {
        self.reader.next().transpose().map_err(|e| {
            RunError::Io(IoError::new(
                &self.node,
                "read",
                &self.path,
                std::io::Error::other(e),
            ))
        })
    }
}

/// Remove the spill directories in `parent` that no live run holds; how many were removed.
fn clean_leftovers(parent: &Path) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut cleaned = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        let abandoned = match File::open(dir.join("lock")) {
            Ok(lock) => lock.try_lock().is_ok(),
            // Killed between making the directory and its lock file.
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if abandoned && fs::remove_dir_all(&dir).is_ok() {
            cleaned += 1;
        }
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        let a: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        RecordBatch::try_from_iter([("v", a)]).unwrap()
    }

    #[test]
    fn a_run_reads_back_as_written_and_the_directory_goes_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let mut spill = SpillDir::create(parent.path(), "sort").unwrap();
        let b = batch(&[3, 1, 2]);
        let run = spill
            .write(&b.schema(), [Ok(b.clone()), Ok(batch(&[7]))])
            .unwrap();
        assert_eq!(run.rows, 4);
        let mut reader = spill.read(&run).unwrap();
        assert_eq!(reader.next_batch().unwrap().unwrap(), b);
        assert_eq!(reader.next_batch().unwrap().unwrap(), batch(&[7]));
        assert!(reader.next_batch().unwrap().is_none());
        let dir = spill.path().to_path_buf();
        drop(reader);
        drop(spill);
        assert!(!dir.exists());
    }

    #[test]
    fn a_killed_runs_directory_is_removed_and_a_live_ones_is_not() {
        let parent = tempfile::tempdir().unwrap();
        let live = SpillDir::create(parent.path(), "live").unwrap();
        // What a killed run leaves: a directory whose lock nobody holds.
        let dead = parent.path().join(format!("{PREFIX}dead"));
        fs::create_dir(&dead).unwrap();
        File::create(dead.join("lock")).unwrap();
        fs::write(dead.join("run-00000.arrows"), b"partial").unwrap();
        let next = SpillDir::create(parent.path(), "next").unwrap();
        assert_eq!(next.cleaned, 1);
        assert!(!dead.exists());
        assert!(live.path().exists());
    }

    #[test]
    fn a_directory_that_cannot_be_written_fails_before_rows_move() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("no/such/dir");
        let e = SpillDir::create(&missing, "sort").unwrap_err().to_string();
        assert!(e.contains("cannot create a spill directory in"), "{e}");
        assert!(e.contains("no/such/dir"), "{e}");
    }
}

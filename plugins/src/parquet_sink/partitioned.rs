//! `ParquetSink` with `PartitionBy`: one directory of Hive-style partitions,
//! `col=value/.../part-N.parquet`, staged whole and committed in one rename.
//!
//! Each batch's rows are grouped by their partition values (first appearance kept), the groups
//! written to their partitions' files in parallel. The partition columns live in the directory
//! names only, as Hive, Spark, DuckDB, Polars and pyarrow write and read them; values are escaped
//! as Hive escapes them, and a null (or an empty string, which Hive cannot tell from it) is
//! `__HIVE_DEFAULT_PARTITION__`.
//!
//! Memory and file handles stay bounded however many partitions there are: past
//! [`PartitionedSink::budget`] bytes buffered in all open files together, the largest buffer is
//! flushed as a row group; past `MaxOpenFiles` open files, the least recently written is closed,
//! and its partition's next rows start its next `part-N` file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_row::{OwnedRow, Row, RowConverter, SortField};
use arrow_schema::SchemaRef;
use flowengine_engine::error::RunError;
use flowengine_engine::Batch;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

use crate::faults::{injected, Writes};
use crate::staging::StagingDir;

/// How Hive names a null partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// A partition: its directory under the output, and its open file, if any.
struct Partition {
    dir: String,
    /// Files closed so far; the open one (or the next) is `part-{parts}.parquet`.
    parts: usize,
    writer: Option<ArrowWriter<BufWriter<Writes<File>>>>,
    /// When it was last written, for closing the least recently written first.
    used: u64,
}

/// A running partitioned `ParquetSink`.
pub struct PartitionedSink {
    node: String,
    staging: StagingDir,
    /// Positions of the partition columns in the input, and of the columns the files hold.
    by: Vec<usize>,
    kept: Vec<usize>,
    file_schema: SchemaRef,
    /// Makes the writer settings from the first batch (`Dictionary: auto` looks at it).
    properties: Box<dyn Fn(&RecordBatch) -> WriterProperties + Send>,
    chosen: Option<WriterProperties>,
    converter: RowConverter,
    /// Each distinct partition key seen, as its partition's index.
    keys: HashMap<OwnedRow, usize>,
    /// Each directory, as its partition's index (two keys may share one: a null and "").
    dirs: HashMap<String, usize>,
    partitions: Vec<Partition>,
    open: usize,
    max_open: usize,
    budget: usize,
    clock: u64,
    rows: u64,
}

impl PartitionedSink {
    /// A sink writing `input`'s rows under `staging`, partitioned by the columns at `by`.
    pub fn new(
        node: &str,
        staging: StagingDir,
        input: &SchemaRef,
        by: Vec<usize>,
        max_open: usize,
        budget: usize,
        properties: Box<dyn Fn(&RecordBatch) -> WriterProperties + Send>,
    ) -> Result<Self, String> {
        let kept: Vec<usize> = (0..input.fields().len())
            .filter(|i| !by.contains(i))
            .collect();
        let file_schema = SchemaRef::new(input.project(&kept).map_err(|e| e.to_string())?);
        let fields = by
            .iter()
            .map(|&i| SortField::new(input.field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
        Ok(PartitionedSink {
            node: node.to_string(),
            staging,
            by,
            kept,
            file_schema,
            properties,
            chosen: None,
            converter,
            keys: HashMap::new(),
            dirs: HashMap::new(),
            partitions: Vec::new(),
            open: 0,
            max_open: max_open.max(1),
            budget,
            clock: 0,
            rows: 0,
        })
    }

    fn failed(&self, e: ParquetError) -> RunError {
        match e {
            ParquetError::External(e) => match e.downcast::<std::io::Error>() {
                Ok(io) => self.staging.io("write", self.staging.path(), *io),
                Err(e) => self.message(e.to_string()),
            },
            other => self.message(other.to_string()),
        }
    }

    fn message(&self, message: String) -> RunError {
        RunError::Node {
            node: self.node.clone(),
            message: format!("cannot write Parquet: {message}"),
        }
    }

    /// Write `batch`'s rows to their partitions.
    pub fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        let data = &batch.data;
        if data.num_rows() == 0 {
            return Ok(());
        }
        if self.chosen.is_none() {
            let first = data
                .project(&self.kept)
                .map_err(|e| self.message(e.to_string()))?;
            self.chosen = Some((self.properties)(&first));
        }
        let groups = self.group(data)?;
        let kept = data
            .project(&self.kept)
            .map_err(|e| self.message(e.to_string()))?;
        // At most `max_open` partitions at a time, so opening one never closes another that
        // still has rows of this batch to take.
        for chunk in groups.chunks(self.max_open) {
            let mut work: Vec<Option<RecordBatch>> = vec![None; self.partitions.len()];
            for (partition, rows) in chunk {
                let rows = UInt32Array::from(rows.clone());
                let part = arrow_select::take::take_record_batch(&kept, &rows)
                    .map_err(|e| self.message(e.to_string()))?;
                self.open_file(*partition)?;
                work[*partition] = Some(part);
            }
            self.write_parts(&work).map_err(|e| self.failed(e))?;
        }
        self.rows += data.num_rows() as u64;
        self.keep_to_budget().map_err(|e| self.failed(e))
    }

    /// Write each partition's rows in `work` to its open file, the partitions in parallel.
    fn write_parts(&mut self, work: &[Option<RecordBatch>]) -> Result<(), ParquetError> {
        self.partitions
            .par_iter_mut()
            .zip(work.par_iter())
            .filter_map(|(p, rows)| rows.as_ref().map(|rows| (p, rows)))
            .try_for_each(|(p, rows)| match p.writer.as_mut() {
                Some(w) => w.write(rows),
                None => Err(ParquetError::General("a partition lost its file".into())),
            })
    }

    /// The rows of `data` by partition, in order of first appearance.
    fn group(&mut self, data: &RecordBatch) -> Result<Vec<(usize, Vec<u32>)>, RunError> {
        let columns: Vec<_> = self.by.iter().map(|&i| data.column(i).clone()).collect();
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| self.message(e.to_string()))?;
        let mut order: Vec<(usize, Vec<u32>)> = Vec::new();
        // Keys of this batch, borrowed (no allocation per row), as their place in `order`.
        let mut local: HashMap<Row<'_>, usize> = HashMap::new();
        // Partitions as their place in `order`: two keys may share one (a null and "").
        let mut slot: HashMap<usize, usize> = HashMap::new();
        for (r, row) in rows.iter().enumerate() {
            let at = match local.get(&row) {
                Some(&at) => at,
                None => {
                    let owned = row.owned();
                    let partition = match self.keys.get(&owned) {
                        Some(&p) => p,
                        None => {
                            let p = self.partition_of(data, r)?;
                            self.keys.insert(owned, p);
                            p
                        }
                    };
                    let at = *slot.entry(partition).or_insert_with(|| {
                        order.push((partition, Vec::new()));
                        order.len() - 1
                    });
                    local.insert(row, at);
                    at
                }
            };
            order[at].1.push(r as u32);
        }
        Ok(order)
    }

    /// The partition of row `r` of `data`, made when its directory is new.
    fn partition_of(&mut self, data: &RecordBatch, r: usize) -> Result<usize, RunError> {
        let mut dir = String::new();
        let options = FormatOptions::default();
        for &c in &self.by {
            let column = data.column(c);
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| self.message(e.to_string()))?;
            let value = formatter.value(r).to_string();
            let value = if column.is_null(r) || value.is_empty() {
                NULL_PARTITION.to_string()
            } else {
                escape(&value)
            };
            let name = escape(data.schema().field(c).name());
            let _ = write!(
                dir,
                "{}{name}={value}",
                if dir.is_empty() { "" } else { "/" }
            );
        }
        if let Some(&p) = self.dirs.get(&dir) {
            return Ok(p);
        }
        self.dirs.insert(dir.clone(), self.partitions.len());
        self.partitions.push(Partition {
            dir,
            parts: 0,
            writer: None,
            used: 0,
        });
        Ok(self.partitions.len() - 1)
    }

    /// Make sure `partition` has an open file, closing the least recently written one first if
    /// `MaxOpenFiles` are open.
    fn open_file(&mut self, partition: usize) -> Result<(), RunError> {
        self.clock += 1;
        self.partitions[partition].used = self.clock;
        if self.partitions[partition].writer.is_some() {
            return Ok(());
        }
        if self.open >= self.max_open {
            let oldest = self
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.writer.is_some())
                .min_by_key(|(_, p)| p.used)
                .map(|(i, _)| i);
            if let Some(oldest) = oldest {
                self.close_file(oldest)?;
            }
        }
        let p = &self.partitions[partition];
        let dir = self.staging.path().join(&p.dir);
        let path = dir.join(format!("part-{}.parquet", p.parts));
        std::fs::create_dir_all(&dir).map_err(|e| self.staging.io("create directory", &dir, e))?;
        let file = injected("staging::create")
            .and_then(|()| File::create(&path))
            .map_err(|e| self.staging.io("create", &path, e))?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 16, Writes(file)),
            self.file_schema.clone(),
            self.chosen.clone(),
        )
        .map_err(|e| self.failed(e))?;
        self.partitions[partition].writer = Some(writer);
        self.open += 1;
        Ok(())
    }

    /// Finish `partition`'s open file: its footer written, its bytes durable.
    fn close_file(&mut self, partition: usize) -> Result<(), RunError> {
        let Some(writer) = self.partitions[partition].writer.take() else {
            return Ok(());
        };
        self.open -= 1;
        let path = self.staging.path().join(self.part_name(partition));
        let file = writer
            .into_inner()
            .map_err(|e| self.failed(e))?
            .into_inner()
            .map_err(|e| self.staging.io("write", &path, e.into_error()))?
            .0;
        injected("staging::fsync")
            .and_then(|()| file.sync_all())
            .map_err(|e| self.staging.io("sync", &path, e))?;
        self.partitions[partition].parts += 1;
        Ok(())
    }

    fn part_name(&self, partition: usize) -> PathBuf {
        let p = &self.partitions[partition];
        PathBuf::from(&p.dir).join(format!("part-{}.parquet", p.parts))
    }

    /// Flush the largest buffers as row groups until all open files together hold no more than
    /// the budget.
    fn keep_to_budget(&mut self) -> Result<(), ParquetError> {
        let mut sizes: Vec<(usize, usize)> = self
            .partitions
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.writer.as_ref().map(|w| (w.in_progress_size(), i)))
            .collect();
        let mut total: usize = sizes.iter().map(|s| s.0).sum();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        for (size, i) in sizes {
            if total <= self.budget {
                break;
            }
            if let Some(w) = self.partitions[i].writer.as_mut() {
                w.flush()?;
            }
            total -= size;
        }
        Ok(())
    }

    /// Close every file and make the directories durable; the rows written.
    pub fn finish(&mut self) -> Result<u64, RunError> {
        for p in 0..self.partitions.len() {
            self.close_file(p)?;
        }
        let mut dirs: Vec<PathBuf> = self
            .partitions
            .iter()
            .flat_map(|p| {
                let path = PathBuf::from(&p.dir);
                path.ancestors()
                    .filter(|a| !a.as_os_str().is_empty())
                    .map(PathBuf::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.push(PathBuf::new());
        for dir in dirs {
            let path = self.staging.path().join(dir);
            File::open(&path)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.staging.io("sync the directory", &path, e))?;
        }
        Ok(self.rows)
    }

    /// What to say in the summary (see [`StagingDir::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.staging.warnings()
    }

    /// Put the directory in place.
    pub fn commit(self) -> Result<(), RunError> {
        self.staging.commit()
    }
}

/// A name or value as a path segment, escaped as Hive escapes them (`%` and two hex digits).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch < ' ' || ch == '\x7f' || "\"#%'*/:=?\\{[]^".contains(ch) {
            let _ = write!(out, "%{:02X}", ch as u32);
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_hive_escapes_them() {
        assert_eq!(escape("a/b=c:d"), "a%2Fb%3Dc%3Ad");
        assert_eq!(escape("100%"), "100%25");
        assert_eq!(escape("ünï code"), "ünï code");
        assert_eq!(escape("tab\there"), "tab%09here");
        assert_eq!(escape(".."), "..");
    }
}

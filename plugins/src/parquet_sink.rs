//! `ParquetSink`: batches to one Parquet file, staged and committed atomically like every sink.
//!
//! Columns keep their Arrow types: dates stay `DATE`, decimals `DECIMAL(p,s)`, datetimes
//! `TIMESTAMP(MICROS)` (adjusted to UTC when the column has a `TimeZone`). The Arrow schema is
//! embedded too, so Arrow readers get the exact types back.
//!
//! The columns of a row group are encoded in parallel: each column's `ArrowColumnWriter` is a lane
//! on the worker pool (the executor runs `write` there) that takes the batches' leaves in order
//! ([`lanes`]), and a full row group's chunks are closed in parallel, then appended in column
//! order. Encoding one column after another on one thread was what bounded a CSV → Parquet run.

mod lanes;
pub mod partitioned;

use std::fs::File;
use std::path::PathBuf;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, BuiltSink, NodeCx, Sink, SinkCommon, SinkConfig, SpaceNeed,
};
use flowengine_engine::error::{BuildError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use crate::faults::Writes;
use crate::staging::{Staging, Target};
use flowengine_engine::error::PlanError;
use flowengine_engine::load::yaml::Mark;
use lanes::Lanes;
use partitioned::PartitionedSink;

/// How column chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Snappy (the default): fast, readable everywhere.
    Snappy,
    /// Zstandard at its default level: smaller, slower to write.
    Zstd,
    /// No compression.
    None,
}

/// Which columns are dictionary-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dictionary {
    /// Every column but those whose first batch is nearly all distinct values (the default).
    Auto,
    /// Every column (the writer still falls back to plain pages when a dictionary grows too large).
    Always,
    /// No column.
    Never,
}

/// `Auto` decides on this many rows of the first batch…
const SAMPLE_ROWS: usize = 8192;
/// …and only when the first batch has at least this many; otherwise every column gets a dictionary.
const MIN_SAMPLE_ROWS: usize = 1024;

/// Files open at once in a partitioned output, unless `MaxOpenFiles` says otherwise.
const MAX_OPEN_FILES: usize = 64;

/// Rows per row group unless `RowGroupSize` says otherwise: Polars' default. A row group's encoded
/// pages are held until it is full; with parquet-rs's 1,048,576, J3 peaked at 130-144 MiB and a
/// 100 MB file (one partial group) at 101 MiB; with this, 82-85 MiB at the same speed (0.99x) and
/// a file 0.25% larger (docs/benchmarks.md).
const ROW_GROUP_ROWS: usize = 262_144;

/// What a partitioned output buffers in all its open files together, at most, before it flushes
/// the largest as a row group.
const MAX_BUFFERED: u64 = 64 << 20;

/// `PartitionBy`: the partition columns, each with where it was written.
#[derive(Debug, Clone)]
struct Partitioning {
    columns: Vec<(String, String, Mark)>,
    max_open_files: usize,
}

/// Parsed `ParquetSink` config.
#[derive(Debug, Clone)]
pub struct ParquetSinkConfig {
    target: Target,
    codec: Codec,
    row_group_size: usize,
    dictionary: Dictionary,
    partitioning: Option<Partitioning>,
}

/// Parse a `ParquetSink` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SinkConfig>> {
    // No `append`: a Parquet file ends with its footer.
    let target = Target::read(m, cx, false).filter(|t| t.require_file(m, cx, "Parquet"));
    let codec = m
        .choice(
            cx,
            "Compression",
            &[
                ("snappy", Codec::Snappy),
                ("zstd", Codec::Zstd),
                ("none", Codec::None),
                ("uncompressed", Codec::None),
            ],
        )
        .unwrap_or(Codec::Snappy);
    let row_group_size = m
        .integer(cx, "RowGroupSize", 1, 1 << 30)
        .map_or(ROW_GROUP_ROWS, |n| n as usize);
    let dictionary = m
        .choice(
            cx,
            "Dictionary",
            &[
                ("auto", Dictionary::Auto),
                ("true", Dictionary::Always),
                ("yes", Dictionary::Always),
                ("always", Dictionary::Always),
                ("false", Dictionary::Never),
                ("no", Dictionary::Never),
                ("never", Dictionary::Never),
            ],
        )
        .unwrap_or(Dictionary::Auto);
    let partitioning = read_partitioning(m, cx)?;
    Some(Box::new(ParquetSinkConfig {
        target: target?,
        codec,
        row_group_size,
        dictionary,
        partitioning,
    }))
}

/// `PartitionBy` (a list of column names) and `MaxOpenFiles`, which means something only with it.
fn read_partitioning(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Option<Partitioning>> {
    let max_open_files = m.integer(cx, "MaxOpenFiles", 1, 65536).map(|n| n as usize);
    if !m.has("PartitionBy") {
        if max_open_files.is_some() {
            m.invalid(
                cx,
                "MaxOpenFiles",
                "`MaxOpenFiles` only with `PartitionBy`",
                "no `PartitionBy`",
            );
            return None;
        }
        return Some(None);
    }
    let mut columns = Vec::new();
    for (path, node) in m.list(cx, "PartitionBy")? {
        match node.as_scalar() {
            Some(name) => columns.push((name.to_string(), path, node.mark)),
            None => {
                let kind = flowengine_engine::error::ConfigErrorKind::InvalidValue {
                    expected: "a column name".into(),
                    found: node.kind_name().into(),
                };
                cx.error(kind, &path, node.mark);
                return None;
            }
        }
    }
    if columns.is_empty() {
        m.invalid(cx, "PartitionBy", "at least one column", "an empty list");
        return None;
    }
    Some(Some(Partitioning {
        columns,
        max_open_files: max_open_files.unwrap_or(MAX_OPEN_FILES),
    }))
}

/// The top-level columns of `first` that are nearly all distinct in its first rows. Their
/// dictionary would only grow until the writer gives it up for plain pages (Polars decides the
/// same way), and building it costs a hash of every value on the way.
fn mostly_distinct(first: &RecordBatch) -> Vec<String> {
    if first.num_rows() < MIN_SAMPLE_ROWS {
        return Vec::new();
    }
    let rows = first.num_rows().min(SAMPLE_ROWS);
    first
        .schema()
        .fields()
        .iter()
        .zip(first.columns())
        .filter(|(field, _)| !field.data_type().is_nested())
        .filter(|(_, array)| distinct(&array.slice(0, rows)).is_some_and(|d| d * 10 >= rows * 9))
        .map(|(field, _)| field.name().clone())
        .collect()
}

/// How many distinct values (null counting as one) `array` holds; `None` for a type that does not
/// sort.
fn distinct(array: &ArrayRef) -> Option<usize> {
    let sorted = arrow_ord::sort::sort(array, None).ok()?;
    arrow_ord::partition::partition(&[sorted])
        .ok()
        .map(|p| p.len())
}

impl ParquetSinkConfig {
    /// The writer's settings; `plain` names the columns written without a dictionary.
    fn properties(&self, plain: &[String]) -> WriterProperties {
        let compression = match self.codec {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Codec::None => Compression::UNCOMPRESSED,
        };
        let mut builder = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_size))
            .set_dictionary_enabled(self.dictionary != Dictionary::Never);
        for name in plain {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), false);
        }
        builder.build()
    }
}

impl ParquetSinkConfig {
    /// The positions of the partition columns in `input`, or what is wrong with them.
    fn partition_columns(
        &self,
        partitioning: &Partitioning,
        input: &SchemaRef,
    ) -> Result<Vec<usize>, Vec<PlanError>> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (name, path, mark) in &partitioning.columns {
            match input.index_of(name) {
                Ok(i) if found.contains(&i) => errors.push(PlanError::at(
                    path.clone(),
                    Some(*mark),
                    format!("`{name}` is named twice in `PartitionBy`"),
                )),
                Ok(i) => found.push(i),
                Err(_) => {
                    let names: Vec<&str> =
                        input.fields().iter().map(|f| f.name().as_str()).collect();
                    errors.push(PlanError::at(
                        path.clone(),
                        Some(*mark),
                        match flowengine_engine::load::config::closest(name, &names) {
                            Some(like) => format!(
                                "no column `{name}` reaches this sink (did you mean `{like}`?)"
                            ),
                            None => format!(
                                "no column `{name}` reaches this sink; its columns are {}",
                                names.join(", ")
                            ),
                        },
                    ));
                }
            }
        }
        if errors.is_empty() && found.len() == input.fields().len() {
            errors.push(PlanError::new(
                "`PartitionBy` names every column, so the files would hold none; leave at least \
                 one column out",
            ));
        }
        if errors.is_empty() {
            Ok(found)
        } else {
            Err(errors)
        }
    }

    /// A partitioned output under the target directory.
    fn build_partitioned(
        &self,
        partitioning: &Partitioning,
        input: SchemaRef,
        cx: &BuildCx,
    ) -> Result<BuiltSink, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            node: cx.node.clone(),
            message,
        };
        let by = self
            .partition_columns(partitioning, &input)
            .map_err(|e| invalid(PlanError::join(&e)))?;
        let staging = self.target.stage_dir(&cx.node)?;
        let config = self.clone();
        let properties = Box::new(move |first: &RecordBatch| {
            let plain = match config.dictionary {
                Dictionary::Auto => mostly_distinct(first),
                _ => Vec::new(),
            };
            config.properties(&plain)
        });
        let budget = usize::try_from((cx.batch_bytes * 8).clamp(4 << 20, MAX_BUFFERED))
            .unwrap_or(usize::MAX);
        let sink = PartitionedSink::new(
            &cx.node,
            staging,
            &input,
            by,
            partitioning.max_open_files,
            budget,
            properties,
        )
        .map_err(|e| invalid(format!("cannot partition this schema: {e}")))?;
        Ok(BuiltSink::Rows(Box::new(Partitioned(sink))))
    }
}

/// The partitioned output as a sink.
struct Partitioned(PartitionedSink);

impl Sink for Partitioned {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        self.0.write(batch)
    }
}

impl SinkCommon for Partitioned {
    fn finish(&mut self) -> Result<u64, RunError> {
        self.0.finish()
    }

    fn commit(self: Box<Self>) -> Result<(), RunError> {
        self.0.commit()
    }

    fn warnings(&self) -> Vec<String> {
        self.0.warnings()
    }
}

impl SinkConfig for ParquetSinkConfig {
    fn check_input(&self, input: &SchemaRef) -> Result<(), Vec<PlanError>> {
        match &self.partitioning {
            Some(p) => self.partition_columns(p, input).map(drop),
            None => Ok(()),
        }
    }

    fn files_written(&self) -> Vec<PathBuf> {
        self.target.files()
    }

    fn space_needed(&self, input_bytes: u64) -> SpaceNeed {
        // Columnar and compressed: J3 writes 553 MB from 1.57 GB of CSV.
        self.target.space(input_bytes / 2)
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        if let Some(partitioning) = &self.partitioning {
            return self.build_partitioned(partitioning, input, cx);
        }
        let staging = self.target.stage(&cx.node)?;
        let invalid = |message: String| BuildError::Invalid {
            node: cx.node.clone(),
            message,
        };
        let file = staging.handle().map_err(|e| invalid(e.to_string()))?;
        // Batches arrive conformed to `input` (the executor sees to it), so it is the file's schema.
        let schema = input;
        // The file is opened at the first batch (which `Dictionary: auto` needs to see); a schema
        // Parquet cannot hold is refused now.
        ArrowWriter::try_new(std::io::sink(), schema.clone(), Some(self.properties(&[])))
            .map_err(|e| invalid(format!("cannot write this schema as Parquet: {e}")))?;
        Ok(BuiltSink::Rows(Box::new(ParquetSink {
            node: cx.node.clone(),
            staging,
            schema,
            config: self.clone(),
            unopened: Some(file),
            writer: None,
            group_rows: 0,
            groups: 0,
            row_group_size: self.row_group_size,
            rows: 0,
        })))
    }
}

struct ParquetSink {
    node: String,
    staging: Staging,
    schema: SchemaRef,
    config: ParquetSinkConfig,
    /// The staged file, until the first batch (or the finish) opens the writer on it.
    unopened: Option<Writes<File>>,
    /// `None` before that, and once finished.
    writer: Option<Writer>,
    group_rows: usize,
    /// Row groups written.
    groups: usize,
    row_group_size: usize,
    rows: u64,
}

/// An open Parquet file and the row group being encoded into it.
struct Writer {
    file: SerializedFileWriter<Writes<File>>,
    factory: ArrowRowGroupWriterFactory,
    /// One lane per leaf column.
    columns: Lanes,
}

impl ParquetSink {
    fn failed(&self, e: ParquetError) -> RunError {
        match e {
            ParquetError::External(e) => match e.downcast::<std::io::Error>() {
                Ok(io) => self.staging.io("write", *io),
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

    /// The open writer; the first call opens it, choosing the dictionary columns from `first`.
    fn writer(&mut self, first: Option<&RecordBatch>) -> Result<&mut Writer, ParquetError> {
        if let Some(file) = self.unopened.take() {
            let plain = match (self.config.dictionary, first) {
                (Dictionary::Auto, Some(first)) => mostly_distinct(first),
                _ => Vec::new(),
            };
            let properties = self.config.properties(&plain);
            // The high-level writer sets up the file (the embedded Arrow schema included); the
            // column writers underneath it are driven here.
            let (file, factory) =
                ArrowWriter::try_new(file, self.schema.clone(), Some(properties))?
                    .into_serialized_writer()?;
            let columns = Lanes::new(factory.create_column_writers(0)?);
            self.writer = Some(Writer {
                file,
                factory,
                columns,
            });
        }
        self.writer
            .as_mut()
            .ok_or_else(|| ParquetError::General("written after finish".into()))
    }

    /// Queue `part` (which fits in the row group) on the column lanes.
    fn encode(&mut self, part: &RecordBatch) -> Result<(), ParquetError> {
        let mut leaves = Vec::with_capacity(part.num_columns());
        for (field, array) in part.schema().fields().iter().zip(part.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        self.writer(Some(part))?.columns.push(leaves)?;
        self.group_rows += part.num_rows();
        Ok(())
    }

    /// Close the row group's column chunks in parallel and append them to the file in order.
    fn close_group(&mut self) -> Result<(), ParquetError> {
        let groups = self.groups;
        let writer = self.writer(None)?;
        let next = writer.factory.create_column_writers(groups + 1)?;
        let writers = writer.columns.swap(next)?;
        let chunks: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<_, _>>()?;
        let mut group = writer.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.groups += 1;
        self.group_rows = 0;
        Ok(())
    }

    /// Stage `data`, closing each row group as it fills.
    fn write_rows(&mut self, data: &RecordBatch) -> Result<(), ParquetError> {
        let mut offset = 0;
        while offset < data.num_rows() {
            let n = (self.row_group_size - self.group_rows).min(data.num_rows() - offset);
            self.encode(&data.slice(offset, n))?;
            offset += n;
            if self.group_rows == self.row_group_size {
                self.close_group()?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), ParquetError> {
        if self.group_rows > 0 {
            self.close_group()?;
        }
        // A run without rows still writes a file: the schema and no row groups.
        self.writer(None)?;
        match self.writer.take() {
            Some(writer) => writer.file.close().map(drop),
            None => Ok(()),
        }
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        self.write_rows(&batch.data).map_err(|e| self.failed(e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

impl SinkCommon for ParquetSink {
    fn finish(&mut self) -> Result<u64, RunError> {
        self.close().map_err(|e| self.failed(e))?;
        self.staging.sync()?;
        Ok(self.rows)
    }

    fn commit(self: Box<Self>) -> Result<(), RunError> {
        self.staging.commit()
    }

    fn warnings(&self) -> Vec<String> {
        self.staging.warnings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::OutputMode;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    /// Write `rows` rows (unique ids, two names) through the sink, commit, and open the result
    /// (with the folder holding it).
    fn written(
        rows: i64,
        codec: Codec,
        row_group_size: usize,
        dictionary: Dictionary,
    ) -> (tempfile::TempDir, SerializedFileReader<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("t.parquet");
        let config = ParquetSinkConfig {
            target: Target {
                path: path.clone(),
                mode: OutputMode::Replace,
                create_directories: true,
                appends: false,
                stdout: false,
                backup: false,
            },
            codec,
            row_group_size,
            dictionary,
            partitioning: None,
        };
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("n{}", i % 2)),
        ));
        let data = RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap();
        let cx = BuildCx {
            node: "sink".into(),
            chunk_size: 10,
            batch_bytes: 1 << 20,
            state_bytes: 0,
            temp_dir: std::env::temp_dir(),
        };
        let BuiltSink::Rows(mut sink) = config.build(data.schema(), &cx).unwrap() else {
            panic!("a Parquet sink takes rows");
        };
        sink.write(&Batch::new(
            data,
            None,
            UInt64Array::from_iter_values(2..rows as u64 + 2),
        ))
        .unwrap();
        assert!(!path.exists(), "nothing is visible before commit");
        assert_eq!(sink.finish().unwrap(), rows as u64);
        sink.commit().unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        (dir, reader)
    }

    /// Whether each column of the first row group has a dictionary page.
    fn dictionaries(reader: &SerializedFileReader<File>) -> Vec<bool> {
        let group = reader.metadata().row_group(0);
        (0..group.num_columns())
            .map(|i| group.column(i).dictionary_page_offset().is_some())
            .collect()
    }

    #[test]
    fn options_reach_the_file() {
        let (_dir, zstd) = written(10, Codec::Zstd, 4, Dictionary::Auto);
        let meta = zstd.metadata();
        assert_eq!(meta.num_row_groups(), 3, "10 rows in groups of 4");
        let column = meta.row_group(0).column(1);
        assert!(matches!(column.compression(), Compression::ZSTD(_)));
        assert_eq!(dictionaries(&zstd), [true, true], "too few rows to judge");

        let (_dir, plain) = written(10, Codec::None, 1 << 20, Dictionary::Never);
        let column = plain.metadata().row_group(0).column(1);
        assert_eq!(column.compression(), Compression::UNCOMPRESSED);
        assert_eq!(dictionaries(&plain), [false, false]);
    }

    #[test]
    fn auto_dictionary_skips_columns_of_distinct_values() {
        let (_dir, auto) = written(2000, Codec::Snappy, 1 << 20, Dictionary::Auto);
        assert_eq!(dictionaries(&auto), [false, true], "unique ids, two names");
        let (_dir, always) = written(2000, Codec::Snappy, 1 << 20, Dictionary::Always);
        assert_eq!(dictionaries(&always), [true, true]);
    }

    #[test]
    fn distinct_counts_null_as_one_value() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(3),
            None,
            Some(1),
            None,
            Some(3),
        ]));
        assert_eq!(distinct(&a), Some(3));
    }
}

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

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use flowengine_engine::component::{BuildCx, NodeCx, Sink, SinkConfig};
use flowengine_engine::config::{ConfigCx, MapReader};
use flowengine_engine::error::{BuildError, RunError};
use flowengine_engine::Batch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, DEFAULT_MAX_ROW_GROUP_ROW_COUNT};
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use crate::staging::{Staging, Target};
use lanes::Lanes;

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

/// Parsed `ParquetSink` config.
#[derive(Debug, Clone)]
pub struct ParquetSinkConfig {
    target: Target,
    codec: Codec,
    row_group_size: usize,
    dictionary: bool,
}

/// Parse a `ParquetSink` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SinkConfig>> {
    // No `append`: a Parquet file ends with its footer.
    let target = Target::read(m, cx, false);
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
        .map_or(DEFAULT_MAX_ROW_GROUP_ROW_COUNT, |n| n as usize);
    let dictionary = m.bool(cx, "Dictionary").unwrap_or(true);
    Some(Box::new(ParquetSinkConfig {
        target: target?,
        codec,
        row_group_size,
        dictionary,
    }))
}

/// The schema as written: our parse formats are pipeline details, not data.
pub(crate) fn without_metadata(schema: &Schema) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_metadata(std::collections::HashMap::new())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

impl ParquetSinkConfig {
    fn properties(&self) -> WriterProperties {
        let compression = match self.codec {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Codec::None => Compression::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_size))
            .set_dictionary_enabled(self.dictionary)
            .build()
    }
}

impl SinkConfig for ParquetSinkConfig {
    fn files_written(&self) -> Vec<PathBuf> {
        vec![self.target.path.clone()]
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<Box<dyn Sink>, BuildError> {
        let staging = self.target.stage(&cx.node)?;
        let invalid = |message: String| BuildError::Invalid {
            node: cx.node.clone(),
            message,
        };
        let file = staging.handle().map_err(|e| invalid(e.to_string()))?;
        let schema = without_metadata(&input);
        // The high-level writer sets up the file (the embedded Arrow schema included); the
        // column writers underneath it are driven here.
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(self.properties()))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|e| invalid(format!("cannot write this schema as Parquet: {e}")))?;
        let (file, factory) = writer;
        let columns = factory
            .create_column_writers(0)
            .map_err(|e| invalid(format!("cannot write this schema as Parquet: {e}")))?;
        Ok(Box::new(ParquetSink {
            node: cx.node.clone(),
            staging,
            schema,
            file: Some(file),
            factory,
            columns: Lanes::new(columns),
            group_rows: 0,
            groups: 0,
            row_group_size: self.row_group_size,
            rows: 0,
        }))
    }
}

struct ParquetSink {
    node: String,
    staging: Staging,
    schema: SchemaRef,
    /// `None` once finished.
    file: Option<SerializedFileWriter<File>>,
    factory: ArrowRowGroupWriterFactory,
    /// The row group being encoded: one writer per leaf column.
    columns: Lanes,
    group_rows: usize,
    /// Row groups written.
    groups: usize,
    row_group_size: usize,
    rows: u64,
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

    /// Queue `part` (which fits in the row group) on the column lanes.
    fn encode(&mut self, part: &RecordBatch) -> Result<(), ParquetError> {
        let mut leaves = Vec::with_capacity(part.num_columns());
        for (field, array) in part.schema().fields().iter().zip(part.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        self.columns.push(leaves)?;
        self.group_rows += part.num_rows();
        Ok(())
    }

    /// Close the row group's column chunks in parallel and append them to the file in order.
    fn close_group(&mut self) -> Result<(), ParquetError> {
        let next = self.factory.create_column_writers(self.groups + 1)?;
        let writers = self.columns.swap(next)?;
        let chunks: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<_, _>>()?;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| ParquetError::General("written after finish".into()))?;
        let mut group = file.next_row_group()?;
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
        match self.file.take() {
            Some(file) => file.close().map(drop),
            None => Ok(()),
        }
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        let data = batch
            .data
            .clone()
            .with_schema(self.schema.clone())
            .map_err(|e| self.message(e.to_string()))?;
        self.write_rows(&data).map_err(|e| self.failed(e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, RunError> {
        self.close().map_err(|e| self.failed(e))?;
        self.staging.sync()?;
        Ok(self.rows)
    }

    fn commit(self: Box<Self>) -> Result<(), RunError> {
        self.staging.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::OutputMode;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// Write 10 rows through the sink, commit, and open the result (with the folder holding it).
    fn written(
        codec: Codec,
        row_group_size: usize,
        dictionary: bool,
    ) -> (tempfile::TempDir, SerializedFileReader<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("t.parquet");
        let config = ParquetSinkConfig {
            target: Target {
                path: path.clone(),
                mode: OutputMode::Replace,
                create_directories: true,
                appends: false,
            },
            codec,
            row_group_size,
            dictionary,
        };
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..10).map(|i| format!("n{}", i % 2)),
        ));
        let data = RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap();
        let cx = BuildCx {
            node: "sink".into(),
            chunk_size: 10,
            batch_bytes: 1 << 20,
        };
        let mut sink = config.build(data.schema(), &cx).unwrap();
        sink.write(&Batch::new(
            data,
            None,
            UInt64Array::from_iter_values(2..12),
        ))
        .unwrap();
        assert!(!path.exists(), "nothing is visible before commit");
        assert_eq!(sink.finish().unwrap(), 10);
        sink.commit().unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        (dir, reader)
    }

    #[test]
    fn options_reach_the_file() {
        let (_dir, zstd) = written(Codec::Zstd, 4, true);
        let meta = zstd.metadata();
        assert_eq!(meta.num_row_groups(), 3, "10 rows in groups of 4");
        let column = meta.row_group(0).column(1);
        assert!(matches!(column.compression(), Compression::ZSTD(_)));
        assert!(column.dictionary_page_offset().is_some());

        let (_dir, plain) = written(Codec::None, 1 << 20, false);
        let column = plain.metadata().row_group(0).column(1);
        assert_eq!(column.compression(), Compression::UNCOMPRESSED);
        assert!(column.dictionary_page_offset().is_none());
    }
}

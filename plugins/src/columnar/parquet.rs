//! `ParquetSource`: the declared columns of Parquet files.
//!
//! The footer is read once per file on the node thread, with the page index when the file has
//! one. Each row group is cut into pieces of about [`BuildCx::batch_bytes`] of decoded data, so
//! memory stays bounded whatever the writer's row group size; workers decode the pieces in
//! parallel, each through its own file handle, and the executor keeps their order. A piece skips
//! the pages before it by the page index, or without one by their headers (a flat column's page
//! header says how many rows it holds, so nothing is decompressed to skip it).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, BuiltSource, DeferringSource, NodeCx, Pending, SourceCommon, SourceConfig,
};
use flowengine_engine::error::{BuildError, IoError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, RowGroupMetaData};

use super::conform::Conform;
use super::TypedSourceConfig;
use crate::files::{self, InputFile};

/// A piece never holds fewer rows than this, so a wide row group is not cut into slivers that
/// each decode a page for a few rows.
const MIN_PIECE_ROWS: usize = 1024;

/// Parsed `ParquetSource` config.
#[derive(Debug, Clone)]
pub struct ParquetSourceConfig(TypedSourceConfig);

/// Parse a `ParquetSource` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    let config = TypedSourceConfig::read(m, cx, "a Parquet")?;
    if config.files.files.iter().any(|f| f.path.as_os_str() == "-") {
        m.invalid(
            cx,
            "FilePath",
            "a file (Parquet is read from its footer, which standard input cannot seek to)",
            "`-`",
        );
        return None;
    }
    Some(Box::new(ParquetSourceConfig(config)))
}

impl SourceConfig for ParquetSourceConfig {
    fn output_schema(&self) -> SchemaRef {
        self.0.output()
    }

    fn files_read(&self) -> Vec<std::path::PathBuf> {
        self.0.files_read()
    }

    fn build(&self, cx: &BuildCx) -> Result<BuiltSource, BuildError> {
        files::build(self, &self.0.files, self.0.output(), cx, Self::open_file)
    }

    fn read_instead(&self, file: &std::path::Path) -> Option<Box<dyn SourceConfig>> {
        let mut config = self.clone();
        config.0.files = self.0.files.only(file);
        Some(Box::new(config))
    }
}

impl ParquetSourceConfig {
    /// The source of one file: its footer read, its schema checked, its pieces planned.
    fn open_file(
        &self,
        file: &InputFile,
        cx: &BuildCx,
    ) -> Result<Box<dyn DeferringSource>, BuildError> {
        let handle = crate::faults::open_input(&file.path)
            .map(crate::faults::Reads)
            .map_err(|e| BuildError::from(IoError::new(&cx.node, "open", &file.path, e)))?;
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let not_parquet = |e: ParquetError| BuildError::Invalid {
            node: cx.node.clone(),
            message: format!(
                "{} is not a readable Parquet file: {e} (hint: check that the file is complete \
                 and is Parquet, not CSV or Arrow IPC)",
                file.label
            ),
        };
        let meta = ArrowReaderMetadata::load(&handle, options).map_err(|e| match e {
            // The file could not be read at all, which is not the same as not being Parquet.
            ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
                Ok(io) => BuildError::from(IoError::new(&cx.node, "read", &file.path, *io)),
                Err(other) => not_parquet(ParquetError::External(other)),
            },
            e => not_parquet(e),
        })?;
        let conform = self.0.conform(file, meta.schema(), &cx.node)?;
        let mask = ProjectionMask::roots(meta.parquet_schema(), conform.read.iter().copied());
        let indexed = meta
            .metadata()
            .offset_index()
            .is_some_and(|groups| groups.iter().all(|columns| !columns.is_empty()));
        let mut pieces = VecDeque::new();
        let mut first = 1;
        let mut most = 0;
        for (group, g) in meta.metadata().row_groups().iter().enumerate() {
            let rows = usize::try_from(g.num_rows()).unwrap_or(0);
            let step = piece_rows(g, cx.batch_bytes);
            most = most.max(step.min(rows));
            for skip in (0..rows).step_by(step) {
                pieces.push_back(Place {
                    group,
                    skip,
                    rows: step.min(rows - skip),
                    first: first + skip as u64,
                });
            }
            first += rows as u64;
        }
        let shape = Shape {
            node: cx.node.clone(),
            file: file.clone(),
            meta,
            mask,
            conform,
        };
        Ok(Box::new(ParquetSource {
            shape: Arc::new(shape),
            pieces,
            indexed,
            piece_rows: most,
        }))
    }
}

/// Rows of `group` that decode to about `batch_bytes`.
fn piece_rows(group: &RowGroupMetaData, batch_bytes: u64) -> usize {
    let rows = u64::try_from(group.num_rows()).unwrap_or(0).max(1);
    let row_bytes = (u64::try_from(group.total_byte_size()).unwrap_or(0) / rows).max(1);
    usize::try_from(batch_bytes / row_bytes)
        .unwrap_or(usize::MAX)
        .max(MIN_PIECE_ROWS)
}

/// What every piece of one file shares.
struct Shape {
    node: String,
    file: InputFile,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    conform: Arc<Conform>,
}

/// Rows `skip..skip + rows` of row group `group`, the first of them row `first` of the file.
struct Place {
    group: usize,
    skip: usize,
    rows: usize,
    first: u64,
}

/// A running `ParquetSource` over one file.
struct ParquetSource {
    shape: Arc<Shape>,
    pieces: VecDeque<Place>,
    indexed: bool,
    /// The most rows in one piece.
    piece_rows: usize,
}

impl DeferringSource for ParquetSource {
    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        Ok(self.pieces.pop_front().map(|place| {
            Box::new(Piece {
                shape: self.shape.clone(),
                place,
            }) as Box<dyn Pending>
        }))
    }
}

impl SourceCommon for ParquetSource {
    fn notes(&self) -> Vec<String> {
        let meta = self.shape.meta.metadata();
        let mut notes = vec![format!(
            "{}: {} of {} columns read; {} row group(s) cut into pieces of {} rows at most{}",
            self.shape.file.label,
            self.shape.conform.read.len(),
            self.shape.meta.schema().fields().len(),
            meta.num_row_groups(),
            self.piece_rows,
            if self.indexed {
                ", the pages before each found by the page index"
            } else {
                " (no page index: the pages before each are skipped by their headers)"
            }
        )];
        notes.extend(self.shape.conform.notes.iter().cloned());
        notes
    }
}

/// One piece of a row group, decoded on a worker.
struct Piece {
    shape: Arc<Shape>,
    place: Place,
}

impl Pending for Piece {
    fn finish(self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let shape = &self.shape;
        let place = &self.place;
        let failed = |e: String| RunError::Node {
            node: shape.node.clone(),
            message: format!(
                "cannot read row group {} (rows {} to {}) of {}: {e}",
                place.group,
                place.first,
                place.first + place.rows as u64 - 1,
                shape.file.label
            ),
        };
        // A handle of its own: clones of one handle share its offset, and workers seek apart.
        let handle = crate::faults::open_input(&shape.file.path)
            .map(crate::faults::Reads)
            .map_err(|e| RunError::from(IoError::new(&shape.node, "open", &shape.file.path, e)))?;
        let selection = RowSelection::from(vec![
            RowSelector::skip(place.skip),
            RowSelector::select(place.rows),
        ]);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, shape.meta.clone())
            .with_row_groups(vec![place.group])
            .with_projection(shape.mask.clone())
            .with_row_selection(selection)
            .with_batch_size(place.rows)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let schema = arrow_array::RecordBatchReader::schema(&reader);
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))?;
        let data = arrow_select::concat::concat_batches(&schema, &batches)
            .map_err(|e| failed(e.to_string()))?;
        if data.num_rows() != place.rows {
            return Err(failed(format!(
                "{} rows decoded where the footer promised {}",
                data.num_rows(),
                place.rows
            )));
        }
        shape
            .conform
            .apply(&data, place.first, &shape.node, &shape.file.label, rejects)
    }
}

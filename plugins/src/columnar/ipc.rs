//! `ArrowSource`: the declared columns of Arrow IPC files (`.arrow`/`.feather`, random access) and
//! streams (`.arrows`, also from standard input), told apart by the file format's magic bytes.
//!
//! Record batches are read in order on the node thread (decoding IPC is mostly taking buffers
//! as they are); a batch longer than `ChunkSize` rows is sliced, without copying, into pieces the
//! workers conform in parallel. The file format reads only the declared columns; a stream has no
//! index, so every column of a batch is decoded and the undeclared ones are dropped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::{ArrowError, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltSource, DeferringSource, NodeCx, Pending, SourceCommon, SourceConfig,
};
use flowengine_engine::error::{BuildError, IoError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

use super::conform::Conform;
use super::TypedSourceConfig;
use crate::faults::{open_input, Reads};
use crate::files::{self, InputFile};

/// The first bytes of the IPC file format (a stream starts with a message length instead).
const FILE_MAGIC: &[u8] = b"ARROW1";

/// Parsed `ArrowSource` config.
#[derive(Debug, Clone)]
pub struct ArrowSourceConfig(TypedSourceConfig);

/// Parse an `ArrowSource` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    let config = TypedSourceConfig::read(m, cx, "an Arrow IPC")?;
    Some(Box::new(ArrowSourceConfig(config)))
}

impl SourceConfig for ArrowSourceConfig {
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

enum Reader {
    File(FileReader<BufReader<Reads<File>>>),
    Stream(StreamReader<BufReader<Box<dyn Read + Send>>>),
}

impl ArrowSourceConfig {
    /// The source of one file or stream: its schema read and checked.
    fn open_file(
        &self,
        file: &InputFile,
        cx: &BuildCx,
    ) -> Result<Box<dyn DeferringSource>, BuildError> {
        let unreadable = |e: ArrowError| BuildError::Invalid {
            node: cx.node.clone(),
            message: format!(
                "{} is not a readable Arrow IPC file or stream: {e} (hint: check that it is \
                 complete and is Arrow IPC, not Parquet or CSV)",
                file.label
            ),
        };
        let io = |e| BuildError::from(IoError::new(&cx.node, "open", &file.path, e));
        let stdin = file.path.as_os_str() == "-";
        let input: Box<dyn Read + Send> = if stdin {
            Box::new(std::io::stdin())
        } else {
            Box::new(Reads(open_input(&file.path).map_err(io)?))
        };
        let mut input = BufReader::with_capacity(1 << 20, input);
        let is_file = input.fill_buf().map_err(io)?.starts_with(FILE_MAGIC);
        let (reader, conform, projected) = if is_file {
            if stdin {
                return Err(BuildError::Invalid {
                    node: cx.node.clone(),
                    message: "standard input holds the Arrow IPC file format, which is read from \
                              its footer; pipe the stream format (`.arrows`) instead"
                        .into(),
                });
            }
            let open = || {
                open_input(&file.path)
                    .map(|f| BufReader::new(Reads(f)))
                    .map_err(io)
            };
            let found = FileReader::try_new(open()?, None).map_err(unreadable)?;
            let conform = self.0.conform(file, &found.schema(), &cx.node)?;
            let reader =
                FileReader::try_new(open()?, Some(conform.read.clone())).map_err(unreadable)?;
            (Reader::File(reader), conform, true)
        } else {
            let reader = StreamReader::try_new(input, None).map_err(unreadable)?;
            let conform = self.0.conform(file, &reader.schema(), &cx.node)?;
            (Reader::Stream(reader), conform, false)
        };
        Ok(Box::new(ArrowSource {
            node: cx.node.clone(),
            file: file.clone(),
            reader,
            conform,
            projected,
            chunk_size: cx.chunk_size.max(1),
            current: None,
            batches: 0,
            next_row: 1,
        }))
    }
}

/// A running `ArrowSource` over one file or stream.
struct ArrowSource {
    node: String,
    file: InputFile,
    reader: Reader,
    conform: Arc<Conform>,
    /// Whether the reader gives only the columns read, or every column.
    projected: bool,
    chunk_size: usize,
    /// The batch being sliced, and how far.
    current: Option<(RecordBatch, usize)>,
    /// Record batches read so far.
    batches: u64,
    /// The number of the next row handed off.
    next_row: u64,
}

impl ArrowSource {
    fn read(&mut self) -> Result<Option<RecordBatch>, RunError> {
        let next = match &mut self.reader {
            Reader::File(r) => r.next(),
            Reader::Stream(r) => r.next(),
        };
        self.batches += 1;
        let batch = next.transpose().map_err(|e| RunError::Node {
            node: self.node.clone(),
            message: format!(
                "cannot read record batch {} of {}: {e} (hint: the file may be truncated)",
                self.batches, self.file.label
            ),
        })?;
        match batch {
            Some(b) if !self.projected => b
                .project(&self.conform.read)
                .map(Some)
                .map_err(|e| RunError::Internal(format!("dropping undeclared columns: {e}"))),
            other => Ok(other),
        }
    }
}

impl DeferringSource for ArrowSource {
    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        loop {
            if let Some((batch, at)) = &mut self.current {
                if *at < batch.num_rows() {
                    let rows = self.chunk_size.min(batch.num_rows() - *at);
                    let data = batch.slice(*at, rows);
                    *at += rows;
                    let first = self.next_row;
                    self.next_row += rows as u64;
                    return Ok(Some(Box::new(Piece {
                        node: self.node.clone(),
                        label: self.file.label.clone(),
                        conform: self.conform.clone(),
                        data,
                        first,
                    })));
                }
            }
            match self.read()? {
                Some(batch) => self.current = Some((batch, 0)),
                None => return Ok(None),
            }
        }
    }
}

impl SourceCommon for ArrowSource {
    fn notes(&self) -> Vec<String> {
        let layout = match self.reader {
            Reader::File(_) => "IPC file, only the declared columns read",
            Reader::Stream(_) => "IPC stream, every column decoded and the undeclared dropped",
        };
        let mut notes = vec![format!("{}: {layout}", self.file.label)];
        notes.extend(self.conform.notes.iter().cloned());
        notes
    }
}

/// Rows of one record batch, conformed on a worker.
struct Piece {
    node: String,
    label: Arc<str>,
    conform: Arc<Conform>,
    data: RecordBatch,
    first: u64,
}

impl Pending for Piece {
    fn finish(self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        self.conform
            .apply(&self.data, self.first, &self.node, &self.label, rejects)
    }
}

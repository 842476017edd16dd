//! `ArrowSink`: batches to an Arrow IPC file (random access, `.arrow`/`.feather`) or stream
//! (`.arrows`), staged and committed atomically like every sink. Types are kept exactly.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::{ArrowError, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltSink, NodeCx, Sink, SinkCommon, SinkConfig, SpaceNeed,
};
use flowengine_engine::error::{BuildError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

use crate::faults::Writes;
use crate::staging::{Staging, Target};

/// Which IPC layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The IPC file format, with a footer for random access.
    File,
    /// The IPC streaming format.
    Stream,
}

/// Parsed `ArrowSink` config.
#[derive(Debug, Clone)]
pub struct ArrowSinkConfig {
    target: Target,
    layout: Layout,
}

/// Parse an `ArrowSink` `Config` map. `Format` defaults to `stream` for `.arrows` files and to
/// `file` otherwise.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SinkConfig>> {
    let target = Target::read(m, cx, false).filter(|t| t.require_file(m, cx, "Arrow IPC"));
    let by_extension = target
        .as_ref()
        .and_then(|t| t.path.extension())
        .is_some_and(|e| e.eq_ignore_ascii_case("arrows"));
    let layout = m
        .choice(
            cx,
            "Format",
            &[("file", Layout::File), ("stream", Layout::Stream)],
        )
        .unwrap_or(if by_extension {
            Layout::Stream
        } else {
            Layout::File
        });
    Some(Box::new(ArrowSinkConfig {
        target: target?,
        layout,
    }))
}

enum Writer {
    File(FileWriter<BufWriter<Writes<File>>>),
    Stream(StreamWriter<BufWriter<Writes<File>>>),
}

impl SinkConfig for ArrowSinkConfig {
    fn files_written(&self) -> Vec<PathBuf> {
        self.target.files()
    }

    fn space_needed(&self, input_bytes: u64) -> SpaceNeed {
        // Fixed-width values and offsets, uncompressed: somewhat more than the text.
        self.target.space(input_bytes + input_bytes / 2)
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        let staging = self.target.stage(&cx.node)?;
        let invalid = |message: String| BuildError::Invalid {
            node: cx.node.clone(),
            message,
        };
        let file = BufWriter::with_capacity(
            1 << 20,
            staging.handle().map_err(|e| invalid(e.to_string()))?,
        );
        // Batches arrive conformed to `input` (the executor sees to it).
        let schema = input;
        let writer = match self.layout {
            Layout::File => FileWriter::try_new(file, &schema).map(Writer::File),
            Layout::Stream => StreamWriter::try_new(file, &schema).map(Writer::Stream),
        }
        .map_err(|e| invalid(format!("cannot write this schema as Arrow IPC: {e}")))?;
        Ok(BuiltSink::Rows(Box::new(ArrowSink {
            node: cx.node.clone(),
            staging,
            writer: Some(writer),
            rows: 0,
        })))
    }
}

struct ArrowSink {
    node: String,
    staging: Staging,
    writer: Option<Writer>,
    rows: u64,
}

impl ArrowSink {
    fn failed(&self, e: ArrowError) -> RunError {
        match e {
            ArrowError::IoError(_, io) => self.staging.io("write", io),
            other => RunError::Node {
                node: self.node.clone(),
                message: format!("cannot write Arrow IPC: {other}"),
            },
        }
    }
}

impl Sink for ArrowSink {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        let written = match self.writer.as_mut() {
            Some(Writer::File(w)) => w.write(&batch.data),
            Some(Writer::Stream(w)) => w.write(&batch.data),
            None => return Err(RunError::Internal("Arrow sink written after finish".into())),
        };
        written.map_err(|e| self.failed(e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

impl SinkCommon for ArrowSink {
    fn finish(&mut self) -> Result<u64, RunError> {
        let flushed = match self.writer.take() {
            Some(Writer::File(mut w)) => w.finish().and_then(|()| w.into_inner()).map(|_| ()),
            Some(Writer::Stream(mut w)) => w.finish().and_then(|()| w.into_inner()).map(|_| ()),
            None => Ok(()),
        };
        flushed.map_err(|e| self.failed(e))?;
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

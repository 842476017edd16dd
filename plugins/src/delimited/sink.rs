//! `DelimitedSink`: batches to a delimited file, written atomically.
//!
//! Output goes to a temporary file in the target's directory. `finish` flushes and fsyncs it;
//! `commit` renames it over the target and fsyncs the directory. A sink dropped before `commit`
//! (failed or interrupted run) deletes the temporary file, so the target is never half-written.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, BuiltSink, Encode, EncodedSink, NodeCx, Sink, SinkCommon, SinkConfig, SpaceNeed,
};
use flowengine_engine::error::{BuildError, IoError, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

use super::encode::{Encoder, JsonLinesEncoder};
use super::read_dialect;
use crate::compress::{self, Compression};
use crate::encoding::SinkEncoding;
use crate::mapping::{self, Mapping};

pub use crate::staging::OutputMode;
use crate::staging::{Staging, Target};

/// Parsed `DelimitedSink` config.
#[derive(Debug, Clone)]
pub struct DelimitedSinkConfig {
    target: Target,
    delimiter: u8,
    quote: u8,
    include_headers: bool,
    crlf: bool,
    bom: bool,
    mappings: Option<Vec<Mapping>>,
    /// Write JSON Lines instead of delimited text (dead-letter files named `.jsonl`/`.ndjson`).
    json_lines: bool,
    /// `Compression` (by default from the file name: `.gz`, `.zst`).
    compression: Compression,
    /// `Encoding` of the bytes written.
    encoding: SinkEncoding,
}

/// Parse a `DelimitedSink` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SinkConfig>> {
    let target = Target::read(m, cx, true);
    let dialect = read_dialect(m, cx);
    if dialect.is_some_and(|d| d.escape.is_some()) {
        m.invalid(
            cx,
            "Escape",
            "no escape character (the sink doubles quotes, as RFC 4180 says)",
            "an escape character",
        );
    }
    let include_headers = m.bool(cx, "IncludeHeaders").unwrap_or(true);
    let crlf = m
        .choice(cx, "LineEnding", &[("lf", false), ("crlf", true)])
        .unwrap_or(false);
    let bom = m.bool(cx, "Bom").unwrap_or(false);
    let compression = compress::read_sink(m, cx, target.as_ref().map(|t| t.path.as_path()));
    if let Some(t) = &target {
        compress::refuse_compressed_append(m, cx, t, compression);
    }
    let encoding = crate::encoding::read_sink(m, cx);
    if let (Some(enc), Some(t)) = (encoding, &target) {
        if enc != SinkEncoding::Utf8 && t.mode == OutputMode::Append {
            m.invalid(
                cx,
                "OutputMode",
                "`replace` or `create` for an output in another encoding than UTF-8",
                "append",
            );
        }
        if bom && matches!(enc, SinkEncoding::Other(_)) {
            m.invalid(
                cx,
                "Bom",
                "false (a byte-order mark is UTF-8's or UTF-16's; UTF-16 outputs always start with theirs)",
                "true",
            );
        }
    }
    let mappings = mapping::read(m, cx);
    m.legacy(cx, "AppendMode", "use `OutputMode: append`");
    m.legacy(
        cx,
        "OverwriteExisting",
        "use `OutputMode: replace` (the default) or `OutputMode: create`",
    );
    m.legacy(cx, "HasHeaders", "on a sink, write `IncludeHeaders`");
    m.legacy(cx, "CreateDirectory", "use `CreateDirectories`");
    for key in ["BufferSize", "FlushInterval"] {
        m.legacy(
            cx,
            key,
            "FlowEngine sizes and flushes its buffers itself; remove it",
        );
    }
    m.legacy(
        cx,
        "InputSchema",
        "a sink takes the schema of its input; use `ColumnMappings` to select or rename",
    );
    let dialect = dialect?;
    let Some(quote) = dialect.quote else {
        m.invalid(
            cx,
            "Quote",
            "a quote character (the sink must be able to quote values)",
            "\"\"",
        );
        return None;
    };
    Some(Box::new(DelimitedSinkConfig {
        target: target?,
        delimiter: dialect.delimiter,
        quote,
        include_headers,
        crlf,
        bom,
        mappings: mappings?,
        json_lines: false,
        compression,
        encoding: encoding?,
    }))
}

impl SinkConfig for DelimitedSinkConfig {
    fn check_input(&self, input: &SchemaRef) -> Result<(), Vec<PlanError>> {
        mapping::output_columns(self.mappings.as_deref(), input).map(|_| ())
    }

    fn files_written(&self) -> Vec<PathBuf> {
        self.target.files()
    }

    fn space_needed(&self, input_bytes: u64) -> SpaceNeed {
        // Delimited text in, delimited text out: about the input's size; compressed, a quarter.
        let estimated = match self.compression {
            Compression::None => input_bytes,
            _ => input_bytes / 4,
        };
        self.target.space(estimated)
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        let sink = self.open(input, cx)?;
        Ok(BuiltSink::Encoded {
            encoder: compress::encoder(
                crate::encoding::encoder(sink.format.clone(), self.encoding, &cx.node),
                self.compression,
            ),
            sink: Box::new(sink),
        })
    }
}

enum AppendError {
    Io(std::io::Error),
    Header(String),
}

impl DelimitedSinkConfig {
    /// Stage the output and write what comes before the rows (copied file, byte-order mark,
    /// header). Shared by the pipeline's sink, which gets encoded batches, and the dead-letter
    /// writer, which gets rows.
    fn open(&self, input: SchemaRef, cx: &BuildCx) -> Result<DelimitedSink, BuildError> {
        let node = cx.node.clone();
        let io = |action, path: &Path, source| {
            BuildError::from(IoError::new(&node, action, path, source))
        };
        let columns =
            mapping::output_columns(self.mappings.as_deref(), &input).map_err(|errors| {
                BuildError::Invalid {
                    node: node.clone(),
                    message: PlanError::join(&errors),
                }
            })?;
        let encoder = Encoder::new(self.delimiter, self.quote, self.crlf, columns.clone());
        let format = if self.json_lines {
            Format::JsonLines(JsonLinesEncoder::new(columns))
        } else {
            Format::Delimited(Box::new(encoder.clone()))
        };
        let exists = !self.target.stdout && self.target.path.exists();
        let mut staging = self.target.stage(&node)?;
        let mut head = Vec::new();
        let appending = exists && self.target.mode == OutputMode::Append;
        let mut needs_header = self.include_headers && !self.json_lines;
        if appending {
            let file = staging
                .file_mut()
                .map_err(|e| BuildError::from_run(&node, e))?;
            needs_header &= self
                .copy_existing(&encoder, file, &mut head)
                .map_err(|e| match e {
                    AppendError::Io(e) => io("append to", &self.target.path, e),
                    AppendError::Header(message) => BuildError::Invalid {
                        node: node.clone(),
                        message,
                    },
                })?;
        } else if self.bom && self.encoding == SinkEncoding::Utf8 {
            head.extend_from_slice(b"\xEF\xBB\xBF");
        }
        if needs_header {
            encoder.header(&mut head);
        }
        // Compressed, the head is a member of its own (an empty one for an empty file, which is
        // still a valid gzip or zstd file).
        let mut encoded = self.encoding.start().to_vec();
        self.encoding
            .encode(&head, &mut encoded)
            .map_err(|message| BuildError::Invalid {
                node: node.clone(),
                message,
            })?;
        let mut bytes = Vec::new();
        compress::compress(self.compression, &encoded, &mut bytes)
            .map_err(|e| io("write", &self.target.path, e))?;
        staging
            .write_all(&bytes)
            .map_err(|e| BuildError::from_run(&node, e))?;
        Ok(DelimitedSink {
            staging,
            format: Arc::new(format),
            buf: Vec::with_capacity(1 << 20),
            rows: 0,
        })
    }

    /// Copy the existing file into the staging file. Returns whether a header is still needed (the
    /// file was empty). An existing header must match ours: appending must not mix layouts.
    fn copy_existing(
        &self,
        encoder: &Encoder,
        temp: &mut File,
        head: &mut Vec<u8>,
    ) -> Result<bool, AppendError> {
        let mut existing = File::open(&self.target.path).map_err(AppendError::Io)?;
        let len = existing.metadata().map_err(AppendError::Io)?.len();
        if len == 0 {
            // An empty file is written as if new.
            if self.bom {
                head.extend_from_slice(b"\xEF\xBB\xBF");
            }
            return Ok(true);
        }
        if self.include_headers {
            let mut first = Vec::new();
            BufReader::new(&mut existing)
                .read_until(b'\n', &mut first)
                .map_err(AppendError::Io)?;
            let first = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&first);
            let mut ours = Vec::new();
            encoder.header(&mut ours);
            let trim = |s: &[u8]| s.trim_ascii_end().to_vec();
            if trim(first) != trim(&ours) {
                return Err(AppendError::Header(format!(
                    "cannot append to {}: its header is {:?} but this pipeline writes {:?}",
                    self.target.path.display(),
                    String::from_utf8_lossy(&trim(first)),
                    String::from_utf8_lossy(&trim(&ours)),
                )));
            }
        }
        if !crate::staging::copy_existing(&mut existing, temp).map_err(AppendError::Io)? {
            head.extend_from_slice(encoder.line_ending());
        }
        Ok(false)
    }
}

/// How rows become bytes.
enum Format {
    Delimited(Box<Encoder>),
    JsonLines(JsonLinesEncoder),
}

impl Encode for Format {
    fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), RunError> {
        let encoded = match self {
            Format::Delimited(e) => e.encode(batch, out),
            Format::JsonLines(e) => e.encode(batch, out),
        };
        encoded.map_err(|e| RunError::Internal(format!("cannot format a value: {e}")))
    }
}

/// The dead-letter writer: rejects to `path`, as CSV, or as JSON Lines when the extension is
/// `.jsonl` or `.ndjson`. Staged and committed like any sink.
pub fn dead_letter(path: &Path, cx: &BuildCx) -> Result<Box<dyn Sink>, BuildError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let config = DelimitedSinkConfig {
        target: Target {
            path: path.to_path_buf(),
            mode: OutputMode::Replace,
            create_directories: true,
            appends: true,
            stdout: false,
            backup: false,
        },
        delimiter: b',',
        quote: b'"',
        include_headers: true,
        crlf: false,
        bom: false,
        mappings: None,
        json_lines: matches!(ext.as_deref(), Some("jsonl" | "ndjson")),
        compression: Compression::None,
        encoding: SinkEncoding::Utf8,
    };
    let sink = config.open(flowengine_engine::reject::reject_schema(), cx)?;
    Ok(Box::new(sink))
}

/// A running `DelimitedSink`.
struct DelimitedSink {
    staging: Staging,
    format: Arc<Format>,
    buf: Vec<u8>,
    rows: u64,
}

/// Rows are encoded here, on the dead-letter thread; a pipeline's sink gets them already encoded
/// on the workers ([`EncodedSink`]).
impl Sink for DelimitedSink {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        self.buf.clear();
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.format.encode(&batch.data, &mut buf);
        let result = result.and_then(|()| self.write_encoded(batch.num_rows() as u64, &buf));
        self.buf = buf;
        result
    }
}

impl EncodedSink for DelimitedSink {
    fn write_encoded(&mut self, rows: u64, bytes: &[u8]) -> Result<(), RunError> {
        self.staging.write_all(bytes)?;
        self.rows += rows;
        Ok(())
    }
}

impl SinkCommon for DelimitedSink {
    fn finish(&mut self) -> Result<u64, RunError> {
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

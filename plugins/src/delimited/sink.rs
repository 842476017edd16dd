//! `DelimitedSink`: batches to a delimited file, written atomically.
//!
//! Output goes to a temporary file in the target's directory. `finish` flushes and fsyncs it;
//! `commit` renames it over the target and fsyncs the directory. A sink dropped before `commit`
//! (failed or interrupted run) deletes the temporary file, so the target is never half-written.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltSink, Encode, EncodedSink, NodeCx, Sink, SinkCommon, SinkConfig,
};
use flowengine_engine::datefmt;
use flowengine_engine::error::{BuildError, IoError, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::load::yaml::Mark;
use flowengine_engine::Batch;

use super::encode::{Encoder, JsonLinesEncoder, OutputColumn};
use super::read_dialect;

pub use crate::staging::OutputMode;
use crate::staging::{Staging, Target};

#[derive(Debug, Clone)]
struct Mapping {
    source: String,
    output: String,
    format: Option<String>,
    /// Where `SourceColumn` and `Format` were written (YAML path and position), for the errors
    /// found once the input schema is known.
    source_at: (String, Mark),
    format_at: (String, Mark),
}

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
    super::check_encoding(m, cx);
    let mappings = read_mappings(m, cx);
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
    }))
}

/// `None` on error; `Some(None)` when there are no mappings.
fn read_mappings(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Option<Vec<Mapping>>> {
    let Some(items) = m.list(cx, "ColumnMappings") else {
        return Some(None);
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (path, node) in items {
        let Some(mut e) = MapReader::new(node, path, cx) else {
            ok = false;
            continue;
        };
        let at = |key| (e.key_path(key), e.entry_mark(key));
        let (source_at, format_at) = (at("SourceColumn"), at("Format"));
        let source = e.required_string(cx, "SourceColumn");
        let output = e.string(cx, "OutputColumn");
        let format = e.string(cx, "Format").and_then(|f| {
            match datefmt::to_strftime(&f).and_then(|p| datefmt::validate_strftime(&p).map(|()| p))
            {
                Ok(p) => Some(p),
                Err(err) => {
                    e.invalid(
                        cx,
                        "Format",
                        "a date format such as `yyyy-MM-dd` or `%Y-%m-%d`",
                        &format!("{f:?} ({err})"),
                    );
                    None
                }
            }
        });
        e.finish(cx);
        match source {
            Some(source) => out.push(Mapping {
                output: output.unwrap_or_else(|| source.clone()),
                source,
                format,
                source_at,
                format_at,
            }),
            None => ok = false,
        }
    }
    ok.then_some(Some(out))
}

impl DelimitedSinkConfig {
    fn output_columns(&self, input: &SchemaRef) -> Result<Vec<OutputColumn>, Vec<PlanError>> {
        let Some(mappings) = &self.mappings else {
            return Ok(input
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| OutputColumn {
                    input: i,
                    name: f.name().clone(),
                    format: None,
                })
                .collect());
        };
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        let columns = mappings
            .iter()
            .map(|mp| {
                let at = |(path, mark): &(String, Mark), message| {
                    PlanError::at(path, Some(*mark), message)
                };
                let i = names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(&mp.source))
                    .ok_or_else(|| {
                        at(&mp.source_at, format!(
                            "`ColumnMappings` names `{}`, which is not an input column; input columns are: {}",
                            mp.source,
                            names.join(", ")
                        ))
                    })?;
                let ty = input.field(i).data_type();
                if mp.format.is_some() && !matches!(ty, DataType::Date32 | DataType::Timestamp(..)) {
                    return Err(at(&mp.format_at, format!(
                        "`Format` on column `{}` applies only to date and datetime columns, not {ty}",
                        mp.source
                    )));
                }
                if let Some(format) = &mp.format {
                    check_format(ty, format).map_err(|_| {
                        at(&mp.format_at, format!(
                            "`Format: {format}` cannot format column `{}` ({ty}): it asks for parts the values do not have, such as a time of day on a date, or an offset on a datetime without `TimeZone`",
                            mp.source
                        ))
                    })?;
                }
                Ok(OutputColumn {
                    input: i,
                    name: mp.output.clone(),
                    format: mp.format.clone(),
                })
            })
            .collect::<Vec<_>>();
        // Report every bad mapping at once, not the first.
        let problems: Vec<PlanError> = columns
            .iter()
            .filter_map(|c| c.as_ref().err().cloned())
            .collect();
        if problems.is_empty() {
            Ok(columns.into_iter().flatten().collect())
        } else {
            Err(problems)
        }
    }
}

/// Format one sample value of type `ty` with `format`, exactly as a run would, so a pattern the
/// type cannot fill (an hour on a date, an offset on a zone-less datetime) fails at plan time.
fn check_format(ty: &DataType, format: &str) -> Result<(), String> {
    use arrow_array::{ArrayRef, Date32Array, TimestampMicrosecondArray};
    let sample: ArrayRef = match ty {
        DataType::Date32 => Arc::new(Date32Array::from(vec![19_753])),
        DataType::Timestamp(_, tz) => Arc::new(
            TimestampMicrosecondArray::from(vec![1_706_708_700_000_000])
                .with_timezone_opt(tz.clone()),
        ),
        _ => return Ok(()),
    };
    let columns = vec![OutputColumn {
        input: 0,
        name: "sample".into(),
        format: Some(format.to_string()),
    }];
    let batch = RecordBatch::try_from_iter([("sample", sample)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    Encoder::new(b',', b'"', false, columns)
        .encode(&batch, &mut out)
        .map_err(|e| e.to_string())
}

impl SinkConfig for DelimitedSinkConfig {
    fn check_input(&self, input: &SchemaRef) -> Result<(), Vec<PlanError>> {
        self.output_columns(input).map(|_| ())
    }

    fn files_written(&self) -> Vec<PathBuf> {
        vec![self.target.path.clone()]
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        let sink = self.open(input, cx)?;
        Ok(BuiltSink::Encoded {
            encoder: sink.format.clone(),
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
        let columns = self
            .output_columns(&input)
            .map_err(|errors| BuildError::Invalid {
                node: node.clone(),
                message: PlanError::join(&errors),
            })?;
        let encoder = Encoder::new(self.delimiter, self.quote, self.crlf, columns.clone());
        let format = if self.json_lines {
            Format::JsonLines(JsonLinesEncoder::new(columns))
        } else {
            Format::Delimited(Box::new(encoder.clone()))
        };
        let exists = self.target.path.exists();
        let mut staging = self.target.stage(&node)?;
        let temp_path = staging.temp_path().to_path_buf();
        let file = staging.file_mut().map_err(|e| BuildError::Invalid {
            node: node.clone(),
            message: e.to_string(),
        })?;
        let mut head = Vec::new();
        let appending = exists && self.target.mode == OutputMode::Append;
        let mut needs_header = self.include_headers && !self.json_lines;
        if appending {
            needs_header &= self
                .copy_existing(&encoder, file, &mut head)
                .map_err(|e| match e {
                    AppendError::Io(e) => io("append to", &self.target.path, e),
                    AppendError::Header(message) => BuildError::Invalid {
                        node: node.clone(),
                        message,
                    },
                })?;
        } else if self.bom {
            head.extend_from_slice(b"\xEF\xBB\xBF");
        }
        if needs_header {
            encoder.header(&mut head);
        }
        file.write_all(&head)
            .map_err(|e| io("write", &temp_path, e))?;
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
            existing.seek(SeekFrom::Start(0)).map_err(AppendError::Io)?;
        }
        std::io::copy(&mut existing, temp).map_err(AppendError::Io)?;
        let mut last = [0u8];
        existing
            .seek(SeekFrom::Start(len - 1))
            .map_err(AppendError::Io)?;
        existing.read_exact(&mut last).map_err(AppendError::Io)?;
        if last[0] != b'\n' {
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
        },
        delimiter: b',',
        quote: b'"',
        include_headers: true,
        crlf: false,
        bom: false,
        mappings: None,
        json_lines: matches!(ext.as_deref(), Some("jsonl" | "ndjson")),
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
}

//! `DelimitedSource`: a CSV/TSV/PSV file decoded into typed Arrow batches.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use flowengine_engine::component::{BuildCx, NodeCx, Pending, Source, SourceConfig};
use flowengine_engine::config::{ConfigCx, MapReader};
use flowengine_engine::error::{BuildError, ColumnRef, RowError, RowErrorKind, RunError, Stage};
use flowengine_engine::schema::{self, ColumnSpec};
use flowengine_engine::Batch;

use super::convert::{self, ColumnReader};
use super::decode::{Checks, Decoder, Dialect, Ragged, Records};
use super::read_dialect;

/// Bytes read from the file at a time.
const READ_SIZE: usize = 1 << 20;

/// Parsed `DelimitedSource` config.
#[derive(Debug, Clone)]
pub struct DelimitedSourceConfig {
    path: PathBuf,
    /// The path as written (after substitution), for messages.
    label: Arc<str>,
    dialect: Dialect,
    has_headers: bool,
    skip_rows: u64,
    trim: bool,
    checks: Checks,
    chunk_size: usize,
    columns: Vec<ColumnSpec>,
    schema: SchemaRef,
}

/// Parse a `DelimitedSource` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    let label = m.required_string(cx, "FilePath");
    let path = label.as_deref().map(|l| cx.resolve_path(l));
    let dialect = read_dialect(m, cx);
    let has_headers = m.bool(cx, "HasHeaders").unwrap_or(true);
    let skip_rows = m.integer(cx, "SkipRows", 0, u32::MAX as u64).unwrap_or(0);
    let trim = m.bool(cx, "Trim").unwrap_or(false);
    let ragged = m
        .choice(
            cx,
            "RaggedRows",
            &[
                ("error", Ragged::Error),
                ("pad-null", Ragged::PadNull),
                ("truncate", Ragged::Truncate),
            ],
        )
        .unwrap_or_default();
    let strict_quotes = m
        .choice(cx, "Quoting", &[("strict", true), ("lenient", false)])
        .unwrap_or(true);
    let max_record_bytes = m
        .integer(cx, "MaxRecordBytes", 1024, 1 << 30)
        .map_or(Checks::default().max_record_bytes, |n| n as usize);
    let chunk_size = m
        .integer(cx, "ChunkSize", 1, 1 << 20)
        .map_or(node.chunk_size, |n| n as usize);
    super::check_encoding(m, cx);
    m.legacy(
        cx,
        "InferSchema",
        "schemas are never guessed; declare `OutputSchema.Columns`",
    );
    m.legacy(
        cx,
        "InferenceSampleRows",
        "schemas are never guessed; declare `OutputSchema.Columns`",
    );
    m.legacy(cx, "SkipMalformedRows", "use `ErrorHandling: skip-row`");
    m.legacy(
        cx,
        "MaxErrors",
        "the cap on rejects is pipeline-wide: set `Pipeline.Settings.MaxErrors`",
    );
    let columns = match m.map(cx, "OutputSchema") {
        Some(mut s) => {
            let mark = s.mark();
            s.take("Name");
            s.take("Description");
            let list_path = s.key_path("Columns");
            let columns = match s.list(cx, "Columns") {
                Some(items) => schema::read_columns(&items, &list_path, mark, cx),
                None => {
                    s.missing(cx, "Columns");
                    None
                }
            };
            s.finish(cx);
            columns
        }
        None => {
            let hint = "declare every column, e.g. `OutputSchema: { Columns: [ { Name: id, Type: int64 } ] }`";
            let kind = flowengine_engine::error::ConfigErrorKind::MissingKey("OutputSchema".into());
            cx.error_with_hint(kind, m.path(), m.mark(), hint);
            None
        }
    }?;
    let schema = schema::to_schema(&columns);
    Some(Box::new(DelimitedSourceConfig {
        path: path?,
        label: label?.into(),
        dialect: dialect?,
        has_headers,
        skip_rows,
        trim,
        checks: Checks {
            strict_quotes,
            width: None,
            ragged,
            max_record_bytes,
        },
        chunk_size,
        columns,
        schema,
    }))
}

impl SourceConfig for DelimitedSourceConfig {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn files_read(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn build(&self, cx: &BuildCx) -> Result<Box<dyn Source>, BuildError> {
        let io_err = |action, source| BuildError::Io {
            node: cx.node.clone(),
            action,
            path: self.path.clone(),
            source,
        };
        let invalid = |message: String| BuildError::Invalid {
            node: cx.node.clone(),
            message: format!("{}: {message}", self.label),
        };
        let file = File::open(&self.path).map_err(|e| io_err("open", e))?;
        let mut input = Input::new(file, self.dialect, self.checks, self.skip_rows)
            .map_err(|e| io_err("read", e))?;
        let header = if self.has_headers {
            let mut records = Records::default();
            input.read(&mut records, 1).map_err(|e| io_err("read", e))?;
            if let Some(Some(problem)) = records.problems.first() {
                let line = records.lines[0];
                return Err(invalid(format!(
                    "the header (line {line}) is malformed: {}",
                    problem.message
                )));
            }
            Some(records)
        } else {
            None
        };
        let (columns, width) = self.plan_columns(header.as_ref()).map_err(invalid)?;
        input.decoder.set_width(width);
        Ok(Box::new(DelimitedSource {
            shape: Arc::new(Shape {
                node: cx.node.clone(),
                label: self.label.clone(),
                dialect: self.dialect,
                columns,
                schema: self.schema.clone(),
            }),
            path: self.path.clone(),
            chunk_size: self.chunk_size,
            input,
            ordinal: u64::from(self.has_headers),
            widths_checked: false,
        }))
    }
}

impl DelimitedSourceConfig {
    /// Map declared columns to record fields and check them against the header.
    fn plan_columns(
        &self,
        header: Option<&Records>,
    ) -> Result<(Vec<ColumnReader>, Option<usize>), String> {
        let explicit = self.columns.iter().any(|c| c.index.is_some());
        let readers: Vec<ColumnReader> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnReader {
                name: c.name.clone(),
                ty: c.ty.clone(),
                nullable: c.nullable,
                format: c.format.clone(),
                field: c.index.unwrap_or(i),
                trim: self.trim,
            })
            .collect();
        let Some(header) = header else {
            return Ok((readers, (!explicit).then_some(self.columns.len())));
        };
        if header.is_empty() {
            return Err("the file is empty, but `HasHeaders: true` expects a header line".into());
        }
        let names: Vec<String> = (0..header.field_count(0))
            .map(|k| {
                let raw = header.field(0, k).unwrap_or_default();
                String::from_utf8_lossy(raw).trim().to_string()
            })
            .collect();
        if !explicit && names.len() != readers.len() {
            return Err(format!(
                "the header has {} columns ({}) but `OutputSchema` declares {}; declare every column, or give `Index` to pick columns by position",
                names.len(),
                names.join(", "),
                readers.len()
            ));
        }
        for r in &readers {
            match names.get(r.field) {
                None => {
                    return Err(format!(
                        "column `{}` has Index {} but the header has only {} columns",
                        r.name,
                        r.field,
                        names.len()
                    ))
                }
                Some(h) if !h.eq_ignore_ascii_case(&r.name) => {
                    return Err(format!(
                        "header column {} is `{h}` but the schema expects `{}` there; rename the column in the schema or set its `Index`",
                        r.field + 1,
                        r.name
                    ))
                }
                Some(_) => {}
            }
        }
        Ok((readers, Some(names.len())))
    }
}

/// Bytes from a file, fed to a [`Decoder`].
struct Input {
    file: File,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    decoder: Decoder,
}

impl Input {
    /// Open, skip a UTF-8 byte-order mark and `skip_rows` physical lines.
    fn new(file: File, dialect: Dialect, checks: Checks, skip_rows: u64) -> std::io::Result<Self> {
        let mut input = Self {
            file,
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            eof: false,
            decoder: Decoder::new(dialect, checks, 1, 0),
        };
        input.fill()?;
        if input.buf[..input.end].starts_with(b"\xEF\xBB\xBF") {
            input.start = 3;
        }
        let mut line = 1;
        let mut offset = input.start as u64;
        while line <= skip_rows {
            let unread = &input.buf[input.start..input.end];
            // A line ends at `\n`, `\r\n` or a lone `\r`; a `\r` at the end of the buffer waits
            // for the next byte to tell which.
            match memchr::memchr2(b'\n', b'\r', unread) {
                Some(i) if unread[i] == b'\r' && i + 1 == unread.len() && !input.eof => {
                    input.fill()?
                }
                Some(i) => {
                    let crlf = unread[i] == b'\r' && unread.get(i + 1) == Some(&b'\n');
                    let used = i + 1 + usize::from(crlf);
                    input.start += used;
                    offset += used as u64;
                    line += 1;
                }
                None => {
                    offset += unread.len() as u64;
                    input.start = input.end;
                    if input.eof {
                        break;
                    }
                    input.fill()?;
                }
            }
        }
        input.decoder = Decoder::new(dialect, checks, line, offset);
        Ok(input)
    }

    /// Move unread bytes to the front and read more after them.
    fn fill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decode until `records` holds `limit` records or the file ends.
    fn read(&mut self, records: &mut Records, limit: usize) -> std::io::Result<()> {
        loop {
            let input = &self.buf[self.start..self.end];
            self.start += self.decoder.decode(input, self.eof, records, limit);
            if records.is_full(limit) || self.decoder.is_done() {
                return Ok(());
            }
            self.fill()?;
        }
    }
}

/// What every batch of a source shares: names for messages, and how to convert columns.
struct Shape {
    node: String,
    label: Arc<str>,
    dialect: Dialect,
    columns: Vec<ColumnReader>,
    schema: SchemaRef,
}

/// A running `DelimitedSource`. Splitting bytes into records is sequential (quote state and line
/// numbers run through the whole file); converting a batch of records is not, so each batch of
/// records is handed off as a [`Chunk`] for the executor to finish on its workers.
struct DelimitedSource {
    shape: Arc<Shape>,
    path: PathBuf,
    chunk_size: usize,
    input: Input,
    /// Records read before the next chunk (the header counts).
    ordinal: u64,
    /// Whether the columns' `Index`es were checked against the record width.
    widths_checked: bool,
}

impl DelimitedSource {
    /// Without a header, the width comes from the first record: check that every `Index` fits.
    fn check_indexes(&mut self) -> Result<(), RunError> {
        // Without a header, the width is known once a record with sound quoting was read.
        let Some(width) = self.input.decoder.width() else {
            return Ok(());
        };
        self.widths_checked = true;
        match self.shape.columns.iter().find(|c| c.field >= width) {
            Some(c) => Err(RunError::Node {
                node: self.shape.node.clone(),
                message: format!(
                    "{}: column `{}` reads field {} (Index {}), but records have {width} fields",
                    self.shape.label,
                    c.name,
                    c.field + 1,
                    c.field
                ),
            }),
            None => Ok(()),
        }
    }
}

impl Source for DelimitedSource {
    fn next_batch(&mut self, rejects: &mut Vec<RowError>) -> Result<Option<Batch>, RunError> {
        self.next_pending()?
            .map(|chunk| chunk.finish(rejects))
            .transpose()
    }

    fn defers(&self) -> bool {
        true
    }

    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        let mut records = Records::default();
        self.input
            .read(&mut records, self.chunk_size)
            .map_err(|source| RunError::Io {
                node: self.shape.node.clone(),
                action: "read",
                path: self.path.clone(),
                source,
            })?;
        if records.is_empty() {
            return Ok(None);
        }
        if !self.widths_checked {
            self.check_indexes()?;
        }
        let ordinal = self.ordinal;
        self.ordinal += records.len() as u64;
        Ok(Some(Box::new(Chunk {
            shape: self.shape.clone(),
            records,
            ordinal,
        })))
    }
}

/// Records split from the file, waiting to become a typed batch.
struct Chunk {
    shape: Arc<Shape>,
    records: Records,
    /// Records read before this chunk (the header counts).
    ordinal: u64,
}

impl Chunk {
    fn reject(
        &self,
        r: usize,
        kind: RowErrorKind,
        stage: Stage,
        message: String,
        hint: String,
    ) -> RowError {
        RowError {
            node: self.shape.node.clone(),
            stage,
            kind,
            file: Some(self.shape.label.clone()),
            line: Some(self.records.lines[r]),
            record: Some(self.ordinal + r as u64 + 1),
            byte_offset: Some(self.records.offsets[r]),
            column: None,
            value: None,
            message,
            hint: Some(hint),
            raw: Some(self.records.raw(r).to_vec()),
        }
    }

    fn convert_reject(&self, e: convert::ConvertError) -> RowError {
        let col = &self.shape.columns[e.column];
        let stage = match e.kind {
            RowErrorKind::TypeConversion | RowErrorKind::NullInRequired => Stage::Convert,
            _ => Stage::Parse,
        };
        let mut reject = RowError {
            column: Some(ColumnRef {
                name: col.name.clone(),
                index: col.field,
            }),
            value: (e.kind != RowErrorKind::NullInRequired).then_some(e.value),
            ..self.reject(e.record, e.kind, stage, e.message, e.hint)
        };
        if e.kind == RowErrorKind::InvalidUtf8 {
            // Point at the first bad byte of this column's field, not just at the record.
            let raw = self.records.raw(e.record);
            let span = super::decode::field_span(raw, col.field, self.shape.dialect);
            let in_field = std::str::from_utf8(&raw[span.clone()])
                .err()
                .map_or(0, |u| u.valid_up_to());
            let bad = span.start + in_field;
            reject.byte_offset = Some(self.records.offsets[e.record] + bad as u64);
            reject.line =
                Some(self.records.lines[e.record] + super::decode::line_breaks(&raw[..bad]));
        }
        reject
    }

    fn structural_reject(&self, r: usize, p: &super::decode::Problem) -> RowError {
        let raw = String::from_utf8_lossy(self.records.raw(r));
        RowError {
            value: Some(raw.trim_end_matches(['\r', '\n']).to_string()),
            ..self.reject(r, p.kind, Stage::Parse, p.message.clone(), p.hint.clone())
        }
    }
}

impl Pending for Chunk {
    fn finish(mut self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let n = self.records.len();
        let refused: Vec<bool> = self.records.problems.iter().map(Option::is_some).collect();
        let (arrays, errors) = convert::convert(&self.records, &self.shape.columns, &refused);

        // One reject per bad record, in record order: its structural problem, else its first bad value.
        let mut errors = errors.into_iter().peekable();
        let keep: Vec<bool> = (0..n)
            .map(|r| {
                let mut reject = self.records.problems[r]
                    .as_ref()
                    .map(|p| self.structural_reject(r, p));
                while let Some(e) = errors.next_if(|e| e.record == r) {
                    if reject.is_none() {
                        reject = Some(self.convert_reject(e));
                    }
                }
                rejects.extend(reject.as_ref().cloned());
                reject.is_none()
            })
            .collect();
        let lines = UInt64Array::from(std::mem::take(&mut self.records.lines));
        let (arrays, lines) = if keep.iter().all(|&k| k) {
            (arrays, lines)
        } else {
            let mask = BooleanArray::from(keep);
            let filter = |a: &dyn Array| arrow_select::filter::filter(a, &mask);
            let arrays = arrays
                .iter()
                .map(|a| filter(a.as_ref()))
                .collect::<Result<Vec<_>, _>>();
            match (arrays, filter(&lines)) {
                (Ok(a), Ok(l)) => (a, UInt64Array::from(l.to_data())),
                (Err(e), _) | (_, Err(e)) => {
                    return Err(RunError::Internal(format!("filtering rejected rows: {e}")))
                }
            }
        };
        let data = RecordBatch::try_new(self.shape.schema.clone(), arrays).map_err(|e| {
            RunError::Internal(format!("decoded columns do not match the schema: {e}"))
        })?;
        Ok(Batch::new(data, Some(self.shape.label.clone()), lines))
    }
}

//! `DelimitedSource`: a CSV/TSV/PSV file decoded into typed Arrow batches.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use flowengine_engine::component::{BuildCx, NodeCx, Source, SourceConfig};
use flowengine_engine::config::{ConfigCx, MapReader};
use flowengine_engine::error::{BuildError, ColumnRef, RowError, RowErrorKind, RunError, Stage};
use flowengine_engine::schema::{self, ColumnSpec};
use flowengine_engine::Batch;

use super::convert::{self, ColumnReader};
use super::decode::{Decoder, Dialect, Records, UnterminatedQuote};
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
    for key in ["SkipMalformedRows", "MaxErrors"] {
        m.legacy(
            cx,
            key,
            "error policies are not implemented yet; every bad row ends the run with an error naming its file, line and column",
        );
    }
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
        let file = File::open(&self.path).map_err(|e| io_err("open", e))?;
        let mut input =
            Input::new(file, self.dialect, self.skip_rows).map_err(|e| io_err("read", e))?;
        let mut source = DelimitedSource {
            node: cx.node.clone(),
            label: self.label.clone(),
            path: self.path.clone(),
            columns: Vec::new(),
            schema: self.schema.clone(),
            chunk_size: self.chunk_size,
            width: None,
            input: Input::empty(self.dialect),
            records: Records::default(),
            ordinal: 0,
        };
        let header = if self.has_headers {
            let mut records = Records::default();
            input
                .read(&mut records, 1)
                .map_err(|e| source.read_error(e, true))
                .map_err(|e| BuildError::Invalid {
                    node: cx.node.clone(),
                    message: e.to_string(),
                })?;
            source.ordinal = records.len() as u64;
            Some(records)
        } else {
            None
        };
        source.input = input;
        let (columns, width) =
            self.plan_columns(header.as_ref())
                .map_err(|message| BuildError::Invalid {
                    node: cx.node.clone(),
                    message: format!("{}: {message}", self.label),
                })?;
        source.columns = columns;
        source.width = width;
        Ok(Box::new(source))
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
    file: Option<File>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    decoder: Decoder,
}

/// Why records could not be read.
enum ReadError {
    Io(std::io::Error),
    Unterminated(UnterminatedQuote),
}

impl Input {
    fn empty(dialect: Dialect) -> Self {
        Self {
            file: None,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: true,
            decoder: Decoder::new(dialect, 1, 0),
        }
    }

    /// Open, skip a UTF-8 byte-order mark and `skip_rows` physical lines.
    fn new(file: File, dialect: Dialect, skip_rows: u64) -> std::io::Result<Self> {
        let mut input = Self {
            file: Some(file),
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            eof: false,
            decoder: Decoder::new(dialect, 1, 0),
        };
        input.fill()?;
        if input.buf[..input.end].starts_with(b"\xEF\xBB\xBF") {
            input.start = 3;
        }
        let mut line = 1;
        let mut offset = input.start as u64;
        while line <= skip_rows {
            match memchr::memchr(b'\n', &input.buf[input.start..input.end]) {
                Some(i) => {
                    input.start += i + 1;
                    offset += i as u64 + 1;
                    line += 1;
                }
                None if input.eof => {
                    offset += (input.end - input.start) as u64;
                    input.start = input.end;
                    break;
                }
                None => {
                    offset += (input.end - input.start) as u64;
                    input.start = input.end;
                    input.fill()?;
                }
            }
        }
        input.decoder = Decoder::new(dialect, line, offset);
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
        let Some(file) = self.file.as_mut() else {
            self.eof = true;
            return Ok(());
        };
        loop {
            match file.read(&mut self.buf[self.end..]) {
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
    fn read(&mut self, records: &mut Records, limit: usize) -> Result<(), ReadError> {
        loop {
            let consumed = self
                .decoder
                .decode(&self.buf[self.start..self.end], self.eof, records, limit)
                .map_err(ReadError::Unterminated)?;
            self.start += consumed;
            if records.len() >= limit || self.decoder.is_done() {
                return Ok(());
            }
            self.fill().map_err(ReadError::Io)?;
        }
    }
}

/// A running `DelimitedSource`.
struct DelimitedSource {
    node: String,
    label: Arc<str>,
    path: PathBuf,
    columns: Vec<ColumnReader>,
    schema: SchemaRef,
    chunk_size: usize,
    /// Fields every record must have; `None` until the first record when it cannot be known earlier.
    width: Option<usize>,
    input: Input,
    records: Records,
    /// Records read so far (the header counts).
    ordinal: u64,
}

impl DelimitedSource {
    fn row_error(&self, r: usize, kind: RowErrorKind, stage: Stage) -> RowError {
        RowError {
            node: self.node.clone(),
            stage,
            kind,
            file: Some(self.label.clone()),
            line: self.records.lines.get(r).copied(),
            record: (r < self.records.len()).then(|| self.ordinal + r as u64 + 1),
            byte_offset: self.records.offsets.get(r).copied(),
            column: None,
            value: None,
            message: String::new(),
            hint: None,
        }
    }

    fn read_error(&self, e: ReadError, _header: bool) -> RunError {
        match e {
            ReadError::Io(source) => RunError::Io {
                node: self.node.clone(),
                action: "read",
                path: self.path.clone(),
                source,
            },
            ReadError::Unterminated(u) => RowError {
                line: Some(u.line),
                byte_offset: Some(u.offset),
                record: None,
                message: "a quoted field is never closed before the end of the file".into(),
                hint: Some(
                    "look for a stray quote on this line; a quote inside a field must be doubled (\"\")".into(),
                ),
                ..self.row_error(usize::MAX, RowErrorKind::UnterminatedQuote, Stage::Parse)
            }
            .into(),
        }
    }

    fn check_widths(&mut self) -> Result<(), RunError> {
        let width = *self
            .width
            .get_or_insert_with(|| self.records.field_count(0));
        for r in 0..self.records.len() {
            let n = self.records.field_count(r);
            if n == width {
                continue;
            }
            let kind = if n > width {
                RowErrorKind::TooManyFields
            } else {
                RowErrorKind::TooFewFields
            };
            let line = self.records.lines[r];
            let raw = String::from_utf8_lossy(self.records.raw(r));
            let hint = if n > width {
                "an unquoted delimiter in a value? quote values that contain the delimiter"
            } else {
                "a missing delimiter, or a line break inside an unquoted value?"
            };
            return Err(RowError {
                value: Some(raw.trim_end_matches(['\r', '\n']).to_string()),
                message: format!("expected {width} fields, found {n}"),
                hint: Some(format!(
                    "records have {width} fields; line {line} has {n}: {hint}"
                )),
                ..self.row_error(r, kind, Stage::Parse)
            }
            .into());
        }
        Ok(())
    }

    fn convert_error(&self, e: convert::ConvertError) -> RunError {
        let col = &self.columns[e.column];
        let stage = match e.kind {
            RowErrorKind::TypeConversion | RowErrorKind::NullInRequired => Stage::Convert,
            _ => Stage::Parse,
        };
        let mut err = RowError {
            column: Some(ColumnRef {
                name: col.name.clone(),
                index: col.field,
            }),
            value: (e.kind != RowErrorKind::NullInRequired).then_some(e.value),
            message: e.message,
            hint: Some(e.hint),
            ..self.row_error(e.record, e.kind, stage)
        };
        if e.kind == RowErrorKind::InvalidUtf8 {
            // Point at the first bad byte, not just the record.
            let raw = self.records.raw(e.record);
            let bad = std::str::from_utf8(raw)
                .err()
                .map_or(0, |u| u.valid_up_to());
            err.byte_offset = Some(self.records.offsets[e.record] + bad as u64);
            err.line = Some(
                self.records.lines[e.record]
                    + memchr::memchr_iter(b'\n', &raw[..bad]).count() as u64,
            );
        }
        err.into()
    }
}

impl Source for DelimitedSource {
    fn next_batch(&mut self) -> Result<Option<Batch>, RunError> {
        self.records.clear();
        let mut records = std::mem::take(&mut self.records);
        let read = self.input.read(&mut records, self.chunk_size);
        self.records = records;
        if let Err(e) = read {
            return Err(self.read_error(e, false));
        }
        if self.records.is_empty() {
            return Ok(None);
        }
        self.check_widths()?;
        let arrays =
            convert::convert(&self.records, &self.columns).map_err(|e| self.convert_error(e))?;
        let data = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| {
            RunError::Internal(format!("decoded columns do not match the schema: {e}"))
        })?;
        let lines = UInt64Array::from(self.records.lines.clone());
        self.ordinal += self.records.len() as u64;
        Ok(Some(Batch::new(data, Some(self.label.clone()), lines)))
    }
}

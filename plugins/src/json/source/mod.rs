//! `JsonLinesSource`: one JSON object per line, decoded into the declared schema.
//!
//! The node thread cuts the file into pieces of whole lines (a JSON string cannot hold a raw line
//! break, so every line break ends a line); workers decode the pieces, in order kept. A piece is
//! decoded line by line (`text.rs`, serde_json into borrowed raw values): each declared key's
//! value becomes its text (a string unescaped, a number as written, a nested object
//! or array as compact JSON) with its JSON kind. The text then goes through the same converters as
//! `DelimitedSource` fields (`delimited::convert`), so a date with a `Format`, an exact decimal or
//! a bad value is read, and rejected, exactly as in a CSV file.
//!
//! Bad lines are rejects naming file, line, byte offset, key and value: a line that is not one
//! JSON object, a key the schema does not declare (`UnknownKeys: reject`), a nested value or an
//! empty string in a column that is not a string, a missing key or `null` in a non-nullable column,
//! a value its column's type cannot read. Blank lines are skipped and counted.

mod text;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StructArray, UInt64Array};
use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, BuiltSource, DeferringSource, NodeCx, Pending, SourceCommon, SourceConfig,
};
use flowengine_engine::error::{
    BuildError, ColumnRef, IoError, RowError, RowErrorKind, RunError, Stage,
};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::schema::{self, ColumnSpec, ColumnType};
use flowengine_engine::Batch;

use crate::compress::{self, Compression};
use crate::delimited::convert::{self, ColumnReader, ConvertError, Take};
use crate::delimited::decode::{Problem, RecordSet};
use crate::files::{self, InputFile};
use text::Kind;

/// Bytes read from the file at a time.
const READ_SIZE: usize = 1 << 20;

/// Parsed `JsonLinesSource` config.
#[derive(Debug, Clone)]
pub struct JsonLinesSourceConfig {
    /// `FilePath`: one file, `-` (standard input), or the files of globs and lists, in order.
    files: files::Inputs,
    /// How the bytes become UTF-8 (`Encoding`, `InvalidBytes`).
    encoding: crate::encoding::SourceEncoding,
    /// `Compression`, if not `auto`.
    compression: Option<Compression>,
    columns: Vec<ColumnSpec>,
    /// The declared columns.
    schema: SchemaRef,
    /// What the source emits: the declared columns, then the file-name column if any.
    output: SchemaRef,
    chunk_size: usize,
    unknown_keys_rejected: bool,
}

/// Parse a `JsonLinesSource` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    let files = files::Inputs::read(m, cx);
    let compression = compress::read_source(m, cx);
    let chunk_size = m
        .integer(cx, "ChunkSize", 1, 1 << 20)
        .map_or(node.chunk_size, |n| n as usize);
    let unknown_keys_rejected = m
        .choice(cx, "UnknownKeys", &[("ignore", false), ("reject", true)])
        .unwrap_or(false);
    let encoding = crate::encoding::read_source(m, cx);
    let columns = schema::read_output_schema(m, cx, "key to read")?;
    if let Some(c) = columns.iter().find(|c| c.index.is_some()) {
        let message = format!(
            "column `{}` has an `Index`: JSON Lines values are found by key, not position; remove it",
            c.name
        );
        cx.error(
            flowengine_engine::error::ConfigErrorKind::Graph(message),
            m.path(),
            m.mark(),
        );
        return None;
    }
    let schema = schema::to_schema(&columns);
    let files = files?;
    let output = files.schema(schema.clone(), m, cx)?;
    Some(Box::new(JsonLinesSourceConfig {
        files,
        encoding: encoding?,
        compression,
        schema,
        output,
        columns,
        chunk_size,
        unknown_keys_rejected,
    }))
}

impl SourceConfig for JsonLinesSourceConfig {
    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    fn files_read(&self) -> Vec<PathBuf> {
        self.files.paths()
    }

    fn build(&self, cx: &BuildCx) -> Result<BuiltSource, BuildError> {
        files::build(self, &self.files, self.output.clone(), cx, Self::open_file)
    }

    fn read_instead(&self, file: &std::path::Path) -> Option<Box<dyn SourceConfig>> {
        let mut config = self.clone();
        config.files = self.files.only(file);
        Some(Box::new(config))
    }
}

impl JsonLinesSourceConfig {
    /// The source of one file.
    fn open_file(
        &self,
        file: &InputFile,
        cx: &BuildCx,
    ) -> Result<Box<dyn DeferringSource>, BuildError> {
        let stdin = file.path.as_os_str() == "-";
        let opened = compress::open_input(&file.path, stdin, self.compression)
            .map_err(|e| BuildError::from(IoError::new(&cx.node, "open", &file.path, e)))?;
        let readers = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnReader {
                name: c.name.clone(),
                ty: c.ty.clone(),
                nullable: c.nullable,
                format: c.format.clone(),
                field: i,
                trim: false,
            })
            .collect();
        let shape = Shape {
            node: cx.node.clone(),
            label: file.label.clone(),
            readers,
            schema: self.schema.clone(),
            keys: text::Keys::new(
                self.columns.iter().map(|c| c.name.as_str()),
                self.unknown_keys_rejected,
            ),
            blank: AtomicU64::new(0),
        };
        Ok(Box::new(JsonLinesSource {
            shape: Arc::new(shape),
            path: file.path.clone(),
            file: self.encoding.wrap(opened.reader),
            compressed: opened.format,
            encoding: self.encoding,
            buf: Vec::new(),
            scanned: 0,
            newlines: 0,
            eof: false,
            line: 1,
            offset: 0,
            chunk_size: self.chunk_size,
            batch_bytes: usize::try_from(cx.batch_bytes).unwrap_or(usize::MAX),
        }))
    }
}

/// What every piece of one source shares.
struct Shape {
    node: String,
    label: Arc<str>,
    readers: Vec<ColumnReader>,
    schema: SchemaRef,
    /// Which column each declared key is (`text.rs`).
    keys: text::Keys,
    /// Blank lines skipped so far.
    blank: AtomicU64,
}

/// A running `JsonLinesSource`.
struct JsonLinesSource {
    shape: Arc<Shape>,
    path: PathBuf,
    file: Box<dyn Read + Send>,
    compressed: Compression,
    encoding: crate::encoding::SourceEncoding,
    /// Bytes read and not yet handed off.
    buf: Vec<u8>,
    /// How far `buf` was searched for line breaks, and how many it holds up to there.
    scanned: usize,
    newlines: usize,
    eof: bool,
    /// Line and absolute offset of `buf[0]`.
    line: u64,
    offset: u64,
    chunk_size: usize,
    batch_bytes: usize,
}

impl JsonLinesSource {
    /// Where the next piece ends in `buf`: after `chunk_size` lines, at the last line break
    /// within `batch_bytes` (or the first past it), or the whole rest at the end of the file.
    fn cut(&mut self) -> Option<usize> {
        let mut last = None;
        for i in memchr::memchr_iter(b'\n', &self.buf[self.scanned..]) {
            let end = self.scanned + i + 1;
            self.newlines += 1;
            last = Some(end);
            if self.newlines >= self.chunk_size || end >= self.batch_bytes {
                return Some(end);
            }
        }
        self.scanned = self.buf.len();
        match (self.eof, last) {
            (true, _) if !self.buf.is_empty() => Some(self.buf.len()),
            (false, Some(end)) if self.buf.len() >= self.batch_bytes => Some(end),
            _ => None,
        }
    }

    fn fill(&mut self) -> Result<(), RunError> {
        let start = self.buf.len();
        self.buf.resize(start + READ_SIZE, 0);
        let n = self
            .file
            .read(&mut self.buf[start..])
            .map_err(|e| RunError::from(IoError::new(&self.shape.node, "read", &self.path, e)))?;
        self.buf.truncate(start + n);
        self.eof = n == 0;
        Ok(())
    }
}

impl DeferringSource for JsonLinesSource {
    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        let end = loop {
            if let Some(end) = self.cut() {
                break end;
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        };
        let rest = self.buf.split_off(end);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let piece = Piece {
            shape: self.shape.clone(),
            line: self.line,
            offset: self.offset,
            bytes,
        };
        self.line += memchr::memchr_iter(b'\n', &piece.bytes).count() as u64;
        self.offset += end as u64;
        self.scanned = 0;
        self.newlines = 0;
        Ok(Some(Box::new(piece)))
    }
}

impl SourceCommon for JsonLinesSource {
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.compressed != Compression::None {
            notes.push(format!(
                "the input is {}-compressed, decompressed on a thread of its own",
                self.compressed.name()
            ));
        }
        notes.extend(self.encoding.note());
        match self.shape.blank.load(Ordering::Relaxed) {
            0 => {}
            n => notes.push(format!("{n} blank lines skipped")),
        }
        notes
    }
}

/// Whole lines of the file, from line `line` at byte `offset`.
struct Piece {
    shape: Arc<Shape>,
    line: u64,
    offset: u64,
    bytes: Vec<u8>,
}

/// One line that is not blank: its place, and its bytes without the line break.
struct Line {
    no: u64,
    offset: u64,
    start: usize,
    end: usize,
}

impl Pending for Piece {
    fn finish(self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let lines = self.lines();
        let (texts, kept) = self.decode(&lines, rejects);
        let lines: Vec<Line> = lines
            .into_iter()
            .zip(&kept)
            .filter(|(_, k)| **k)
            .map(|(l, _)| l)
            .collect();
        self.convert(&texts, &lines, rejects)
    }
}

impl Piece {
    /// The lines that are not blank; the blank ones are counted.
    fn lines(&self) -> Vec<Line> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut no = self.line;
        let bytes = &self.bytes;
        while start < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            let mut first = start;
            if self.offset == 0 && start == 0 && bytes.starts_with(b"\xEF\xBB\xBF") {
                first = 3;
            }
            let text = &bytes[first..end];
            if text.iter().all(u8::is_ascii_whitespace) {
                self.shape.blank.fetch_add(1, Ordering::Relaxed);
            } else {
                out.push(Line {
                    no,
                    offset: self.offset + first as u64,
                    start: first,
                    end: if text.ends_with(b"\r") { end - 1 } else { end },
                });
            }
            start = end + 1;
            no += 1;
        }
        out
    }

    fn bytes_of(&self, line: &Line) -> &[u8] {
        &self.bytes[line.start..line.end]
    }

    /// The lines as text columns (`text.rs`); a line that is not one JSON object (or has a key
    /// that fails it) is rejected. Returns the text columns of the lines kept, and which lines
    /// were kept.
    fn decode(&self, lines: &[Line], rejects: &mut Vec<RowError>) -> (Vec<StructArray>, Vec<bool>) {
        let mut columns = text::TextColumns::new(&self.shape.keys, lines.len());
        let kept = lines
            .iter()
            .map(|line| match columns.push(self.bytes_of(line)) {
                Ok(()) => true,
                Err(e) => {
                    rejects.push(self.diagnose(line, &e));
                    false
                }
            })
            .collect();
        (columns.finish(), kept)
    }

    /// Why one line failed to decode, as a reject.
    fn diagnose(&self, line: &Line, e: &serde_json::Error) -> RowError {
        let bytes = self.bytes_of(line);
        let mut reject = self.reject(line, RowErrorKind::InvalidJson, Stage::Parse);
        if let Err(u) = std::str::from_utf8(bytes) {
            reject.kind = RowErrorKind::InvalidUtf8;
            reject.byte_offset = Some(line.offset + u.valid_up_to() as u64);
            reject.message = "the line is not valid UTF-8".into();
            reject.hint = Some("convert the file to UTF-8 (e.g. with iconv)".into());
            return reject;
        }
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(err) => {
                reject.byte_offset = Some(line.offset + err.column().saturating_sub(1) as u64);
                let message = err.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                reject.message = format!("the line is not valid JSON: {message}");
                reject.hint = Some(
                    "each line must be one complete JSON object, e.g. {\"id\": 1, \"name\": \"Ada\"}"
                        .into(),
                );
                return reject;
            }
        };
        let Some(object) = value.as_object() else {
            reject.message = format!("the line is a JSON {}, not an object", kind_name(&value));
            reject.hint = Some("each line must be one JSON object, e.g. {\"id\": 1}".into());
            return reject;
        };
        let declared = |k: &str| self.shape.readers.iter().any(|r| r.name == k);
        if let Some((key, value)) = object.iter().find(|(k, _)| !declared(k)) {
            reject.kind = RowErrorKind::UnknownKey;
            reject.value = Some(value.to_string());
            reject.message = format!("key `{key}` is not a declared column");
            reject.hint = Some(
                "declare it in `OutputSchema`, or set `UnknownKeys: ignore` to read past such keys"
                    .into(),
            );
            return reject;
        }
        reject.message = format!("the line cannot be read: {e}");
        reject
    }

    /// A reject of `line` with what every reject of it says.
    fn reject(&self, line: &Line, kind: RowErrorKind, stage: Stage) -> RowError {
        let mut raw = self.bytes_of(line).to_vec();
        raw.push(b'\n');
        RowError {
            node: self.shape.node.clone(),
            stage,
            kind,
            file: Some(self.shape.label.clone()),
            line: Some(line.no),
            record: None,
            byte_offset: Some(line.offset),
            column: None,
            value: None,
            message: String::new(),
            hint: None,
            raw: Some(raw),
        }
    }

    /// The text columns into the declared types; a row with a bad value is rejected (its first
    /// bad value, in column order).
    fn convert(
        &self,
        texts: &[StructArray],
        lines: &[Line],
        rejects: &mut Vec<RowError>,
    ) -> Result<Batch, RunError> {
        let shape = &self.shape;
        let values = Values::new(texts);
        let mut errors: Vec<ConvertError> = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(texts.len());
        let take = vec![Take::Value; lines.len()];
        for (c, reader) in shape.readers.iter().enumerate() {
            if reader.ty == ColumnType::Utf8 {
                arrays.push(strings(&values, c, reader, &mut errors));
                continue;
            }
            values.kind_errors(c, reader, &mut errors);
            arrays.push(convert::convert_one(
                &values,
                &shape.readers,
                c,
                &take,
                &mut errors,
            ));
        }
        errors.sort_by_key(|e| (e.record, e.column));
        let mut keep = vec![true; lines.len()];
        for e in errors {
            if !keep[e.record] {
                continue;
            }
            keep[e.record] = false;
            let line = &lines[e.record];
            let reader = &shape.readers[e.column];
            let stage = match e.kind {
                RowErrorKind::InvalidUtf8 => Stage::Parse,
                _ => Stage::Convert,
            };
            let mut reject = self.reject(line, e.kind, stage);
            reject.column = Some(ColumnRef {
                name: reader.name.clone(),
                index: e.column,
            });
            reject.value = (e.kind != RowErrorKind::NullInRequired).then_some(e.value);
            reject.message = e.message;
            reject.hint = Some(e.hint);
            rejects.push(reject);
        }
        let lines = UInt64Array::from_iter_values(lines.iter().map(|l| l.no));
        let mask = BooleanArray::from(keep);
        let filter = |a: &dyn Array| {
            arrow_select::filter::filter(a, &mask)
                .map_err(|e| RunError::Internal(format!("filtering decoded rows: {e}")))
        };
        let (arrays, lines) = if mask.true_count() == mask.len() {
            (arrays, lines)
        } else {
            let arrays = arrays
                .iter()
                .map(|a| filter(a.as_ref()))
                .collect::<Result<Vec<_>, _>>()?;
            (arrays, filter(&lines)?.as_primitive().clone())
        };
        let data = RecordBatch::try_new(shape.schema.clone(), arrays).map_err(|e| {
            RunError::Internal(format!("decoded columns do not match the schema: {e}"))
        })?;
        Ok(Batch::new(data, Some(shape.label.clone()), lines))
    }
}

/// A string column: each value's text (a nested value as compact JSON, a number as written);
/// `null` or a missing key is null, or a reject in a non-nullable column.
fn strings(
    values: &Values<'_>,
    c: usize,
    reader: &ColumnReader,
    errors: &mut Vec<ConvertError>,
) -> ArrayRef {
    let rows = values.rows();
    let mut out = StringBuilder::with_capacity(rows, 0);
    for r in 0..rows {
        match values.text(r, c) {
            Some(text) => out.append_value(text),
            None => {
                if !reader.nullable {
                    errors.push(missing(r, c, reader));
                }
                out.append_null();
            }
        }
    }
    Arc::new(out.finish())
}

/// A missing key or `null` in a non-nullable column.
fn missing(r: usize, c: usize, reader: &ColumnReader) -> ConvertError {
    ConvertError {
        record: r,
        column: c,
        kind: RowErrorKind::NullInRequired,
        value: String::new(),
        message: format!("`{}` is missing or null", reader.name),
        hint: "give every line this key with a value, or declare the column `Nullable: true`"
            .into(),
    }
}

fn kind_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The decoded text columns, as the delimited converters read fields.
struct Values<'a> {
    texts: Vec<&'a arrow_array::StringArray>,
    kinds: Vec<&'a arrow_array::UInt8Array>,
    rows: usize,
}

impl<'a> Values<'a> {
    fn new(columns: &'a [StructArray]) -> Self {
        Values {
            texts: columns.iter().map(|s| s.column(0).as_string()).collect(),
            kinds: columns.iter().map(|s| s.column(1).as_primitive()).collect(),
            rows: columns.first().map_or(0, |s| s.len()),
        }
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn kind(&self, r: usize, c: usize) -> Kind {
        Kind::from(self.kinds[c].value(r))
    }

    fn text(&self, r: usize, c: usize) -> Option<&str> {
        let t = self.texts[c];
        t.is_valid(r).then(|| t.value(r))
    }

    /// Values no type but `string` reads: a nested object or array, and an empty string (which in
    /// a CSV file would be a null, but in JSON is a value).
    fn kind_errors(&self, c: usize, reader: &ColumnReader, errors: &mut Vec<ConvertError>) {
        for r in 0..self.rows {
            let (kind, text) = (self.kind(r, c), self.text(r, c).unwrap_or(""));
            if kind == Kind::Null && !reader.nullable {
                errors.push(missing(r, c, reader));
                continue;
            }
            let message = match kind {
                Kind::Nested => format!("a JSON object or array cannot be {}", reader.ty),
                Kind::String if text.is_empty() => {
                    format!("an empty string cannot be {}", reader.ty)
                }
                _ => continue,
            };
            errors.push(ConvertError {
                record: r,
                column: c,
                kind: RowErrorKind::TypeConversion,
                value: text.to_string(),
                message,
                hint: "declare the column `string` to keep the value as text, or write null for no value"
                    .into(),
            });
        }
    }
}

impl RecordSet for Values<'_> {
    fn len(&self) -> usize {
        self.rows
    }

    fn field(&self, r: usize, k: usize) -> Option<&[u8]> {
        match self.kind(r, k) {
            Kind::Nested => None,
            _ => self.text(r, k).map(str::as_bytes),
        }
    }

    fn line(&self, _r: usize) -> u64 {
        0
    }

    fn offset(&self, _r: usize) -> u64 {
        0
    }

    fn raw(&self, _r: usize) -> &[u8] {
        b""
    }

    fn utf8(&self) -> bool {
        true
    }

    fn problem(&self, _r: usize) -> Option<&Problem> {
        None
    }

    fn take_lines(&mut self) -> Vec<u64> {
        Vec::new()
    }
}

//! `DelimitedSource`: a CSV/TSV/PSV file decoded into typed Arrow batches.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, NodeCx, Pending, RowCondition, Settle, Source, SourceConfig,
};
use flowengine_engine::config::{ConfigCx, MapReader};
use flowengine_engine::error::{BuildError, ColumnRef, RowError, RowErrorKind, RunError, Stage};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::schema::{self, ColumnSpec};
use flowengine_engine::Batch;

use super::convert::{self, ColumnReader, Take};
use super::decode::{Checks, Decoder, Dialect, Problem, Ragged, RecordSet, Records};
use super::read_dialect;
use super::split::Scan;
use super::tokens::{self, Slice, Tokens};

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
    parallel: bool,
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
        .byte_size(cx, "MaxRecordBytes", 1024, 1 << 30)
        .map_or(Checks::default().max_record_bytes, |n| n as usize);
    let chunk_size = m
        .integer(cx, "ChunkSize", 1, 1 << 20)
        .map_or(node.chunk_size, |n| n as usize);
    let parallel = m.bool(cx, "Parallel").unwrap_or(true);
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
        parallel,
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
                condition: None,
            }),
            path: self.path.clone(),
            chunk_size: self.chunk_size,
            batch_bytes: usize::try_from(cx.batch_bytes).unwrap_or(usize::MAX),
            checks: self.checks,
            reading: Reading::Sequential(Box::new(input)),
            sequential_only: self.sequential_only(),
            unsettled: VecDeque::new(),
            ordinal: u64::from(self.has_headers),
            widths_checked: false,
            ranges: 0,
            redos: 0,
            capped: 0,
        }))
    }
}

impl DelimitedSourceConfig {
    /// Why records cannot be split in parallel ranges, if they cannot.
    fn sequential_only(&self) -> Option<&'static str> {
        let d = self.dialect;
        if !self.parallel {
            Some("`Parallel: false`")
        } else if d.escape.is_some() && d.escape != d.quote {
            Some("with an `Escape` character, counting quotes cannot tell where records end")
        } else {
            None
        }
    }

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

    /// Go on reading `file` after `unread`, the bytes before it that were read but not decoded.
    fn resume(file: File, mut unread: Vec<u8>, eof: bool, decoder: Decoder) -> Self {
        let end = unread.len();
        unread.resize(end.max(READ_SIZE), 0);
        Self {
            file,
            buf: unread,
            start: 0,
            end,
            eof,
            decoder,
        }
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
    /// The next node's condition: its columns are converted first, the rest only for the rows
    /// it may keep.
    condition: Option<Arc<dyn RowCondition>>,
}

/// Ranges redone sequentially before the source stops splitting in parallel for good: a file this
/// irregular would pay for most ranges twice.
const MAX_REDOS: u32 = 16;

/// A running `DelimitedSource`.
///
/// Splitting bytes into records needs the quote state and line number at the start, so it is
/// sequential unless those are known some other way. The source starts sequentially (one decoder
/// on the node thread, handing each chunk of records off to be converted). Once it knows the record
/// width and stands on a record boundary, it switches to ranges: it cuts the bytes after every
/// `chunk_size` records by counting quotes ([`Scan`]), and each range is split *and* converted on a
/// worker. The count is a guess that the worker checks; [`DelimitedSource::settle`] takes each
/// range in order and redoes a failed one sequentially, from its start, with everything after it.
struct DelimitedSource {
    shape: Arc<Shape>,
    path: PathBuf,
    chunk_size: usize,
    /// Input bytes per batch at most: the batch's share of `Settings.MemoryLimit`.
    batch_bytes: usize,
    checks: Checks,
    reading: Reading,
    /// Why ranges are never used, if they are not.
    sequential_only: Option<&'static str>,
    /// Pieces handed off and not yet settled, oldest first.
    unsettled: VecDeque<Handed>,
    /// Records settled so far (the header counts).
    ordinal: u64,
    /// Whether the columns' `Index`es were checked against the record width.
    widths_checked: bool,
    /// Ranges split on the workers and kept.
    ranges: u64,
    /// Ranges redone on the node thread.
    redos: u32,
    /// Batches cut at `batch_bytes` before `chunk_size` records.
    capped: u64,
}

/// How the source is reading now.
enum Reading {
    Sequential(Box<Input>),
    Ranges(Ranges),
    /// Only while switching from one to the other.
    Switching,
}

/// The file, cut into ranges of records by counting quotes.
struct Ranges {
    file: File,
    /// The bytes read last; ranges cut from them share them.
    block: Arc<Vec<u8>>,
    /// Where the range being cut starts in `block`.
    start: usize,
    scan: Scan,
    /// Line and absolute offset of `block[start]`.
    line: u64,
    offset: u64,
    eof: bool,
}

impl Ranges {
    /// Read up to `size` more bytes into a new block that starts with the unused rest of this one
    /// (the start of the range being cut). Ranges already cut keep the old block alive, so their
    /// bytes are never copied; only that rest is.
    fn read_block(&mut self, size: usize) -> std::io::Result<()> {
        let rest = &self.block[self.start..];
        // A long record grows the rest: read at least as much again, so copying it stays linear.
        let size = size.max(rest.len());
        let mut next = Vec::with_capacity(rest.len() + size);
        next.extend_from_slice(rest);
        // `read_to_end` reads into the spare capacity reserved above, without growing it.
        let n = (&mut self.file).take(size as u64).read_to_end(&mut next)?;
        self.eof = n == 0;
        self.block = Arc::new(next);
        self.start = 0;
        Ok(())
    }
}

/// A piece handed off, until it is settled.
struct Handed {
    outcome: Arc<OnceLock<Outcome>>,
    /// For a range: its bytes, line and offset, to read them again if the guess was wrong.
    range: Option<(Slice, u64, u64)>,
}

/// What finishing a piece found out, for [`DelimitedSource::settle`].
#[derive(Debug, Clone, Copy)]
struct Outcome {
    records: u64,
    /// The piece is a range whose decoding met something counting quotes cannot see past.
    irregular: bool,
}

impl DelimitedSource {
    fn io_error(&self, source: std::io::Error) -> RunError {
        RunError::Io {
            node: self.shape.node.clone(),
            action: "read",
            path: self.path.clone(),
            source,
        }
    }

    /// Without a header, the width comes from the first record: check that every `Index` fits.
    fn check_indexes(&mut self, width: usize) -> Result<(), RunError> {
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

    fn hand_off(&mut self, body: Body) -> Box<dyn Pending> {
        let outcome = Arc::new(OnceLock::new());
        let range = match &body {
            Body::Records(_) => None,
            Body::Range {
                bytes,
                line,
                offset,
                ..
            } => Some((bytes.clone(), *line, *offset)),
        };
        self.unsettled.push_back(Handed {
            outcome: outcome.clone(),
            range,
        });
        Box::new(Chunk {
            shape: self.shape.clone(),
            body,
            outcome,
        })
    }

    /// The next chunk of records from the one decoder.
    fn next_records(&mut self) -> Result<Option<Body>, RunError> {
        let Reading::Sequential(input) = &mut self.reading else {
            return Err(RunError::Internal("not reading sequentially".into()));
        };
        let mut records = Records::with_cap(self.batch_bytes);
        let read = input.read(&mut records, self.chunk_size);
        let width = input.decoder.width();
        let capped = records.len() < self.chunk_size && !input.decoder.is_done();
        read.map_err(|e| self.io_error(e))?;
        if records.is_empty() {
            return Ok(None);
        }
        self.capped += u64::from(capped);
        if let (false, Some(width)) = (self.widths_checked, width) {
            self.check_indexes(width)?;
        }
        self.switch_to_ranges();
        Ok(Some(Body::Records(records)))
    }

    /// Cut ranges from here on, if the decoder stands where a new one could start.
    fn switch_to_ranges(&mut self) {
        let Reading::Sequential(input) = &self.reading else {
            return;
        };
        let d = &input.decoder;
        let ready = d.at_record_boundary() && d.width().is_some() && self.widths_checked;
        if self.sequential_only.is_some() || self.redos >= MAX_REDOS || !ready {
            return;
        }
        let Reading::Sequential(input) = std::mem::replace(&mut self.reading, Reading::Switching)
        else {
            return;
        };
        self.checks.width = input.decoder.width();
        self.reading = Reading::Ranges(Ranges {
            block: Arc::new(input.buf[input.start..input.end].to_vec()),
            start: 0,
            scan: Scan::new(self.shape.dialect.quote),
            line: input.decoder.line(),
            offset: input.decoder.offset(),
            eof: input.eof,
            file: input.file,
        });
    }

    /// The next range: `chunk_size` records by the quote count, or the rest of the file.
    fn next_range(&mut self) -> Result<Option<Body>, RunError> {
        let Reading::Ranges(r) = &mut self.reading else {
            return Err(RunError::Internal("not reading ranges".into()));
        };
        let (len, force_redo) = loop {
            let rest = &r.block[r.start..];
            if let Some(len) = r.scan.cut(rest, r.eof, self.chunk_size, self.batch_bytes) {
                self.capped += u64::from(r.scan.records() < self.chunk_size);
                break (len, false);
            }
            if r.scan.open_record_bytes() > self.checks.max_record_bytes {
                // The count says one record runs on and on: a stray quote flipped it, or the
                // record is too large. Either way the decoder must read this sequentially.
                break (rest.len(), true);
            }
            if r.eof {
                if rest.is_empty() {
                    return Ok(None);
                }
                break (rest.len(), false);
            }
            if let Err(e) = r.read_block(self.batch_bytes.max(READ_SIZE)) {
                return Err(self.io_error(e));
            }
        };
        let bytes = Slice {
            block: r.block.clone(),
            start: r.start,
            end: r.start + len,
        };
        r.start += len;
        let (line, offset) = (r.line, r.offset);
        r.line += r.scan.lines();
        r.offset += len as u64;
        r.scan = Scan::new(self.shape.dialect.quote);
        Ok(Some(Body::Range {
            bytes,
            line,
            offset,
            checks: self.checks,
            force_redo,
        }))
    }

    /// Read `first` and everything handed off after it again, sequentially.
    fn redo(&mut self, first: (Slice, u64, u64)) {
        self.redos += 1;
        let (bytes, line, offset) = first;
        let mut again = bytes.to_vec();
        for later in self.unsettled.drain(..) {
            if let Some((bytes, ..)) = later.range {
                again.extend_from_slice(&bytes);
            }
        }
        let Reading::Ranges(r) = std::mem::replace(&mut self.reading, Reading::Switching) else {
            unreachable!("only ranges are redone");
        };
        again.extend_from_slice(&r.block[r.start..]);
        let decoder = Decoder::new(self.shape.dialect, self.checks, line, offset);
        self.reading = Reading::Sequential(Box::new(Input::resume(r.file, again, r.eof, decoder)));
    }
}

impl Source for DelimitedSource {
    fn next_batch(&mut self, rejects: &mut Vec<RowError>) -> Result<Option<Batch>, RunError> {
        loop {
            let Some(piece) = self.next_pending()? else {
                return Ok(None);
            };
            let mut own = Vec::new();
            let batch = piece.finish(&mut own)?;
            if self.settle(&mut own) == Settle::Keep {
                rejects.append(&mut own);
                return Ok(Some(batch));
            }
        }
    }

    fn defers(&self) -> bool {
        true
    }

    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        let body = match self.reading {
            Reading::Sequential(_) => self.next_records()?,
            Reading::Ranges(_) => self.next_range()?,
            Reading::Switching => return Err(RunError::Internal("source left mid-switch".into())),
        };
        Ok(body.map(|body| self.hand_off(body)))
    }

    fn settle(&mut self, rejects: &mut [RowError]) -> Settle {
        let Some(handed) = self.unsettled.pop_front() else {
            return Settle::Keep;
        };
        let outcome = handed.outcome.get().copied().unwrap_or(Outcome {
            records: 0,
            irregular: true,
        });
        match (outcome.irregular, handed.range) {
            (true, Some(range)) => {
                self.redo(range);
                return Settle::Redo;
            }
            (false, Some(_)) => self.ranges += 1,
            _ => {}
        }
        for reject in rejects {
            reject.record = reject.record.map(|r| r + self.ordinal);
        }
        self.ordinal += outcome.records;
        Settle::Keep
    }

    fn push_condition(&mut self, condition: Arc<dyn RowCondition>) -> bool {
        // Only before the first piece is handed off, while the shape is not shared yet.
        match Arc::get_mut(&mut self.shape) {
            Some(shape) => {
                shape.condition = Some(condition);
                true
            }
            None => false,
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![if let Some(why) = self.sequential_only {
            format!("records split on one thread: {why}")
        } else if self.ranges + u64::from(self.redos) == 0 {
            "records split on one thread: the input ended before a range could be cut".to_string()
        } else {
            format!(
                "records split in parallel: {} ranges, {} redone on one thread after a quote out of place, an oversized record or a resync",
                self.ranges, self.redos
            )
        }];
        if self.redos >= MAX_REDOS {
            notes.push(format!(
                "after {MAX_REDOS} redos the rest of the file was split on one thread"
            ));
        }
        if self.shape.condition.is_some() {
            notes.push(
                "the next node's condition is evaluated while decoding: the rows it filters out are checked but not built"
                    .to_string(),
            );
        }
        if self.capped > 0 {
            notes.push(format!(
                "{} batches ended at {} of input, their share of `MemoryLimit`, before `ChunkSize` ({}) rows",
                self.capped,
                human_bytes(self.batch_bytes as u64),
                self.chunk_size
            ));
        }
        notes
    }
}

/// What a piece holds before its worker finishes it.
enum Body {
    /// Records the sequential decoder split.
    Records(Records),
    /// Bytes cut by counting quotes, to split on the worker.
    Range {
        bytes: Slice,
        line: u64,
        offset: u64,
        checks: Checks,
        /// The cut is known to be wrong: report the range irregular without decoding it.
        force_redo: bool,
    },
}

/// Records split from the file (or bytes to split), waiting to become a typed batch.
struct Chunk {
    shape: Arc<Shape>,
    body: Body,
    outcome: Arc<OnceLock<Outcome>>,
}

/// A piece's records, as the decoder or the fast path split them.
enum Split {
    Records(Records),
    Tokens(Tokens),
}

impl Chunk {
    /// The records of the piece, and whether counting quotes was wrong about it.
    fn split(&mut self) -> (Split, bool) {
        match std::mem::replace(&mut self.body, Body::Records(Records::default())) {
            Body::Records(records) => (Split::Records(records), false),
            Body::Range {
                force_redo: true, ..
            } => (Split::Records(Records::default()), true),
            Body::Range {
                bytes,
                line,
                offset,
                checks,
                force_redo: false,
            } => {
                let dialect = self.shape.dialect;
                let width = checks.width.unwrap_or(0);
                let fast = tokens::tokenize(
                    &bytes,
                    line,
                    offset,
                    dialect,
                    width,
                    checks.max_record_bytes,
                );
                if let Some(tokens) = fast {
                    return (Split::Tokens(tokens), false);
                }
                let mut decoder = Decoder::new(dialect, checks, line, offset);
                let mut records = Records::default();
                records.reserve_for(bytes.len());
                decoder.decode(&bytes, true, &mut records, usize::MAX);
                let irregular = decoder.irregular() || !decoder.is_done();
                (Split::Records(records), irregular)
            }
        }
    }
}

/// One piece's records, converted into a typed batch and its rejects.
struct Typed<R> {
    shape: Arc<Shape>,
    records: R,
}

impl<R: RecordSet> Typed<R> {
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
            line: Some(self.records.line(r)),
            // Counted within the piece; `settle` adds the records before it.
            record: Some(r as u64 + 1),
            byte_offset: Some(self.records.offset(r)),
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
            reject.byte_offset = Some(self.records.offset(e.record) + bad as u64);
            reject.line =
                Some(self.records.line(e.record) + super::decode::line_breaks(&raw[..bad]));
        }
        reject
    }

    fn structural_reject(&self, r: usize, p: &Problem) -> RowError {
        let raw = String::from_utf8_lossy(self.records.raw(r));
        RowError {
            value: Some(raw.trim_end_matches(['\r', '\n']).to_string()),
            ..self.reject(r, p.kind, Stage::Parse, p.message.clone(), p.hint.clone())
        }
    }
}

impl Pending for Chunk {
    fn finish(mut self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let (split, irregular) = self.split();
        let records = match &split {
            Split::Records(r) => r.len(),
            Split::Tokens(t) => t.len(),
        };
        let outcome = Outcome {
            records: records as u64,
            irregular,
        };
        // Set once, by the one worker that finishes the piece.
        let _ = self.outcome.set(outcome);
        if irregular {
            // `settle` redoes the range: converting it would be wasted.
            let data = RecordBatch::new_empty(self.shape.schema.clone());
            return Ok(Batch::new(
                data,
                Some(self.shape.label.clone()),
                UInt64Array::from(Vec::<u64>::new()),
            ));
        }
        let shape = self.shape.clone();
        match split {
            Split::Records(records) => Typed { shape, records }.into_batch(rejects),
            Split::Tokens(records) => Typed { shape, records }.into_batch(rejects),
        }
    }
}

impl<R: RecordSet> Typed<R> {
    fn into_batch(mut self, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let n = self.records.len();
        let refused: Vec<bool> = (0..n).map(|r| self.records.problem(r).is_some()).collect();
        let (arrays, errors, take) = self.convert(&refused)?;

        // One reject per bad record, in record order: its structural problem, else its first bad value.
        let mut errors = errors.into_iter().peekable();
        let mut keep = Vec::with_capacity(n);
        let mut prefiltered = 0;
        for (r, t) in take.iter().enumerate() {
            let mut reject = self
                .records
                .problem(r)
                .map(|p| self.structural_reject(r, p));
            while let Some(e) = errors.next_if(|e| e.record == r) {
                if reject.is_none() {
                    reject = Some(self.convert_reject(e));
                }
            }
            let rejected = reject.is_some();
            rejects.extend(reject);
            match t {
                Take::Value | Take::Placeholder => keep.push(!rejected),
                Take::Check | Take::Skip => prefiltered += u64::from(!rejected),
            }
        }
        let lines = self.records.take_lines();
        let lines: Vec<u64> = lines
            .into_iter()
            .zip(&take)
            .filter(|(_, t)| t.in_column())
            .map(|(l, _)| l)
            .collect();
        let (arrays, lines) = (arrays, UInt64Array::from(lines));
        let (arrays, lines) = if keep.iter().all(|&k| k) {
            (arrays, lines)
        } else {
            let mask = BooleanArray::from(keep);
            let arrays = arrays
                .iter()
                .map(|a| filter(a.as_ref(), &mask))
                .collect::<Result<Vec<_>, _>>()?;
            let lines = UInt64Array::from(filter(&lines, &mask)?.to_data());
            (arrays, lines)
        };
        let data = RecordBatch::try_new(self.shape.schema.clone(), arrays).map_err(|e| {
            RunError::Internal(format!("decoded columns do not match the schema: {e}"))
        })?;
        let mut batch = Batch::new(data, Some(self.shape.label.clone()), lines);
        batch.prefiltered = prefiltered;
        Ok(batch)
    }

    /// Convert every column: with a condition, its columns first for every record, then the others
    /// only for the records it may keep (the rest are only checked). Returns the arrays, every bad
    /// value (by record, then column) and what was done with each record.
    #[allow(clippy::type_complexity)]
    fn convert(
        &self,
        refused: &[bool],
    ) -> Result<(Vec<ArrayRef>, Vec<convert::ConvertError>, Vec<Take>), RunError> {
        let columns = &self.shape.columns;
        let Some(condition) = &self.shape.condition else {
            let take: Vec<Take> = refused
                .iter()
                .map(|&r| if r { Take::Skip } else { Take::Value })
                .collect();
            let (arrays, errors) = convert::convert(&self.records, columns, &take);
            return Ok((arrays, errors, take));
        };
        let n = refused.len();
        let first: Vec<Take> = refused
            .iter()
            .map(|&r| if r { Take::Placeholder } else { Take::Value })
            .collect();
        let mut errors = Vec::new();
        let read = condition.columns();
        let inputs: Vec<ArrayRef> = read
            .iter()
            .map(|&c| convert::convert_one(&self.records, columns, c, &first, &mut errors))
            .collect();
        let may_keep = condition.may_keep(&inputs, n)?;
        let take: Vec<Take> = (0..n)
            .map(|r| match (refused[r], may_keep.value(r)) {
                (true, _) => Take::Skip,
                (false, true) => Take::Value,
                (false, false) => Take::Check,
            })
            .collect();
        let built = BooleanArray::from(take.iter().map(|t| t.in_column()).collect::<Vec<_>>());
        let mut arrays = Vec::with_capacity(columns.len());
        for c in 0..columns.len() {
            arrays.push(match read.binary_search(&c) {
                Ok(k) => filter(inputs[k].as_ref(), &built)?,
                Err(_) => convert::convert_one(&self.records, columns, c, &take, &mut errors),
            });
        }
        errors.sort_by_key(|e| (e.record, e.column));
        Ok((arrays, errors, take))
    }
}

fn filter(a: &dyn Array, mask: &BooleanArray) -> Result<ArrayRef, RunError> {
    arrow_select::filter::filter(a, mask)
        .map_err(|e| RunError::Internal(format!("filtering decoded rows: {e}")))
}

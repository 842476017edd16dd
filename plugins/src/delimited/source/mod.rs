//! `DelimitedSource`: a CSV/TSV/PSV file decoded into typed Arrow batches.
//!
//! This file is the config (`parse`, the header check at `build`) and the [`DeferringSource`] glue. The
//! stages of a read, in order:
//!
//! - `input.rs`: the file's bytes (byte-order mark, `SkipRows`, the sequential buffer, the blocks
//!   ranges are cut from);
//! - `parts.rs`: the file cut into parts that separate tasks read (`--engine ballista`);
//! - `reader.rs`: the state machine on the node thread (sequential, ranges, redo) and the order in
//!   which pieces are handed off and settled;
//! - `chunk.rs`: cutting a range by counting quotes, and a worker splitting a piece into records;
//! - `typed.rs`: a worker converting those records into a typed batch and its rejects.
//!
//! Invariant: whatever runs in parallel, lines, record numbers and rejects are those of a
//! one-thread read (see `reader.rs`).

mod chunk;
mod input;
mod parts;
mod reader;
mod typed;

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, BuiltSource, DeferringSource, NodeCx, Pending, RowCondition, Settle, SourceCommon,
    SourceConfig, SourceRange, Split,
};
use flowengine_engine::error::{BuildError, IoError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::schema::{self, ColumnSpec};

use super::convert::ColumnReader;
use super::decode::{Checks, Decoder, Dialect, Ragged, Records};
use super::read_dialect;
use crate::compress;
use crate::files::{self, InputFile};
use chunk::Outcome;
use input::Input;
use reader::{DelimitedSource, Reading, MAX_REDOS};
use typed::SourceSpec;

/// Parsed `DelimitedSource` config.
#[derive(Debug, Clone)]
pub struct DelimitedSourceConfig {
    /// `FilePath`: one file, `-` (standard input), or the files of globs and lists, in order.
    files: files::Inputs,
    /// How the bytes become UTF-8 (`Encoding`, `InvalidBytes`).
    encoding: crate::encoding::SourceEncoding,
    /// `Compression`, if not `auto`.
    compression: Option<compress::Compression>,
    dialect: Dialect,
    has_headers: bool,
    skip_rows: u64,
    /// Records after the header that are read past, not parsed into rows.
    skip_after_header: u64,
    /// Records read at most after those.
    max_rows: Option<u64>,
    trim: bool,
    checks: Checks,
    chunk_size: usize,
    parallel: bool,
    columns: Vec<ColumnSpec>,
    /// The declared columns.
    schema: SchemaRef,
    /// What the source emits: the declared columns, then the file-name column if any.
    output: SchemaRef,
    /// Only these records of the one file (a task's part of a split run).
    range: Option<SourceRange>,
}

/// Parse a `DelimitedSource` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    let files = files::Inputs::read(m, cx);
    let compression = compress::read_source(m, cx);
    let dialect = read_dialect(m, cx);
    let has_headers = m.bool(cx, "HasHeaders").unwrap_or(true);
    let skip_rows = m.integer(cx, "SkipRows", 0, u32::MAX as u64).unwrap_or(0);
    let skip_after_header = m
        .integer(cx, "SkipRowsAfterHeader", 0, u64::MAX >> 1)
        .unwrap_or(0);
    let max_rows = m.integer(cx, "MaxRows", 0, u64::MAX >> 1);
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
    let encoding = crate::encoding::read_source(m, cx);
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
    let columns = schema::read_output_schema(m, cx, "column")?;
    let schema = schema::to_schema(&columns);
    let files = files?;
    let output = files.schema(schema.clone(), m, cx)?;
    Some(Box::new(DelimitedSourceConfig {
        files,
        encoding: encoding?,
        compression,
        dialect: dialect?,
        has_headers,
        skip_rows,
        skip_after_header,
        max_rows,
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
        output,
        range: None,
    }))
}

impl SourceConfig for DelimitedSourceConfig {
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

    fn split(&self, parts: usize, cx: &BuildCx) -> Result<Split, BuildError> {
        if let Some(why) = self.whole_only() {
            return Ok(Split::Whole(why));
        }
        let file = &self.files.files[0];
        let opened = self.open_rows(file, cx, true)?;
        if opened.compressed != compress::Compression::None {
            return Ok(Split::Whole(format!(
                "the input is {}-compressed",
                opened.compressed.name()
            )));
        }
        if opened.input.decoder.width().is_none() {
            return Ok(Split::Whole(
                "without a header, its width is that of its first record".into(),
            ));
        }
        let io_err = |e| BuildError::from(IoError::new(&cx.node, "read", &file.path, e));
        let size = std::fs::metadata(&file.path).map_err(io_err)?.len();
        let first = u64::from(self.has_headers) + opened.skipped;
        let ranges = parts::cut(opened.input, first, size, parts).map_err(io_err)?;
        Ok(Split::Ranges(ranges))
    }

    fn read_range(&self, range: SourceRange) -> Option<Box<dyn SourceConfig>> {
        let mut config = self.clone();
        config.range = Some(range);
        Some(Box::new(config))
    }
}

/// The file opened and read up to its first row.
struct Opened {
    input: Input,
    columns: Vec<ColumnReader>,
    /// Records read past (`SkipRowsAfterHeader`).
    skipped: u64,
    compressed: compress::Compression,
}

impl DelimitedSourceConfig {
    /// The source of one file (or of its range): its header read and checked now.
    fn open_file(
        &self,
        file: &InputFile,
        cx: &BuildCx,
    ) -> Result<Box<dyn DeferringSource>, BuildError> {
        let opened = self.open_rows(file, cx, self.range.is_none())?;
        let (input, ordinal) = match self.range {
            None => (opened.input, u64::from(self.has_headers) + opened.skipped),
            Some(range) => {
                let width = opened.input.decoder.width();
                (self.range_input(file, range, width, cx)?, range.record)
            }
        };
        Ok(Box::new(DelimitedSource {
            shape: Arc::new(SourceSpec {
                node: cx.node.clone(),
                label: file.label.clone(),
                dialect: self.dialect,
                columns: opened.columns,
                schema: self.schema.clone(),
                condition: None,
            }),
            path: file.path.clone(),
            chunk_size: self.chunk_size,
            batch_bytes: usize::try_from(cx.batch_bytes).unwrap_or(usize::MAX),
            checks: self.checks,
            reading: Reading::Sequential(Box::new(input)),
            sequential_only: self.sequential_only(),
            unsettled: VecDeque::new(),
            ordinal,
            skipped: opened.skipped,
            max_rows: self.max_rows,
            remaining: self.max_rows,
            compressed: opened.compressed,
            encoding: self.encoding,
            widths_checked: false,
            ranges: 0,
            redos: 0,
            capped: 0,
        }))
    }

    /// The file opened and read up to its first row: byte-order mark, `SkipRows`, the header
    /// (checked against the schema) and, if `skip`, `SkipRowsAfterHeader`.
    fn open_rows(&self, file: &InputFile, cx: &BuildCx, skip: bool) -> Result<Opened, BuildError> {
        let io_err =
            |action, source| BuildError::from(IoError::new(&cx.node, action, &file.path, source));
        let invalid = |message: String| BuildError::Invalid {
            node: cx.node.clone(),
            message: format!("{}: {message}", file.label),
        };
        let stdin = file.path.as_os_str() == "-";
        let opened = compress::open_input(&file.path, stdin, self.compression)
            .map_err(|e| io_err("open", e))?;
        let reader = self.encoding.wrap(opened.reader);
        let mut input = Input::new(reader, self.dialect, self.checks, self.skip_rows)
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
        let skipped = match skip {
            true => self
                .skip_records(&mut input)
                .map_err(|e| io_err("read", e))?,
            false => 0,
        };
        Ok(Opened {
            input,
            columns,
            skipped,
            compressed: opened.format,
        })
    }

    /// The bytes of `range` alone, decoded as a one-thread read of the file decodes them there.
    fn range_input(
        &self,
        file: &InputFile,
        range: SourceRange,
        width: Option<usize>,
        cx: &BuildCx,
    ) -> Result<Input, BuildError> {
        let io_err =
            |action, source| BuildError::from(IoError::new(&cx.node, action, &file.path, source));
        let mut opened = crate::faults::open_input(&file.path).map_err(|e| io_err("open", e))?;
        opened
            .seek(SeekFrom::Start(range.start))
            .map_err(|e| io_err("read", e))?;
        let bytes = crate::faults::Reads(opened);
        let reader: Box<dyn Read + Send> = match range.end {
            Some(end) => Box::new(bytes.take(end.saturating_sub(range.start))),
            None => Box::new(bytes),
        };
        let mut decoder = Decoder::new(self.dialect, self.checks, range.line, range.start);
        decoder.set_width(width);
        Ok(Input::resume(reader, Vec::new(), false, decoder))
    }

    /// Why this source can only be read whole, from its start, if it can.
    fn whole_only(&self) -> Option<String> {
        let files = &self.files.files;
        Some(if files.len() != 1 {
            format!("it reads {} files", files.len())
        } else if files[0].path.as_os_str() == "-" {
            "it reads standard input".into()
        } else if !self.parallel {
            "`Parallel: false`".into()
        } else if self.max_rows.is_some() {
            "`MaxRows` counts records from the start of the file".into()
        } else if !self.encoding.reads_as_is() {
            "its bytes are decoded as they are read (`Encoding`, `InvalidBytes`)".into()
        } else {
            return None;
        })
    }

    /// Why records cannot be split in parallel ranges, if they cannot.
    fn sequential_only(&self) -> Option<&'static str> {
        let d = self.dialect;
        if !self.parallel {
            Some("`Parallel: false`")
        } else if self.max_rows.is_some() {
            Some("`MaxRows` counts records as they are split")
        } else if d.escape.is_some() && d.escape != d.quote {
            Some("with an `Escape` character, counting quotes cannot tell where records end")
        } else {
            None
        }
    }

    /// Read past `SkipRowsAfterHeader` records (malformed ones too: they are not rows); how many
    /// there were, fewer if the file ends first.
    fn skip_records(&self, input: &mut Input) -> std::io::Result<u64> {
        let mut skipped = 0;
        while skipped < self.skip_after_header && !input.decoder.is_done() {
            let mut records = Records::default();
            let want = (self.skip_after_header - skipped).min(self.chunk_size as u64);
            input.read(&mut records, want as usize)?;
            if records.is_empty() {
                break;
            }
            skipped += records.len() as u64;
        }
        Ok(skipped)
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

impl DeferringSource for DelimitedSource {
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
}

impl SourceCommon for DelimitedSource {
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
        if self.compressed != compress::Compression::None {
            notes.push(format!(
                "the input is {}-compressed, decompressed on a thread of its own",
                self.compressed.name()
            ));
        }
        notes.extend(self.encoding.note());
        if self.skipped > 0 {
            notes.push(format!(
                "{} records after the header read past (`SkipRowsAfterHeader`)",
                self.skipped
            ));
        }
        if let (Some(max), Some(0)) = (self.max_rows, self.remaining) {
            notes.push(format!("read {max} records (`MaxRows`) and stopped"));
        }
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

//! Splitting delimited bytes into records, keeping each record's exact position.
//!
//! [`Decoder`] is push-style: feed it byte slices as they are read, and it appends complete
//! records to a [`Records`] buffer, which is later converted column by column into Arrow arrays.
//! It is tested on byte slices without any file.
//!
//! Positions are absolute: the decoder counts every line break it consumes (`\n`, `\r\n`, or a lone
//! `\r`), including those inside quoted fields, so a record's line is the physical line of its first
//! byte in the file.
//!
//! # Why our own decoder on csv-core, not arrow-csv's reader
//!
//! arrow-csv's reader reports positions relative to the batch, not absolute line numbers in the file
//! (arrow-rs#7344, datafusion#15456), and a record with quoted newlines spans several lines. It also has no
//! per-column date and datetime parse formats. FlowEngine needs both: every error names the physical line of
//! the record, and columns declare `Format` and `TimeZone`. So tokenising uses csv-core, which is push-style and
//! RFC 4180. `Decoder` counts every line break it consumes (LF, CRLF or a lone CR, which csv-core's `CRLF`
//! terminator also accepts), including those inside quotes, and keeps each record's raw bytes. `convert.rs`
//! builds the Arrow arrays itself, with the strictness we want (exact decimals, no silent nulls). Writing uses
//! arrow-cast's display formatters for values and our own quoting. arrow-csv is not a dependency.
//!
//! What the decoder adds to csv-core, all in this module:
//! - **Strict quote scan.** csv-core accepts stray quotes silently: `a"b` stays as written, and `"a"b` reads
//!   as `ab`. After csv-core splits a record, `quote_state` walks its raw bytes the way RFC 4180 reads them. A
//!   quote inside an unquoted field, or anything but a quote, delimiter or line end after a closing quote, is
//!   `STRAY_QUOTE` (unless `Quoting: lenient`). A quoted field open at end of input is `UNTERMINATED_QUOTE`.
//!   Records without a quote character cost one `memchr`. The same check then compares the field count with
//!   the expected width under `Ragged`.
//! - **Resync.** An unclosed quote makes csv-core read the following lines as one quoted field, until some
//!   later quote closes it or the input ends. So when a record with a structural problem (quote, width or size)
//!   spans several physical lines, `resync` refuses only its first line, as a record with no fields and that
//!   problem. It puts the rest of the raw bytes in `pushback`, resets csv-core and the line counter to the next
//!   line, and decodes the pushed-back bytes again before any new input. One bad quote costs one row. The lines
//!   read again become records of their own, and may be rejected in turn.
//! - **Bounded records.** When a record's raw bytes pass `max_record_bytes`, a multi-line record is resynced.
//!   A single-line one keeps only its first `max_record_bytes` raw bytes, and the decoder enters `skipping`
//!   mode, which consumes the rest of the line with `memchr` without storing it, then emits it as
//!   `RECORD_TOO_LARGE`. Memory stays bounded however long the line is.
//! - Decoding is identical for every way of chunking the input, including across a resync and a CR/LF pair
//!   split between two slices (`after_cr`). A unit test decodes every chunk size of clean and polluted inputs.
//!
//! Problems found while splitting are stored per record in `Records::problems`. The decoder never fails and
//! never decides what a problem does; the source turns problems into `RowError`s for the executor.

use csv_core::{ReadRecordResult, Terminator};
use flowengine_engine::error::RowErrorKind;

/// A chunk of records stops growing at this many bytes of field data, whatever its row count, so
/// one column of one batch stays well under Arrow's 2 GiB limit for 32-bit string offsets (a record
/// is at most `MaxRecordBytes`, 1 GiB).
pub const MAX_CHUNK_BYTES: usize = 512 << 20;

/// The characters that structure a delimited file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// Field separator.
    pub delimiter: u8,
    /// Quote character; `None` disables quoting.
    pub quote: Option<u8>,
    /// Escape character inside quotes (besides doubling the quote).
    pub escape: Option<u8>,
}

impl Default for Dialect {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: Some(b'"'),
            escape: None,
        }
    }
}

/// Complete records, with the field bytes (quotes removed) of all of them in one buffer.
#[derive(Debug)]
pub struct Records {
    /// Field bytes at which the chunk is full.
    cap: usize,
    data: Vec<u8>,
    /// End offset in `data` of every field of every record.
    ends: Vec<usize>,
    /// Per record: index in `ends` of its first field.
    starts: Vec<usize>,
    /// Per record: absolute 1-based line of its first byte.
    pub lines: Vec<u64>,
    /// Per record: absolute byte offset of its first byte.
    pub offsets: Vec<u64>,
    /// Raw bytes of every record, as read (for messages and, later, reject files).
    raw: Vec<u8>,
    raw_ends: Vec<usize>,
    /// Per record: why it is bad, if it is.
    pub problems: Vec<Option<Problem>>,
}

impl Default for Records {
    fn default() -> Self {
        Self::with_cap(MAX_CHUNK_BYTES)
    }
}

impl Records {
    /// An empty chunk that is full once its field bytes reach `cap` (at most [`MAX_CHUNK_BYTES`]).
    pub fn with_cap(cap: usize) -> Self {
        Self {
            cap: cap.clamp(1, MAX_CHUNK_BYTES),
            data: Vec::new(),
            ends: Vec::new(),
            starts: Vec::new(),
            lines: Vec::new(),
            offsets: Vec::new(),
            raw: Vec::new(),
            raw_ends: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the chunk is full: `limit` records, or its cap of field data.
    pub fn is_full(&self, limit: usize) -> bool {
        self.len() >= limit || self.data.len() >= self.cap
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Make room for records split from `bytes` bytes of input, which they never exceed.
    pub fn reserve_for(&mut self, bytes: usize) {
        self.data.reserve(bytes);
        self.raw.reserve(bytes);
    }

    /// Forget every record, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.starts.clear();
        self.lines.clear();
        self.offsets.clear();
        self.raw.clear();
        self.raw_ends.clear();
        self.problems.clear();
    }

    /// Number of fields in record `r`.
    pub fn field_count(&self, r: usize) -> usize {
        let end = self.starts.get(r + 1).copied().unwrap_or(self.ends.len());
        end - self.starts[r]
    }

    /// Field `k` of record `r`; `None` if the record has fewer fields.
    pub fn field(&self, r: usize, k: usize) -> Option<&[u8]> {
        if k >= self.field_count(r) {
            return None;
        }
        let i = self.starts[r] + k;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.data[start..self.ends[i]])
    }

    /// The record's raw bytes, including its terminator.
    pub fn raw(&self, r: usize) -> &[u8] {
        let start = if r == 0 { 0 } else { self.raw_ends[r - 1] };
        &self.raw[start..self.raw_ends[r]]
    }
}

/// Split records, wherever their bytes are kept: what conversion and rejects read of them.
pub trait RecordSet {
    /// Number of records.
    fn len(&self) -> usize;
    /// True if there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Field `k` of record `r`; `None` if the record has fewer fields.
    fn field(&self, r: usize, k: usize) -> Option<&[u8]>;
    /// Field `k` of every record in order, with the record's index; a record with fewer fields
    /// gives an empty one. Converting a column walks it this way, which a set can do for less
    /// than a [`RecordSet::field`] call per record.
    #[inline]
    fn each_field(&self, k: usize, mut f: impl FnMut(usize, &[u8])) {
        for r in 0..self.len() {
            f(r, self.field(r, k).unwrap_or(b""));
        }
    }
    /// Absolute 1-based line of record `r`'s first byte.
    fn line(&self, r: usize) -> u64;
    /// Absolute byte offset of record `r`'s first byte.
    fn offset(&self, r: usize) -> u64;
    /// Record `r`'s raw bytes, including its terminator.
    fn raw(&self, r: usize) -> &[u8];
    /// True if every field is known to be valid UTF-8, where one check of the whole set can
    /// tell (made at most once, when first asked).
    fn utf8(&self) -> bool {
        false
    }
    /// Why record `r` is bad, if it is.
    fn problem(&self, r: usize) -> Option<&Problem>;
    /// Every record's line, leaving none behind.
    fn take_lines(&mut self) -> Vec<u64>;
}

impl RecordSet for Records {
    fn len(&self) -> usize {
        Records::len(self)
    }

    #[inline]
    fn field(&self, r: usize, k: usize) -> Option<&[u8]> {
        Records::field(self, r, k)
    }

    fn line(&self, r: usize) -> u64 {
        self.lines[r]
    }

    fn offset(&self, r: usize) -> u64 {
        self.offsets[r]
    }

    fn raw(&self, r: usize) -> &[u8] {
        Records::raw(self, r)
    }

    fn problem(&self, r: usize) -> Option<&Problem> {
        self.problems[r].as_ref()
    }

    fn take_lines(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.lines)
    }
}

/// What to do with a record whose field count differs from the expected width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ragged {
    /// It is a bad row (TOO_MANY_FIELDS / TOO_FEW_FIELDS).
    #[default]
    Error,
    /// Missing trailing fields read as empty (null); extra fields are still an error.
    PadNull,
    /// Extra fields are dropped and missing ones read as empty (null).
    Truncate,
}

/// The checks made on every record while splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Refuse a quote inside an unquoted field and text after a closing quote.
    pub strict_quotes: bool,
    /// Fields every record must have; `None` lets the first record decide.
    pub width: Option<usize>,
    /// What a record of another width is.
    pub ragged: Ragged,
    /// Records longer than this are refused without being held in memory.
    pub max_record_bytes: usize,
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            strict_quotes: true,
            width: None,
            ragged: Ragged::Error,
            max_record_bytes: 16 << 20,
        }
    }
}

/// Why a record is bad, found while splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Classification.
    pub kind: RowErrorKind,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Incremental splitter of bytes into [`Records`].
///
/// A record with a structural problem (stray or unclosed quote, wrong field count, too large) that
/// spans several physical lines most likely swallowed the lines after a bad quote. The decoder then
/// *resyncs*: only the record's first line is refused, and decoding restarts on the next line, so
/// one bad quote costs one row, not the rest of the file.
#[derive(Debug)]
pub struct Decoder {
    csv: csv_core::Reader,
    dialect: Dialect,
    checks: Checks,
    line: u64,
    offset: u64,
    in_record: bool,
    rec_line: u64,
    rec_offset: u64,
    rec_raw_start: usize,
    /// The record being decoded: csv-core resumes writing into these across calls.
    rec_out: Vec<u8>,
    rec_len: usize,
    rec_ends: Vec<usize>,
    rec_nends: usize,
    /// Bytes to decode again after a resync, before any new input.
    pushback: Vec<u8>,
    /// Discarding the rest of a line longer than `max_record_bytes`.
    skipping: bool,
    /// The last byte seen was `\r` (so a `\n` next is the same line break).
    after_cr: bool,
    /// csv-core has ended the current record; it is judged and stored on the next step.
    rec_complete: bool,
    /// The record ended at `\r`: the next byte decides whether its `\n` belongs to it.
    await_lf: bool,
    done: bool,
    /// A quote was out of place, a record was too large, or a resync happened: anything after
    /// which counting quotes no longer tells where records end (see `split.rs`).
    irregular: bool,
}

impl Decoder {
    /// A decoder whose first byte is at `line`/`offset` of the file.
    pub fn new(dialect: Dialect, checks: Checks, line: u64, offset: u64) -> Self {
        Self {
            csv: csv_reader(dialect),
            dialect,
            checks,
            line,
            offset,
            in_record: false,
            rec_line: line,
            rec_offset: offset,
            rec_raw_start: 0,
            rec_out: vec![0; 4096],
            rec_len: 0,
            rec_ends: vec![0; 64],
            rec_nends: 0,
            pushback: Vec::new(),
            skipping: false,
            after_cr: false,
            rec_complete: false,
            await_lf: false,
            done: false,
            irregular: false,
        }
    }

    /// Set the expected width (e.g. from the header).
    pub fn set_width(&mut self, width: Option<usize>) {
        self.checks.width = width;
    }

    /// The expected width, once known.
    pub fn width(&self) -> Option<usize> {
        self.checks.width
    }

    /// True after the end of input has been decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The line the next unread byte is on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The absolute offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether everything consumed so far is complete records, nothing is held back, and the
    /// last byte consumed was `\n`: a new decoder started at `line()`/`offset()` on the unread
    /// bytes would split them exactly as this one will.
    pub fn at_record_boundary(&self) -> bool {
        !self.in_record
            && !self.rec_complete
            && !self.await_lf
            && !self.skipping
            && !self.done
            && self.pushback.is_empty()
            && !self.after_cr
    }

    /// Whether a quote was out of place (even under lenient quoting), a record was too large or a
    /// resync happened since this decoder started.
    pub fn irregular(&self) -> bool {
        self.irregular
    }

    /// Decode from `input` until `records` holds `limit` records or the input is used up; returns
    /// the bytes of `input` consumed. Pass `eof = true` (with the remaining, possibly empty, input)
    /// once the source has no more bytes, so the last record is finished even without a final
    /// newline.
    pub fn decode(
        &mut self,
        input: &[u8],
        eof: bool,
        records: &mut Records,
        limit: usize,
    ) -> usize {
        let mut consumed = 0;
        loop {
            while !self.pushback.is_empty() && !records.is_full(limit) {
                let pending = std::mem::take(&mut self.pushback);
                let (used, _) = self.step(&pending, false, records, limit);
                // A resync inside the pending bytes queued its own bytes first; the rest follow.
                self.pushback.extend_from_slice(&pending[used..]);
                if used == 0 && self.pushback.len() == pending.len() {
                    break; // waiting for more input to finish a record
                }
            }
            if records.is_full(limit) || self.done {
                return consumed;
            }
            let (used, resynced) = self.step(
                &input[consumed..],
                eof && self.pushback.is_empty(),
                records,
                limit,
            );
            consumed += used;
            if !resynced {
                return consumed;
            }
        }
    }

    /// Decode until the limit, the end of `input`, or a resync (which returns `true`).
    fn step(
        &mut self,
        input: &[u8],
        eof: bool,
        records: &mut Records,
        limit: usize,
    ) -> (usize, bool) {
        let mut consumed = 0;
        while !records.is_full(limit) && !self.done {
            if self.await_lf {
                match input.get(consumed) {
                    None if !eof => break,
                    Some(b'\n') => {
                        records.raw.push(b'\n');
                        self.advance(b"\n");
                        consumed += 1;
                    }
                    _ => {}
                }
                self.await_lf = false;
            }
            if self.in_record && self.rec_complete {
                self.rec_complete = false;
                let ended_by_eof = eof && consumed == input.len();
                match self.check(records, ended_by_eof) {
                    Some(problem) if self.spans_lines(records) => {
                        self.resync(records, problem);
                        return (consumed, true);
                    }
                    problem => self.push_record(records, problem),
                }
                continue;
            }
            if self.skipping {
                // The oversized line ends at its first line break of any kind.
                match memchr::memchr2(b'\n', b'\r', &input[consumed..]) {
                    Some(i) => {
                        self.advance(&input[consumed..=consumed + i]);
                        consumed += i + 1;
                        self.finish_too_large(records);
                    }
                    None => {
                        self.advance(&input[consumed..]);
                        consumed = input.len();
                        if !eof {
                            break;
                        }
                        self.finish_too_large(records);
                    }
                }
                continue;
            }
            if !self.in_record {
                // Blank lines between records are not records; skip them but count them.
                let rest = &input[consumed..];
                let blank = rest
                    .iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
                self.advance(&rest[..blank]);
                consumed += blank;
                if consumed == input.len() && !eof {
                    break;
                }
                self.in_record = true;
                self.rec_line = self.line;
                self.rec_offset = self.offset;
                self.rec_raw_start = records.raw.len();
            }
            let rest = &input[consumed..];
            let (result, nin, nout, nend) = self.csv.read_record(
                rest,
                &mut self.rec_out[self.rec_len..],
                &mut self.rec_ends[self.rec_nends..],
            );
            records.raw.extend_from_slice(&rest[..nin]);
            self.advance(&rest[..nin]);
            consumed += nin;
            self.rec_len += nout;
            self.rec_nends += nend;
            if records.raw.len() - self.rec_raw_start > self.checks.max_record_bytes {
                let problem = self.too_large_problem();
                if self.spans_lines(records) {
                    self.resync(records, problem);
                    return (consumed, true);
                }
                // One enormous line: keep a bounded prefix. If its line break was already consumed
                // (csv-core ended the record, or the break sits inside an open quote), the next
                // line must be left alone; otherwise drop the rest of this line first.
                let line_ended = matches!(records.raw.last(), Some(b'\n' | b'\r'));
                records
                    .raw
                    .truncate(self.rec_raw_start + self.checks.max_record_bytes);
                if result == ReadRecordResult::Record || line_ended {
                    self.finish_too_large(records);
                } else {
                    self.skipping = true;
                }
                continue;
            }
            match result {
                ReadRecordResult::InputEmpty => {
                    if !eof {
                        break;
                    }
                }
                ReadRecordResult::OutputFull => {
                    let len = self.rec_out.len();
                    self.rec_out.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.rec_ends.len();
                    self.rec_ends.resize(len * 2, 0);
                }
                ReadRecordResult::Record => {
                    // csv-core ends a record at `\r`: whether a `\n` follows (and belongs to this
                    // record's raw bytes) may only be known from the next input.
                    self.await_lf = records.raw.last() == Some(&b'\r');
                    self.rec_complete = true;
                }
                ReadRecordResult::End => {
                    records.raw.truncate(self.rec_raw_start);
                    self.in_record = false;
                    self.done = true;
                }
            }
        }
        (consumed, false)
    }

    /// Structural checks on the record just split.
    fn check(&mut self, records: &Records, ended_by_eof: bool) -> Option<Problem> {
        let raw = &records.raw[self.rec_raw_start..];
        let scan = quote_state(raw, self.dialect);
        self.irregular |= scan != QuoteScan::Clean;
        match scan {
            QuoteScan::Clean => {}
            QuoteScan::Unclosed if ended_by_eof => {
                return Some(Problem {
                    kind: RowErrorKind::UnterminatedQuote,
                    message: "a quoted field is never closed before the end of the file".into(),
                    hint: "look for a stray quote on this line; a quote inside a field must be doubled (\"\")".into(),
                })
            }
            QuoteScan::Unclosed => {}
            QuoteScan::Stray(at) if self.checks.strict_quotes => {
                let col = raw[..at].iter().filter(|&&b| b == self.dialect.delimiter).count() + 1;
                return Some(Problem {
                    kind: RowErrorKind::StrayQuote,
                    message: format!("a stray quote in field {col} (byte {} of the record): a quote inside an unquoted value, or text after a closing quote", at + 1),
                    hint: "double quotes inside quoted values (\"\"), quote values that contain quotes, or set `Quoting: lenient`".into(),
                });
            }
            QuoteScan::Stray(_) => {}
        }
        let n = self.rec_nends;
        let width = *self.checks.width.get_or_insert(n);
        let refused = match self.checks.ragged {
            Ragged::Error => n != width,
            Ragged::PadNull => n > width,
            Ragged::Truncate => false,
        };
        if !refused {
            return None;
        }
        let (kind, what) = if n > width {
            (
                RowErrorKind::TooManyFields,
                "an unquoted delimiter in a value?",
            )
        } else {
            (
                RowErrorKind::TooFewFields,
                "a missing delimiter, or a line break inside an unquoted value?",
            )
        };
        Some(Problem {
            kind,
            message: format!("expected {width} fields, found {n}"),
            hint: format!(
                "records have {width} fields; line {} has {n}: {what} set `RaggedRows` or fix the quoting",
                self.rec_line
            ),
        })
    }

    fn too_large_problem(&self) -> Problem {
        let max = self.checks.max_record_bytes;
        Problem {
            kind: RowErrorKind::RecordTooLarge,
            message: format!("the record is longer than {max} bytes (`MaxRecordBytes`); the reject keeps its first {max} bytes"),
            hint: "an unclosed quote often makes a record swallow the lines after it; otherwise raise `MaxRecordBytes`".into(),
        }
    }

    fn finish_too_large(&mut self, records: &mut Records) {
        self.irregular = true;
        self.skipping = false;
        let problem = self.too_large_problem();
        self.rec_len = 0;
        self.rec_nends = 0;
        self.push_record(records, Some(problem));
        self.csv = csv_reader(self.dialect);
    }

    fn spans_lines(&self, records: &Records) -> bool {
        let raw = &records.raw[self.rec_raw_start..];
        let body = raw.trim_ascii_end();
        memchr::memchr2(b'\n', b'\r', body).is_some()
    }

    /// Refuse the current record's first line and queue the rest of it for decoding again.
    fn resync(&mut self, records: &mut Records, mut problem: Problem) {
        self.irregular = true;
        let start = self.rec_raw_start;
        let lines =
            1 + memchr::memchr2_iter(b'\n', b'\r', records.raw[start..].trim_ascii_end()).count();
        problem.message = format!(
            "this line starts a record that runs over {lines}+ lines ({}); only this line is refused and reading restarts on the next line",
            problem.message
        );
        let raw = &records.raw[start..];
        let first_line = match memchr::memchr2(b'\n', b'\r', raw) {
            Some(i) if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') => i + 2,
            Some(i) => i + 1,
            None => raw.len(),
        };
        let mut rest = records.raw[start + first_line..].to_vec();
        rest.extend_from_slice(&self.pushback);
        self.pushback = rest;
        // The refused line keeps its bytes, cut at the record limit like any oversized record.
        records
            .raw
            .truncate(start + first_line.min(self.checks.max_record_bytes));
        // The refused line has no fields: drop what csv-core decoded from the swallowed bytes.
        self.rec_len = 0;
        self.rec_nends = 0;
        self.push_record(records, Some(problem));
        self.line = self.rec_line + 1;
        self.offset = self.rec_offset + first_line as u64;
        self.after_cr = false;
        self.csv = csv_reader(self.dialect);
    }

    fn push_record(&mut self, records: &mut Records, problem: Option<Problem>) {
        let base = records.data.len();
        records
            .data
            .extend_from_slice(&self.rec_out[..self.rec_len]);
        records.starts.push(records.ends.len());
        records
            .ends
            .extend(self.rec_ends[..self.rec_nends].iter().map(|e| base + e));
        records.lines.push(self.rec_line);
        records.offsets.push(self.rec_offset);
        records.raw_ends.push(records.raw.len());
        records.problems.push(problem);
        self.in_record = false;
        self.rec_len = 0;
        self.rec_nends = 0;
    }

    /// Count line breaks as they pass: `\n`, `\r\n` and a lone `\r` each end one line.
    fn advance(&mut self, consumed: &[u8]) {
        for i in memchr::memchr2_iter(b'\n', b'\r', consumed) {
            let part_of_crlf = consumed[i] == b'\n'
                && if i == 0 {
                    self.after_cr
                } else {
                    consumed[i - 1] == b'\r'
                };
            if !part_of_crlf {
                self.line += 1;
            }
        }
        if let Some(&last) = consumed.last() {
            self.after_cr = last == b'\r';
        }
        self.offset += consumed.len() as u64;
    }
}

/// Line breaks in `bytes`: `\n`, `\r\n` and a lone `\r` each count once.
pub fn line_breaks(bytes: &[u8]) -> u64 {
    memchr::memchr2_iter(b'\n', b'\r', bytes)
        .filter(|&i| !(bytes[i] == b'\n' && i > 0 && bytes[i - 1] == b'\r'))
        .count() as u64
}

/// Where field `k` lies in a record's raw bytes (quotes included), reading quotes as RFC 4180 does.
pub fn field_span(raw: &[u8], k: usize, dialect: Dialect) -> std::ops::Range<usize> {
    let (mut field, mut start, mut in_quotes, mut escaped) = (0, 0, false, false);
    for (i, &b) in raw.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quotes && Some(b) == dialect.escape && Some(b) != dialect.quote {
            escaped = true;
        } else if Some(b) == dialect.quote {
            in_quotes = !in_quotes;
        } else if !in_quotes && (b == b'\n' || b == b'\r') {
            // The record's line break ends the last field.
            return if field == k {
                start..i
            } else {
                raw.len()..raw.len()
            };
        } else if !in_quotes && b == dialect.delimiter {
            if field == k {
                return start..i;
            }
            field += 1;
            start = i + 1;
        }
    }
    if field == k {
        start..raw.len()
    } else {
        raw.len()..raw.len()
    }
}

fn csv_reader(dialect: Dialect) -> csv_core::Reader {
    let mut b = csv_core::ReaderBuilder::new();
    b.delimiter(dialect.delimiter)
        .terminator(Terminator::CRLF)
        .escape(dialect.escape);
    match dialect.quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    b.build()
}

/// What a record's raw bytes say about its quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteScan {
    Clean,
    /// A quoted field is still open at the end of the bytes.
    Unclosed,
    /// A quote where RFC 4180 allows none, at this byte of the record.
    Stray(usize),
}

/// Walk the record the way RFC 4180 reads it, looking for quotes out of place. Records without a
/// quote character (most of them) cost one memchr.
fn quote_state(raw: &[u8], dialect: Dialect) -> QuoteScan {
    let Some(q) = dialect.quote else {
        return QuoteScan::Clean;
    };
    if memchr::memchr(q, raw).is_none() {
        return QuoteScan::Clean;
    }
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        Escaped,
        QuoteInQuoted,
    }
    let d = dialect.delimiter;
    let mut state = S::FieldStart;
    for (i, &b) in raw.iter().enumerate() {
        let line_end = b == b'\n' || b == b'\r';
        state = match state {
            S::FieldStart | S::Unquoted if b == d => S::FieldStart,
            S::FieldStart | S::Unquoted if line_end => S::FieldStart,
            S::FieldStart if b == q => S::Quoted,
            S::FieldStart | S::Unquoted if b == q => return QuoteScan::Stray(i),
            S::FieldStart | S::Unquoted => S::Unquoted,
            S::Quoted if Some(b) == dialect.escape && b != q => S::Escaped,
            S::Quoted if b == q => S::QuoteInQuoted,
            S::Quoted => S::Quoted,
            S::Escaped => S::Quoted,
            S::QuoteInQuoted if b == q => S::Quoted,
            S::QuoteInQuoted if b == d || line_end => S::FieldStart,
            S::QuoteInQuoted => return QuoteScan::Stray(i),
        };
    }
    if matches!(state, S::Quoted | S::Escaped) {
        QuoteScan::Unclosed
    } else {
        QuoteScan::Clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        Decoder::new(Dialect::default(), Checks::default(), 1, 0)
    }

    /// Decode `input` fed in pieces of `step` bytes.
    fn decode_with(mut d: Decoder, input: &[u8], step: usize) -> Records {
        let mut records = Records::default();
        let mut pending: Vec<u8> = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            pending.extend_from_slice(chunk);
            let used = d.decode(&pending, false, &mut records, usize::MAX);
            pending.drain(..used);
        }
        let used = d.decode(&pending, true, &mut records, usize::MAX);
        assert_eq!(used, pending.len());
        assert!(d.is_done());
        records
    }

    fn decode_in_steps(input: &[u8], step: usize) -> Records {
        decode_with(decoder(), input, step)
    }

    fn fields(r: &Records, i: usize) -> Vec<String> {
        (0..r.field_count(i))
            .map(|k| String::from_utf8(r.field(i, k).unwrap().to_vec()).unwrap())
            .collect()
    }

    fn kinds(r: &Records) -> Vec<Option<RowErrorKind>> {
        r.problems
            .iter()
            .map(|p| p.as_ref().map(|p| p.kind))
            .collect()
    }

    const SAMPLE: &[u8] = b"a,b\r\n\"x\ny\",2\n\n\n\"q\"\"uote\",\"\"\nlast,no newline";

    #[test]
    fn lines_are_absolute_across_quoted_newlines_and_blank_lines() {
        let r = decode_in_steps(SAMPLE, 1 << 20);
        assert_eq!(r.len(), 4);
        assert_eq!(r.lines, [1, 2, 6, 7]);
        assert_eq!(fields(&r, 1), ["x\ny", "2"]);
        assert_eq!(fields(&r, 2), ["q\"uote", ""]);
        assert_eq!(fields(&r, 3), ["last", "no newline"]);
        assert_eq!(r.offsets[1], 5);
        assert_eq!(r.raw(1), b"\"x\ny\",2\n");
        assert_eq!(kinds(&r), [None, None, None, None]);
    }

    #[test]
    fn any_chunking_gives_the_same_records() {
        let polluted = b"a,b\n1,\"x\"y\n2,3\n\"open,4\n5,6\n7,8,9\n10,11";
        for input in [SAMPLE, polluted.as_slice()] {
            let whole = decode_in_steps(input, 1 << 20);
            for step in 1..=input.len() {
                let r = decode_in_steps(input, step);
                assert_eq!(r.lines, whole.lines, "step {step}");
                assert_eq!(r.offsets, whole.offsets, "step {step}");
                assert_eq!(r.problems, whole.problems, "step {step}");
                for i in 0..r.len() {
                    assert_eq!(fields(&r, i), fields(&whole, i), "step {step}");
                    assert_eq!(r.raw(i), whole.raw(i), "step {step}");
                }
            }
        }
    }

    #[test]
    fn lone_carriage_returns_end_lines_too() {
        let r = decode_in_steps(b"a,b\r1,2\r\r3,4\r\n5,6", 1 << 20);
        assert_eq!(r.lines, [1, 2, 4, 5]);
    }

    #[test]
    fn long_fields_and_many_fields_grow_the_buffers() {
        let long = "x".repeat(100_000);
        let many = vec!["f"; 500].join(",");
        let input = format!("{long},\"{long}\"\n{many}\n");
        let checks = Checks {
            ragged: Ragged::Truncate,
            ..Checks::default()
        };
        let r = decode_with(
            Decoder::new(Dialect::default(), checks, 1, 0),
            input.as_bytes(),
            4096,
        );
        assert_eq!(r.field(0, 1).unwrap().len(), 100_000);
        assert_eq!(r.field_count(1), 500);
    }

    #[test]
    fn a_stray_quote_costs_one_line_not_the_rest_of_the_file() {
        // Line 3 opens a quote that never closes; lines 4 and 5 must survive.
        let r = decode_in_steps(b"a,b\n1,2\n\"3,4\n5,6\n7,8\n", 5);
        assert_eq!(r.lines, [1, 2, 3, 4, 5]);
        assert_eq!(kinds(&r)[2], Some(RowErrorKind::UnterminatedQuote));
        assert_eq!(r.raw(2), b"\"3,4\n");
        assert_eq!(fields(&r, 3), ["5", "6"]);
        assert_eq!(fields(&r, 4), ["7", "8"]);
    }

    #[test]
    fn stray_quotes_are_found_in_strict_mode_only() {
        let input = b"a,b\n1,x\"y\n\"q\"z,2\n3,\"ok\"\"\"\n";
        let r = decode_in_steps(input, 1 << 20);
        assert_eq!(
            kinds(&r),
            [
                None,
                Some(RowErrorKind::StrayQuote),
                Some(RowErrorKind::StrayQuote),
                None
            ]
        );
        let lenient = Checks {
            strict_quotes: false,
            ..Checks::default()
        };
        let r = decode_with(
            Decoder::new(Dialect::default(), lenient, 1, 0),
            input,
            1 << 20,
        );
        assert_eq!(kinds(&r), [None, None, None, None]);
    }

    #[test]
    fn widths_follow_the_ragged_rows_setting() {
        let input = b"a,b,c\n1,2\n1,2,3,4\n";
        let r = decode_in_steps(input, 3);
        assert_eq!(
            kinds(&r),
            [
                None,
                Some(RowErrorKind::TooFewFields),
                Some(RowErrorKind::TooManyFields)
            ]
        );
        let pad = Checks {
            ragged: Ragged::PadNull,
            ..Checks::default()
        };
        let r = decode_with(Decoder::new(Dialect::default(), pad, 1, 0), input, 3);
        assert_eq!(kinds(&r), [None, None, Some(RowErrorKind::TooManyFields)]);
        let truncate = Checks {
            ragged: Ragged::Truncate,
            ..Checks::default()
        };
        let r = decode_with(Decoder::new(Dialect::default(), truncate, 1, 0), input, 3);
        assert_eq!(kinds(&r), [None, None, None]);
    }

    #[test]
    fn oversized_records_are_refused_without_being_held() {
        let huge_line = format!("1,{}\n2,3\n", "x".repeat(10_000));
        let checks = Checks {
            max_record_bytes: 100,
            ..Checks::default()
        };
        let r = decode_with(
            Decoder::new(Dialect::default(), checks, 1, 0),
            huge_line.as_bytes(),
            64,
        );
        assert_eq!(kinds(&r), [Some(RowErrorKind::RecordTooLarge), None]);
        assert_eq!(r.raw(0).len(), 100);
        assert_eq!(r.lines, [1, 2]);
        assert_eq!(fields(&r, 1), ["2", "3"]);
        // An unclosed quote that would swallow the file is cut at the limit and resynced.
        let runaway = format!("\"1,2\n{}", "3,4\n".repeat(100));
        let r = decode_with(
            Decoder::new(Dialect::default(), checks, 1, 0),
            runaway.as_bytes(),
            7,
        );
        assert_eq!(kinds(&r)[0], Some(RowErrorKind::RecordTooLarge));
        assert_eq!(r.len(), 101);
        assert!(r.problems[1..].iter().all(Option::is_none));
    }

    #[test]
    fn an_oversized_line_in_a_cr_only_file_ends_at_its_carriage_return() {
        let input = format!("1,a\r2,{}\r3,c\r4,d\r", "x".repeat(500));
        let checks = Checks {
            max_record_bytes: 100,
            ..Checks::default()
        };
        let r = decode_with(
            Decoder::new(Dialect::default(), checks, 1, 0),
            input.as_bytes(),
            7,
        );
        assert_eq!(
            kinds(&r),
            [None, Some(RowErrorKind::RecordTooLarge), None, None]
        );
        assert_eq!(r.lines, [1, 2, 3, 4]);
        assert_eq!(fields(&r, 3), ["4", "d"]);
    }

    #[test]
    fn an_oversized_line_read_in_one_piece_leaves_the_next_line_alone() {
        let input = format!("1,a\n2,{}\n3,c\n", "x".repeat(500));
        let checks = Checks {
            max_record_bytes: 100,
            ..Checks::default()
        };
        let r = decode_with(
            Decoder::new(Dialect::default(), checks, 1, 0),
            input.as_bytes(),
            1 << 20,
        );
        assert_eq!(kinds(&r), [None, Some(RowErrorKind::RecordTooLarge), None]);
        assert_eq!(fields(&r, 2), ["3", "c"]);
    }

    #[test]
    fn an_oversized_line_ending_inside_an_open_quote_leaves_the_next_line_alone() {
        // Found by fuzzing: the line break was consumed (inside the open quote) when the limit hit,
        // and skipping to the *next* break swallowed the following line.
        let input = format!("1,a\n2,\"{}\r3,c\n4,d\n", "x".repeat(200));
        let checks = Checks {
            max_record_bytes: 100,
            ..Checks::default()
        };
        for step in [1, 3, 7, 1 << 20] {
            let r = decode_with(
                Decoder::new(Dialect::default(), checks, 1, 0),
                input.as_bytes(),
                step,
            );
            assert_eq!(r.lines, [1, 2, 3, 4], "step {step}");
            assert_eq!(
                kinds(&r)[1],
                Some(RowErrorKind::RecordTooLarge),
                "step {step}"
            );
        }
    }

    #[test]
    fn field_spans_and_line_breaks_follow_the_dialect() {
        let d = Dialect::default();
        let raw = b"1,\"a,\"\"b\",c\r\n";
        assert_eq!(field_span(raw, 0, d), 0..1);
        assert_eq!(field_span(raw, 1, d), 2..9);
        assert_eq!(field_span(raw, 2, d), 10..11);
        assert_eq!(field_span(raw, 3, d), raw.len()..raw.len());
        assert_eq!(line_breaks(b"a\r\nb\rc\nd"), 3);
    }

    #[test]
    fn decoding_stops_at_the_limit_and_resumes() {
        let mut d = decoder();
        let mut r = Records::default();
        let input = b"1\n2\n3\n";
        let used = d.decode(input, true, &mut r, 2);
        assert_eq!(r.len(), 2);
        r.clear();
        d.decode(&input[used..], true, &mut r, 2);
        assert_eq!(fields(&r, 0), ["3"]);
        assert_eq!(r.lines, [3]);
    }
}

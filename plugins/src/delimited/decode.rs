//! Splitting delimited bytes into records, keeping each record's exact position.
//!
//! [`Decoder`] is push-style: feed it byte slices as they are read, and it appends complete
//! records to a [`Records`] buffer, which is later converted column by column into Arrow arrays.
//! It is tested on byte slices without any file.
//!
//! Positions are absolute: the decoder counts every `\n` it consumes, including those inside quoted
//! fields, so a record's line is the physical line of its first byte in the file.

use csv_core::{ReadRecordResult, Terminator};

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
#[derive(Debug, Default)]
pub struct Records {
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
}

impl Records {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
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

/// A record the decoder could not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnterminatedQuote {
    /// Line where the record (and its open quote) starts.
    pub line: u64,
    /// Byte offset of the record.
    pub offset: u64,
}

/// Incremental splitter of bytes into [`Records`].
#[derive(Debug)]
pub struct Decoder {
    csv: csv_core::Reader,
    quote: Option<u8>,
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
    done: bool,
}

impl Decoder {
    /// A decoder whose first byte is at `line`/`offset` of the file.
    pub fn new(dialect: Dialect, line: u64, offset: u64) -> Self {
        let mut b = csv_core::ReaderBuilder::new();
        b.delimiter(dialect.delimiter)
            .terminator(Terminator::CRLF)
            .escape(dialect.escape);
        match dialect.quote {
            Some(q) => b.quote(q),
            None => b.quoting(false),
        };
        Self {
            csv: b.build(),
            quote: dialect.quote,
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
            done: false,
        }
    }

    /// True after the end of input has been decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The line the next unread byte is on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The byte offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of the record currently being decoded (to bound memory on runaway records).
    pub fn partial_len(&self) -> usize {
        self.rec_len
    }

    /// Decode from `input` until `records` holds `limit` records or the input is used up; returns
    /// the bytes consumed. Pass `eof = true` (with the remaining, possibly empty, input) once the
    /// source has no more bytes, so the last record is finished even without a final newline.
    pub fn decode(
        &mut self,
        input: &[u8],
        eof: bool,
        records: &mut Records,
        limit: usize,
    ) -> Result<usize, UnterminatedQuote> {
        let mut consumed = 0;
        while records.len() < limit && !self.done {
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
                    let ended_by_eof = eof && consumed == input.len();
                    if ended_by_eof && self.open_quote(records) {
                        return Err(UnterminatedQuote {
                            line: self.rec_line,
                            offset: self.rec_offset,
                        });
                    }
                    self.push_record(records);
                }
                ReadRecordResult::End => {
                    records.raw.truncate(self.rec_raw_start);
                    self.in_record = false;
                    self.done = true;
                }
            }
        }
        Ok(consumed)
    }

    fn push_record(&mut self, records: &mut Records) {
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
        self.in_record = false;
        self.rec_len = 0;
        self.rec_nends = 0;
    }

    /// Whether the last record, ended by end of input, left a quoted field open. Under RFC 4180 a
    /// doubled quote does not change parity, so an odd quote count means an unclosed quote.
    fn open_quote(&self, records: &Records) -> bool {
        let Some(q) = self.quote else { return false };
        let raw = &records.raw[self.rec_raw_start..];
        memchr::memchr_iter(q, raw).count() % 2 == 1
    }

    fn advance(&mut self, consumed: &[u8]) {
        self.line += memchr::memchr_iter(b'\n', consumed).count() as u64;
        self.offset += consumed.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed in pieces of `step` bytes.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<Records, UnterminatedQuote> {
        let mut d = Decoder::new(Dialect::default(), 1, 0);
        let mut records = Records::default();
        let mut pending: Vec<u8> = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            pending.extend_from_slice(chunk);
            let used = d.decode(&pending, false, &mut records, usize::MAX)?;
            pending.drain(..used);
        }
        d.decode(&pending, true, &mut records, usize::MAX)?;
        assert!(d.is_done());
        Ok(records)
    }

    fn fields(r: &Records, i: usize) -> Vec<String> {
        (0..r.field_count(i))
            .map(|k| String::from_utf8(r.field(i, k).unwrap().to_vec()).unwrap())
            .collect()
    }

    const SAMPLE: &[u8] = b"a,b\r\n\"x\ny\",2\n\n\n\"q\"\"uote\",\"\"\nlast,no newline";

    #[test]
    fn lines_are_absolute_across_quoted_newlines_and_blank_lines() {
        let r = decode_in_steps(SAMPLE, 1 << 20).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r.lines, [1, 2, 6, 7]);
        assert_eq!(fields(&r, 1), ["x\ny", "2"]);
        assert_eq!(fields(&r, 2), ["q\"uote", ""]);
        assert_eq!(fields(&r, 3), ["last", "no newline"]);
        assert_eq!(r.offsets[1], 5);
        assert_eq!(r.raw(1), b"\"x\ny\",2\n");
    }

    #[test]
    fn any_chunking_gives_the_same_records() {
        let whole = decode_in_steps(SAMPLE, 1 << 20).unwrap();
        for step in 1..=SAMPLE.len() {
            let r = decode_in_steps(SAMPLE, step).unwrap();
            assert_eq!(r.lines, whole.lines, "step {step}");
            assert_eq!(r.offsets, whole.offsets, "step {step}");
            for i in 0..r.len() {
                assert_eq!(fields(&r, i), fields(&whole, i), "step {step}");
                assert_eq!(r.raw(i), whole.raw(i), "step {step}");
            }
        }
    }

    #[test]
    fn long_fields_and_many_fields_grow_the_buffers() {
        let long = "x".repeat(100_000);
        let many = vec!["f"; 500].join(",");
        let input = format!("{long},\"{long}\"\n{many}\n");
        let r = decode_in_steps(input.as_bytes(), 4096).unwrap();
        assert_eq!(r.field(0, 1).unwrap().len(), 100_000);
        assert_eq!(r.field_count(1), 500);
    }

    #[test]
    fn an_unclosed_quote_at_the_end_is_reported_at_its_line() {
        let err = decode_in_steps(b"a,b\n1,\"open\n2,3\n", 3).unwrap_err();
        assert_eq!(err, UnterminatedQuote { line: 2, offset: 4 });
    }

    #[test]
    fn decoding_stops_at_the_limit_and_resumes() {
        let mut d = Decoder::new(Dialect::default(), 1, 0);
        let mut r = Records::default();
        let input = b"1\n2\n3\n";
        let used = d.decode(input, true, &mut r, 2).unwrap();
        assert_eq!(r.len(), 2);
        r.clear();
        d.decode(&input[used..], true, &mut r, 2).unwrap();
        assert_eq!(fields(&r, 0), ["3"]);
        assert_eq!(r.lines, [3]);
    }
}

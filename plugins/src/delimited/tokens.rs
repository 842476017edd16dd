//! The fast path for splitting a range: field spans over the range's own bytes.
//!
//! [`super::decode::Decoder`] runs csv-core into a record buffer and copies every record's fields
//! and raw bytes into [`super::decode::Records`]; on the benchmark file that was about 40% of the
//! CPU time of a typed read. A range already holds its whole input, so [`tokenize`] only records
//! where fields and records lie in it. It looks at the bytes 16 at a time (SIMD) and stops only at
//! the delimiter, the quote and line breaks, so a row costs a few dozen steps instead of one per
//! byte; only quoted fields with doubled quotes are copied, to unescape them.
//!
//! It handles well-formed records only. At the first thing the decoder would treat in any other
//! way (a quote out of place, an unclosed quote, a record of another width, a record near
//! `MaxRecordBytes`) it gives up on the whole range, which is then split by the decoder as before.
//! Wherever it succeeds, its records are exactly the decoder's: same fields, lines, offsets and
//! raw bytes, and no problem among them (a proptest below checks this on arbitrary input).

use std::sync::{Arc, OnceLock};

use super::bytes::Masks;
use super::decode::{Dialect, Problem, RecordSet};

/// Bytes of a range: a part of a block that other ranges share.
#[derive(Debug, Clone)]
pub struct Slice {
    /// The block read from the file.
    pub block: Arc<Vec<u8>>,
    /// Where the range starts in `block`.
    pub start: usize,
    /// Where it ends.
    pub end: usize,
}

impl std::ops::Deref for Slice {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.block[self.start..self.end]
    }
}

/// Set on a span's start when its bytes are in [`Tokens::unescaped`], not in the range.
const UNESCAPED: u32 = 1 << 31;

/// The records of one range, as spans over its bytes. Every record has `width` fields.
#[derive(Debug)]
pub struct Tokens {
    bytes: Slice,
    width: usize,
    /// `width` per record: each field's start and end in `bytes` (or in `unescaped`, when the
    /// start carries [`UNESCAPED`]).
    spans: Vec<(u32, u32)>,
    /// Quoted fields with doubled quotes, undoubled.
    unescaped: Vec<u8>,
    /// Per record: where its raw bytes (terminator included) start and end in `bytes`.
    raw: Vec<(u32, u32)>,
    /// Per record: absolute 1-based line of its first byte.
    lines: Vec<u64>,
    /// Absolute offset of `bytes[0]`.
    offset: u64,
    /// The delimiter and the quote are ASCII, so fields end at ASCII bytes and lose only ASCII
    /// quotes: if the range is UTF-8, so is each field.
    ascii_syntax: bool,
    /// Every byte of the range is UTF-8: checked once, when first asked.
    utf8: OnceLock<bool>,
}

impl Tokens {
    /// The bytes of a field's span: in `bytes` (the range's), or in `unescaped`.
    #[inline]
    fn text<'a>(&'a self, bytes: &'a [u8], (start, end): (u32, u32)) -> &'a [u8] {
        if start & UNESCAPED == 0 {
            &bytes[start as usize..end as usize]
        } else {
            &self.unescaped[(start & !UNESCAPED) as usize..end as usize]
        }
    }
}

impl RecordSet for Tokens {
    fn len(&self) -> usize {
        self.raw.len()
    }

    #[inline]
    fn field(&self, r: usize, k: usize) -> Option<&[u8]> {
        if k >= self.width {
            return None;
        }
        Some(self.text(&self.bytes, self.spans[r * self.width + k]))
    }

    #[inline]
    fn each_field(&self, k: usize, mut f: impl FnMut(usize, &[u8])) {
        if k >= self.width {
            return (0..self.len()).for_each(|r| f(r, b""));
        }
        // The range's bytes looked up once for the column, not once per field, and its spans
        // taken one record apart.
        let bytes: &[u8] = &self.bytes;
        // No records, no spans.
        let spans = self.spans.get(k..).unwrap_or_default();
        for (r, &span) in spans.iter().step_by(self.width).enumerate() {
            f(r, self.text(bytes, span));
        }
    }

    fn line(&self, r: usize) -> u64 {
        self.lines[r]
    }

    fn offset(&self, r: usize) -> u64 {
        self.offset + u64::from(self.raw[r].0)
    }

    fn raw(&self, r: usize) -> &[u8] {
        let (start, end) = self.raw[r];
        &self.bytes[start as usize..end as usize]
    }

    fn utf8(&self) -> bool {
        self.ascii_syntax
            && *self
                .utf8
                .get_or_init(|| std::str::from_utf8(&self.bytes).is_ok())
    }

    fn problem(&self, _: usize) -> Option<&Problem> {
        None
    }

    fn take_lines(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.lines)
    }
}

/// Split `bytes` (a range starting on a record boundary at `line` and `offset`, ending on one or
/// at the end of the file) into records of `width` fields, or `None` where the decoder must.
pub fn tokenize(
    bytes: &Slice,
    line: u64,
    offset: u64,
    dialect: Dialect,
    width: usize,
    max_record_bytes: usize,
) -> Option<Tokens> {
    let b: &[u8] = bytes;
    let plain = |c: u8| c != b'\n' && c != b'\r';
    let supported = dialect.escape.is_none()
        && plain(dialect.delimiter)
        && dialect
            .quote
            .is_none_or(|q| plain(q) && q != dialect.delimiter)
        && b.len() < UNESCAPED as usize
        && width > 0;
    if !supported {
        return None;
    }
    let mut cut = Cutter {
        b,
        delimiter: dialect.delimiter,
        quote: dialect.quote,
        width,
        max_record_bytes,
        line,
        rec_line: line,
        rec_start: 0,
        field_start: 0,
        first_span: 0,
        quoted: false,
        close: None,
        escaped: false,
        pending_lf: None,
        out: Tokens {
            bytes: bytes.clone(),
            width,
            spans: Vec::new(),
            unescaped: Vec::new(),
            raw: Vec::new(),
            lines: Vec::new(),
            offset,
            ascii_syntax: dialect.delimiter.is_ascii()
                && dialect.quote.is_none_or(|q| q.is_ascii()),
            utf8: OnceLock::new(),
        },
    };
    // Where quoting is off the quote slot looks for `\n` again, which changes nothing.
    let masks = Masks::new(dialect.delimiter, dialect.quote.unwrap_or(b'\n'));
    let mut base = 0;
    let mut blocks = b.chunks_exact(64);
    for block in &mut blocks {
        cut.events(base, masks.block(block))?;
        base += 64;
    }
    let tail = blocks.remainder();
    let mut last = [0; 64];
    last[..tail.len()].copy_from_slice(tail);
    let past_end = u64::MAX.checked_shl(tail.len() as u32).unwrap_or(0);
    cut.events(base, masks.block(&last) & !past_end)?;
    cut.finish()
}

/// The state between special bytes. Ordinary bytes are never looked at one by one: a field that
/// is not at `field_start`'s byte when its quote comes has text before the quote.
struct Cutter<'a> {
    b: &'a [u8],
    delimiter: u8,
    quote: Option<u8>,
    width: usize,
    max_record_bytes: usize,
    /// Line of the next byte after the last line break seen.
    line: u64,
    rec_line: u64,
    rec_start: usize,
    field_start: usize,
    /// Index in `out.spans` of the current record's first field.
    first_span: usize,
    /// Inside a quoted field (which opened at `field_start`).
    quoted: bool,
    /// Inside a quoted field, the quote just seen: it closes the field unless another follows.
    close: Option<usize>,
    /// The quoted field holds doubled quotes.
    escaped: bool,
    /// The `\n` of a `\r\n` already taken as part of the terminator.
    pending_lf: Option<usize>,
    out: Tokens,
}

impl Cutter<'_> {
    /// Take the special bytes of a block starting at `base`, given as a mask.
    #[inline]
    fn events(&mut self, base: usize, mut mask: u64) -> Option<()> {
        while mask != 0 {
            let i = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.event(i)?;
        }
        Some(())
    }

    /// Take the special byte at `i`; `None` gives up on the range.
    #[inline]
    fn event(&mut self, i: usize) -> Option<()> {
        let c = self.b[i];
        if c == self.delimiter && !self.quoted {
            // The common case first: an unquoted field ends.
            self.out.spans.push((self.field_start as u32, i as u32));
            self.field_start = i + 1;
            return Some(());
        }
        if self.pending_lf == Some(i) {
            self.pending_lf = None;
            return Some(());
        }
        let line_break = c == b'\n' || c == b'\r';
        if line_break && !(c == b'\n' && i > 0 && self.b[i - 1] == b'\r') {
            self.line += 1;
        }
        let is_quote = Some(c) == self.quote;
        if self.quoted {
            let Some(j) = self.close else {
                if is_quote {
                    self.close = Some(i);
                }
                return Some(());
            };
            if i != j + 1 {
                return None; // text after a closing quote
            }
            if is_quote {
                self.escaped = true;
                self.close = None;
                return Some(());
            }
        } else if is_quote {
            if i != self.field_start {
                return None; // a quote inside an unquoted field
            }
            self.quoted = true;
            return Some(());
        }
        // `c` is a delimiter or a line break outside quotes: a field ends at `i`.
        if !line_break {
            self.end_field(i);
            self.field_start = i + 1;
            return Some(());
        }
        let mut end = i + 1;
        if c == b'\r' && self.b.get(end) == Some(&b'\n') {
            self.pending_lf = Some(end);
            end += 1;
        }
        let blank = i == self.rec_start && self.out.spans.len() == self.first_span;
        if !blank {
            self.end_field(i);
            self.end_record(end)?;
        }
        self.start_record(end);
        Some(())
    }

    /// The field from `field_start` to `end` (where its delimiter or terminator is).
    fn end_field(&mut self, end: usize) {
        let span = if self.quoted {
            let (start, end) = (self.field_start + 1, end - 1);
            if self.escaped {
                self.unescape(start, end)
            } else {
                (start as u32, end as u32)
            }
        } else {
            (self.field_start as u32, end as u32)
        };
        self.out.spans.push(span);
        self.quoted = false;
        self.close = None;
        self.escaped = false;
    }

    fn unescape(&mut self, start: usize, end: usize) -> (u32, u32) {
        let from = self.out.unescaped.len();
        let q = self.quote.unwrap_or(b'"');
        let mut rest = &self.b[start..end];
        while let Some(at) = memchr::memchr(q, rest) {
            // Every quote inside is the first of a pair.
            self.out.unescaped.extend_from_slice(&rest[..=at]);
            rest = &rest[at + 2..];
        }
        self.out.unescaped.extend_from_slice(rest);
        (from as u32 | UNESCAPED, self.out.unescaped.len() as u32)
    }

    /// The record from `rec_start` to `end` (after its terminator) is complete.
    fn end_record(&mut self, end: usize) -> Option<()> {
        let fields = self.out.spans.len() - self.first_span;
        // The decoder measures a record up to its first terminator byte; keep well clear.
        if fields != self.width || end - self.rec_start >= self.max_record_bytes {
            return None;
        }
        if self.out.raw.is_empty() {
            // Size the buffers from the first record.
            let records = self.b.len() / (end - self.rec_start) + 1;
            self.out.spans.reserve(records * self.width * 9 / 8);
            self.out.raw.reserve(records * 9 / 8);
            self.out.lines.reserve(records * 9 / 8);
        }
        self.out.raw.push((self.rec_start as u32, end as u32));
        self.out.lines.push(self.rec_line);
        Some(())
    }

    fn start_record(&mut self, at: usize) {
        self.rec_start = at;
        self.field_start = at;
        self.rec_line = self.line;
        self.first_span = self.out.spans.len();
    }

    /// The end of the range ends the record open there, if any.
    fn finish(mut self) -> Option<Tokens> {
        let len = self.b.len();
        if self.quoted && self.close != Some(len - 1) {
            return None; // never closed, or text after the closing quote
        }
        let open = self.field_start < len || self.out.spans.len() > self.first_span;
        if open {
            self.end_field(len);
            self.end_record(len)?;
        }
        Some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::{Checks, Decoder, Records};
    use super::*;
    use proptest::prelude::*;

    type Row = (u64, u64, Vec<Vec<u8>>, Vec<u8>);

    /// The records of `r`, after checking that walking a column gives what `field` gives.
    fn rows(r: &impl RecordSet) -> Vec<Row> {
        let width = (0..r.len())
            .map(|i| (0..).take_while(|&k| r.field(i, k).is_some()).count())
            .max()
            .unwrap_or(0);
        // Past the widest record too, and past the tests' widths when there is none.
        for k in 0..=width.max(3) {
            let mut walked = Vec::new();
            r.each_field(k, |i, v| walked.push((i, v.to_vec())));
            let fields: Vec<_> = (0..r.len())
                .map(|i| (i, r.field(i, k).unwrap_or(b"").to_vec()))
                .collect();
            assert_eq!(walked, fields, "column {k}");
        }
        (0..r.len())
            .map(|i| {
                let fields = (0..)
                    .map_while(|k| r.field(i, k).map(<[u8]>::to_vec))
                    .collect();
                (r.line(i), r.offset(i), fields, r.raw(i).to_vec())
            })
            .collect()
    }

    fn slice(bytes: &[u8]) -> Slice {
        Slice {
            block: Arc::new(bytes.to_vec()),
            start: 0,
            end: bytes.len(),
        }
    }

    /// What the decoder makes of `bytes` with `width` fields: its rows, and whether any record
    /// had a problem or the decoder was irregular.
    fn decoded(bytes: &[u8], dialect: Dialect, width: usize, max: usize) -> (Vec<Row>, bool) {
        let checks = Checks {
            width: Some(width),
            max_record_bytes: max,
            ..Checks::default()
        };
        let mut d = Decoder::new(dialect, checks, 3, 10);
        let mut records = Records::default();
        d.decode(bytes, true, &mut records, usize::MAX);
        let bad = d.irregular() || (0..records.len()).any(|r| records.problem(r).is_some());
        (rows(&records), bad)
    }

    fn tokens(bytes: &[u8], width: usize) -> Option<Vec<Row>> {
        tokenize(&slice(bytes), 3, 10, Dialect::default(), width, 1 << 20).map(|t| rows(&t))
    }

    #[test]
    fn fields_lines_and_raw_bytes_are_the_decoders() {
        let input = b"a,b\r\n\"x\ny\",2\n\n\r\n\"q\"\"uote\",\"\"\rc,\"\r\n\"\n\nlast,";
        let (want, bad) = decoded(input, Dialect::default(), 2, 1 << 20);
        assert!(!bad);
        let got = tokens(input, 2).expect("well-formed input");
        assert_eq!(got, want);
        assert_eq!(got[2].2, [b"q\"uote".to_vec(), Vec::new()]);
        assert_eq!(got[4].2, [b"last".to_vec(), Vec::new()]);
    }

    #[test]
    fn a_range_is_utf8_only_if_every_byte_is() {
        let utf8 = |input: &[u8], delimiter: u8| {
            let dialect = Dialect {
                delimiter,
                ..Dialect::default()
            };
            tokenize(&slice(input), 1, 0, dialect, 2, 1 << 20).map(|t| t.utf8())
        };
        assert_eq!(utf8(b"a,b\n1,2\n", b','), Some(true));
        assert_eq!(utf8("a,\"b\"\"é\"\nø,2\n".as_bytes(), b','), Some(true));
        // Bad bytes at the start, at the end, in a quoted field.
        let early = [&b"\xE9,"[..], &[b'x'; 70], b"\n"].concat();
        assert_eq!(utf8(&early, b','), Some(false));
        let late = [&[b'x'; 130][..], b",\xC3\n"].concat();
        assert_eq!(utf8(&late, b','), Some(false));
        assert_eq!(utf8(b"a,\"q\"\"\xE9\"\n", b','), Some(false));
        // A delimiter that is not ASCII can split a character: the fields are checked one by one.
        assert_eq!(utf8("a\u{a6}b\n".as_bytes(), 0xA6), Some(false));
    }

    #[test]
    fn anything_the_decoder_would_refuse_gives_up() {
        for input in [
            &b"a,b\n1,x\"y\n"[..],
            b"a,b\n\"1\"x,2\n",
            b"a,b\n\"1,2\n",
            b"a,b\n1,2,3\n",
            b"a,b\n1\n",
            b"a,\"b\"\"",
        ] {
            assert_eq!(
                tokens(input, 2),
                None,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = b"1,22222\n";
        assert!(tokenize(&slice(long), 1, 0, Dialect::default(), 2, 8).is_none());
        assert!(tokenize(&slice(long), 1, 0, Dialect::default(), 2, 9).is_some());
    }

    #[test]
    fn other_dialects() {
        let tsv = Dialect {
            delimiter: b'\t',
            quote: None,
            escape: None,
        };
        let input = b"a\"b\tc\n\n1\t\"2\r";
        let (want, bad) = decoded(input, tsv, 2, 1 << 20);
        assert!(!bad);
        let got = tokenize(&slice(input), 3, 10, tsv, 2, 1 << 20).map(|t| rows(&t));
        assert_eq!(got, Some(want));
        let escaped = Dialect {
            escape: Some(b'\\'),
            ..Dialect::default()
        };
        assert!(tokenize(&slice(b"a,b\n"), 1, 0, escaped, 2, 1 << 20).is_none());
    }

    #[test]
    fn an_empty_range_has_no_records() {
        assert_eq!(tokens(b"", 2), Some(Vec::new()));
        assert_eq!(tokens(b"\n\r\n", 2), Some(Vec::new()));
    }

    proptest! {
        #[test]
        fn wherever_it_succeeds_it_agrees_with_the_decoder(
            input in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r')], 0..120),
            width in 1usize..4,
            max in prop_oneof![4usize..20, Just(1 << 20)],
        ) {
            let got = tokenize(&slice(&input), 3, 10, Dialect::default(), width, max);
            let (want, bad) = decoded(&input, Dialect::default(), width, max);
            if let Some(t) = got {
                prop_assert!(!bad);
                prop_assert_eq!(rows(&t), want);
            }
        }

        #[test]
        fn clean_input_always_takes_the_fast_path(
            rows_in in proptest::collection::vec(
                proptest::collection::vec("[a-c,\"\r\n ]{0,5}", 3), 0..30),
            quote_all in any::<bool>(),
            crlf in any::<bool>(),
        ) {
            let mut input = Vec::new();
            for row in &rows_in {
                let fields: Vec<String> = row
                    .iter()
                    .map(|f| {
                        let special = f.contains([',', '"', '\r', '\n']) || f.is_empty();
                        if quote_all || special {
                            format!("\"{}\"", f.replace('"', "\"\""))
                        } else {
                            f.clone()
                        }
                    })
                    .collect();
                input.extend_from_slice(fields.join(",").as_bytes());
                input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let (want, bad) = decoded(&input, Dialect::default(), 3, 1 << 20);
            prop_assert!(!bad);
            prop_assert_eq!(tokens(&input, 3), Some(want));
        }
    }
}

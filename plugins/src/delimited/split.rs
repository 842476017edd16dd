//! Finding record boundaries without decoding, so that ranges of a file can be split into records
//! on several threads at once.
//!
//! Where every quote stands where RFC 4180 puts it, each quoted field holds an odd number of quote
//! characters up to any of its bytes and an even number once closed, so a line break is a record's
//! end exactly when an even number of quotes precede it since the last known record boundary.
//! [`Scan`] counts quotes and line breaks with `memchr` (a few µs per MiB) and cuts a range after
//! a given number of records.
//!
//! The count is only a guess: a stray quote flips it. The guess is checked afterwards, by the full
//! decoder that splits the range ([`super::decode::Decoder::irregular`]): a range decoded without a
//! misplaced quote, oversized record or resync started and ended on true boundaries. The source
//! redoes any other range sequentially (see `source/reader.rs`). An escape character other than
//! the quote makes the count meaningless (`\"` inside quotes), so such dialects are never split
//! this way.

/// Where the records of one range end, found by counting quotes and line breaks.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The quote character, or `\n` when quoting is off (so it never toggles anything).
    quote: u8,
    /// Bytes of the range already scanned.
    pos: usize,
    /// An odd number of quotes since the range started.
    odd: bool,
    /// Records ended so far.
    records: usize,
    /// Line breaks (`\n`, `\r\n`, lone `\r`) so far, quoted ones included.
    lines: u64,
    /// Where the line being scanned started, outside quotes (to skip blank lines, which are not
    /// records).
    line_start: usize,
}

impl Scan {
    /// A scan of a range that starts on a record boundary.
    pub fn new(quote: Option<u8>) -> Self {
        Self {
            quote: quote.unwrap_or(b'\n'),
            pos: 0,
            odd: false,
            records: 0,
            lines: 0,
            line_start: 0,
        }
    }

    /// Scan `range` (the bytes of the current range so far; it only grows between calls) from where
    /// the last call stopped. Returns the length of the range that holds `want` records, or fewer
    /// whose bytes reach `max_bytes` (at least one), or `None` if `range` ends first. With `eof`,
    /// the bytes after `range` are known to be none.
    pub fn cut(&mut self, range: &[u8], eof: bool, want: usize, max_bytes: usize) -> Option<usize> {
        let start = self.pos;
        for i in memchr::memchr3_iter(b'\n', b'\r', self.quote, &range[start..]).map(|i| i + start)
        {
            let b = range[i];
            if b != b'\n' && b != b'\r' {
                self.odd = !self.odd;
                continue;
            }
            if b == b'\r' {
                match range.get(i + 1) {
                    Some(b'\n') => continue, // counted with its `\n`
                    None if !eof => {
                        // Whether this `\r` is a line break of its own depends on the next byte.
                        self.pos = i;
                        return None;
                    }
                    _ => {}
                }
            }
            self.lines += 1;
            if self.odd {
                continue;
            }
            // A line break outside quotes ends a record, unless it ends a blank line.
            let crlf = b == b'\n' && i > self.line_start && range[i - 1] == b'\r';
            let blank = i - usize::from(crlf) == self.line_start;
            self.line_start = i + 1;
            if !blank {
                self.records += 1;
                if self.records == want || i + 1 >= max_bytes {
                    self.pos = i + 1;
                    return Some(i + 1);
                }
            }
        }
        self.pos = range.len();
        None
    }

    /// Records before the cut (or in everything scanned, if none was found).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Line breaks before the cut (or in everything scanned, if none was found).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Bytes since the last record boundary found: the size of the record open at the end of what
    /// was scanned, if the count is right.
    pub fn open_record_bytes(&self) -> usize {
        self.pos - self.line_start
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::{Checks, Decoder, Dialect, Records};
    use super::*;
    use proptest::prelude::*;

    type Row = (u64, u64, Vec<Vec<u8>>, Vec<u8>, bool);

    fn rows(r: &Records) -> Vec<Row> {
        (0..r.len())
            .map(|i| {
                let fields = (0..r.field_count(i))
                    .map(|k| r.field(i, k).unwrap().to_vec())
                    .collect();
                let bad = r.problems[i].is_some();
                (r.lines[i], r.offsets[i], fields, r.raw(i).to_vec(), bad)
            })
            .collect()
    }

    /// Decode `bytes` as starting at `line` and `offset`, expecting `width` fields (`None`: learn it
    /// from the first record): the rows, whether the decoder was irregular and the width.
    fn decode(
        bytes: &[u8],
        line: u64,
        offset: u64,
        width: Option<usize>,
    ) -> (Vec<Row>, bool, Option<usize>) {
        let checks = Checks {
            width,
            ..Checks::default()
        };
        let mut d = Decoder::new(Dialect::default(), checks, line, offset);
        let mut records = Records::default();
        let used = d.decode(bytes, true, &mut records, usize::MAX);
        assert_eq!(used, bytes.len());
        assert!(d.is_done());
        (rows(&records), d.irregular(), d.width())
    }

    /// Cut `input`, read `step` bytes at a time, into ranges of `want` records or `max_bytes`, as
    /// the source does: (start offset, end offset, first line) of each.
    fn ranges(
        input: &[u8],
        want: usize,
        max_bytes: usize,
        step: usize,
    ) -> Vec<(usize, usize, u64)> {
        let (mut out, mut start, mut line) = (Vec::new(), 0, 1);
        let mut scan = Scan::new(Some(b'"'));
        let mut read = 0;
        loop {
            let eof = read == input.len();
            match scan.cut(&input[start..read], eof, want, max_bytes) {
                Some(len) => {
                    out.push((start, start + len, line));
                    line += scan.lines();
                    start += len;
                    scan = Scan::new(Some(b'"'));
                }
                None if eof => {
                    if start < read {
                        out.push((start, read, line));
                    }
                    return out;
                }
                None => read = (read + step).min(input.len()),
            }
        }
    }

    /// Decode every range on its own. Up to the first irregular range, the records must be exactly
    /// those of one decoder over the whole input; returns whether every range was regular.
    fn check_ranges(input: &[u8], want: usize, max_bytes: usize, step: usize) -> bool {
        let (whole, _, width) = decode(input, 1, 0, None);
        let mut got = Vec::new();
        for (start, end, line) in ranges(input, want, max_bytes, step) {
            let (rows, irregular, _) = decode(&input[start..end], line, start as u64, width);
            if irregular {
                assert_eq!(got[..], whole[..got.len()]);
                return false;
            }
            got.extend(rows);
        }
        assert_eq!(got, whole);
        true
    }

    #[test]
    fn ranges_hold_the_records_one_decoder_finds() {
        let input = b"a,b\r\n\"x\ny\",2\n\n\r\n\"q\"\"uote\",\"\"\rc,\"\r\n\"\n\nlast,no newline";
        for want in 1..6 {
            for step in 1..input.len() + 1 {
                for max_bytes in [1, 7, usize::MAX] {
                    let ok = check_ranges(input, want, max_bytes, step);
                    assert!(ok, "want {want} max_bytes {max_bytes} step {step}");
                }
            }
        }
    }

    #[test]
    fn ranges_end_after_the_wanted_number_of_records() {
        let input = b"1,\"a\nb\"\n\n2,x\n3,y\n4,z\n";
        assert_eq!(
            ranges(input, 2, usize::MAX, 100),
            [(0, 13, 1), (13, input.len(), 5)]
        );
    }

    #[test]
    fn ranges_end_at_the_record_that_reaches_the_byte_cap() {
        // The cap falls inside the first record: the range still holds all of it, and only it.
        let input = b"1,\"a\nb\"\n\n2,x\n3,y\n4,z\n";
        assert_eq!(
            ranges(input, 100, 4, 100),
            [(0, 8, 1), (8, 13, 3), (13, 17, 5), (17, 21, 6)]
        );
        assert_eq!(ranges(input, 100, 14, 3), [(0, 17, 1), (17, 21, 6)]);
    }

    #[test]
    fn a_stray_quote_makes_its_range_irregular() {
        // The stray quote flips the count: the cut lands inside what the decoder reads as a field.
        let input = b"1,a\"b\n2,x\n3,\"y\n4\",z\n5,w\n";
        assert!(!check_ranges(input, 1, usize::MAX, 100));
        assert!(!check_ranges(input, 2, usize::MAX, 3));
    }

    proptest! {
        #[test]
        fn any_input_decodes_the_same_up_to_the_first_irregular_range(
            input in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r')], 0..80),
            want in 1usize..5,
            max_bytes in prop_oneof![1usize..40, Just(usize::MAX)],
            step in 1usize..20,
        ) {
            check_ranges(&input, want, max_bytes, step);
        }

        #[test]
        fn clean_input_is_always_regular(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-c,\"\r\n ]{0,5}", 2), 0..30),
            blank in proptest::collection::vec(any::<bool>(), 30),
            want in 1usize..5,
            max_bytes in prop_oneof![1usize..60, Just(usize::MAX)],
            step in 1usize..40,
        ) {
            let mut input = Vec::new();
            for (row, blank) in rows.iter().zip(&blank) {
                let quoted: Vec<String> =
                    row.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
                input.extend_from_slice(quoted.join(",").as_bytes());
                input.extend_from_slice(if *blank { b"\r\n\n" } else { b"\n" });
            }
            prop_assert!(check_ranges(&input, want, max_bytes, step));
        }
    }
}

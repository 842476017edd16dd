//! Chunks: where the input is cut into pieces for batches, and how a worker splits a piece into
//! records.
//!
//! On the range path the node thread cuts the bytes after `ChunkSize` records, or after fewer once
//! they reach the batch's byte cap, by counting quotes and line breaks ([`cut`], over [`Scan`]).
//! The count is a guess. The worker that finishes the [`Chunk`] splits it with the fast path
//! ([`tokens::tokenize`]) where the range is well formed, else with the decoder, which also says
//! whether the guess was wrong; then it converts the records (`typed.rs`). On the sequential path
//! the piece is records the one decoder already split (`reader.rs`), and nothing here guesses.
//!
//! Invariant: ranges are cut one after another, each starting where the last ended, on what the
//! count takes for a record boundary; a range whose split shows the count was wrong (or that the
//! cut itself marked so) becomes an empty batch marked irregular in its [`Outcome`], never rows,
//! so the reader redoes it sequentially from its start.

use std::sync::{Arc, OnceLock};

use arrow_array::{RecordBatch, UInt64Array};
use flowengine_engine::component::Pending;
use flowengine_engine::error::{RowError, RunError};
use flowengine_engine::Batch;

use super::typed::{SourceSpec, Typed};
use crate::delimited::decode::{Checks, Decoder, RecordSet, Records};
use crate::delimited::split::Scan;
use crate::delimited::tokens::{self, Slice, Tokens};

/// Where the next range ends, by [`cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// A range of this many bytes holds `chunk_size` records, or fewer whose bytes reach the
    /// byte cap (at least one).
    Records(usize),
    /// The file ends before either: the rest (this many bytes, at least one) is the last range.
    Rest(usize),
    /// The count says one record runs on past `MaxRecordBytes`: a stray quote flipped it, or the
    /// record is too large. Either way the rest (this many bytes) must be read sequentially.
    Redo(usize),
    /// The file ends and nothing is left.
    End,
    /// The bytes end before a cut: read more, and call again with them appended.
    More,
}

/// Cut the next range from `rest`, the bytes after the last range (they only grow between calls
/// with the same `scan`; `eof`: none follow them). `chunk_size` records at most, fewer once their
/// bytes reach `batch_bytes`.
pub(super) fn cut(
    scan: &mut Scan,
    rest: &[u8],
    eof: bool,
    chunk_size: usize,
    batch_bytes: usize,
    max_record_bytes: usize,
) -> Cut {
    if let Some(len) = scan.cut(rest, eof, chunk_size, batch_bytes) {
        return Cut::Records(len);
    }
    if scan.open_record_bytes() > max_record_bytes {
        return Cut::Redo(rest.len());
    }
    if eof {
        if rest.is_empty() {
            return Cut::End;
        }
        return Cut::Rest(rest.len());
    }
    Cut::More
}

/// What a piece holds before its worker finishes it.
pub(super) enum Body {
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

/// What finishing a piece found out, for the reader's `settle` (`reader.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    pub(super) records: u64,
    /// The piece is a range whose decoding met something counting quotes cannot see past.
    pub(super) irregular: bool,
}

/// Records split from the file (or bytes to split), waiting to become a typed batch.
pub(super) struct Chunk {
    pub(super) shape: Arc<SourceSpec>,
    pub(super) body: Body,
    pub(super) outcome: Arc<OnceLock<Outcome>>,
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

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use flowengine_engine::error::RowErrorKind;
    use flowengine_engine::schema::{self, ColumnSpec, ColumnType};

    use super::*;
    use crate::delimited::convert::ColumnReader;
    use crate::delimited::decode::Dialect;

    const NO_CAP: usize = usize::MAX;

    /// One call of [`cut`] on a fresh scan (MaxRecordBytes 1 KiB): the cut, and the records and
    /// line breaks the scan counted before it.
    fn cut_once(
        bytes: &[u8],
        eof: bool,
        chunk_size: usize,
        batch_bytes: usize,
    ) -> (Cut, usize, u64) {
        let mut scan = Scan::new(Some(b'"'));
        let found = cut(&mut scan, bytes, eof, chunk_size, batch_bytes, 1024);
        (found, scan.records(), scan.lines())
    }

    #[test]
    fn a_range_ends_after_chunk_size_records() {
        let bytes = b"a,1\nb,2\nc,3\nd,4\n";
        assert_eq!(cut_once(bytes, false, 1, NO_CAP), (Cut::Records(4), 1, 1));
        assert_eq!(cut_once(bytes, false, 2, NO_CAP), (Cut::Records(8), 2, 2));
        assert_eq!(cut_once(bytes, false, 4, NO_CAP), (Cut::Records(16), 4, 4));
    }

    #[test]
    fn a_line_break_inside_quotes_is_not_a_cut() {
        // `"x<LF>y",1` is one record over two lines.
        let bytes = b"\"x\ny\",1\nb,2\n";
        assert_eq!(cut_once(bytes, false, 1, NO_CAP), (Cut::Records(8), 1, 2));
        // A doubled quote does not close the field.
        let bytes = b"\"a\"\"\nb\",1\nc,2\n";
        assert_eq!(cut_once(bytes, false, 1, NO_CAP), (Cut::Records(10), 1, 2));
    }

    #[test]
    fn crlf_stays_whole_and_a_carriage_return_at_the_end_waits_for_the_next_byte() {
        assert_eq!(
            cut_once(b"a,1\r\nb,2\r\n", false, 1, NO_CAP),
            (Cut::Records(5), 1, 1)
        );
        // Whether a final `\r` is a line break of its own depends on the byte after it.
        assert_eq!(cut_once(b"a,1\r", false, 1, NO_CAP).0, Cut::More);
        // At the end of the file it is one.
        assert_eq!(cut_once(b"a,1\r", true, 1, NO_CAP), (Cut::Records(4), 1, 1));
        // Read on, the same scan finds it is half of a `\r\n`, and cuts after the `\n`.
        let mut scan = Scan::new(Some(b'"'));
        assert_eq!(cut(&mut scan, b"a,1\r", false, 1, NO_CAP, 1024), Cut::More);
        assert_eq!(
            cut(&mut scan, b"a,1\r\nb,2\n", false, 1, NO_CAP, 1024),
            Cut::Records(5)
        );
        assert_eq!(scan.lines(), 1);
    }

    #[test]
    fn blank_lines_are_not_records_but_are_lines() {
        assert_eq!(
            cut_once(b"a\n\n\r\nb\nc\n", false, 2, NO_CAP),
            (Cut::Records(7), 2, 4)
        );
    }

    #[test]
    fn the_last_record_needs_no_newline_at_the_end_of_the_file() {
        assert_eq!(cut_once(b"a,1\nb,2", true, 5, NO_CAP), (Cut::Rest(7), 1, 1));
        // Before the end of the file, `b,2` may go on: no cut yet.
        assert_eq!(cut_once(b"a,1\nb,2", false, 5, NO_CAP).0, Cut::More);
        // Fewer records than `chunk_size` before the end: the rest is the last range.
        assert_eq!(
            cut_once(b"a,1\nb,2\n", true, 5, NO_CAP),
            (Cut::Rest(8), 2, 2)
        );
        assert_eq!(cut_once(b"", true, 5, NO_CAP).0, Cut::End);
        assert_eq!(cut_once(b"", false, 5, NO_CAP).0, Cut::More);
    }

    #[test]
    fn the_scan_goes_on_where_it_stopped_as_the_bytes_grow() {
        let mut scan = Scan::new(Some(b'"'));
        assert_eq!(
            cut(&mut scan, b"a,1\nb,", false, 2, NO_CAP, 1024),
            Cut::More
        );
        assert_eq!(
            cut(&mut scan, b"a,1\nb,2\nc,3\n", false, 2, NO_CAP, 1024),
            Cut::Records(8)
        );
        assert_eq!((scan.records(), scan.lines()), (2, 2));
    }

    #[test]
    fn the_byte_cap_ends_a_range_early_but_after_one_record_at_least() {
        let bytes = b"aaaa\nbbbb\ncccc\n";
        // The second record's end is the first at or past 6 bytes.
        assert_eq!(cut_once(bytes, false, 100, 6), (Cut::Records(10), 2, 2));
        assert_eq!(cut_once(bytes, false, 100, 10), (Cut::Records(10), 2, 2));
        assert_eq!(cut_once(bytes, false, 100, 11), (Cut::Records(15), 3, 3));
        // A record larger than the cap is a range of its own.
        assert_eq!(cut_once(bytes, false, 100, 1), (Cut::Records(5), 1, 1));
    }

    #[test]
    fn a_record_open_past_max_record_bytes_is_left_to_the_decoder() {
        // A quote that never closes makes the count see one endless record.
        let bytes = b"a,\"b\nc,d\ne,f\n";
        let mut scan = Scan::new(Some(b'"'));
        assert_eq!(
            cut(&mut scan, bytes, false, 1, NO_CAP, 8),
            Cut::Redo(bytes.len())
        );
        // Within `MaxRecordBytes` the count waits for more bytes, and at the end of the file the
        // rest is the last range (the worker's decoder will find the quote irregular).
        let mut scan = Scan::new(Some(b'"'));
        assert_eq!(cut(&mut scan, bytes, false, 1, NO_CAP, 1024), Cut::More);
        let mut scan = Scan::new(Some(b'"'));
        assert_eq!(
            cut(&mut scan, bytes, true, 1, NO_CAP, 1024),
            Cut::Rest(bytes.len())
        );
    }

    #[test]
    fn without_quoting_a_quote_character_is_text() {
        let mut scan = Scan::new(None);
        assert_eq!(
            cut(&mut scan, b"a\"b\nc\n", false, 1, NO_CAP, 1024),
            Cut::Records(4)
        );
    }

    /// Columns `id: int64` (required) and `name: utf8`, from `in.csv`.
    fn shape() -> Arc<SourceSpec> {
        let specs = [
            ("id", ColumnType::Int64, false),
            ("name", ColumnType::Utf8, true),
        ]
        .map(|(name, ty, nullable)| ColumnSpec {
            name: name.into(),
            ty,
            nullable,
            format: None,
            index: None,
        });
        let columns = specs
            .iter()
            .enumerate()
            .map(|(field, c)| ColumnReader {
                name: c.name.clone(),
                ty: c.ty.clone(),
                nullable: c.nullable,
                format: None,
                field,
                trim: false,
            })
            .collect();
        Arc::new(SourceSpec {
            node: "source".into(),
            label: "in.csv".into(),
            dialect: Dialect::default(),
            columns,
            schema: schema::to_schema(&specs),
            condition: None,
        })
    }

    /// A range of `bytes` that starts at `line` and `offset`, records of 2 fields.
    fn range(bytes: &[u8], line: u64, offset: u64, force_redo: bool) -> Chunk {
        let checks = Checks {
            width: Some(2),
            ..Checks::default()
        };
        Chunk {
            shape: shape(),
            body: Body::Range {
                bytes: Slice {
                    block: Arc::new(bytes.to_vec()),
                    start: 0,
                    end: bytes.len(),
                },
                line,
                offset,
                checks,
                force_redo,
            },
            outcome: Arc::new(OnceLock::new()),
        }
    }

    /// Finish `chunk` as a worker does: its batch, rejects and outcome.
    fn finish(chunk: Chunk) -> (Batch, Vec<RowError>, Outcome) {
        let outcome = chunk.outcome.clone();
        let mut rejects = Vec::new();
        let batch = Box::new(chunk).finish(&mut rejects).expect("finish");
        let outcome = *outcome.get().expect("the worker sets the outcome");
        (batch, rejects, outcome)
    }

    fn ids(batch: &Batch) -> Vec<i64> {
        batch
            .data
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    fn lines(batch: &Batch) -> Vec<u64> {
        batch.origin.lines.values().to_vec()
    }

    #[test]
    fn a_well_formed_range_is_split_by_the_fast_path_with_its_own_lines() {
        let bytes = b"1,a\r\n2,\"b\nc\"\n3,d";
        let mut chunk = range(bytes, 10, 100, false);
        let (split, irregular) = chunk.split();
        assert!(matches!(split, Split::Tokens(ref t) if t.len() == 3));
        assert!(!irregular);

        let (batch, rejects, outcome) = finish(range(bytes, 10, 100, false));
        assert!(rejects.is_empty());
        assert_eq!((outcome.records, outcome.irregular), (3, false));
        assert_eq!(ids(&batch), [1, 2, 3]);
        let names: Vec<&str> = batch
            .data
            .column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(names, ["a", "b\nc", "d"]);
        // The quoted line break moves the third record to line 13.
        assert_eq!(lines(&batch), [10, 11, 13]);
    }

    #[test]
    fn a_range_with_a_stray_quote_is_irregular_and_yields_no_rows() {
        let (batch, rejects, outcome) = finish(range(b"1,a\"b\n2,c\n", 1, 0, false));
        assert!(outcome.irregular, "the reader must redo this range");
        assert_eq!(batch.num_rows(), 0);
        assert!(
            rejects.is_empty(),
            "the redo reports the bad record, not the range"
        );
    }

    #[test]
    fn a_range_the_cut_marked_for_a_redo_is_not_split() {
        let mut chunk = range(b"1,a\n2,b\n", 1, 0, true);
        let (split, irregular) = chunk.split();
        assert!(matches!(split, Split::Records(ref r) if r.is_empty()));
        assert!(irregular);
        let (batch, rejects, outcome) = finish(range(b"1,a\n2,b\n", 1, 0, true));
        assert_eq!((outcome.records, outcome.irregular), (0, true));
        assert_eq!(batch.num_rows(), 0);
        assert!(rejects.is_empty());
    }

    #[test]
    fn bad_records_in_a_regular_range_are_rejects_counted_within_the_chunk() {
        // A record of another width leaves the fast path, but not the range: it is one reject.
        // A value that is not an int64 is another.
        let bytes = b"1,a\n2\nx,c\n4,d\n";
        let (batch, rejects, outcome) = finish(range(bytes, 5, 50, false));
        assert_eq!((outcome.records, outcome.irregular), (4, false));
        assert_eq!(ids(&batch), [1, 4]);
        assert_eq!(lines(&batch), [5, 8]);
        let found: Vec<_> = rejects
            .iter()
            .map(|r| (r.kind, r.line, r.record, r.byte_offset))
            .collect();
        assert_eq!(
            found,
            [
                (RowErrorKind::TooFewFields, Some(6), Some(2), Some(54)),
                (RowErrorKind::TypeConversion, Some(7), Some(3), Some(56)),
            ]
        );
    }

    #[test]
    fn records_the_sequential_decoder_split_are_never_irregular() {
        let checks = Checks {
            width: Some(2),
            ..Checks::default()
        };
        let mut decoder = Decoder::new(Dialect::default(), checks, 3, 30);
        let mut records = Records::default();
        decoder.decode(b"7,x\n8,y\n", true, &mut records, usize::MAX);
        let chunk = Chunk {
            shape: shape(),
            body: Body::Records(records),
            outcome: Arc::new(OnceLock::new()),
        };
        let (batch, rejects, outcome) = finish(chunk);
        assert_eq!((outcome.records, outcome.irregular), (2, false));
        assert_eq!(ids(&batch), [7, 8]);
        assert_eq!(lines(&batch), [3, 4]);
        assert!(rejects.is_empty());
    }
}

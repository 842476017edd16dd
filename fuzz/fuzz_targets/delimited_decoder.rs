//! Bytes → records: never a panic; positions only move forward; every record's raw bytes are the
//! input at its offset; the only bytes no record covers are blank lines and the cut-off tails of
//! oversized records; a clean parse reads back the same after a trip through the writer.
#![no_main]

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use flowengine_engine::error::RowErrorKind;
use flowengine_plugins::delimited::decode::{Checks, Decoder, Dialect, Ragged, Records};
use flowengine_plugins::delimited::encode::{Encoder, OutputColumn};
use libfuzzer_sys::fuzz_target;

fn decode(input: &[u8], dialect: Dialect, checks: Checks, step: usize) -> Records {
    let mut d = Decoder::new(dialect, checks, 1, 0);
    let mut records = Records::default();
    let mut pending = Vec::new();
    for chunk in input.chunks(step) {
        pending.extend_from_slice(chunk);
        let used = d.decode(&pending, false, &mut records, usize::MAX);
        pending.drain(..used);
    }
    let used = d.decode(&pending, true, &mut records, usize::MAX);
    assert_eq!(used, pending.len(), "the decoder must take all input at the end");
    assert!(d.is_done());
    records
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else { return };
    let dialect = Dialect {
        delimiter: [b',', b';', b'\t', b'|'][usize::from(ctl & 3)],
        quote: (ctl & 4 == 0).then_some(b'"'),
        escape: (ctl & 8 != 0).then_some(b'\\'),
    };
    let checks = Checks {
        strict_quotes: ctl & 16 == 0,
        width: None,
        ragged: if ctl & 32 == 0 { Ragged::Error } else { Ragged::Truncate },
        max_record_bytes: if ctl & 64 == 0 { 1 << 20 } else { 64 },
    };
    let step = if ctl & 128 == 0 { input.len().max(1) } else { 3 };
    let records = decode(input, dialect, checks, step);

    let mut covered = 0usize;
    for r in 0..records.len() {
        let offset = records.offsets[r] as usize;
        let raw = records.raw(r);
        if r > 0 {
            assert!(records.lines[r] >= records.lines[r - 1]);
            assert!(offset > records.offsets[r - 1] as usize);
        }
        assert!(offset >= covered, "records overlap");
        let previous_cut = r > 0
            && records.problems[r - 1].as_ref().is_some_and(|p| p.kind == RowErrorKind::RecordTooLarge);
        // Between records only blank lines may be skipped; after an oversized record, also the
        // rest of its own line, and nothing past that line's break.
        let gap = &input[covered..offset];
        let tail = match gap.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) if previous_cut => &gap[i..],
            _ if previous_cut => &gap[gap.len()..],
            _ => gap,
        };
        assert!(tail.iter().all(|&b| b == b'\n' || b == b'\r'), "bytes skipped between records");
        assert_eq!(&input[offset..offset + raw.len()], raw, "raw bytes differ from the input");
        covered = offset + raw.len();
    }

    // Round trip: a problem-free parse of valid UTF-8, written and read again, gives the same fields.
    let clean = records.problems.iter().all(Option::is_none);
    if !clean || dialect.quote.is_none() || dialect.escape.is_some() || records.is_empty() {
        return;
    }
    let width = records.field_count(0);
    let Ok(columns) = (0..width)
        .map(|k| {
            (0..records.len())
                .map(|r| std::str::from_utf8(records.field(r, k).unwrap_or(b"")).map(str::to_string))
                .collect::<Result<Vec<String>, _>>()
        })
        .collect::<Result<Vec<Vec<String>>, _>>()
    else {
        return;
    };
    if (0..records.len()).any(|r| records.field_count(r) != width) {
        return;
    }
    let arrays: Vec<(String, ArrayRef)> = columns
        .iter()
        .enumerate()
        .map(|(k, c)| (format!("c{k}"), Arc::new(StringArray::from(c.clone())) as ArrayRef))
        .collect();
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let outputs = (0..width)
        .map(|k| OutputColumn { input: k, name: format!("c{k}"), format: None })
        .collect();
    let mut out = Vec::new();
    Encoder::new(dialect.delimiter, b'"', false, outputs).encode(&batch, &mut out).unwrap();
    let strict = Checks { ragged: Ragged::Error, max_record_bytes: usize::MAX, ..checks };
    let back = decode(&out, dialect, strict, out.len().max(1));
    let back_rows: Vec<Vec<&[u8]>> = (0..back.len())
        .map(|r| (0..back.field_count(r)).map(|k| back.field(r, k).unwrap()).collect())
        .collect();
    let rows: Vec<Vec<&[u8]>> = (0..records.len())
        .map(|r| (0..width).map(|k| records.field(r, k).unwrap()).collect())
        .collect();
    assert_eq!(back_rows, rows, "write-then-read changed the data");
});

//! The fast path for ranges against the decoder: wherever `tokenize` takes a range, its records
//! (fields, lines, offsets, raw bytes) are exactly the decoder's, and the decoder found no problem
//! and nothing irregular in them.
#![no_main]

use std::sync::Arc;

use flowengine_plugins::delimited::decode::{Checks, Decoder, Dialect, RecordSet, Records};
use flowengine_plugins::delimited::tokens::{tokenize, Slice};
use libfuzzer_sys::fuzz_target;

type Row = (u64, u64, Vec<Vec<u8>>, Vec<u8>);

fn rows(r: &impl RecordSet) -> Vec<Row> {
    (0..r.len())
        .map(|i| {
            let fields = (0..).map_while(|k| r.field(i, k).map(<[u8]>::to_vec)).collect();
            (r.line(i), r.offset(i), fields, r.raw(i).to_vec())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else { return };
    let dialect = Dialect {
        delimiter: [b',', b';', b'\t', b'|'][usize::from(ctl & 3)],
        quote: (ctl & 4 == 0).then_some(b'"'),
        escape: None,
    };
    let width = usize::from(ctl >> 3 & 3) + 1;
    let max_record_bytes = if ctl & 32 == 0 { 1 << 20 } else { 16 };
    let bytes = Slice { block: Arc::new(input.to_vec()), start: 0, end: input.len() };
    let Some(tokens) = tokenize(&bytes, 7, 100, dialect, width, max_record_bytes) else {
        return;
    };
    let checks = Checks { width: Some(width), max_record_bytes, ..Checks::default() };
    let mut decoder = Decoder::new(dialect, checks, 7, 100);
    let mut records = Records::default();
    decoder.decode(input, true, &mut records, usize::MAX);
    assert!(!decoder.irregular(), "the fast path took a range the decoder finds irregular");
    assert!((0..records.len()).all(|r| records.problem(r).is_none()), "the fast path took a bad record");
    assert_eq!(rows(&tokens), rows(&records));
});

//! A file cut into parts for separate tasks ([`SourceConfig::split`]): each part is a run of
//! whole records with the line and record number its first record has in the whole file.
//!
//! The cut is found by the decoder itself, reading the file once from the first row on, not by
//! counting quotes as the parallel ranges of one read are (`split.rs`): a task cannot hand a
//! wrong guess back, so every boundary must be one that a one-thread read of the file has too.
//!
//! [`SourceConfig::split`]: flowengine_engine::component::SourceConfig::split

use flowengine_engine::component::SourceRange;

use super::input::Input;
use crate::delimited::decode::Records;

/// Records decoded at most between two looks at the offset.
const MAX_STEP_RECORDS: u64 = 4096;

/// At most `parts` ranges of about equal bytes from where `input` stands (its first row, the
/// `first`-th record of a file of `size` bytes) to the end of the file.
pub(super) fn cut(
    mut input: Input,
    first: u64,
    size: u64,
    parts: usize,
) -> std::io::Result<Vec<SourceRange>> {
    let mut range = SourceRange {
        start: input.decoder.offset(),
        end: None,
        line: input.decoder.line(),
        record: first,
    };
    let step = (size.saturating_sub(range.start) / parts.max(1) as u64).max(1);
    let mut ranges = Vec::with_capacity(parts);
    let mut records = Records::default();
    let mut record = first;
    // One record at a time at first; then as many as take about 1/64 of a range's bytes, so that
    // a small file is cut between any two records and a large one is cut without a look at the
    // offset after each.
    let mut step_records = 1;
    let first_byte = range.start;
    while ranges.len() + 1 < parts {
        records.clear();
        input.read(&mut records, step_records)?;
        if records.is_empty() {
            break;
        }
        record += records.len() as u64;
        let at = input.decoder.offset();
        let record_bytes = (at - first_byte) / (record - first);
        step_records = (step / 64 / record_bytes.max(1)).clamp(1, MAX_STEP_RECORDS) as usize;
        if at >= range.start + step && at < size && input.decoder.at_record_boundary() {
            ranges.push(SourceRange {
                end: Some(at),
                ..range
            });
            range = SourceRange {
                start: at,
                end: None,
                line: input.decoder.line(),
                record,
            };
        }
    }
    ranges.push(range);
    Ok(ranges)
}

//! Rejected rows: the error policy, the cap on rejects, and the one reject schema every stage uses.
//!
//! Plugins never decide what a bad row does to the run. They report every bad row as a
//! [`RowError`] and carry on; the executor applies the node's [`ErrorPolicy`]: under `fail-fast` the
//! first reported row ends the run, under `skip-row` the row is counted, written to the dead-letter
//! file, and the run goes on until [`MaxErrors`] is exceeded.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::error::RowError;

/// What a bad row does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// The first bad row ends the run with an error naming it (the default).
    #[default]
    FailFast,
    /// Bad rows go to the dead-letter file; the run goes on.
    SkipRow,
}

impl ErrorPolicy {
    /// The spellings accepted in YAML.
    pub const CHOICES: [(&'static str, ErrorPolicy); 2] = [
        ("fail-fast", ErrorPolicy::FailFast),
        ("skip-row", ErrorPolicy::SkipRow),
    ];
}

/// How many rejects a run may have before it fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxErrors {
    /// No cap.
    Unlimited,
    /// At most this many rows.
    Count(u64),
    /// At most this percentage of the rows read (checked as rows are read, and at the end).
    Percent(f64),
}

impl MaxErrors {
    /// Parse `100` or `"2%"`.
    pub fn parse(written: &str) -> Option<MaxErrors> {
        let s = written.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().ok()?;
            return (0.0..=100.0).contains(&p).then_some(MaxErrors::Percent(p));
        }
        s.replace('_', "").parse().ok().map(MaxErrors::Count)
    }

    /// Whether `rejected` rows out of `read` break the cap. A percentage is only judged once the
    /// run has read enough rows for one reject to be less than the percentage, so an early bad row
    /// in a large file does not end the run.
    pub fn exceeded(&self, rejected: u64, read: u64, finished: bool) -> bool {
        match *self {
            MaxErrors::Unlimited => false,
            MaxErrors::Count(n) => rejected > n,
            MaxErrors::Percent(p) => {
                let enough = finished || (read as f64) * p / 100.0 >= 1.0;
                enough && (rejected as f64) > (read as f64) * p / 100.0
            }
        }
    }
}

impl fmt::Display for MaxErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxErrors::Unlimited => f.write_str("unlimited"),
            MaxErrors::Count(n) => write!(f, "{n}"),
            MaxErrors::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The columns of every reject file, in order.
pub fn reject_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let number = |name: &str| Field::new(name, DataType::UInt64, true);
    Arc::new(Schema::new(vec![
        text("node"),
        text("stage"),
        text("file"),
        number("line"),
        number("record"),
        number("byte_offset"),
        text("column"),
        number("column_index"),
        text("error_type"),
        text("message"),
        text("hint"),
        text("raw"),
    ]))
}

/// Rejects as one batch of [`reject_schema`].
pub fn to_batch(rejects: &[RowError]) -> Result<RecordBatch, ArrowError> {
    let n = rejects.len();
    let mut text: Vec<StringBuilder> = (0..8)
        .map(|_| StringBuilder::with_capacity(n, n * 32))
        .collect();
    let mut numbers: Vec<UInt64Builder> = (0..4).map(|_| UInt64Builder::with_capacity(n)).collect();
    for r in rejects {
        text[0].append_value(&r.node);
        text[1].append_value(r.stage.as_str());
        text[2].append_option(r.file.as_deref());
        numbers[0].append_option(r.line);
        numbers[1].append_option(r.record);
        numbers[2].append_option(r.byte_offset);
        text[3].append_option(r.column.as_ref().map(|c| c.name.as_str()));
        numbers[3].append_option(r.column.as_ref().map(|c| c.index as u64));
        text[4].append_value(r.kind.as_str());
        text[5].append_value(&r.message);
        text[6].append_option(r.hint.as_deref());
        text[7].append_option(r.raw.as_deref().map(raw_text));
    }
    let [node, stage, file, column, error_type, message, hint, raw] = text
        .try_into()
        .map_err(|_| ArrowError::SchemaError("reject text columns".into()))?;
    let [line, record, offset, column_index] = numbers
        .try_into()
        .map_err(|_| ArrowError::SchemaError("reject number columns".into()))?;
    let build = |mut b: StringBuilder| -> ArrayRef { Arc::new(b.finish()) };
    let columns: Vec<ArrayRef> = vec![
        build(node),
        build(stage),
        build(file),
        finish_u64(line),
        finish_u64(record),
        finish_u64(offset),
        build(column),
        finish_u64(column_index),
        build(error_type),
        build(message),
        build(hint),
        build(raw),
    ];
    RecordBatch::try_new(reject_schema(), columns)
}

fn finish_u64(mut b: UInt64Builder) -> ArrayRef {
    Arc::new(b.finish())
}

/// The raw record as text: UTF-8 is kept as is; any byte that is not part of valid UTF-8 is
/// written as `\xNN`, so nothing is lost or silently replaced.
pub fn raw_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ColumnRef, RowErrorKind, Stage};

    #[test]
    fn max_errors_counts_and_percentages() {
        assert_eq!(MaxErrors::parse("10"), Some(MaxErrors::Count(10)));
        assert_eq!(MaxErrors::parse(" 2.5 %"), Some(MaxErrors::Percent(2.5)));
        assert_eq!(MaxErrors::parse("120%"), None);
        assert_eq!(MaxErrors::parse("ten"), None);
        assert!(!MaxErrors::Count(2).exceeded(2, 10, false));
        assert!(MaxErrors::Count(2).exceeded(3, 10, false));
        // 1 reject in the first 10 rows is not yet 2% of anything meaningful...
        assert!(!MaxErrors::Percent(2.0).exceeded(1, 10, false));
        // ...but it is at the end of a 10-row file.
        assert!(MaxErrors::Percent(2.0).exceeded(1, 10, true));
        assert!(!MaxErrors::Percent(2.0).exceeded(2, 100, true));
        assert!(MaxErrors::Percent(2.0).exceeded(3, 100, false));
    }

    #[test]
    fn raw_bytes_survive_as_escaped_text() {
        assert_eq!(raw_text(b"a,\xE9\n"), "a,\\xE9\n");
        assert_eq!(raw_text("José".as_bytes()), "José");
    }

    #[test]
    fn rejects_become_a_batch_of_the_reject_schema() {
        let r = RowError {
            node: "read".into(),
            stage: Stage::Convert,
            kind: RowErrorKind::TypeConversion,
            file: Some("in.csv".into()),
            line: Some(3),
            record: Some(3),
            byte_offset: Some(20),
            column: Some(ColumnRef {
                name: "age".into(),
                index: 2,
            }),
            value: Some("x".into()),
            message: "expected a whole number".into(),
            hint: None,
            raw: Some(b"2,Bo,x\n".to_vec()),
        };
        let batch = to_batch(&[r]).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), reject_schema());
    }
}

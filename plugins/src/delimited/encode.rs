//! Typed Arrow batches to delimited text: RFC 4180 quoting, invariant formatting.
//!
//! Values are formatted by arrow-cast's display code, which is locale-free: floats print the
//! shortest text that reads back to the same value, decimals keep their scale, dates and times are
//! ISO 8601. Null is an empty field.

use std::fmt::Write as _;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::ArrowError;

/// One output column: which input column, and an optional date/time format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    /// Index of the input column.
    pub input: usize,
    /// Header name.
    pub name: String,
    /// strftime pattern for a date or datetime column.
    pub format: Option<String>,
}

/// Writes batches as delimited text.
#[derive(Debug, Clone)]
pub struct Encoder {
    delimiter: u8,
    quote: u8,
    line_ending: &'static [u8],
    columns: Vec<OutputColumn>,
}

impl Encoder {
    /// An encoder for `columns`.
    pub fn new(delimiter: u8, quote: u8, crlf: bool, columns: Vec<OutputColumn>) -> Self {
        Self {
            delimiter,
            quote,
            line_ending: if crlf { b"\r\n" } else { b"\n" },
            columns,
        }
    }

    /// The line ending in use.
    pub fn line_ending(&self) -> &'static [u8] {
        self.line_ending
    }

    /// Append the header line.
    pub fn header(&self, out: &mut Vec<u8>) {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            self.field(c.name.as_bytes(), out);
        }
        out.extend_from_slice(self.line_ending);
    }

    /// Append every row of `batch`.
    pub fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        let options: Vec<FormatOptions<'_>> = self
            .columns
            .iter()
            .map(|c| {
                let f = c.format.as_deref();
                FormatOptions::new()
                    .with_display_error(false)
                    .with_date_format(f)
                    .with_datetime_format(f)
                    .with_timestamp_format(f)
                    .with_timestamp_tz_format(f)
            })
            .collect();
        let formatters = self
            .columns
            .iter()
            .zip(&options)
            .map(|(c, o)| ArrayFormatter::try_new(batch.column(c.input).as_ref(), o))
            .collect::<Result<Vec<_>, _>>()?;
        // A lone empty field (empty text or null) would be a blank line, which readers skip: write
        // `""` to keep the row. Read back, `""` is empty text, or null in a nullable column.
        let single = self.columns.len() == 1;
        let mut scratch = String::new();
        for row in 0..batch.num_rows() {
            for (i, (f, c)) in formatters.iter().zip(&self.columns).enumerate() {
                if i > 0 {
                    out.push(self.delimiter);
                }
                if batch.column(c.input).is_null(row) {
                    if single {
                        out.extend_from_slice(&[self.quote, self.quote]);
                    }
                    continue;
                }
                scratch.clear();
                write!(scratch, "{}", f.value(row)).map_err(|_| {
                    ArrowError::CastError(format!("cannot format column `{}` row {row}", c.name))
                })?;
                if single && scratch.is_empty() {
                    out.extend_from_slice(&[self.quote, self.quote]);
                } else {
                    self.field(scratch.as_bytes(), out);
                }
            }
            out.extend_from_slice(self.line_ending);
        }
        Ok(())
    }

    /// One field, quoted if it holds the delimiter, the quote, CR or LF; quotes doubled.
    fn field(&self, value: &[u8], out: &mut Vec<u8>) {
        let needs_quotes = value
            .iter()
            .any(|&b| b == self.delimiter || b == self.quote || b == b'\n' || b == b'\r');
        if !needs_quotes {
            out.extend_from_slice(value);
            return;
        }
        out.push(self.quote);
        for &b in value {
            if b == self.quote {
                out.push(self.quote);
            }
            out.push(b);
        }
        out.push(self.quote);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, StringArray};
    use flowengine_engine::schema::ColumnType;
    use proptest::prelude::*;

    use super::*;
    use crate::delimited::convert::{convert, ColumnReader};
    use crate::delimited::decode::{Decoder, Dialect, Records};

    fn encoder(columns: usize, delimiter: u8, crlf: bool) -> Encoder {
        let cols = (0..columns)
            .map(|i| OutputColumn {
                input: i,
                name: format!("c{i}"),
                format: None,
            })
            .collect();
        Encoder::new(delimiter, b'"', crlf, cols)
    }

    /// Decode text written by the encoder, in `step`-byte pieces, back into string columns.
    fn read_back(bytes: &[u8], columns: usize, delimiter: u8, step: usize) -> Vec<Vec<String>> {
        let dialect = Dialect {
            delimiter,
            ..Dialect::default()
        };
        let mut d = Decoder::new(dialect, 1, 0);
        let mut records = Records::default();
        let mut pending = Vec::new();
        for chunk in bytes.chunks(step) {
            pending.extend_from_slice(chunk);
            let used = d.decode(&pending, false, &mut records, usize::MAX).unwrap();
            pending.drain(..used);
        }
        d.decode(&pending, true, &mut records, usize::MAX).unwrap();
        let readers: Vec<ColumnReader> = (0..columns)
            .map(|i| ColumnReader {
                name: format!("c{i}"),
                ty: ColumnType::Utf8,
                nullable: false,
                format: None,
                field: i,
                trim: false,
            })
            .collect();
        for r in 0..records.len() {
            assert_eq!(records.field_count(r), columns, "record {r}");
        }
        let arrays = convert(&records, &readers).unwrap();
        arrays
            .iter()
            .map(|a| {
                let s = a.as_any().downcast_ref::<StringArray>().unwrap();
                s.iter().map(|v| v.unwrap().to_string()).collect()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn write_then_read_gives_the_same_strings(
            columns in 1usize..4,
            rows in proptest::collection::vec(proptest::collection::vec("[a-c,;\"\r\n \t\u{e9}\u{2713}]{0,6}", 3), 0..20),
            semicolon in any::<bool>(),
            crlf in any::<bool>(),
            step in 1usize..64,
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            let data: Vec<ArrayRef> = (0..columns)
                .map(|c| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[c].as_str()))) as ArrayRef)
                .collect();
            let names: Vec<String> = (0..columns).map(|i| format!("c{i}")).collect();
            let batch = RecordBatch::try_from_iter(names.iter().zip(data)).unwrap();
            let mut out = Vec::new();
            encoder(columns, delimiter, crlf).encode(&batch, &mut out).unwrap();
            let back = read_back(&out, columns, delimiter, step);
            for c in 0..columns {
                let original: Vec<String> = rows.iter().map(|r| r[c].clone()).collect();
                prop_assert_eq!(&back[c], &original);
            }
        }
    }

    #[test]
    fn floats_are_shortest_round_trip_and_a_lone_null_keeps_its_row() {
        let col: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.1),
            None,
            Some(1e21),
            Some(-0.0),
            Some(2.5),
        ]));
        let batch = RecordBatch::try_from_iter([("f", col)]).unwrap();
        let mut out = Vec::new();
        encoder(1, b',', false).encode(&batch, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0.1\n\"\"\n1e21\n-0.0\n2.5\n"
        );
    }

    #[test]
    fn header_names_are_quoted_when_needed() {
        let enc = Encoder::new(
            b',',
            b'"',
            true,
            vec![
                OutputColumn {
                    input: 0,
                    name: "a,b".into(),
                    format: None,
                },
                OutputColumn {
                    input: 1,
                    name: "say \"x\"".into(),
                    format: None,
                },
            ],
        );
        let mut out = Vec::new();
        enc.header(&mut out);
        assert_eq!(out, b"\"a,b\",\"say \"\"x\"\"\"\r\n");
    }
}

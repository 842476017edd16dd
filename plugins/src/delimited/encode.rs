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
        // A lone empty field would be a blank line, which readers skip: quote it to keep the row.
        let single = self.columns.len() == 1;
        let mut scratch = String::new();
        for row in 0..batch.num_rows() {
            for (i, (f, c)) in formatters.iter().zip(&self.columns).enumerate() {
                if i > 0 {
                    out.push(self.delimiter);
                }
                if batch.column(c.input).is_null(row) {
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

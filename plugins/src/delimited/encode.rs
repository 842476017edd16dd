//! Typed Arrow batches to delimited text: RFC 4180 quoting, invariant formatting.
//!
//! Values are formatted by arrow-cast's display code, which is locale-free: floats print the
//! shortest text that reads back to the same value, decimals keep their scale, dates and times are
//! ISO 8601. Null is an empty field.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array};
use arrow_array::{RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::ArrowError;

use super::bytes::{Masks, POWERS_OF_TEN};
use super::civil;

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

/// A column as the encoder reads it. The common types are written directly, with the text
/// arrow-cast's display code gives them (the same `itoa`-style integers and `ryu` floats, ISO
/// dates), without its `fmt` machinery: that machinery was a third of the encoding time.
enum Column<'a> {
    /// UTF-8 text, written as is.
    Text(&'a StringArray),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Float64(&'a Float64Array),
    Boolean(&'a BooleanArray),
    /// A date in the default ISO 8601 form.
    Date32(&'a Date32Array),
    /// Anything else, through arrow-cast's invariant formatting.
    Formatted(ArrayFormatter<'a>),
}

impl<'a> Column<'a> {
    /// Every byte this column's text can hold, where that is a short list: numbers, booleans and
    /// ISO dates (years past 9999 get a sign).
    fn alphabet(&self) -> Option<&'static [u8]> {
        match self {
            Column::Int32(_) | Column::Int64(_) => Some(b"0123456789-"),
            // ryu writes `NaN`, `inf` and `-inf` besides digits, sign, point and exponent.
            Column::Float64(_) => Some(b"0123456789-.eNaifn"),
            Column::Boolean(_) => Some(b"truefals"),
            Column::Date32(_) => Some(b"0123456789-+"),
            Column::Text(_) | Column::Formatted(_) => None,
        }
    }

    fn new(
        array: &'a dyn Array,
        format: Option<&str>,
        options: &FormatOptions<'a>,
    ) -> Result<Self, ArrowError> {
        use arrow_schema::DataType as T;
        Ok(match array.data_type() {
            T::Utf8 => Column::Text(array.as_string::<i32>()),
            T::Int32 => Column::Int32(array.as_primitive::<Int32Type>()),
            T::Int64 => Column::Int64(array.as_primitive::<Int64Type>()),
            T::Float64 => Column::Float64(array.as_primitive::<Float64Type>()),
            T::Boolean => Column::Boolean(array.as_boolean()),
            T::Date32 if format.is_none() => Column::Date32(array.as_primitive::<Date32Type>()),
            _ => Column::Formatted(ArrayFormatter::try_new(array, options)?),
        })
    }
}

/// Reused buffers for formatting one value.
#[derive(Default)]
struct Scratch {
    int: itoa::Buffer,
    float: ryu::Buffer,
    date: [u8; 10],
    decimal: [u8; 24],
    text: String,
}

impl Scratch {
    /// The text of `row` in `column` (not null).
    fn value<'s>(&'s mut self, column: &'s Column<'_>, row: usize) -> Result<&'s [u8], ArrowError> {
        Ok(match column {
            Column::Text(a) => a.value(row).as_bytes(),
            Column::Int32(a) => self.int.format(a.value(row)).as_bytes(),
            Column::Int64(a) => self.int.format(a.value(row)).as_bytes(),
            Column::Float64(a) => {
                let v = a.value(row);
                match short_decimal(v, &mut self.decimal) {
                    Some(len) => &self.decimal[..len],
                    None => self.float.format(v).as_bytes(),
                }
            }
            Column::Boolean(a) => match a.value(row) {
                true => b"true",
                false => b"false",
            },
            Column::Date32(a) => {
                let days = a.value(row);
                let (year, month, day) = civil::civil_from_days(days);
                if (0..=9999).contains(&year) {
                    let d = &mut self.date;
                    digits(&mut d[0..4], year as u32);
                    d[4] = b'-';
                    digits(&mut d[5..7], month);
                    d[7] = b'-';
                    digits(&mut d[8..10], day);
                    &self.date
                } else {
                    // `+10000-01-01`, `-0001-12-31`: chrono's form, as arrow-cast writes it.
                    let date = arrow_array::temporal_conversions::date32_to_datetime(days)
                        .map(|d| d.date())
                        .ok_or_else(|| {
                            ArrowError::CastError(format!("day {days} is not a date"))
                        })?;
                    self.text.clear();
                    let _ = write!(self.text, "{date:?}");
                    self.text.as_bytes()
                }
            }
            Column::Formatted(f) => {
                self.text.clear();
                write!(self.text, "{}", f.value(row))
                    .map_err(|_| ArrowError::CastError(format!("cannot format row {row}")))?;
                self.text.as_bytes()
            }
        })
    }
}

/// The bytes of every value of `a`, back to back (a sliced array's part of its buffer).
fn text_bytes(a: &StringArray) -> &[u8] {
    let offsets = a.value_offsets();
    let (start, end) = (offsets[0], offsets[offsets.len() - 1]);
    &a.value_data()[start as usize..end as usize]
}

/// ryu's text for a double that is a decimal of at most five places below 10^15 in magnitude
/// (`11223.33`, `80.0`, `-0.125`), which is what most data files hold: the fewest places `k`
/// whose integer `m = round(v * 10^k)` gives back `v` as `m / 10^k`. Below 10^15 at most one
/// integer can, and the rounded product finds it, so the text is the shortest that reads back
/// to `v`, as ryu's is, and in ryu's range for plain notation (it writes 10^-6 as `1e-6`); ryu's
/// general algorithm costs several times more. Writes into `out` and
/// returns the length, or `None` for anything else (zero, larger, more places, not finite).
fn short_decimal(v: f64, out: &mut [u8; 24]) -> Option<usize> {
    if v == 0.0 || !v.is_finite() {
        return None;
    }
    // At most five places: ryu writes 10^-6 as `1e-6`.
    let (k, m) = POWERS_OF_TEN[..6].iter().enumerate().find_map(|(k, &p)| {
        let x = v * p;
        // Rounding by hand: `f64::round` is a libm call on baseline x86-64. Any integer that
        // passes the check is the one, so an estimate off by one only misses the fast path.
        let m = (x + 0.5f64.copysign(x)) as i64;
        (x.abs() < 1e15 && m as f64 / p == v).then_some((k, m))
    })?;
    let mut len = 0;
    if m < 0 {
        out[0] = b'-';
        len = 1;
    }
    let m = m.unsigned_abs();
    let scale = 10u64.pow(k as u32);
    let mut int = itoa::Buffer::new();
    let whole = int.format(m / scale).as_bytes();
    out[len..len + whole.len()].copy_from_slice(whole);
    len += whole.len();
    out[len] = b'.';
    len += 1;
    if k == 0 {
        out[len] = b'0';
        return Some(len + 1);
    }
    digits(&mut out[len..len + k], (m % scale) as u32);
    Some(len + k)
}

/// Write `n` as `out.len()` decimal digits, zero-padded.
fn digits(out: &mut [u8], mut n: u32) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Writes batches as delimited text.
#[derive(Debug, Clone)]
pub struct Encoder {
    delimiter: u8,
    quote: u8,
    line_ending: &'static [u8],
    columns: Vec<OutputColumn>,
    /// Bytes that force quoting: the delimiter, the quote, CR and LF.
    special: [bool; 256],
    /// The same four bytes, 16 at a time.
    masks: Masks,
}

impl Encoder {
    /// An encoder for `columns`.
    pub fn new(delimiter: u8, quote: u8, crlf: bool, columns: Vec<OutputColumn>) -> Self {
        let mut special = [false; 256];
        for b in [delimiter, quote, b'\n', b'\r'] {
            special[usize::from(b)] = true;
        }
        Self {
            delimiter,
            quote,
            line_ending: if crlf { b"\r\n" } else { b"\n" },
            columns,
            special,
            masks: Masks::new(delimiter, quote),
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
        let columns = self
            .columns
            .iter()
            .zip(&options)
            .map(|(c, o)| Column::new(batch.column(c.input).as_ref(), c.format.as_deref(), o))
            .collect::<Result<Vec<_>, _>>()?;
        let nulls: Vec<_> = self
            .columns
            .iter()
            .map(|c| batch.column(c.input).nulls())
            .collect();
        // Columns whose text never holds a byte that needs quoting skip the check: numbers and
        // dates always, text when no value in this batch holds one.
        let plain: Vec<bool> = columns
            .iter()
            .map(|c| match (c, c.alphabet()) {
                (_, Some(a)) => a.iter().all(|&b| !self.special[usize::from(b)]),
                (Column::Text(a), None) => !self.needs_quotes(text_bytes(a)),
                (_, None) => false,
            })
            .collect();
        // A lone empty field (empty text or null) would be a blank line, which readers skip: write
        // `""` to keep the row. Read back, `""` is empty text, or null in a nullable column.
        let single = self.columns.len() == 1;
        let mut scratch = Scratch::default();
        let start = out.len();
        for row in 0..batch.num_rows() {
            if row == 64 {
                // Size the output from the first rows, rather than doubling it a dozen times.
                let per_row = (out.len() - start) / 64 + 1;
                out.reserve(per_row * (batch.num_rows() - 64) * 9 / 8);
            }
            for (i, ((column, nulls), &plain)) in columns.iter().zip(&nulls).zip(&plain).enumerate()
            {
                if i > 0 {
                    out.push(self.delimiter);
                }
                if nulls.is_some_and(|n| n.is_null(row)) {
                    if single {
                        out.extend_from_slice(&[self.quote, self.quote]);
                    }
                    continue;
                }
                let value = scratch.value(column, row).map_err(|e| {
                    ArrowError::CastError(format!("column `{}`: {e}", self.columns[i].name))
                })?;
                if single && value.is_empty() {
                    out.extend_from_slice(&[self.quote, self.quote]);
                } else if plain {
                    out.extend_from_slice(value);
                } else {
                    self.field(value, out);
                }
            }
            match self.line_ending {
                [b] => out.push(*b),
                ending => out.extend_from_slice(ending),
            }
        }
        Ok(())
    }

    /// Whether `value` holds the delimiter, the quote, CR or LF.
    fn needs_quotes(&self, value: &[u8]) -> bool {
        // All four at once, 16 bytes at a time: one pass where memchr3 and memchr made two, and
        // fewer instructions on the benchmark's short fields. The last few bytes by the table.
        let mut blocks = value.chunks_exact(16);
        let hit = blocks.by_ref().any(|block| self.masks.part(block) != 0);
        hit || blocks
            .remainder()
            .iter()
            .any(|&b| self.special[usize::from(b)])
    }

    /// One field, quoted if it holds the delimiter, the quote, CR or LF; quotes doubled.
    fn field(&self, value: &[u8], out: &mut Vec<u8>) {
        if !self.needs_quotes(value) {
            out.extend_from_slice(value);
            return;
        }
        out.push(self.quote);
        let mut rest = value;
        while let Some(i) = memchr::memchr(self.quote, rest) {
            out.extend_from_slice(&rest[..=i]);
            out.push(self.quote);
            rest = &rest[i + 1..];
        }
        out.extend_from_slice(rest);
        out.push(self.quote);
    }
}

/// Writes batches as JSON Lines: one object per row, keys in column order. Numbers and booleans
/// are JSON values, null is `null`, everything else is a string of its invariant text form.
#[derive(Debug, Clone)]
pub struct JsonLinesEncoder {
    columns: Vec<OutputColumn>,
}

impl JsonLinesEncoder {
    /// An encoder for `columns`.
    pub fn new(columns: Vec<OutputColumn>) -> Self {
        Self { columns }
    }

    /// Append every row of `batch`.
    pub fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        use arrow_schema::DataType::*;
        let options = FormatOptions::new().with_display_error(false);
        let formatters = self
            .columns
            .iter()
            .map(|c| ArrayFormatter::try_new(batch.column(c.input).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut scratch = String::new();
        for row in 0..batch.num_rows() {
            out.push(b'{');
            for (i, (f, c)) in formatters.iter().zip(&self.columns).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(&c.name, out);
                out.push(b':');
                let array = batch.column(c.input);
                if array.is_null(row) {
                    out.extend_from_slice(b"null");
                    continue;
                }
                scratch.clear();
                write!(scratch, "{}", f.value(row)).map_err(|_| {
                    ArrowError::CastError(format!("cannot format column `{}`", c.name))
                })?;
                let bare = match array.data_type() {
                    Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Boolean => {
                        true
                    }
                    Float32 | Float64 => scratch.parse::<f64>().is_ok_and(f64::is_finite),
                    _ => false,
                };
                if bare {
                    out.extend_from_slice(scratch.as_bytes());
                } else {
                    json_string(&scratch, out);
                }
            }
            out.extend_from_slice(b"}\n");
        }
        Ok(())
    }
}

fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, StringArray};
    use flowengine_engine::schema::ColumnType;
    use proptest::prelude::*;

    use super::*;
    use crate::delimited::convert::{convert, ColumnReader, Take};
    use crate::delimited::decode::{Checks, Decoder, Dialect, Records};

    fn ryu_text(v: f64) -> String {
        ryu::Buffer::new().format(v).to_string()
    }

    fn short_text(v: f64) -> Option<String> {
        let mut out = [0; 24];
        short_decimal(v, &mut out).map(|n| String::from_utf8(out[..n].to_vec()).unwrap())
    }

    #[test]
    fn short_decimals_are_ryus_text() {
        for text in [
            "11223.33",
            "80.01419",
            "-0.125",
            "0.00001",
            "5",
            "123000000",
            "999999999999999",
        ] {
            let v: f64 = text.parse().unwrap();
            assert_eq!(short_text(v), Some(ryu_text(v)), "{text}");
        }
        for v in [
            0.0,
            -0.0,
            0.1 + 0.2,
            1e15,
            1e-6,
            f64::NAN,
            f64::INFINITY,
            1.0 / 3.0,
        ] {
            assert_eq!(short_text(v), None, "{v}");
        }
    }

    proptest! {
        #[test]
        fn short_decimal_text_is_ryus_for_decimals(m in -10i64.pow(15)..10i64.pow(15), k in 0u32..7) {
            let v = m as f64 / 10f64.powi(k as i32);
            if let Some(text) = short_text(v) {
                prop_assert_eq!(text, ryu_text(v));
            }
        }

        #[test]
        fn a_field_needs_quotes_where_it_holds_a_special_byte(
            value in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b';'), Just(b'\''), Just(b'\n'), Just(b'\r'), Just(b','), Just(b'"')],
                0..80),
        ) {
            let encoder = Encoder::new(b';', b'\'', false, Vec::new());
            let special = value.iter().any(|b| b";'\n\r".contains(b));
            prop_assert_eq!(encoder.needs_quotes(&value), special);
        }

        #[test]
        fn short_decimal_text_is_ryus_for_any_double(bits: u64) {
            let v = f64::from_bits(bits);
            if let Some(text) = short_text(v) {
                prop_assert_eq!(text, ryu_text(v));
            }
        }
    }

    #[test]
    fn direct_formatting_matches_arrow_cast() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![i32::MIN, -1, 0, 7, i32::MAX, 10])),
            Arc::new(Int64Array::from(vec![
                i64::MIN,
                -10,
                0,
                1 << 40,
                i64::MAX,
                99,
            ])),
            Arc::new(Float64Array::from(vec![
                f64::NAN,
                f64::NEG_INFINITY,
                -0.0,
                0.1,
                1e300,
                5e-324,
            ])),
            Arc::new(BooleanArray::from(vec![
                true, false, true, false, true, false,
            ])),
            // 1970-01-01, 1969-12-31, 0000-01-01, the day before it, 9999-12-31, 10000-01-01.
            Arc::new(Date32Array::from(vec![
                0, -1, -719_528, -719_529, 2_932_896, 2_932_897,
            ])),
        ];
        let options = FormatOptions::new();
        for array in &columns {
            let column = Column::new(array.as_ref(), None, &options).unwrap();
            assert!(!matches!(column, Column::Formatted(_)));
            let reference = ArrayFormatter::try_new(array.as_ref(), &options).unwrap();
            let mut scratch = Scratch::default();
            for row in 0..array.len() {
                let got = scratch.value(&column, row).unwrap().to_vec();
                let alphabet = column.alphabet().unwrap();
                assert!(
                    !got.is_empty() && got.iter().all(|b| alphabet.contains(b)),
                    "{} row {row}: {got:?} is outside the column's alphabet",
                    array.data_type()
                );
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    reference.value(row).to_string(),
                    "{} row {row}",
                    array.data_type()
                );
            }
        }
    }

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
        let mut d = Decoder::new(dialect, Checks::default(), 1, 0);
        let mut records = Records::default();
        let mut pending = Vec::new();
        for chunk in bytes.chunks(step) {
            pending.extend_from_slice(chunk);
            let used = d.decode(&pending, false, &mut records, usize::MAX);
            pending.drain(..used);
        }
        d.decode(&pending, true, &mut records, usize::MAX);
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
            assert_eq!(records.problems[r], None, "record {r}");
        }
        let take = vec![Take::Value; records.len()];
        let (arrays, errors) = convert(&records, &readers, &take);
        assert!(errors.is_empty(), "{errors:?}");
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
    fn json_lines_escape_text_and_keep_numbers_bare() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a\"b\\c\nd\u{1}"), None]));
        let num: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)]));
        let batch = RecordBatch::try_from_iter([("t", text), ("n", num)]).unwrap();
        let cols = ["t", "n"]
            .iter()
            .enumerate()
            .map(|(i, n)| OutputColumn {
                input: i,
                name: n.to_string(),
                format: None,
            })
            .collect();
        let mut out = Vec::new();
        JsonLinesEncoder::new(cols)
            .encode(&batch, &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"t\":\"a\\\"b\\\\c\\nd\\u0001\",\"n\":1.5}\n{\"t\":null,\"n\":\"NaN\"}\n"
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

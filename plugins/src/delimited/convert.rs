//! Converting fields of decoded records into typed Arrow arrays, one column at a time.
//!
//! Conversion is strict: a value either parses exactly as the declared type or is reported with
//! the value and what was expected. Nothing is rounded, clamped or silently nulled.

use std::sync::Arc;

use arrow_array::builder::BooleanBufferBuilder;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{ArrayRef, BooleanArray, PrimitiveArray, StringArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use flowengine_engine::error::RowErrorKind;
use flowengine_engine::schema::ColumnType;

use super::bytes::POWERS_OF_TEN;
use super::civil;
use super::decode::RecordSet;

/// How to read one output column.
#[derive(Debug, Clone)]
pub struct ColumnReader {
    /// Column name (for messages).
    pub name: String,
    /// Declared type.
    pub ty: ColumnType,
    /// Empty fields become null (else: error, or "" for strings).
    pub nullable: bool,
    /// strftime pattern for dates and datetimes.
    pub format: Option<String>,
    /// Which field of the record feeds this column.
    pub field: usize,
    /// Trim ASCII whitespace around the value.
    pub trim: bool,
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// Record index within the batch.
    pub record: usize,
    /// Column index within the schema.
    pub column: usize,
    /// Classification.
    pub kind: RowErrorKind,
    /// The value as read (lossy UTF-8).
    pub value: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// What converting a column does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Convert its value into the column.
    Value,
    /// Put a null in the column without reading the value (the record is already refused).
    Placeholder,
    /// Check the value and report it if bad, but leave the record out of the column (a condition
    /// ruled it out).
    Check,
    /// Leave the record out without reading it.
    Skip,
}

impl Take {
    /// Whether the record has a row in the column.
    pub fn in_column(self) -> bool {
        matches!(self, Take::Value | Take::Placeholder)
    }
}

/// Convert every column, taking records as `take` says. A record with a bad value gets a null;
/// every bad value is returned, ordered by record, then column. The caller removes those rows
/// before the arrays meet a non-nullable schema.
pub fn convert<R: RecordSet>(
    records: &R,
    columns: &[ColumnReader],
    take: &[Take],
) -> (Vec<ArrayRef>, Vec<ConvertError>) {
    let mut errors = Vec::new();
    let arrays = (0..columns.len())
        .map(|c| convert_one(records, columns, c, take, &mut errors))
        .collect();
    errors.sort_by_key(|e| (e.record, e.column));
    (arrays, errors)
}

/// Convert column `c` of `columns`, adding its bad values (in record order) to `errors`.
pub fn convert_one<R: RecordSet>(
    records: &R,
    columns: &[ColumnReader],
    c: usize,
    take: &[Take],
    errors: &mut Vec<ConvertError>,
) -> ArrayRef {
    let start = errors.len();
    let cx = ColumnCx {
        records,
        col: &columns[c],
        take,
    };
    let array = convert_column(cx, errors);
    for e in &mut errors[start..] {
        e.column = c;
    }
    array
}

/// The column being converted, and what to do with each record.
struct ColumnCx<'a, R> {
    records: &'a R,
    col: &'a ColumnReader,
    take: &'a [Take],
}

/// Rows the column will hold.
fn rows_in_column(take: &[Take]) -> usize {
    take.iter().filter(|t| t.in_column()).count()
}

/// Each record's value for `col` (trimmed if asked) with what `take` says of the record,
/// leaving out the records it skips. A missing field (allowed by `RaggedRows`) reads as empty.
#[inline]
fn each_value<R: RecordSet>(
    records: &R,
    col: &ColumnReader,
    take: &[Take],
    mut f: impl FnMut(usize, Take, &[u8]),
) {
    let trim = col.trim;
    records.each_field(col.field, |r, raw| {
        let t = take.get(r).copied().unwrap_or(Take::Skip);
        if t != Take::Skip {
            f(r, t, if trim { raw.trim_ascii() } else { raw });
        }
    });
}

fn fail(r: usize, kind: RowErrorKind, value: &[u8], message: String, hint: &str) -> ConvertError {
    ConvertError {
        record: r,
        column: 0,
        kind,
        value: String::from_utf8_lossy(value).into_owned(),
        message,
        hint: hint.to_string(),
    }
}

fn null_in_required(r: usize, col: &ColumnReader) -> ConvertError {
    fail(
        r,
        RowErrorKind::NullInRequired,
        b"",
        format!("empty value in non-nullable {} column", col.ty),
        "set `Nullable: true` on the column if empty values are allowed",
    )
}

fn convert_column<R: RecordSet>(cx: ColumnCx<'_, R>, errors: &mut Vec<ConvertError>) -> ArrayRef {
    match &cx.col.ty {
        ColumnType::Utf8 => strings(cx, errors),
        ColumnType::Int32 => primitive::<Int32Type, R>(cx, errors, parse_int::<i32>),
        ColumnType::Int64 => primitive::<Int64Type, R>(cx, errors, parse_int::<i64>),
        ColumnType::Float32 => primitive::<Float32Type, R>(cx, errors, parse_float::<f32>),
        ColumnType::Float64 => primitive::<Float64Type, R>(cx, errors, parse_f64),
        ColumnType::Bool => booleans(cx, errors),
        ColumnType::Date => {
            let format = cx.col.format.as_deref().unwrap_or("%Y-%m-%d");
            primitive::<Date32Type, R>(cx, errors, |v| parse_date(v, format))
        }
        ColumnType::Decimal { precision, scale } => {
            let (p, s) = (*precision, *scale);
            let array = primitive::<Decimal128Type, R>(cx, errors, |v| parse_decimal(v, p, s));
            let array = array
                .as_any()
                .downcast_ref::<arrow_array::Decimal128Array>()
                .cloned()
                .and_then(|a| a.with_precision_and_scale(p, s).ok())
                .expect("precision and scale were validated at plan time");
            Arc::new(array)
        }
        ColumnType::Timestamp { tz } => {
            let zone = tz
                .as_deref()
                .map(|t| t.parse::<arrow_array::timezone::Tz>())
                .transpose()
                .expect("time zones are validated at plan time");
            let format = cx.col.format.as_deref();
            let array = primitive::<TimestampMicrosecondType, R>(cx, errors, |v| {
                parse_timestamp(v, format, zone.as_ref())
            });
            let array = array
                .as_any()
                .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
                .cloned()
                .expect("a timestamp array")
                .with_timezone_opt(tz.clone());
            Arc::new(array)
        }
    }
}

/// A parse failure: the message and the hint.
type Refusal = (String, &'static str);

fn primitive<T: ArrowPrimitiveType, R: RecordSet>(
    cx: ColumnCx<'_, R>,
    errors: &mut Vec<ConvertError>,
    parse: impl Fn(&[u8]) -> Result<T::Native, Refusal>,
) -> ArrayRef {
    let ColumnCx { records, col, take } = cx;
    // A plain vector and the rows that are null, rather than a builder that keeps a bitmap
    // going for columns that mostly have no nulls.
    let mut values: Vec<T::Native> = Vec::with_capacity(rows_in_column(take));
    let mut nulls: Vec<usize> = Vec::new();
    each_value(records, col, take, |r, t, v| {
        let value = match t {
            Take::Placeholder => None,
            _ if v.is_empty() => {
                if !col.nullable {
                    errors.push(null_in_required(r, col));
                }
                None
            }
            _ => match parse(v) {
                Ok(x) => Some(x),
                Err((message, hint)) => {
                    errors.push(fail(r, RowErrorKind::TypeConversion, v, message, hint));
                    None
                }
            },
        };
        if t.in_column() {
            if value.is_none() {
                nulls.push(values.len());
            }
            values.push(value.unwrap_or_default());
        }
    });
    let nulls = null_buffer(values.len(), &nulls);
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls))
}

/// A null buffer for `rows` rows, null at `nulls`; `None` when there are none.
fn null_buffer(rows: usize, nulls: &[usize]) -> Option<NullBuffer> {
    if nulls.is_empty() {
        return None;
    }
    let mut valid = BooleanBufferBuilder::new(rows);
    valid.append_n(rows, true);
    for &i in nulls {
        valid.set_bit(i, false);
    }
    Some(NullBuffer::new(valid.finish()))
}

fn strings<R: RecordSet>(cx: ColumnCx<'_, R>, errors: &mut Vec<ConvertError>) -> ArrayRef {
    let ColumnCx { records, col, take } = cx;
    let n = rows_in_column(&take[..take.len().min(records.len())]);
    // Sized exactly up front: growing a buffer of a few MB copies it each time.
    let mut bytes = 0;
    each_value(records, col, take, |_, t, v| {
        if t == Take::Value {
            bytes += v.len();
        }
    });
    // Offsets are i32: a column of one batch holding more than 2 GiB of text is refused (lower
    // `ChunkSize`) rather than overflowing.
    if i32::try_from(bytes).is_err() {
        errors.push(fail(
            0,
            RowErrorKind::RecordTooLarge,
            b"",
            "one column of this batch holds more than 2 GiB of text".into(),
            "lower `ChunkSize`",
        ));
        return Arc::new(StringArray::new_null(n));
    }
    let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
    let mut values: Vec<u8> = Vec::with_capacity(bytes);
    // Rows that are null, which most columns have none of: a bitmap only if there are some.
    let mut nulls: Vec<usize> = Vec::new();
    offsets.push(0);
    // Checked values are only reported: one check of the whole set, where it can make one, costs
    // less than one per value (and is not made when no value is checked).
    let known_utf8 = take.contains(&Take::Check) && records.utf8();
    each_value(records, col, take, |r, t, v| {
        let v = match t {
            Take::Check => {
                if !known_utf8 {
                    check_utf8(r, v, errors);
                }
                return;
            }
            Take::Placeholder => b"".as_slice(),
            Take::Value | Take::Skip => v,
        };
        if t == Take::Placeholder || v.is_empty() && col.nullable {
            nulls.push(offsets.len() - 1);
        }
        values.extend_from_slice(v);
        // Cannot wrap: the values add up to `bytes`, checked above.
        offsets.push(values.len() as i32);
    });
    let nulls = null_buffer(n, &nulls);
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let values = Buffer::from_vec(values);
    // The array checks that the values are UTF-8 and that no value boundary splits a character
    // (two invalid halves in neighbouring values can join into one valid character).
    if let Ok(array) = StringArray::try_new(offsets.clone(), values.clone(), nulls.clone()) {
        return Arc::new(array);
    }
    // Rare path: report every bad value and blank it, so the array stays valid UTF-8.
    let mut clean = Vec::with_capacity(values.len());
    let mut clean_offsets = Vec::with_capacity(n + 1);
    let mut bits = BooleanBufferBuilder::new(n);
    clean_offsets.push(0);
    // In-column row -> record, to name the record of a bad value.
    let records_of = take.iter().enumerate().filter(|(_, t)| t.in_column());
    for (i, (r, _)) in records_of.take(n).enumerate() {
        let v = &values[offsets[i] as usize..offsets[i + 1] as usize];
        let ok = check_utf8(r, v, errors);
        if ok {
            clean.extend_from_slice(v);
        }
        clean_offsets.push(clean.len() as i32);
        bits.append(ok && nulls.as_ref().is_none_or(|n| n.is_valid(i)));
    }
    let nulls = NullBuffer::new(bits.finish());
    let array = StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(clean_offsets)),
        Buffer::from_vec(clean),
        (nulls.null_count() > 0).then_some(nulls),
    )
    .expect("offsets are monotonic and every value was checked as UTF-8");
    Arc::new(array)
}

/// Report record `r`'s value if it is not UTF-8. True if it is.
fn check_utf8(r: usize, v: &[u8], errors: &mut Vec<ConvertError>) -> bool {
    // Most values are ASCII, which is checked inline; `from_utf8` is a call per value.
    let ok = v.is_ascii() || std::str::from_utf8(v).is_ok();
    if !ok {
        errors.push(fail(
            r,
            RowErrorKind::InvalidUtf8,
            v,
            "the value is not valid UTF-8".into(),
            "convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ));
    }
    ok
}

fn booleans<R: RecordSet>(cx: ColumnCx<'_, R>, errors: &mut Vec<ConvertError>) -> ArrayRef {
    let ColumnCx { records, col, take } = cx;
    let mut out: Vec<Option<bool>> = Vec::with_capacity(rows_in_column(take));
    each_value(records, col, take, |r, t, v| {
        let keep = match t {
            Take::Placeholder => {
                out.push(None);
                return;
            }
            Take::Check => false,
            Take::Value | Take::Skip => true,
        };
        if v.is_empty() {
            if !col.nullable {
                errors.push(null_in_required(r, col));
            }
            if keep {
                out.push(None);
            }
            return;
        }
        let is = |words: &[&[u8]]| words.iter().any(|w| w.eq_ignore_ascii_case(v));
        let b = match v {
            // The spellings writers use, before the case-blind list.
            b"true" => Some(true),
            b"false" => Some(false),
            _ if is(&[b"true", b"t", b"yes", b"y", b"1"]) => Some(true),
            _ if is(&[b"false", b"f", b"no", b"n", b"0"]) => Some(false),
            _ => {
                errors.push(fail(
                    r,
                    RowErrorKind::TypeConversion,
                    v,
                    "expected a boolean".into(),
                    "booleans are true/false, t/f, yes/no, y/n or 1/0 (any case)",
                ));
                None
            }
        };
        if keep {
            out.push(b);
        }
    });
    Arc::new(BooleanArray::from(out))
}

fn as_str(v: &[u8]) -> Result<&str, Refusal> {
    std::str::from_utf8(v).map_err(|_| {
        (
            "the value is not valid UTF-8".into(),
            "convert the file to UTF-8",
        )
    })
}

/// An integer: plain ones by [`plain_int`], anything else (a `+`, 19 digits or more, a bad
/// byte) by lexical, which accepts it or words the refusal.
fn parse_int<T: lexical_core::FromLexical + TryFrom<i64>>(v: &[u8]) -> Result<T, Refusal> {
    match plain_int(v) {
        Some(n) => Ok(n),
        None => lexical_int(v),
    }
}

/// `-?digits` with at most 18 digits, which cannot overflow the i64, and a value that fits `T`.
/// lexical's general parser was a twentieth of a typed read; this loop is most of the work it
/// does on such input. `None` for anything else.
fn plain_int<T: TryFrom<i64>>(v: &[u8]) -> Option<T> {
    let (negative, digits) = match v {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let n = i64::try_from(digits_value(digits)?).ok()?;
    T::try_from(if negative { -n } else { n }).ok()
}

/// The value of ASCII `digits` (at most 19, so it fits), eight at a time by [`eight_digits`];
/// `None` if any byte is not a digit.
#[inline]
fn digits_value(digits: &[u8]) -> Option<u64> {
    more_digits(0, digits)
}

/// `n` followed by ASCII `digits`, as [`digits_value`] reads them.
#[inline]
fn more_digits(mut n: u64, digits: &[u8]) -> Option<u64> {
    let mut rest = digits;
    while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
        n = n * 100_000_000 + eight_digits(u64::from_le_bytes(*eight))?;
        rest = tail;
    }
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// Eight ASCII digits read little-endian (the first digit in the low byte) as their value, or
/// `None` if a byte is not a digit: three multiplies instead of eight steps (the SWAR method of
/// simdjson's `parse_eight_digits_unrolled`).
#[inline]
fn eight_digits(chunk: u64) -> Option<u64> {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte is 0x30..=0x3f, and still below 0x40 after adding 6: exactly `0`..=`9`. No byte
    // carries into the next, as none is above 0x3f.
    let digits = chunk & HIGH == ZEROS && chunk.wrapping_add(0x0606_0606_0606_0606) & HIGH == ZEROS;
    if !digits {
        return None;
    }
    let v = chunk - ZEROS;
    // Pairs, then fours, then all eight: each step's lanes stay below their width.
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
    Some((v.wrapping_mul(10_000) + (v >> 32)) & 0xffff_ffff)
}

fn lexical_int<T: lexical_core::FromLexical>(v: &[u8]) -> Result<T, Refusal> {
    lexical_core::parse::<T>(v).map_err(|e| match e {
        lexical_core::Error::Overflow(_) | lexical_core::Error::Underflow(_) => (
            format!("the number does not fit a {}-bit integer", std::mem::size_of::<T>() * 8),
            "declare the column as int64 (or decimal(38,0) for larger values)",
        ),
        _ => (
            "expected a whole number".into(),
            "integers are digits with an optional sign, e.g. -42; use double or decimal(p,s) for fractions",
        ),
    })
}

fn parse_float<T: lexical_core::FromLexical>(v: &[u8]) -> Result<T, Refusal> {
    lexical_core::parse::<T>(v).map_err(|_| {
        (
            "expected a number".into(),
            "numbers use `.` as the decimal point and no thousands separators, e.g. 1234.5 or 1.2e3",
        )
    })
}

/// A double: plain decimals by [`plain_decimal`], anything else (exponents, `inf`, long mantissas)
/// by lexical.
fn parse_f64(v: &[u8]) -> Result<f64, Refusal> {
    plain_decimal(v).map_or_else(|| parse_float::<f64>(v), Ok)
}

/// `-?digits(.digits)?` with at most 15 digits, as the digits over a power of ten: both are exact
/// doubles, so one division gives the correctly rounded value (Clinger's fast path, which lexical
/// also takes, after more general work). `None` for anything else.
fn plain_decimal(v: &[u8]) -> Option<f64> {
    let (negative, text) = match v {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, v),
    };
    let (whole, places) = match text.iter().position(|&b| b == b'.') {
        None => (text, &text[text.len()..]),
        // Digits are needed on both sides of the point.
        Some(i) if i == 0 || i + 1 == text.len() => return None,
        Some(i) => (&text[..i], &text[i + 1..]),
    };
    if whole.is_empty() || whole.len() + places.len() > 15 {
        return None;
    }
    // At most 15 digits: the mantissa is an exact double.
    let mantissa = more_digits(digits_value(whole)?, places)?;
    let value = mantissa as f64 / POWERS_OF_TEN[places.len()];
    Some(if negative { -value } else { value })
}

fn parse_date(v: &[u8], format: &str) -> Result<i32, Refusal> {
    let days = if format == "%Y-%m-%d" {
        iso_date(v)
    } else {
        as_str(v)
            .ok()
            .and_then(|s| NaiveDate::parse_from_str(s, format).ok())
            .map(Date32Type::from_naive_date)
    };
    days.ok_or_else(|| {
        (
            format!("expected a date in the format `{format}`"),
            "set the column's `Format` to match the file, e.g. `dd/MM/yyyy` or `%d/%m/%Y`",
        )
    })
}

/// `YYYY-MM-DD`, the common case, without going through chrono's format interpreter.
fn iso_date(v: &[u8]) -> Option<i32> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    civil::days_from_civil(num(&v[0..4])? as i32, num(&v[5..7])?, num(&v[8..10])?)
}

fn parse_timestamp(
    v: &[u8],
    format: Option<&str>,
    tz: Option<&arrow_array::timezone::Tz>,
) -> Result<i64, Refusal> {
    let s = as_str(v)?;
    let refusal = |detail: &str| -> Refusal {
        (
            match format {
                Some(f) => format!("expected a date and time in the format `{f}`{detail}"),
                None => format!("expected an ISO 8601 date and time such as 2024-01-31T13:45:00{detail}"),
            },
            "set the column's `Format` to match the file, e.g. `dd/MM/yyyy HH:mm` or `%d/%m/%Y %H:%M`",
        )
    };
    let utc: NaiveDateTime = match format {
        None => {
            let parsed = match tz {
                Some(tz) => arrow_cast::parse::string_to_datetime(tz, s).map(|d| d.naive_utc()),
                None => {
                    arrow_cast::parse::string_to_datetime(&chrono::Utc, s).map(|d| d.naive_utc())
                }
            };
            parsed.map_err(|_| refusal(""))?
        }
        Some(f) if f.contains("%z") || f.contains("%:z") || f.contains("%#z") => {
            DateTime::parse_from_str(s, f)
                .map_err(|_| refusal(""))?
                .naive_utc()
        }
        Some(f) => {
            let local = NaiveDateTime::parse_from_str(s, f)
                .or_else(|_| {
                    NaiveDate::parse_from_str(s, f).map(|d| d.and_time(chrono::NaiveTime::MIN))
                })
                .map_err(|_| refusal(""))?;
            match tz {
                None => local,
                Some(tz) => tz
                    .from_local_datetime(&local)
                    .single()
                    .ok_or_else(|| {
                        refusal(": this local time is ambiguous or skipped in the time zone")
                    })?
                    .naive_utc(),
            }
        }
    };
    Ok(utc.and_utc().timestamp_micros())
}

/// Exact decimal parsing: `[+-]digits[.digits]`, at most `scale` fraction digits, at most
/// `precision - scale` integer digits. Never through a float, never rounded.
fn parse_decimal(v: &[u8], precision: u8, scale: i8) -> Result<i128, Refusal> {
    let scale = scale as usize;
    let (negative, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let (int_part, frac_part) = match digits.iter().position(|&b| b == b'.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    let bad = || {
        (
            format!("expected a decimal number for decimal({precision},{scale})"),
            "decimals are digits with an optional sign and `.`, e.g. -1234.56, with no thousands separators or exponent",
        )
    };
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.iter().chain(frac_part).all(u8::is_ascii_digit)
    {
        return Err(bad());
    }
    if frac_part.len() > scale {
        return Err((
            format!(
                "the value has {} digits after the point; decimal({precision},{scale}) keeps {scale}",
                frac_part.len()
            ),
            "FlowEngine never rounds silently: widen the scale or fix the value",
        ));
    }
    let int_digits = int_part.iter().skip_while(|&&b| b == b'0').count();
    if int_digits > precision as usize - scale {
        return Err((
            format!(
                "the value has {int_digits} digits before the point; decimal({precision},{scale}) allows {}",
                precision as usize - scale
            ),
            "widen the precision",
        ));
    }
    let mut n: i128 = 0;
    for &b in int_part.iter().chain(frac_part) {
        n = n * 10 + i128::from(b - b'0');
    }
    for _ in frac_part.len()..scale {
        n *= 10;
    }
    Ok(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delimited::decode::{Checks, Decoder, Dialect, Records};

    fn records(text: &[u8]) -> Records {
        let mut d = Decoder::new(Dialect::default(), Checks::default(), 1, 0);
        let mut records = Records::default();
        d.decode(text, true, &mut records, usize::MAX);
        records
    }

    fn reader(name: &str, ty: ColumnType, field: usize) -> ColumnReader {
        ColumnReader {
            name: name.into(),
            ty,
            nullable: false,
            format: None,
            field,
            trim: false,
        }
    }

    #[test]
    fn checked_records_are_reported_but_left_out() {
        let text = b"1,a\nx,b\n3,\xff\n4,d\n5,e\n";
        let columns = [
            reader("n", ColumnType::Int32, 0),
            reader("s", ColumnType::Utf8, 1),
        ];
        let take = [
            Take::Value,
            Take::Check,
            Take::Check,
            Take::Placeholder,
            Take::Skip,
        ];
        let (arrays, errors) = convert(&records(text), &columns, &take);
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.record, e.column, e.kind))
            .collect();
        assert_eq!(
            found,
            [
                (1, 0, RowErrorKind::TypeConversion),
                (2, 1, RowErrorKind::InvalidUtf8)
            ]
        );
        let n = arrays[0].as_any().downcast_ref::<arrow_array::Int32Array>();
        assert_eq!(n.unwrap().iter().collect::<Vec<_>>(), [Some(1), None]);
        let s = arrays[1].as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), [Some("a"), None]);
    }

    #[test]
    fn a_bad_value_among_built_rows_names_its_record() {
        // Record 1 is left out, so the bad value is the column's row 1 but record 2.
        let text = b"a\nb\n\xfe\n";
        let columns = [reader("s", ColumnType::Utf8, 0)];
        let take = [Take::Value, Take::Skip, Take::Value];
        let (arrays, errors) = convert(&records(text), &columns, &take);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].record, 2);
        assert_eq!(arrays[0].len(), 2);
        assert!(arrays[0].is_null(1));
    }

    #[test]
    fn decimals_are_exact_and_never_rounded() {
        assert_eq!(parse_decimal(b"123.45", 12, 2), Ok(12345));
        assert_eq!(parse_decimal(b"-0.5", 12, 2), Ok(-50));
        assert_eq!(parse_decimal(b"+7", 12, 2), Ok(700));
        assert_eq!(parse_decimal(b".25", 12, 2), Ok(25));
        assert_eq!(parse_decimal(b"9999999999.99", 12, 2), Ok(999999999999));
        assert!(parse_decimal(b"1.234", 12, 2)
            .unwrap_err()
            .0
            .contains("3 digits after"));
        assert!(parse_decimal(b"12345678901", 12, 2)
            .unwrap_err()
            .0
            .contains("11 digits before"));
        assert!(parse_decimal(b"1,5", 12, 2).is_err());
        assert!(parse_decimal(b"1e3", 12, 2).is_err());
        assert!(parse_decimal(b"-", 12, 2).is_err());
        assert!(parse_decimal(b".", 12, 2).is_err());
        assert_eq!(
            parse_decimal(b"12345678901234567890123456789012345678", 38, 0),
            Ok(12345678901234567890123456789012345678)
        );
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_int::<i32>(b"-42"), Ok(-42));
        assert!(parse_int::<i32>(b"1.0").is_err());
        assert!(parse_int::<i32>(b"2147483648")
            .unwrap_err()
            .0
            .contains("32-bit"));
        assert!(parse_int::<i64>(b" 1").is_err());
    }

    proptest::proptest! {
        #[test]
        fn plain_integers_read_as_lexical_reads_them(text in "[-+]?[0-9]{0,20}|-?[0-9]{1,9}[ .e_a]?[0-9]?") {
            let v = text.as_bytes();
            if let Some(n) = plain_int::<i32>(v) {
                proptest::prop_assert_eq!(Ok(n), lexical_core::parse::<i32>(v));
            }
            if let Some(n) = plain_int::<i64>(v) {
                proptest::prop_assert_eq!(Ok(n), lexical_core::parse::<i64>(v));
            }
            proptest::prop_assert_eq!(parse_int::<i64>(v).ok(), lexical_core::parse::<i64>(v).ok());
            proptest::prop_assert_eq!(parse_int::<i32>(v).ok(), lexical_core::parse::<i32>(v).ok());
        }

        #[test]
        fn every_i64_of_up_to_18_digits_takes_the_fast_path(n in -999_999_999_999_999_999i64..=999_999_999_999_999_999) {
            proptest::prop_assert_eq!(plain_int::<i64>(n.to_string().as_bytes()), Some(n));
        }
    }

    #[test]
    fn eight_digits_at_once() {
        let read = |text: &[u8; 8]| eight_digits(u64::from_le_bytes(*text));
        assert_eq!(read(b"12345678"), Some(12_345_678));
        assert_eq!(read(b"00000000"), Some(0));
        assert_eq!(read(b"99999999"), Some(99_999_999));
        assert_eq!(read(b"00000010"), Some(10));
        // Every byte that is not a digit, in every position.
        for at in 0..8 {
            for b in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
                let mut text = *b"55555555";
                text[at] = b;
                assert_eq!(read(&text), None, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn plain_decimals_read_as_lexical_reads_them() {
        let same = |text: &str| {
            let fast = plain_decimal(text.as_bytes());
            let full = lexical_core::parse::<f64>(text.as_bytes()).ok();
            if let Some(f) = fast {
                assert_eq!(Some(f.to_bits()), full.map(f64::to_bits), "{text}");
            }
            fast.is_some()
        };
        for text in [
            "0",
            "-0",
            "-0.0",
            "11223.33",
            "80.01419",
            "0.1",
            "123456789012345",
            "1.00",
        ] {
            assert!(same(text), "{text} takes the fast path");
        }
        // Everything else is left to lexical, which accepts or refuses it.
        for text in [
            "1234567890123456",
            "1e5",
            ".5",
            "1.",
            "-",
            "",
            "+1",
            "1.2.3",
            "1,5",
            "inf",
        ] {
            assert!(!same(text), "{text} is not a plain decimal");
        }
        assert_eq!(parse_f64(b"1e5"), Ok(1e5));
        assert!(parse_f64(b"1,5").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_plain_decimal_is_the_correctly_rounded_double(
            whole in 0u64..10_000_000, fraction in 0u64..100_000_000, places in 0usize..9,
            negative: bool,
        ) {
            let sign = if negative { "-" } else { "" };
            let fraction = format!("{fraction:08}");
            let text = match places {
                0 => format!("{sign}{whole}"),
                k => format!("{sign}{whole}.{}", &fraction[..k]),
            };
            let want: f64 = text.parse().unwrap();
            proptest::prop_assert_eq!(plain_decimal(text.as_bytes()).map(f64::to_bits), Some(want.to_bits()));
        }
    }

    #[test]
    fn dates_in_iso_and_custom_formats() {
        assert_eq!(parse_date(b"1970-01-02", "%Y-%m-%d"), Ok(1));
        assert_eq!(parse_date(b"02/01/1970", "%d/%m/%Y"), Ok(1));
        assert!(parse_date(b"2024-02-30", "%Y-%m-%d").is_err());
        assert!(parse_date(b"2024-1-5", "%Y-%m-%d").is_err());
    }

    #[test]
    fn timestamps_with_formats_and_zones() {
        assert_eq!(
            parse_timestamp(b"1970-01-01T00:00:01", None, None),
            Ok(1_000_000)
        );
        assert_eq!(
            parse_timestamp(b"1970-01-01 00:00:01.5", None, None),
            Ok(1_500_000)
        );
        assert_eq!(
            parse_timestamp(b"01/01/1970 01:00", Some("%d/%m/%Y %H:%M"), None),
            Ok(3_600_000_000)
        );
        let paris: arrow_array::timezone::Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            parse_timestamp(b"01/01/1970 01:00", Some("%d/%m/%Y %H:%M"), Some(&paris)),
            Ok(0)
        );
        assert_eq!(
            parse_timestamp(b"1970-01-02", Some("%Y-%m-%d"), None),
            Ok(86_400_000_000)
        );
        assert!(parse_timestamp(b"yesterday", None, None).is_err());
    }
}

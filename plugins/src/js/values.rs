//! Values crossing between Arrow and JavaScript.
//!
//! Into JavaScript (`context.input`):
//!
//! | Arrow | JavaScript |
//! |---|---|
//! | utf8 | string |
//! | int32, float32, double | number |
//! | int64 | number when within ±2^53 (exact), else `BigInt` (exact) |
//! | decimal(p,s), p ≤ 15 | number (converting it back to the same scale gives the same decimal) |
//! | decimal(p,s), p > 15 | string with the exact digits, e.g. `"12345678901234567.89"` |
//! | bool | boolean |
//! | date | `Date` at UTC midnight |
//! | datetime | `Date` (millisecond precision: JavaScript has no finer) |
//! | null | `null` |
//!
//! Out of JavaScript (`setField`), into the declared type; anything else is a row error naming the
//! field and the value, never a silent default:
//! - string: strings as they are; numbers, booleans and BigInts as JavaScript prints them; a
//!   `Date` as ISO 8601 (`2024-01-31T12:00:00.000Z`).
//! - int32/int64: an integral number or BigInt in range, or a string holding one. `3.7` is refused,
//!   not rounded.
//! - float32/double: a number, or a string holding one.
//! - decimal(p,s): a string is parsed exactly; a number is rounded half away from zero to `s`
//!   digits (`0.1 + 0.2` → `0.30`); more than `p` digits is refused.
//! - bool: a boolean, or the string `true`/`false` (any case).
//! - date: a `Date` (its UTC day) or a `YYYY-MM-DD` string; datetime: a `Date`, or an ISO 8601
//!   string with or without an offset.
//! - `null` and `undefined` are null; a `Required` field refuses them.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use boa_engine::object::builtins::JsDate;
use boa_engine::{Context, JsBigInt, JsResult, JsString, JsValue};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use flowengine_engine::schema::ColumnType;

const MS_PER_DAY: f64 = 86_400_000.0;
/// The largest integer a double holds exactly.
const MAX_SAFE: i64 = (1 << 53) - 1;

/// One input column, downcast once per batch.
#[derive(Debug, Clone)]
pub enum Column {
    /// utf8
    Utf8(arrow_array::StringArray),
    /// int32
    Int32(PrimitiveArray<Int32Type>),
    /// int64
    Int64(PrimitiveArray<Int64Type>),
    /// float32
    Float32(PrimitiveArray<Float32Type>),
    /// double
    Float64(PrimitiveArray<Float64Type>),
    /// decimal with its precision and scale
    Decimal(PrimitiveArray<Decimal128Type>, u8, i8),
    /// bool
    Bool(arrow_array::BooleanArray),
    /// date
    Date(PrimitiveArray<Date32Type>),
    /// datetime in microseconds
    Timestamp(PrimitiveArray<TimestampMicrosecondType>),
    /// Any other Arrow type, shown to the script as its display text.
    Other(ArrayRef),
}

impl Column {
    /// Downcast `array` by its type.
    pub fn new(array: &ArrayRef) -> Self {
        match array.data_type() {
            DataType::Utf8 => Column::Utf8(array.as_string::<i32>().clone()),
            DataType::Int32 => Column::Int32(array.as_primitive().clone()),
            DataType::Int64 => Column::Int64(array.as_primitive().clone()),
            DataType::Float32 => Column::Float32(array.as_primitive().clone()),
            DataType::Float64 => Column::Float64(array.as_primitive().clone()),
            DataType::Decimal128(p, s) => Column::Decimal(array.as_primitive().clone(), *p, *s),
            DataType::Boolean => Column::Bool(array.as_boolean().clone()),
            DataType::Date32 => Column::Date(array.as_primitive().clone()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Column::Timestamp(array.as_primitive().clone())
            }
            _ => Column::Other(Arc::clone(array)),
        }
    }

    /// Whether the value at `row` is null.
    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Utf8(a) => a.is_null(row),
            Column::Int32(a) => a.is_null(row),
            Column::Int64(a) => a.is_null(row),
            Column::Float32(a) => a.is_null(row),
            Column::Float64(a) => a.is_null(row),
            Column::Decimal(a, ..) => a.is_null(row),
            Column::Bool(a) => a.is_null(row),
            Column::Date(a) => a.is_null(row),
            Column::Timestamp(a) => a.is_null(row),
            Column::Other(a) => a.is_null(row),
        }
    }

    /// The value at `row` as JavaScript sees it.
    pub fn to_js(&self, row: usize, ctx: &mut Context) -> JsResult<JsValue> {
        if self.is_null(row) {
            return Ok(JsValue::null());
        }
        Ok(match self {
            Column::Utf8(a) => JsString::from(a.value(row)).into(),
            Column::Int32(a) => JsValue::new(a.value(row)),
            Column::Int64(a) => {
                let v = a.value(row);
                if (-MAX_SAFE..=MAX_SAFE).contains(&v) {
                    JsValue::new(v as f64)
                } else {
                    JsBigInt::from(v).into()
                }
            }
            Column::Float32(a) => JsValue::new(f64::from(a.value(row))),
            Column::Float64(a) => JsValue::new(a.value(row)),
            Column::Decimal(a, p, s) => {
                let v = a.value(row);
                if *p <= 15 {
                    JsValue::new(v as f64 / 10f64.powi(i32::from(*s)))
                } else {
                    JsString::from(decimal_text(v, *s)).into()
                }
            }
            Column::Bool(a) => JsValue::new(a.value(row)),
            Column::Date(a) => date_value(f64::from(a.value(row)) * MS_PER_DAY, ctx)?,
            Column::Timestamp(a) => date_value(a.value(row).div_euclid(1000) as f64, ctx)?,
            Column::Other(a) => {
                let shown = arrow_cast::display::array_value_to_string(a, row)
                    .unwrap_or_else(|e| format!("<{e}>"));
                JsString::from(shown).into()
            }
        })
    }

    /// The value at `row` in the declared type, for an output field that replaces this column on
    /// a row where the script did not set it. Only called when the types are equal.
    pub fn to_scalar(&self, row: usize) -> Scalar {
        if self.is_null(row) {
            return Scalar::Null;
        }
        match self {
            Column::Utf8(a) => Scalar::Str(a.value(row).to_string()),
            Column::Int32(a) => Scalar::Int(i64::from(a.value(row))),
            Column::Int64(a) => Scalar::Int(a.value(row)),
            Column::Float32(a) => Scalar::Float(f64::from(a.value(row))),
            Column::Float64(a) => Scalar::Float(a.value(row)),
            Column::Decimal(a, ..) => Scalar::Decimal(a.value(row)),
            Column::Bool(a) => Scalar::Bool(a.value(row)),
            Column::Date(a) => Scalar::Date(a.value(row)),
            Column::Timestamp(a) => Scalar::Micros(a.value(row)),
            Column::Other(a) => {
                Scalar::Str(arrow_cast::display::array_value_to_string(a, row).unwrap_or_default())
            }
        }
    }
}

fn date_value(ms: f64, ctx: &mut Context) -> JsResult<JsValue> {
    let date = JsDate::new(ctx);
    date.set_time(JsValue::new(ms), ctx)?;
    Ok(date.into())
}

/// Exact decimal text of `v` with `scale` digits after the point.
pub fn decimal_text(v: i128, scale: i8) -> String {
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    let scale = scale.max(0) as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// A JavaScript string as Rust text. A lone surrogate (which UTF-8 cannot hold) becomes U+FFFD,
/// as the WHATWG `TextEncoder` writes it.
pub fn text(s: &JsString) -> String {
    use boa_engine::string::JsStrVariant;
    match s.variant() {
        JsStrVariant::Latin1(bytes) if bytes.is_ascii() => {
            String::from_utf8(bytes.to_vec()).unwrap_or_default()
        }
        JsStrVariant::Latin1(bytes) => bytes.iter().copied().map(char::from).collect(),
        JsStrVariant::Utf16(units) => String::from_utf16_lossy(units),
    }
}

/// A value converted to a declared type, waiting for its row to be kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// null
    Null,
    /// utf8
    Str(String),
    /// int32 or int64 (range already checked)
    Int(i64),
    /// float32 or double
    Float(f64),
    /// decimal, scaled
    Decimal(i128),
    /// bool
    Bool(bool),
    /// days since the epoch
    Date(i32),
    /// microseconds since the epoch
    Micros(i64),
}

/// Convert a script's value to `ty`. The error says why, for the row's message.
pub fn from_js(value: &JsValue, ty: &ColumnType, ctx: &mut Context) -> Result<Scalar, String> {
    if value.is_null_or_undefined() {
        return Ok(Scalar::Null);
    }
    match ty {
        ColumnType::Utf8 => to_text(value, ctx).map(Scalar::Str),
        ColumnType::Int32 => to_int(value, i64::from(i32::MIN), i64::from(i32::MAX)),
        ColumnType::Int64 => to_int(value, i64::MIN, i64::MAX),
        ColumnType::Float32 | ColumnType::Float64 => to_float(value),
        ColumnType::Decimal { precision, scale } => to_decimal(value, *precision, *scale),
        ColumnType::Bool => to_bool(value),
        ColumnType::Date => to_date(value, ctx),
        ColumnType::Timestamp { .. } => to_micros(value, ctx),
    }
}

fn refuse(value: &JsValue, wanted: &str) -> String {
    format!("{} is not {wanted}", describe(value))
}

/// A short description of a JavaScript value for messages: `"abc" (string)`, `3.7 (number)`.
pub fn describe(value: &JsValue) -> String {
    if let Some(s) = value.as_string() {
        return format!("{:?} (string)", s.to_std_string_escaped());
    }
    if let Some(n) = value.as_number() {
        return format!("{} (number)", number_text(n));
    }
    if let Some(b) = value.as_boolean() {
        return format!("{b} (boolean)");
    }
    if let Some(b) = value.as_bigint() {
        return format!("{}n (bigint)", b.to_string_radix(10));
    }
    if value.is_undefined() {
        return "undefined".into();
    }
    if value.is_null() {
        return "null".into();
    }
    if let Some(o) = value.as_object() {
        if JsDate::from_object(o.clone()).is_ok() {
            return "a Date".into();
        }
        if o.is_callable() {
            return "a function".into();
        }
        if o.is_array() {
            return "an array".into();
        }
        return "an object".into();
    }
    "a symbol".into()
}

/// How JavaScript prints a number (`String(n)`: `1`, not `1.0`; `1e-7`; `NaN`).
pub fn number_text(n: f64) -> String {
    ryu_js::Buffer::new().format(n).to_string()
}

fn to_text(value: &JsValue, ctx: &mut Context) -> Result<String, String> {
    if let Some(s) = value.as_string() {
        return Ok(text(&s));
    }
    if let Some(n) = value.as_number() {
        return Ok(number_text(n));
    }
    if let Some(b) = value.as_boolean() {
        return Ok(b.to_string());
    }
    if let Some(b) = value.as_bigint() {
        return Ok(b.to_string_radix(10));
    }
    if let Some(ms) = date_millis(value, ctx) {
        return DateTime::from_timestamp_millis(ms as i64)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .ok_or_else(|| "the Date is invalid".to_string());
    }
    Err(refuse(value, "a string, number or Date"))
}

fn to_int(value: &JsValue, min: i64, max: i64) -> Result<Scalar, String> {
    let range = |v: i128| -> Result<Scalar, String> {
        if (i128::from(min)..=i128::from(max)).contains(&v) {
            Ok(Scalar::Int(v as i64))
        } else {
            Err(format!("{v} is out of range {min}..={max}"))
        }
    };
    if let Some(n) = value.as_number() {
        if n.fract() != 0.0 || !n.is_finite() {
            return Err(format!(
                "{} is not a whole number (values are never rounded; use Math.round)",
                describe(value)
            ));
        }
        return range(n as i128);
    }
    if let Some(b) = value.as_bigint() {
        return b
            .to_string_radix(10)
            .parse::<i128>()
            .map_err(|_| refuse(value, "in range"))
            .and_then(range);
    }
    if let Some(s) = value.as_string() {
        let text = s.to_std_string_escaped();
        return text
            .trim()
            .parse::<i128>()
            .map_err(|_| refuse(value, "a whole number"))
            .and_then(range);
    }
    Err(refuse(value, "a whole number"))
}

fn to_float(value: &JsValue) -> Result<Scalar, String> {
    if let Some(n) = value.as_number() {
        return Ok(Scalar::Float(n));
    }
    if let Some(s) = value.as_string() {
        return s
            .to_std_string_escaped()
            .trim()
            .parse::<f64>()
            .map(Scalar::Float)
            .map_err(|_| refuse(value, "a number"));
    }
    Err(refuse(value, "a number"))
}

fn to_decimal(value: &JsValue, precision: u8, scale: i8) -> Result<Scalar, String> {
    let scale = scale.max(0) as u32;
    let v: i128 = if let Some(n) = value.as_number() {
        if !n.is_finite() {
            return Err(refuse(value, "a finite number"));
        }
        // Round the shortest text of the double, not its binary value: 0.125 → 0.13 as written.
        round_decimal_text(&format!("{n}"), scale).ok_or_else(|| refuse(value, "a decimal"))?
    } else if let Some(s) = value.as_string() {
        exact_decimal_text(s.to_std_string_escaped().trim(), scale).ok_or_else(|| {
            format!(
                "{} is not a decimal with at most {scale} digits after the point",
                describe(value)
            )
        })?
    } else if let Some(b) = value.as_bigint() {
        let whole: i128 = b
            .to_string_radix(10)
            .parse()
            .map_err(|_| refuse(value, "in range"))?;
        whole
            .checked_mul(10i128.pow(scale))
            .ok_or_else(|| refuse(value, "in range"))?
    } else {
        return Err(refuse(value, "a number or a decimal string"));
    };
    if v.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(format!(
            "{} has more than {precision} digits",
            decimal_text(v, scale as i8)
        ));
    }
    Ok(Scalar::Decimal(v))
}

/// `"-12.345"` at scale 2 → -1235 (half away from zero). Accepts exponents (`1e-7`).
fn round_decimal_text(text: &str, scale: u32) -> Option<i128> {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches(['-', '+']);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^(exp - frac.len()); we want it × 10^scale.
    let shift = exp - frac.len() as i32 + scale as i32;
    let n: i128 = digits.trim_start_matches('0').parse().unwrap_or(0);
    let scaled = if shift >= 0 {
        n.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else {
        let div = 10i128.checked_pow((-shift) as u32).unwrap_or(i128::MAX);
        let (q, r) = (n / div, n % div);
        if r * 2 >= div {
            q + 1
        } else {
            q
        }
    };
    Some(if negative { -scaled } else { scaled })
}

/// `"12.3"` at scale 2 → 1230; more digits after the point than `scale` is refused.
fn exact_decimal_text(text: &str, scale: u32) -> Option<i128> {
    let negative = text.starts_with('-');
    let body = text.trim_start_matches(['-', '+']);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let frac = frac.trim_end_matches('0');
    if (int.is_empty() && frac.is_empty())
        || frac.len() > scale as usize
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac:0<width$}", width = scale as usize);
    let n: i128 = digits.trim_start_matches('0').parse().unwrap_or(0);
    Some(if negative { -n } else { n })
}

fn to_bool(value: &JsValue) -> Result<Scalar, String> {
    if let Some(b) = value.as_boolean() {
        return Ok(Scalar::Bool(b));
    }
    if let Some(s) = value.as_string() {
        let text = s.to_std_string_escaped();
        match text.trim().to_ascii_lowercase().as_str() {
            "true" => return Ok(Scalar::Bool(true)),
            "false" => return Ok(Scalar::Bool(false)),
            _ => {}
        }
    }
    Err(refuse(value, "true or false"))
}

fn date_millis(value: &JsValue, ctx: &mut Context) -> Option<f64> {
    let date = JsDate::from_object(value.as_object()?).ok()?;
    date.get_time(ctx).ok()?.as_number()
}

fn to_date(value: &JsValue, ctx: &mut Context) -> Result<Scalar, String> {
    if let Some(ms) = date_millis(value, ctx) {
        if !ms.is_finite() {
            return Err("the Date is invalid".into());
        }
        return Ok(Scalar::Date((ms / MS_PER_DAY).floor() as i32));
    }
    if let Some(s) = value.as_string() {
        let text = s.to_std_string_escaped();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        return NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(|d| Scalar::Date((d - epoch).num_days() as i32))
            .map_err(|_| refuse(value, "a Date or a YYYY-MM-DD string"));
    }
    Err(refuse(value, "a Date or a YYYY-MM-DD string"))
}

fn to_micros(value: &JsValue, ctx: &mut Context) -> Result<Scalar, String> {
    if let Some(ms) = date_millis(value, ctx) {
        if !ms.is_finite() {
            return Err("the Date is invalid".into());
        }
        return Ok(Scalar::Micros(ms as i64 * 1000));
    }
    if let Some(s) = value.as_string() {
        let text = s.to_std_string_escaped();
        let text = text.trim();
        if let Ok(d) = DateTime::parse_from_rfc3339(text) {
            return Ok(Scalar::Micros(d.timestamp_micros()));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(d) = NaiveDateTime::parse_from_str(text, format) {
                return Ok(Scalar::Micros(d.and_utc().timestamp_micros()));
            }
        }
    }
    Err(refuse(value, "a Date or an ISO 8601 date-time string"))
}

/// An Arrow builder for one declared field.
#[derive(Debug)]
pub enum Builder {
    /// utf8
    Utf8(StringBuilder),
    /// int32
    Int32(Int32Builder),
    /// int64
    Int64(Int64Builder),
    /// float32
    Float32(Float32Builder),
    /// double
    Float64(Float64Builder),
    /// decimal
    Decimal(Decimal128Builder, u8, i8),
    /// bool
    Bool(BooleanBuilder),
    /// date
    Date(Date32Builder),
    /// datetime
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

impl Builder {
    /// An empty builder for `ty`.
    pub fn new(ty: &ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Utf8 => {
                Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnType::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            ColumnType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            ColumnType::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
            ColumnType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            ColumnType::Decimal { precision, scale } => Builder::Decimal(
                Decimal128Builder::with_capacity(capacity),
                *precision,
                *scale,
            ),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp { tz } => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                tz.clone(),
            ),
        }
    }

    /// Append a value already converted to this builder's type.
    pub fn append(&mut self, v: &Scalar) {
        match (self, v) {
            (Builder::Utf8(b), Scalar::Str(s)) => b.append_value(s),
            (Builder::Int32(b), Scalar::Int(i)) => b.append_value(*i as i32),
            (Builder::Int64(b), Scalar::Int(i)) => b.append_value(*i),
            (Builder::Float32(b), Scalar::Float(f)) => b.append_value(*f as f32),
            (Builder::Float64(b), Scalar::Float(f)) => b.append_value(*f),
            (Builder::Decimal(b, ..), Scalar::Decimal(d)) => b.append_value(*d),
            (Builder::Bool(b), Scalar::Bool(x)) => b.append_value(*x),
            (Builder::Date(b), Scalar::Date(d)) => b.append_value(*d),
            (Builder::Timestamp(b, _), Scalar::Micros(t)) => b.append_value(*t),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal(b, ..) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b, _) => b.append_null(),
        }
    }

    /// The finished array.
    pub fn finish(&mut self) -> Result<ArrayRef, arrow_schema::ArrowError> {
        Ok(match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_from_numbers_round_half_away_from_zero() {
        assert_eq!(round_decimal_text("0.30000000000000004", 2), Some(30));
        assert_eq!(round_decimal_text("0.125", 2), Some(13));
        assert_eq!(round_decimal_text("-0.125", 2), Some(-13));
        assert_eq!(round_decimal_text("1e-7", 2), Some(0));
        assert_eq!(round_decimal_text("1.5e3", 1), Some(15000));
        assert_eq!(round_decimal_text("50000", 2), Some(5_000_000));
    }

    #[test]
    fn decimals_from_strings_are_exact() {
        assert_eq!(exact_decimal_text("12.3", 2), Some(1230));
        assert_eq!(exact_decimal_text("-0.05", 2), Some(-5));
        assert_eq!(exact_decimal_text("12.345", 2), None);
        assert_eq!(exact_decimal_text("12.340", 2), Some(1234));
        assert_eq!(exact_decimal_text("abc", 2), None);
        assert_eq!(exact_decimal_text("", 2), None);
    }

    #[test]
    fn decimal_text_keeps_the_scale() {
        assert_eq!(decimal_text(20209964, 2), "202099.64");
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(7, 0), "7");
    }

    #[test]
    fn numbers_print_as_javascript_does() {
        assert_eq!(number_text(1.0), "1");
        assert_eq!(number_text(1.5), "1.5");
        assert_eq!(number_text(-0.0), "0");
    }
}

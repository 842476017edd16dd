//! `context.utils.format(value, format)`: dates with the pipeline's date patterns, numbers with
//! the common .NET numeric formats the original's users wrote. Anything else is an error the
//! script can catch, never a silent fallback.
//!
//! | value | formats |
//! |---|---|
//! | `Date` | the date patterns of `Format` in schemas: `yyyy-MM-dd HH:mm:ss` or strftime `%Y-%m-%d` (UTC) |
//! | number | `F2` / `N2` (fixed decimals; `N` groups thousands), `0.00`, `#,##0.00`, `0` |
//! | string, boolean | returned as text when the format is empty |

use boa_engine::object::builtins::JsDate;
use boa_engine::{Context, JsValue};
use chrono::DateTime;
use flowengine_engine::datefmt;

use super::values::{describe, number_text, text};

/// Format `value`; the error says why it cannot be.
pub fn format(value: &JsValue, format: &str, ctx: &mut Context) -> Result<String, String> {
    if let Some(date) = value.as_object().and_then(|o| JsDate::from_object(o).ok()) {
        let ms = date
            .get_time(ctx)
            .ok()
            .and_then(|v| v.as_number())
            .filter(|ms| ms.is_finite())
            .ok_or("the Date is invalid")?;
        let when = DateTime::from_timestamp_millis(ms as i64).ok_or("the Date is out of range")?;
        let pattern =
            datefmt::to_strftime(format).map_err(|e| format!("date format {format:?}: {e}"))?;
        datefmt::validate_strftime(&pattern).map_err(|e| format!("date format {format:?}: {e}"))?;
        return Ok(when.format(&pattern).to_string());
    }
    if let Some(n) = value.as_number() {
        return format_number(n, format);
    }
    if format.is_empty() {
        if let Some(s) = value.as_string() {
            return Ok(text(&s));
        }
        if let Some(b) = value.as_boolean() {
            return Ok(b.to_string());
        }
    }
    Err(format!("cannot format {} with {format:?}", describe(value)))
}

/// Format a number; the error (which depends on `format` alone) says why it cannot be.
pub fn format_number(n: f64, format: &str) -> Result<String, String> {
    let unsupported =
        || format!("unsupported number format {format:?}; use F2, N2, 0.00 or #,##0.00");
    if format.is_empty() {
        return Ok(number_text(n));
    }
    let (decimals, grouped) = match format.as_bytes()[0] {
        b'F' | b'f' | b'N' | b'n' => {
            let digits = &format[1..];
            let decimals = if digits.is_empty() {
                2
            } else {
                digits.parse::<usize>().map_err(|_| unsupported())?
            };
            (decimals, format.starts_with(['N', 'n']))
        }
        _ => {
            let (int, frac) = format.split_once('.').unwrap_or((format, ""));
            if !int.chars().all(|c| matches!(c, '#' | '0' | ','))
                || !frac.chars().all(|c| c == '0')
                || int.is_empty()
            {
                return Err(unsupported());
            }
            (frac.len(), int.contains(','))
        }
    };
    if decimals > 20 {
        return Err(unsupported());
    }
    let fixed = format!("{n:.decimals$}");
    Ok(if grouped {
        group_thousands(&fixed)
    } else {
        fixed
    })
}

fn group_thousands(fixed: &str) -> String {
    let (sign, body) = fixed.strip_prefix('-').map_or(("", fixed), |b| ("-", b));
    let (int, frac) = body
        .split_once('.')
        .map_or((body, None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(fixed.len() + int.len() / 3);
    out.push_str(sign);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_dotnet_formats() {
        assert_eq!(format_number(1234567.891, "N2").unwrap(), "1,234,567.89");
        assert_eq!(format_number(1234567.891, "F1").unwrap(), "1234567.9");
        assert_eq!(format_number(-1234.5, "#,##0.00").unwrap(), "-1,234.50");
        assert_eq!(format_number(3.0, "0").unwrap(), "3");
        assert!(format_number(3.0, "C2").is_err());
    }
}

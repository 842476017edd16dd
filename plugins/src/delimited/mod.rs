//! Delimited text files (CSV, TSV, PSV, ...): the source, the sink, and what they share.

mod bytes;
mod civil;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod infer;
pub mod sink;
pub mod source;
pub mod split;
pub mod tokens;

use flowengine_engine::load::config::{parse_single_byte, ConfigCx, MapReader};

use decode::Dialect;

/// Read `Delimiter`, `Quote` and `Escape`. `Quote: ""` (or `none`) turns quoting off.
pub(crate) fn read_dialect(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Dialect> {
    let defaults = Dialect::default();
    let delimiter = if m.has("Delimiter") {
        m.single_byte(cx, "Delimiter")?
    } else {
        m.take("Delimiter");
        defaults.delimiter
    };
    let quote = match m.string(cx, "Quote") {
        None => defaults.quote,
        Some(q) if q.is_empty() || q.eq_ignore_ascii_case("none") => None,
        Some(q) => match parse_single_byte(&q) {
            Some(b) => Some(b),
            None => {
                m.invalid(
                    cx,
                    "Quote",
                    "a single-byte character, or \"\" for no quoting",
                    &format!("{q:?}"),
                );
                return None;
            }
        },
    };
    let escape = if m.has("Escape") {
        Some(m.single_byte(cx, "Escape")?)
    } else {
        m.take("Escape");
        None
    };
    if escape.is_some() && quote.is_none() {
        let found = "an escape character with quoting turned off";
        m.invalid(
            cx,
            "Escape",
            "no `Escape` when `Quote` is off (escapes apply inside quotes)",
            found,
        );
        return None;
    }
    if quote == Some(delimiter) {
        m.invalid(
            cx,
            "Quote",
            "a quote character different from the delimiter",
            &format!("{:?}", delimiter as char),
        );
        return None;
    }
    Some(Dialect {
        delimiter,
        quote,
        escape,
    })
}

//! Date/time format patterns.
//!
//! Pipelines migrated from the original C# system write .NET custom date
//! patterns (`yyyyMMdd`, `dd/MM/yyyy HH:mm:ss`), while newer ones use
//! chrono's strftime syntax (`%Y%m%d`). Everything downstream formats with
//! chrono, so .NET patterns are translated once, up front, by [`to_strftime`].

use chrono::format::{Item, StrftimeItems};
use thiserror::Error;

/// Why a date/time format pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DateFormatError {
    /// A run of a pattern letter whose length has no meaning, such as `yyy`.
    #[error(
        "unsupported token `{token}` in date format `{pattern}`; `{letter}` accepts {accepted}"
    )]
    UnsupportedToken {
        /// The offending run, e.g. `yyy`.
        token: String,
        /// The letter the run is made of.
        letter: char,
        /// The run lengths that letter accepts, for the message.
        accepted: &'static str,
        /// The whole pattern.
        pattern: String,
    },
    /// A quoted literal that is never closed.
    #[error("unterminated quote in date format `{pattern}`")]
    UnterminatedQuote {
        /// The whole pattern.
        pattern: String,
    },
    /// A `\` escape at the very end of the pattern.
    #[error("date format `{pattern}` ends with a dangling `\\`")]
    TrailingEscape {
        /// The whole pattern.
        pattern: String,
    },
    /// A strftime pattern chrono rejects (unknown or incomplete `%` specifier).
    #[error("invalid strftime pattern `{pattern}`")]
    InvalidStrftime {
        /// The whole pattern.
        pattern: String,
    },
}

/// Converts a date/time format pattern to a chrono strftime pattern.
///
/// A pattern containing `%` is taken to be strftime already and is returned
/// unchanged (use [`validate_strftime`] to check it). Anything else is read
/// as a .NET custom pattern: `yyyy yy MMMM MMM MM M dddd ddd dd d HH H hh h
/// mm m ss s fff ffffff fffffffff tt zzz K` are translated, text in single or
/// double quotes and `\`-escaped characters are literal, and every other
/// character is literal.
///
/// # Errors
///
/// [`DateFormatError::UnsupportedToken`] for a pattern letter repeated an
/// unsupported number of times (`yyy`, `ddddd`, `ff`), and
/// [`DateFormatError::UnterminatedQuote`] / [`DateFormatError::TrailingEscape`]
/// for malformed literals.
pub fn to_strftime(format: &str) -> Result<String, DateFormatError> {
    if format.contains('%') {
        return Ok(format.to_owned());
    }
    let mut out = String::with_capacity(format.len() * 2);
    let mut chars = format.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    push_literal(&mut out, q);
                }
                if !closed {
                    return Err(DateFormatError::UnterminatedQuote {
                        pattern: format.to_owned(),
                    });
                }
            }
            '\\' => match chars.next() {
                Some((_, escaped)) => push_literal(&mut out, escaped),
                None => {
                    return Err(DateFormatError::TrailingEscape {
                        pattern: format.to_owned(),
                    })
                }
            },
            'y' | 'M' | 'd' | 'H' | 'h' | 'm' | 's' | 'f' | 't' | 'z' | 'K' => {
                let mut len = 1;
                while chars.next_if(|&(_, next)| next == c).is_some() {
                    len += 1;
                }
                match token_spec(c, len) {
                    Ok(spec) => out.push_str(spec),
                    Err(accepted) => {
                        return Err(DateFormatError::UnsupportedToken {
                            // Pattern letters are ASCII, so the run is `len` bytes long.
                            token: format[start..start + len].to_owned(),
                            letter: c,
                            accepted,
                            pattern: format.to_owned(),
                        });
                    }
                }
            }
            other => push_literal(&mut out, other),
        }
    }
    Ok(out)
}

/// Checks that chrono can format with the strftime `pattern`.
///
/// # Errors
///
/// [`DateFormatError::InvalidStrftime`] if any specifier is unknown or
/// incomplete (chrono would otherwise fail only when formatting).
pub fn validate_strftime(pattern: &str) -> Result<(), DateFormatError> {
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(DateFormatError::InvalidStrftime {
            pattern: pattern.to_owned(),
        });
    }
    Ok(())
}

/// Maps a run of `len` copies of the pattern letter `letter` to its strftime
/// specifier, or returns the accepted lengths for the error message.
fn token_spec(letter: char, len: usize) -> Result<&'static str, &'static str> {
    let spec = match (letter, len) {
        ('y', 4) => "%Y",
        ('y', 2) => "%y",
        ('y', _) => return Err("yy, yyyy"),
        ('M', 4) => "%B",
        ('M', 3) => "%b",
        ('M', 2) => "%m",
        ('M', 1) => "%-m",
        ('M', _) => return Err("M, MM, MMM, MMMM"),
        ('d', 4) => "%A",
        ('d', 3) => "%a",
        ('d', 2) => "%d",
        ('d', 1) => "%-d",
        ('d', _) => return Err("d, dd, ddd, dddd"),
        ('H', 2) => "%H",
        ('H', 1) => "%-H",
        ('H', _) => return Err("H, HH"),
        ('h', 2) => "%I",
        ('h', 1) => "%-I",
        ('h', _) => return Err("h, hh"),
        ('m', 2) => "%M",
        ('m', 1) => "%-M",
        ('m', _) => return Err("m, mm"),
        ('s', 2) => "%S",
        ('s', 1) => "%-S",
        ('s', _) => return Err("s, ss"),
        ('f', 3) => "%3f",
        ('f', 6) => "%6f",
        ('f', 9) => "%9f",
        ('f', _) => return Err("fff, ffffff, fffffffff"),
        ('t', 2) => "%p",
        ('t', _) => return Err("tt"),
        ('z', 3) => "%:z",
        ('z', _) => return Err("zzz"),
        ('K', 1) => "%:z",
        ('K', _) => return Err("K"),
        _ => return Err("nothing"),
    };
    Ok(spec)
}

/// Appends a literal character, escaping it if strftime would interpret it.
fn push_literal(out: &mut String, c: char) {
    // Unreachable while any `%` selects pass-through, but keeps the output
    // correct should that detection ever become smarter.
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveDateTime};

    fn sample() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 1, 5)
            .and_then(|d| d.and_hms_milli_opt(13, 4, 9, 123))
            .expect("valid date")
    }

    fn render(pattern: &str) -> String {
        let strftime = to_strftime(pattern).expect("pattern converts");
        validate_strftime(&strftime).expect("chrono accepts the result");
        sample().format(&strftime).to_string()
    }

    #[test]
    fn iso_date() {
        assert_eq!(to_strftime("yyyy-MM-dd").unwrap(), "%Y-%m-%d");
        assert_eq!(render("yyyy-MM-dd"), "2024-01-05");
    }

    #[test]
    fn compact_date() {
        assert_eq!(to_strftime("yyyyMMdd").unwrap(), "%Y%m%d");
        assert_eq!(render("yyyyMMdd"), "20240105");
    }

    #[test]
    fn european_date_time() {
        assert_eq!(
            to_strftime("dd/MM/yyyy HH:mm:ss").unwrap(),
            "%d/%m/%Y %H:%M:%S"
        );
        assert_eq!(render("dd/MM/yyyy HH:mm:ss"), "05/01/2024 13:04:09");
    }

    #[test]
    fn quoted_literal_and_fraction() {
        assert_eq!(
            to_strftime("yyyy-MM-dd'T'HH:mm:ss.fff").unwrap(),
            "%Y-%m-%dT%H:%M:%S.%3f"
        );
        assert_eq!(
            render("yyyy-MM-dd'T'HH:mm:ss.fff"),
            "2024-01-05T13:04:09.123"
        );
        assert_eq!(render("\"day\" d"), "day 5");
        assert_eq!(render(r"\d\a\y d"), "day 5");
    }

    #[test]
    fn unpadded_and_named_tokens() {
        assert_eq!(render("M/d/yy h:m:s tt"), "1/5/24 1:4:9 PM");
        assert_eq!(render("dddd, MMMM d"), "Friday, January 5");
        assert_eq!(render("ddd MMM"), "Fri Jan");
        assert_eq!(render("ffffff|fffffffff"), "123000|123000000");
    }

    #[test]
    fn offsets() {
        assert_eq!(to_strftime("zzz").unwrap(), "%:z");
        assert_eq!(to_strftime("K").unwrap(), "%:z");
        let dt = chrono::DateTime::parse_from_rfc3339("2024-01-05T13:04:09+05:30").unwrap();
        assert_eq!(
            dt.format(&to_strftime("HH:mm zzz").unwrap()).to_string(),
            "13:04 +05:30"
        );
    }

    #[test]
    fn strftime_passes_through() {
        assert_eq!(to_strftime("%Y%m%d").unwrap(), "%Y%m%d");
        assert_eq!(to_strftime("%d/%m/%Y yyyy").unwrap(), "%d/%m/%Y yyyy");
    }

    #[test]
    fn literal_percent() {
        // Any `%` means strftime, so a literal percent is written `%%`.
        assert_eq!(to_strftime("%Y%%").unwrap(), "%Y%%");
        validate_strftime("%Y%%").unwrap();
        assert_eq!(sample().format("%Y%%").to_string(), "2024%");
        // A lone `%` passes through but chrono cannot use it.
        assert_eq!(to_strftime("100%").unwrap(), "100%");
        assert!(matches!(
            validate_strftime("100%"),
            Err(DateFormatError::InvalidStrftime { .. })
        ));
        let mut out = String::new();
        push_literal(&mut out, '%');
        assert_eq!(out, "%%");
    }

    #[test]
    fn invalid_runs() {
        for (pattern, token) in [
            ("yyy-MM-dd", "yyy"),
            ("yyyyy", "yyyyy"),
            ("ddddd", "ddddd"),
            ("HH:mm:ss.ff", "ff"),
            ("zz", "zz"),
        ] {
            match to_strftime(pattern) {
                Err(DateFormatError::UnsupportedToken { token: t, .. }) => assert_eq!(t, token),
                other => panic!("{pattern}: expected UnsupportedToken, got {other:?}"),
            }
        }
        let message = to_strftime("yyy").unwrap_err().to_string();
        assert!(message.contains("`yyy`"), "{message}");
        assert!(message.contains("yy, yyyy"), "{message}");
    }

    #[test]
    fn malformed_literals() {
        assert!(matches!(
            to_strftime("yyyy'T"),
            Err(DateFormatError::UnterminatedQuote { .. })
        ));
        assert!(matches!(
            to_strftime("yyyy\\"),
            Err(DateFormatError::TrailingEscape { .. })
        ));
    }

    #[test]
    fn validate_rejects_unknown_specifier() {
        validate_strftime("%Y-%m-%dT%H:%M:%S%.3f %:z").unwrap();
        assert!(validate_strftime("%Q").is_err());
    }
}

//! Pipeline variables and `{Name}` / `{Name:format}` placeholder substitution.
//!
//! String values in the pipeline YAML may contain placeholders. Names are
//! looked up case-insensitively (the C# system was case-insensitive and
//! existing pipelines rely on it). `{{` and `}}` write literal braces; any
//! other brace that does not form a placeholder is copied as is, so most
//! brace-bearing text survives untouched. Text such as `{ok:true}` *is* a
//! placeholder syntactically, which is why script bodies are never
//! substituted.
//!
//! Values given with [`Variables::define`] may reference other variables and
//! are expanded when used; built-in values are taken literally.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, Utc};
use thiserror::Error;

use crate::datefmt;
use crate::paths::absolute;

/// How a date/time renders when the placeholder has no format.
const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// Lowest similarity at which an undefined name gets a "did you mean".
const SUGGESTION_THRESHOLD: f64 = 0.8;

/// Formats accepted by text values, for error messages.
const TEXT_FORMATS: &str =
    "text values accept filename, filenamewithoutext, directory (dir), extension (ext), fullpath, upper, lower";
/// Formats accepted by integer values, for error messages.
const INTEGER_FORMATS: &str = "integer values accept D<n> (zero-padded to n digits), X or x (hex)";
/// Formats accepted by date/time values, for error messages.
const DATE_FORMATS: &str =
    "date values accept a .NET pattern such as yyyy-MM-dd or a strftime pattern such as %Y%m%d";

/// The typed value of a variable.
#[derive(Debug, Clone, PartialEq)]
pub enum VarValue {
    /// Free text; paths, names and user-defined values.
    Text(String),
    /// A point in time with its UTC offset.
    DateTime(DateTime<FixedOffset>),
    /// A whole number.
    Integer(i64),
}

/// Why a placeholder could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VarError {
    /// The placeholder names no variable.
    #[error("undefined variable `{name}`{}{}", did_you_mean(.suggestion), hint_suffix(.hint))]
    Undefined {
        /// The name as written in the placeholder.
        name: String,
        /// The closest defined name, if any is close enough.
        suggestion: Option<String>,
        /// Extra advice, e.g. which variable a derived one needs.
        hint: Option<String>,
    },
    /// The format does not apply to the variable's value.
    #[error("invalid format `{format}` for variable `{name}`: {reason}")]
    BadFormat {
        /// The name as written in the placeholder.
        name: String,
        /// The format as written in the placeholder.
        format: String,
        /// What went wrong and which formats are valid.
        reason: String,
    },
    /// Variables reference each other in a loop.
    #[error("variable reference cycle: {chain}")]
    Cycle {
        /// The loop, e.g. `A -> B -> A`.
        chain: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
}

/// One variable as stored.
#[derive(Debug, Clone)]
struct Entry {
    /// The spelling it was defined with, for messages and [`Variables::names`].
    name: String,
    value: VarValue,
    /// Whether `value` is raw text that may contain placeholders.
    expand: bool,
}

/// A set of named variables and the placeholder substitution over them.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    /// Keyed by ASCII-lowercased name; sorted so [`Variables::names`] is cheap.
    entries: BTreeMap<String, Entry>,
}

impl Variables {
    /// Built-ins, computed once at load: `RunDate` (local time, as DateTime),
    /// `RunDateUtc` (UTC, offset 0), `Timestamp` (unix seconds, Integer),
    /// `ConfigFile` (absolute path of the pipeline file, Text), `ConfigDir`
    /// (its directory), `WorkingDir` (current dir), `MachineName`
    /// (host name), `UserName` (env `USER` or `USERNAME`, else `unknown`) and
    /// `ProcessId` (Integer). `now` is passed in so tests are deterministic.
    pub fn with_builtins(config_file: &Path, now: DateTime<Local>) -> Self {
        let mut vars = Self::new();
        let config_file = absolute(config_file);
        let config_dir = config_file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let working_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let user = ["USER", "USERNAME"]
            .iter()
            .filter_map(|key| std::env::var(key).ok())
            .find(|value| !value.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());

        let builtins = [
            ("RunDate", VarValue::DateTime(now.fixed_offset())),
            (
                "RunDateUtc",
                VarValue::DateTime(now.with_timezone(&Utc).fixed_offset()),
            ),
            ("Timestamp", VarValue::Integer(now.timestamp())),
            ("ConfigFile", VarValue::Text(path_text(&config_file))),
            ("ConfigDir", VarValue::Text(path_text(&config_dir))),
            ("WorkingDir", VarValue::Text(path_text(&working_dir))),
            (
                "MachineName",
                VarValue::Text(gethostname::gethostname().to_string_lossy().into_owned()),
            ),
            ("UserName", VarValue::Text(user)),
            (
                "ProcessId",
                VarValue::Integer(i64::from(std::process::id())),
            ),
        ];
        for (name, value) in builtins {
            vars.insert(name, value, false);
        }
        vars
    }

    /// An empty set (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// Define or override a variable (later definitions win). Value is raw
    /// text that may itself contain placeholders.
    pub fn define(&mut self, name: &str, raw_value: &str) {
        self.insert(name, VarValue::Text(raw_value.to_owned()), true);
    }

    /// True if defined.
    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// Substitute every placeholder in `text`.
    ///
    /// # Errors
    ///
    /// [`VarError::Undefined`] for an unknown name, [`VarError::BadFormat`]
    /// for a format that does not fit the value and [`VarError::Cycle`] for
    /// variables whose definitions reference each other in a loop.
    pub fn substitute(&self, text: &str) -> Result<String, VarError> {
        if !has_braces(text) {
            return Ok(text.to_owned());
        }
        let mut out = String::with_capacity(text.len() + text.len() / 2);
        self.expand_into(text, &mut out, &mut Vec::new())?;
        Ok(out)
    }

    /// Names of all variables (for "did you mean" and docs), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.values().map(|e| e.name.clone()).collect();
        if self.derives_file_base() {
            names.push(FILE_BASE.to_owned());
            names.sort_by_cached_key(|n| n.to_ascii_lowercase());
        }
        names
    }

    fn insert(&mut self, name: &str, value: VarValue, expand: bool) {
        let entry = Entry {
            name: name.to_owned(),
            value,
            expand,
        };
        self.entries.insert(name.to_ascii_lowercase(), entry);
    }

    fn lookup(&self, name: &str) -> Option<&Entry> {
        // Names are short: lowercase on the stack to keep lookups allocation-free.
        let mut buf = [0u8; 64];
        if let Some(dst) = buf.get_mut(..name.len()) {
            dst.copy_from_slice(name.as_bytes());
            dst.make_ascii_lowercase();
            if let Ok(key) = std::str::from_utf8(dst) {
                return self.entries.get(key);
            }
        }
        self.entries.get(&name.to_ascii_lowercase())
    }

    /// `FileBase` is derived from `InputFile` unless the user defined it.
    fn derives_file_base(&self) -> bool {
        !self.entries.contains_key("filebase") && self.entries.contains_key("inputfile")
    }

    /// Appends `text` with its placeholders substituted to `out`.
    ///
    /// `stack` holds the names of the definitions being expanded, outermost
    /// first, to detect cycles.
    fn expand_into<'s>(
        &'s self,
        text: &str,
        out: &mut String,
        stack: &mut Vec<&'s str>,
    ) -> Result<(), VarError> {
        let bytes = text.as_bytes();
        let mut literal_start = 0;
        let mut pos = 0;
        // Once a search for a closing `}` fails, every later one would too;
        // remembering that keeps the scan linear on inputs like `{a:{a:{a:`.
        let mut unclosed_from = usize::MAX;
        while let Some(offset) = bytes[pos..].iter().position(|&b| b == b'{' || b == b'}') {
            let at = pos + offset;
            let doubled = bytes.get(at + 1) == Some(&bytes[at]);
            if doubled {
                out.push_str(&text[literal_start..=at]);
                pos = at + 2;
                literal_start = pos;
                continue;
            }
            pos = at + 1;
            if bytes[at] == b'}' {
                continue;
            }
            if let Some(ph) = parse_placeholder(text, at, &mut unclosed_from) {
                out.push_str(&text[literal_start..at]);
                let value = self.resolve(ph.name, stack)?;
                render(ph.name, &value, ph.format, out)?;
                pos = ph.end;
                literal_start = pos;
            }
        }
        out.push_str(&text[literal_start..]);
        Ok(())
    }

    /// The value of `name`, with a defined value's placeholders expanded.
    fn resolve<'s>(
        &'s self,
        name: &str,
        stack: &mut Vec<&'s str>,
    ) -> Result<Cow<'s, VarValue>, VarError> {
        let Some(entry) = self.lookup(name) else {
            if name.eq_ignore_ascii_case(FILE_BASE) && self.derives_file_base() {
                return self.file_base(stack);
            }
            return Err(self.undefined(name));
        };
        let VarValue::Text(raw) = &entry.value else {
            return Ok(Cow::Borrowed(&entry.value));
        };
        if !entry.expand || !has_braces(raw) {
            return Ok(Cow::Borrowed(&entry.value));
        }
        enter(stack, &entry.name)?;
        let mut expanded = String::with_capacity(raw.len());
        let result = self.expand_into(raw, &mut expanded, stack);
        stack.pop();
        result?;
        Ok(Cow::Owned(VarValue::Text(expanded)))
    }

    /// The file stem of `InputFile`'s value.
    fn file_base<'s>(&'s self, stack: &mut Vec<&'s str>) -> Result<Cow<'s, VarValue>, VarError> {
        enter(stack, FILE_BASE)?;
        let input = self.resolve(INPUT_FILE, stack);
        stack.pop();
        let stem = match input?.as_ref() {
            VarValue::Text(path) => Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            other => display_plain(other),
        };
        Ok(Cow::Owned(VarValue::Text(stem)))
    }

    fn undefined(&self, name: &str) -> VarError {
        let wanted = name.to_ascii_lowercase();
        let suggestion = self
            .names()
            .into_iter()
            .map(|candidate| {
                let score = strsim::jaro_winkler(&wanted, &candidate.to_ascii_lowercase());
                (score, candidate)
            })
            .filter(|(score, _)| *score >= SUGGESTION_THRESHOLD)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, candidate)| candidate);
        let hint = name.eq_ignore_ascii_case(FILE_BASE).then(|| {
            format!("{FILE_BASE} is the file name without extension of {INPUT_FILE}: define {INPUT_FILE} to use it")
        });
        VarError::Undefined {
            name: name.to_owned(),
            suggestion,
            hint,
        }
    }
}

const FILE_BASE: &str = "FileBase";
const INPUT_FILE: &str = "InputFile";

/// Pushes `name` onto the expansion stack, or reports the cycle it closes.
fn enter<'s>(stack: &mut Vec<&'s str>, name: &'s str) -> Result<(), VarError> {
    if let Some(first) = stack.iter().position(|s| s.eq_ignore_ascii_case(name)) {
        let mut chain = stack[first..].join(" -> ");
        chain.push_str(" -> ");
        chain.push_str(name);
        return Err(VarError::Cycle { chain });
    }
    stack.push(name);
    Ok(())
}

fn has_braces(text: &str) -> bool {
    text.bytes().any(|b| b == b'{' || b == b'}')
}

/// A placeholder found in the text.
struct Placeholder<'t> {
    name: &'t str,
    format: Option<&'t str>,
    /// Byte index just past the closing `}`.
    end: usize,
}

/// Parses a placeholder whose `{` is at byte `open`, if there is one.
fn parse_placeholder<'t>(
    text: &'t str,
    open: usize,
    unclosed_from: &mut usize,
) -> Option<Placeholder<'t>> {
    let bytes = text.as_bytes();
    let start = open + 1;
    let first = *bytes.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let name_end = bytes[start..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .map_or(bytes.len(), |n| start + n);
    let name = &text[start..name_end];
    match bytes.get(name_end)? {
        b'}' => Some(Placeholder {
            name,
            format: None,
            end: name_end + 1,
        }),
        b':' => {
            let format_start = name_end + 1;
            if format_start >= *unclosed_from {
                return None;
            }
            let Some(len) = bytes[format_start..].iter().position(|&b| b == b'}') else {
                *unclosed_from = format_start;
                return None;
            };
            let format = &text[format_start..format_start + len];
            Some(Placeholder {
                name,
                format: (!format.is_empty()).then_some(format),
                end: format_start + len + 1,
            })
        }
        _ => None,
    }
}

/// Appends `value` rendered with `format` to `out`.
fn render(
    name: &str,
    value: &VarValue,
    format: Option<&str>,
    out: &mut String,
) -> Result<(), VarError> {
    match (value, format) {
        (VarValue::Text(text), None) => {
            out.push_str(text);
            Ok(())
        }
        (VarValue::Text(text), Some(format)) => render_text(name, text, format, out),
        (VarValue::DateTime(dt), None) => {
            write_date(dt, StrftimeItems::new(DEFAULT_DATE_FORMAT), out);
            Ok(())
        }
        (VarValue::DateTime(dt), Some(format)) => {
            render_date(dt, format, out).map_err(|reason| bad_format(name, format, reason))
        }
        (VarValue::Integer(n), None) => {
            push_display(out, n);
            Ok(())
        }
        (VarValue::Integer(n), Some(format)) => render_integer(*n, format, out)
            .map_err(|reason| bad_format(name, format, reason.to_owned())),
    }
}

fn bad_format(name: &str, format: &str, reason: String) -> VarError {
    VarError::BadFormat {
        name: name.to_owned(),
        format: format.to_owned(),
        reason,
    }
}

fn render_text(name: &str, text: &str, format: &str, out: &mut String) -> Result<(), VarError> {
    let path = Path::new(text);
    match format.to_ascii_lowercase().as_str() {
        "filename" => out.push_str(&lossy(path.file_name())),
        "filenamewithoutext" => out.push_str(&lossy(path.file_stem())),
        "directory" | "dir" => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                out.push_str(&parent.to_string_lossy());
            }
            _ => out.push('.'),
        },
        "extension" | "ext" => out.push_str(&lossy(path.extension())),
        "fullpath" => out.push_str(&absolute(path).to_string_lossy()),
        "upper" => out.push_str(&text.to_uppercase()),
        "lower" => out.push_str(&text.to_lowercase()),
        _ => {
            // Values given on the command line arrive as text; let them
            // format like the built-ins they typically replace.
            if let Some(dt) = parse_date_text(text) {
                return render_date(&dt, format, out).map_err(|reason| {
                    bad_format(name, format, format!("{reason}; {TEXT_FORMATS}"))
                });
            }
            if let Ok(n) = text.parse::<i64>() {
                return render_integer(n, format, out).map_err(|reason| {
                    bad_format(name, format, format!("{reason}; {TEXT_FORMATS}"))
                });
            }
            return Err(bad_format(
                name,
                format,
                format!("unknown text format; {TEXT_FORMATS}"),
            ));
        }
    }
    Ok(())
}

/// Reads text given for a date: RFC 3339, `YYYY-MM-DDTHH:MM:SS[.f]` (UTC) or
/// `YYYY-MM-DD` (midnight UTC).
fn parse_date_text(text: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt);
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(naive.and_utc().fixed_offset())
}

fn render_date(dt: &DateTime<FixedOffset>, format: &str, out: &mut String) -> Result<(), String> {
    let strftime = datefmt::to_strftime(format).map_err(|e| format!("{e}; {DATE_FORMATS}"))?;
    let items = StrftimeItems::new(&strftime)
        .parse()
        .map_err(|_| format!("invalid strftime pattern `{strftime}`; {DATE_FORMATS}"))?;
    // A pattern without any field is almost always a format meant for another
    // kind of value (`{RunDate:upper}`); printing it literally would hide that.
    if !items
        .iter()
        .any(|item| matches!(item, Item::Numeric(..) | Item::Fixed(..)))
    {
        return Err(format!(
            "the format has no date or time field; {DATE_FORMATS}"
        ));
    }
    write_date(dt, items.iter(), out);
    Ok(())
}

fn write_date<'a, I, B>(dt: &DateTime<FixedOffset>, items: I, out: &mut String)
where
    I: Iterator<Item = B> + Clone,
    B: std::borrow::Borrow<Item<'a>>,
{
    // Cannot fail: the items are validated and a DateTime has every field.
    let _ = write!(out, "{}", dt.format_with_items(items));
}

#[derive(Clone, Copy)]
enum IntegerFormat {
    Decimal(usize),
    UpperHex(usize),
    LowerHex(usize),
}

fn parse_integer_format(format: &str) -> Option<IntegerFormat> {
    let mut chars = format.chars();
    let kind = chars.next()?;
    let digits = chars.as_str();
    // Bounded so a typo cannot request a gigantic allocation.
    let width = if digits.is_empty() {
        0
    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
        usize::from(digits.parse::<u8>().ok()?)
    } else {
        return None;
    };
    match kind {
        'D' | 'd' => Some(IntegerFormat::Decimal(width)),
        'X' => Some(IntegerFormat::UpperHex(width)),
        'x' => Some(IntegerFormat::LowerHex(width)),
        _ => None,
    }
}

fn render_integer(n: i64, format: &str, out: &mut String) -> Result<(), &'static str> {
    let format = parse_integer_format(format).ok_or(INTEGER_FORMATS)?;
    // Writing to a String cannot fail.
    let _ = match format {
        // Pad the magnitude, as .NET does: -42 with D5 is -00042.
        IntegerFormat::Decimal(width) if n < 0 => {
            write!(out, "-{:0width$}", n.unsigned_abs())
        }
        IntegerFormat::Decimal(width) => write!(out, "{n:0width$}"),
        IntegerFormat::UpperHex(width) => write!(out, "{n:0width$X}"),
        IntegerFormat::LowerHex(width) => write!(out, "{n:0width$x}"),
    };
    Ok(())
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{value}");
}

/// A value rendered without format, as a plain string.
fn display_plain(value: &VarValue) -> String {
    let mut out = String::new();
    // No format never fails.
    let _ = render("", value, None, &mut out);
    out
}

/// An optional path component as text, empty when absent.
fn lossy(part: Option<&std::ffi::OsStr>) -> Cow<'_, str> {
    part.map(|p| p.to_string_lossy()).unwrap_or_default()
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Whether `name` can be a variable: `[A-Za-z_][A-Za-z0-9_]*`, as `{Name}` placeholders require.
pub fn is_valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn vars() -> Variables {
        let mut v = Variables::new();
        v.define("DataDir", "/data/in");
        v.define("OutDir", "{DataDir}/out");
        v.define("Report", "{OutDir}/report_{RunDate:yyyyMMdd}.csv");
        v.define("RunDate", "2024-01-31");
        v.define("Count", "42");
        v.define("Name", "Sales Report");
        v
    }

    fn now() -> DateTime<Local> {
        Local
            .with_ymd_and_hms(2024, 3, 9, 7, 5, 3)
            .single()
            .expect("unambiguous local time")
    }

    #[test]
    fn plain_text_is_untouched() {
        let v = vars();
        assert_eq!(v.substitute("no placeholders").unwrap(), "no placeholders");
        assert_eq!(v.substitute("").unwrap(), "");
        assert_eq!(
            v.substitute("héllo {Name} ✓").unwrap(),
            "héllo Sales Report ✓"
        );
    }

    #[test]
    fn plain_substitution() {
        let v = vars();
        assert_eq!(v.substitute("{DataDir}").unwrap(), "/data/in");
        assert_eq!(v.substitute("a{Count}b{Count}c").unwrap(), "a42b42c");
    }

    #[test]
    fn builtins() {
        let v = Variables::with_builtins(Path::new("pipelines/../p/job.yaml"), now());
        assert_eq!(
            v.substitute("{RunDate:yyyy-MM-dd HH:mm:ss}").unwrap(),
            "2024-03-09 07:05:03"
        );
        assert_eq!(v.substitute("{RunDate}").unwrap(), "2024-03-09T07:05:03");
        assert_eq!(
            v.substitute("{Timestamp}").unwrap(),
            now().timestamp().to_string()
        );
        assert_eq!(
            v.substitute("{RunDateUtc:%s}").unwrap(),
            now().timestamp().to_string()
        );
        assert_eq!(v.substitute("{RunDateUtc:zzz}").unwrap(), "+00:00");
        assert_eq!(
            v.substitute("{ProcessId}").unwrap(),
            std::process::id().to_string()
        );

        let config = v.substitute("{ConfigFile}").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Path::new(&config), cwd.join("p/job.yaml"));
        assert_eq!(
            Path::new(&v.substitute("{ConfigDir}").unwrap()),
            cwd.join("p")
        );
        assert_eq!(v.substitute("{ConfigFile:filename}").unwrap(), "job.yaml");
        assert_eq!(
            Path::new(&v.substitute("{WorkingDir}").unwrap()),
            cwd.as_path()
        );
        assert!(!v.substitute("{MachineName}").unwrap().is_empty());
        assert!(!v.substitute("{UserName}").unwrap().is_empty());
        for name in [
            "RunDate",
            "RunDateUtc",
            "Timestamp",
            "ConfigFile",
            "ConfigDir",
            "WorkingDir",
            "MachineName",
            "UserName",
            "ProcessId",
        ] {
            assert!(v.contains(name), "{name}");
        }
    }

    #[test]
    fn builtins_are_not_expanded() {
        let mut v = Variables::with_builtins(Path::new("{Oops}/job.yaml"), now());
        v.define("Oops", "expanded");
        assert!(v
            .substitute("{ConfigFile}")
            .unwrap()
            .ends_with("{Oops}/job.yaml"));
    }

    #[test]
    fn date_formats() {
        let v = Variables::with_builtins(Path::new("job.yaml"), now());
        assert_eq!(v.substitute("{RunDate:yyyyMMdd}").unwrap(), "20240309");
        assert_eq!(v.substitute("{RunDate:%Y%m%d}").unwrap(), "20240309");
        assert_eq!(v.substitute("{RunDate:d/M/yy}").unwrap(), "9/3/24");
        assert_eq!(v.substitute("{rundate:MMMM}").unwrap(), "March");
    }

    #[test]
    fn date_text_accepts_date_formats() {
        let v = vars();
        assert_eq!(v.substitute("{RunDate:yyyyMMdd}").unwrap(), "20240131");
        assert_eq!(
            v.substitute("{RunDate:%d.%m.%Y %:z}").unwrap(),
            "31.01.2024 +00:00"
        );
        assert_eq!(v.substitute("{RunDate}").unwrap(), "2024-01-31");

        let mut v = Variables::new();
        v.define("When", "2024-01-31T10:20:30+02:00");
        assert_eq!(v.substitute("{When:HH:mm zzz}").unwrap(), "10:20 +02:00");
    }

    #[test]
    fn integer_formats() {
        let v = Variables::with_builtins(Path::new("job.yaml"), now());
        let pid = std::process::id();
        assert_eq!(
            v.substitute("{ProcessId:D12}").unwrap(),
            format!("{pid:012}")
        );
        assert_eq!(v.substitute("{ProcessId:X}").unwrap(), format!("{pid:X}"));
        assert_eq!(v.substitute("{ProcessId:x}").unwrap(), format!("{pid:x}"));

        let mut v = vars();
        assert_eq!(v.substitute("{Count:D5}").unwrap(), "00042");
        assert_eq!(v.substitute("{Count:d1}").unwrap(), "42");
        assert_eq!(v.substitute("{Count:X}").unwrap(), "2A");
        assert_eq!(v.substitute("{Count:x4}").unwrap(), "002a");
        v.define("Neg", "-42");
        assert_eq!(v.substitute("{Neg:D5}").unwrap(), "-00042");

        let mut out = String::new();
        render_integer(i64::MIN, "D", &mut out).unwrap();
        assert_eq!(out, i64::MIN.to_string());
    }

    #[test]
    fn text_formats() {
        let mut v = Variables::new();
        v.define("In", "/data/in/Sales.Q1.csv");
        v.define("Bare", "file");
        assert_eq!(v.substitute("{In:filename}").unwrap(), "Sales.Q1.csv");
        assert_eq!(v.substitute("{In:FileNameWithoutExt}").unwrap(), "Sales.Q1");
        assert_eq!(v.substitute("{In:directory}").unwrap(), "/data/in");
        assert_eq!(v.substitute("{In:DIR}").unwrap(), "/data/in");
        assert_eq!(v.substitute("{In:extension}").unwrap(), "csv");
        assert_eq!(v.substitute("{In:ext}").unwrap(), "csv");
        assert_eq!(
            v.substitute("{In:fullpath}").unwrap(),
            "/data/in/Sales.Q1.csv"
        );
        assert_eq!(v.substitute("{In:upper}").unwrap(), "/DATA/IN/SALES.Q1.CSV");
        assert_eq!(v.substitute("{In:Lower}").unwrap(), "/data/in/sales.q1.csv");
        assert_eq!(v.substitute("{Bare:dir}").unwrap(), ".");
        assert_eq!(v.substitute("{Bare:ext}").unwrap(), "");

        v.define("Rel", "./a/../b/c.txt");
        let full = v.substitute("{Rel:fullpath}").unwrap();
        assert_eq!(
            Path::new(&full),
            std::env::current_dir().unwrap().join("b/c.txt")
        );
    }

    #[test]
    fn escaped_braces() {
        let v = vars();
        assert_eq!(v.substitute("{{literal}}").unwrap(), "{literal}");
        assert_eq!(v.substitute("{{DataDir}}").unwrap(), "{DataDir}");
        assert_eq!(v.substitute("{{{DataDir}}}").unwrap(), "{/data/in}");
        assert_eq!(v.substitute("}}{{").unwrap(), "}{");
    }

    #[test]
    fn stray_braces_are_literal() {
        let v = vars();
        for text in [
            "{ x }",
            "a}b",
            "{",
            "}",
            "{Name",
            "{Name:yyyy",
            "{1abc}",
            "{a-b}",
            r#"{"key": [1, 2]}"#,
            "x{:fmt}y",
            "{a:{a:{a:",
        ] {
            assert_eq!(v.substitute(text).unwrap(), text, "{text}");
        }
        assert_eq!(v.substitute("{ {Count} }").unwrap(), "{ 42 }");
        assert_eq!(v.substitute("{Count}}").unwrap(), "42}");
    }

    #[test]
    fn script_like_text_is_a_placeholder() {
        // Why script bodies are never substituted: this is valid placeholder syntax.
        let err = vars().substitute("return {ok:true}").unwrap_err();
        assert!(
            matches!(err, VarError::Undefined { ref name, .. } if name == "ok"),
            "{err:?}"
        );
    }

    #[test]
    fn nested_variables() {
        let v = vars();
        assert_eq!(v.substitute("{OutDir}").unwrap(), "/data/in/out");
        assert_eq!(
            v.substitute("{Report}").unwrap(),
            "/data/in/out/report_20240131.csv"
        );
        assert_eq!(
            v.substitute("{Report:filename}").unwrap(),
            "report_20240131.csv"
        );
        assert_eq!(v.substitute("{OutDir:upper}").unwrap(), "/DATA/IN/OUT");
    }

    #[test]
    fn cycles() {
        let mut v = Variables::new();
        v.define("A", "{B}");
        v.define("B", "x{a}");
        v.define("C", "{A}");
        v.define("Self", "{Self}");
        assert_eq!(
            v.substitute("{A}").unwrap_err(),
            VarError::Cycle {
                chain: "A -> B -> A".into()
            }
        );
        assert_eq!(
            v.substitute("{C}").unwrap_err(),
            VarError::Cycle {
                chain: "A -> B -> A".into()
            }
        );
        let err = v.substitute("{Self}").unwrap_err();
        assert_eq!(err.to_string(), "variable reference cycle: Self -> Self");
    }

    #[test]
    fn repeated_use_is_not_a_cycle() {
        let mut v = Variables::new();
        v.define("A", "a");
        v.define("B", "{A}{A}");
        v.define("C", "{B}-{A}-{B}");
        assert_eq!(v.substitute("{C}").unwrap(), "aa-a-aa");
    }

    #[test]
    fn file_base() {
        let mut v = vars();
        let err = v.substitute("{FileBase}").unwrap_err();
        match &err {
            VarError::Undefined {
                hint: Some(hint), ..
            } => assert!(hint.contains("InputFile")),
            other => panic!("expected Undefined with hint, got {other:?}"),
        }
        assert!(err.to_string().contains("define InputFile"), "{err}");
        assert!(!v.contains("FileBase"));

        v.define("InputFile", "{DataDir}/sales_2024.csv");
        assert_eq!(v.substitute("{FileBase}").unwrap(), "sales_2024");
        assert_eq!(v.substitute("{filebase:upper}").unwrap(), "SALES_2024");
        assert!(v.names().contains(&"FileBase".to_owned()));

        v.define("FileBase", "custom");
        assert_eq!(v.substitute("{FileBase}").unwrap(), "custom");
    }

    #[test]
    fn file_base_cycle() {
        let mut v = Variables::new();
        v.define("InputFile", "{FileBase}.csv");
        assert_eq!(
            v.substitute("{FileBase}").unwrap_err(),
            VarError::Cycle {
                chain: "FileBase -> InputFile -> FileBase".into()
            }
        );
    }

    #[test]
    fn later_definitions_win() {
        let mut v = Variables::with_builtins(Path::new("job.yaml"), now());
        v.define("DataDir", "/first");
        v.define("DATADIR", "/second");
        assert_eq!(v.substitute("{DataDir}").unwrap(), "/second");
        v.define("RunDate", "2024-01-31");
        assert_eq!(v.substitute("{RunDate:yyyyMMdd}").unwrap(), "20240131");
    }

    #[test]
    fn case_insensitive_lookup() {
        let v = vars();
        assert_eq!(
            v.substitute("{datadir}|{DATADIR}").unwrap(),
            "/data/in|/data/in"
        );
        assert!(v.contains("dAtAdIr"));
        assert!(!v.contains("Nope"));
    }

    #[test]
    fn names_sorted_with_original_spelling() {
        let mut v = Variables::new();
        v.define("beta", "1");
        v.define("Alpha", "1");
        v.define("InputFile", "x.csv");
        assert_eq!(v.names(), ["Alpha", "beta", "FileBase", "InputFile"]);
    }

    #[test]
    fn undefined_with_suggestion() {
        let v = vars();
        let err = v.substitute("{DataDr}/x").unwrap_err();
        assert_eq!(
            err,
            VarError::Undefined {
                name: "DataDr".into(),
                suggestion: Some("DataDir".into()),
                hint: None,
            }
        );
        assert_eq!(
            err.to_string(),
            "undefined variable `DataDr` (did you mean `DataDir`?)"
        );
        let err = v.substitute("{Zzzzqqq}").unwrap_err();
        assert_eq!(err.to_string(), "undefined variable `Zzzzqqq`");
    }

    #[test]
    fn undefined_inside_definition() {
        let mut v = Variables::new();
        v.define("Out", "{Missing}/out");
        assert!(matches!(
            v.substitute("{Out}"),
            Err(VarError::Undefined { ref name, .. }) if name == "Missing"
        ));
    }

    #[test]
    fn bad_formats() {
        let v = Variables::with_builtins(Path::new("job.yaml"), now());
        let cases = [
            ("{ProcessId:yyyy}", "D<n>"),
            ("{ProcessId:upper}", "D<n>"),
            ("{ConfigFile:D5}", "filename"),
            ("{ConfigFile:yyyy}", "filename"),
            ("{RunDate:yyy}", "yyyy-MM-dd"),
            ("{RunDate:upper}", "no date or time field"),
            ("{RunDate:%Q}", "strftime"),
        ];
        for (text, expected) in cases {
            match v.substitute(text) {
                Err(err @ VarError::BadFormat { .. }) => {
                    let message = err.to_string();
                    assert!(message.contains(expected), "{text}: {message}");
                }
                other => panic!("{text}: expected BadFormat, got {other:?}"),
            }
        }
        let err = v.substitute("{ProcessId:Q}").unwrap_err();
        assert_eq!(
            err,
            VarError::BadFormat {
                name: "ProcessId".into(),
                format: "Q".into(),
                reason: INTEGER_FORMATS.into(),
            }
        );
    }

    #[test]
    fn empty_format_means_none() {
        let v = vars();
        assert_eq!(v.substitute("{Count:}").unwrap(), "42");
    }

    #[test]
    fn long_unclosed_input_is_linear() {
        let v = vars();
        let text = "{a:".repeat(100_000);
        assert_eq!(v.substitute(&text).unwrap(), text);
    }
}

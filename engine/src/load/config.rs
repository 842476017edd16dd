//! Reading configuration out of the YAML tree.
//!
//! [`MapReader`] is how the engine and every plugin read a YAML map: keys match case-insensitively,
//! every key that is read is remembered, and [`MapReader::finish`] reports every key nobody read,
//! with a "did you mean" drawn from the keys that were asked for. Errors are pushed into a
//! [`ConfigCx`] instead of being returned, so one pass finds all of them.
//!
//! [`record_asked_keys`] lists the keys that readers were asked for while a closure ran. Loading does
//! not use it; it is for tooling, such as the test that checks every key the loader accepts is
//! documented (`cli/tests/docs.rs`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, Location};
use crate::load::vars::Variables;
use crate::load::yaml::{Mark, Node, Value};
use crate::memory::human_bytes;

/// Shared state while reading a pipeline file: where it is, its variables, and the errors so far.
#[derive(Debug)]
pub struct ConfigCx {
    file: Arc<PathBuf>,
    base_dir: PathBuf,
    vars: Variables,
    errors: Vec<ConfigError>,
}

impl ConfigCx {
    /// A context for the pipeline file `file`; relative paths resolve against `base_dir`.
    pub fn new(file: PathBuf, base_dir: PathBuf, vars: Variables) -> Self {
        Self {
            file: Arc::new(file),
            base_dir,
            vars,
            errors: Vec::new(),
        }
    }

    /// The pipeline file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The directory relative paths resolve against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The position `mark` in the pipeline file.
    pub fn location(&self, mark: Mark) -> Option<Location> {
        (mark.line > 0).then(|| Location {
            file: self.file.clone(),
            line: mark.line,
            column: mark.column,
        })
    }

    /// The variables, for defining more while reading.
    pub fn vars_mut(&mut self) -> &mut Variables {
        &mut self.vars
    }

    /// Record an error.
    pub fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// Record an error of `kind` at `path`/`mark`.
    pub fn error(&mut self, kind: ConfigErrorKind, path: &str, mark: Mark) {
        let location = self.location(mark);
        self.push(ConfigError::new(kind, path, location));
    }

    /// Record an error with a hint.
    pub fn error_with_hint(&mut self, kind: ConfigErrorKind, path: &str, mark: Mark, hint: &str) {
        let location = self.location(mark);
        self.push(ConfigError::new(kind, path, location).with_hint(hint));
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `value` if no error was recorded, else every error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// Substitute `{Variables}` in `text`, recording an error (and returning `None`) on failure.
    pub fn substitute(&mut self, text: &str, path: &str, mark: Mark) -> Option<String> {
        match self.vars.substitute(text) {
            Ok(s) => Some(s),
            Err(e) => {
                let hint = "write `{{` and `}}` for literal braces; define variables under `Variables:` or with `--var NAME=VALUE`";
                self.error_with_hint(ConfigErrorKind::Variable(e.to_string()), path, mark, hint);
                None
            }
        }
    }

    /// Resolve a path written in the pipeline file: relative paths are relative to its directory.
    pub fn resolve_path(&self, written: &str) -> PathBuf {
        // Normalised either way, so `/a/b/../in.csv` and `/a/in.csv` are known to be one file.
        crate::paths::normalize(&self.base_dir.join(written))
    }
}

/// A value read from a map, with its YAML path and position.
#[derive(Debug, Clone, Copy)]
pub struct Field<'n> {
    /// The value node.
    pub node: &'n Node,
    /// Where the key was written.
    pub mark: Mark,
}

#[derive(Debug)]
struct Entry<'n> {
    key: &'n str,
    key_mark: Mark,
    value: &'n Node,
    used: bool,
}

/// A key that a [`MapReader`] was asked for, as listed by [`record_asked_keys`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AskedKey {
    /// The YAML path of the map, e.g. `Pipeline.Plugins[read].Config`.
    pub map: String,
    /// The key as the reader spells it (the documented spelling).
    pub key: &'static str,
    /// Whether it is a key of the original system, read only to refuse it with its replacement.
    pub legacy: bool,
    /// The value the reader was asked to read it as.
    pub kind: KeyKind,
}

/// What a [`MapReader`] getter reads a key's value as (for the JSON Schema of the pipeline file).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// Read by the caller itself ([`MapReader::take`]).
    Any,
    /// A scalar, as text.
    String,
    /// A path (non-empty).
    Path,
    /// `true`/`false`/`yes`/`no`.
    Bool,
    /// A whole number in a range.
    Integer {
        /// The least accepted.
        min: u64,
        /// The greatest accepted.
        max: u64,
    },
    /// A size in bytes, with or without a unit.
    ByteSize,
    /// A duration: `500ms`, `30s`, `5m`, `2h`, or a number of seconds.
    Duration,
    /// One of these words (case-insensitive).
    Choice(Vec<String>),
    /// A single-byte character, an escape or a name.
    SingleByte,
    /// A list.
    List,
    /// A map.
    Map,
}

thread_local! {
    static ASKED: RefCell<Option<Vec<AskedKey>>> = const { RefCell::new(None) };
    /// The kind the outermost getter in progress reads its key as; the getters it calls in turn
    /// leave it be, and [`MapReader::take`] records it with the key.
    static KIND: RefCell<Option<KeyKind>> = const { RefCell::new(None) };
}

/// Say what the key about to be taken is read as, unless a getter further out already did.
fn reading_as(kind: KeyKind) {
    KIND.with(|k| {
        let mut k = k.borrow_mut();
        if k.is_none() && ASKED.with(|a| a.borrow().is_some()) {
            *k = Some(kind);
        }
    });
}

/// Run `f`, and return with its result every key that a [`MapReader`] on this thread was asked
/// for meanwhile (by a getter, [`MapReader::take`] or [`MapReader::legacy`]), whether or not the
/// map held it, in the order asked. A key asked only under some condition (say, only when another
/// key is present) is listed only when `f` met that condition. Calls do not nest: an inner call
/// takes the keys asked during it.
pub fn record_asked_keys<R>(f: impl FnOnce() -> R) -> (R, Vec<AskedKey>) {
    let outer = ASKED.with(|a| a.borrow_mut().replace(Vec::new()));
    let result = f();
    let asked = ASKED.with(|a| std::mem::replace(&mut *a.borrow_mut(), outer));
    (result, asked.unwrap_or_default())
}

fn note_asked(map: &str, key: &'static str, legacy: bool) {
    let kind = KIND.with(|k| k.borrow_mut().take()).unwrap_or(KeyKind::Any);
    ASKED.with(|a| {
        if let Some(asked) = a.borrow_mut().as_mut() {
            asked.push(AskedKey {
                map: map.to_string(),
                key,
                legacy,
                kind,
            });
        }
    });
}

/// Reads one YAML map; see the module docs.
#[derive(Debug)]
pub struct MapReader<'n> {
    path: String,
    mark: Mark,
    entries: Vec<Entry<'n>>,
    asked: Vec<&'static str>,
}

impl<'n> MapReader<'n> {
    /// Start reading `node`, which must be a map (`Null` reads as an empty map).
    pub fn new(node: &'n Node, path: impl Into<String>, cx: &mut ConfigCx) -> Option<Self> {
        let path = path.into();
        let items: &[(Node, Node)] = match &node.value {
            Value::Map(items) => items,
            Value::Null => &[],
            _ => {
                let found = node.kind_name().to_string();
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "a map of keys".into(),
                    found,
                };
                cx.error(kind, &path, node.mark);
                return None;
            }
        };
        let mut entries: Vec<Entry<'n>> = Vec::with_capacity(items.len());
        for (k, v) in items {
            let Some(key) = k.as_scalar() else {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "a plain key".into(),
                    found: k.kind_name().into(),
                };
                cx.error(kind, &path, k.mark);
                continue;
            };
            if let Some(first) = entries.iter().find(|e| e.key.eq_ignore_ascii_case(key)) {
                let kind = ConfigErrorKind::DuplicateKey {
                    key: key.to_string(),
                    first: first.key.to_string(),
                };
                cx.error(kind, &path, k.mark);
                continue;
            }
            entries.push(Entry {
                key,
                key_mark: k.mark,
                value: v,
                used: false,
            });
        }
        Some(Self {
            path,
            mark: node.mark,
            entries,
            asked: Vec::new(),
        })
    }

    /// The YAML path of this map.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where this map starts.
    pub fn mark(&self) -> Mark {
        self.mark
    }

    /// The YAML path of `key` in this map.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Take the value of `key` (case-insensitive); `Null` values count as absent.
    pub fn take(&mut self, key: &'static str) -> Option<Field<'n>> {
        self.asked.push(key);
        note_asked(&self.path, key, false);
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.key.eq_ignore_ascii_case(key))?;
        entry.used = true;
        (entry.value.value != Value::Null).then_some(Field {
            node: entry.value,
            mark: entry.key_mark,
        })
    }

    /// Take every entry (for free-form maps such as `Variables`).
    pub fn take_all(&mut self) -> Vec<(&'n str, Mark, &'n Node)> {
        self.entries
            .iter_mut()
            .map(|e| {
                e.used = true;
                (e.key, e.key_mark, e.value)
            })
            .collect()
    }

    /// Whether `key` is present (without taking it).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// A scalar as written, without variable substitution (for code such as scripts).
    pub fn raw_string(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<String> {
        reading_as(KeyKind::String);
        let field = self.take(key)?;
        match field.node.as_scalar() {
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong_shape(cx, key, field, "a string");
                None
            }
        }
    }

    /// A scalar with `{Variables}` substituted.
    pub fn string(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<String> {
        let raw = self.raw_string(cx, key)?;
        let path = self.key_path(key);
        let mark = self.entry_mark(key);
        cx.substitute(&raw, &path, mark)
    }

    /// Like [`Self::string`], but a missing (or null) key is an error.
    pub fn required_string(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<String> {
        reading_as(KeyKind::String);
        let present = self
            .entries
            .iter()
            .any(|e| e.key.eq_ignore_ascii_case(key) && e.value.value != Value::Null);
        if !present {
            self.take(key);
            self.missing(cx, key);
            return None;
        }
        self.string(cx, key)
    }

    /// Record that a required `key` is missing.
    pub fn missing(&self, cx: &mut ConfigCx, key: &str) {
        cx.error(
            ConfigErrorKind::MissingKey(key.to_string()),
            &self.path,
            self.mark,
        );
    }

    /// A path, substituted and resolved against the pipeline file's directory.
    pub fn path_value(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<PathBuf> {
        reading_as(KeyKind::Path);
        let s = self.string(cx, key)?;
        if s.is_empty() {
            self.invalid(cx, key, "a non-empty path", "\"\"");
            return None;
        }
        Some(cx.resolve_path(&s))
    }

    /// `true`/`false` (also `yes`/`no`, any case).
    pub fn bool(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<bool> {
        reading_as(KeyKind::Bool);
        let s = self.string(cx, key)?;
        match s.to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            _ => {
                self.invalid(cx, key, "true or false", &format!("{s:?}"));
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(
        &mut self,
        cx: &mut ConfigCx,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        reading_as(KeyKind::Integer { min, max });
        let s = self.string(cx, key)?;
        match s.trim().replace('_', "").parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.invalid(
                    cx,
                    key,
                    &format!("a whole number from {min} to {max}"),
                    &format!("{s:?}"),
                );
                None
            }
        }
    }

    /// A size in bytes in `min..=max`: a whole number, or one with a unit (`256 MiB`, `1.5GB`).
    pub fn byte_size(
        &mut self,
        cx: &mut ConfigCx,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        reading_as(KeyKind::ByteSize);
        let s = self.string(cx, key)?;
        match parse_size::parse_size(s.trim()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let (min, max) = (human_bytes(min), human_bytes(max));
                let expected =
                    format!("a size from {min} to {max}, such as \"256 MiB\" or \"2 GiB\"");
                self.invalid(cx, key, &expected, &format!("{s:?}"));
                None
            }
        }
    }

    /// A duration (see [`parse_duration`]) from `min` to `max`.
    pub fn duration(
        &mut self,
        cx: &mut ConfigCx,
        key: &'static str,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Option<std::time::Duration> {
        reading_as(KeyKind::Duration);
        let s = self.string(cx, key)?;
        match parse_duration(&s) {
            Some(d) if (min..=max).contains(&d) => Some(d),
            _ => {
                let expected = format!(
                    "a duration from {min:?} to {max:?}, such as \"30s\", \"5m\" or \"1h\""
                );
                self.invalid(cx, key, &expected, &format!("{s:?}"));
                None
            }
        }
    }

    /// One of a fixed set of words (case-insensitive).
    pub fn choice<T: Copy>(
        &mut self,
        cx: &mut ConfigCx,
        key: &'static str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        reading_as(KeyKind::Choice(
            choices.iter().map(|(n, _)| n.to_string()).collect(),
        ));
        let s = self.string(cx, key)?;
        if let Some((_, v)) = choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
        {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.invalid(
            cx,
            key,
            &format!("one of {}", names.join(", ")),
            &format!("{s:?}"),
        );
        None
    }

    /// A single-byte character such as a delimiter. Accepts the character itself, an escape
    /// (`\t`), or a name (`tab`, `comma`, `pipe`, `semicolon`, `space`).
    pub fn single_byte(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<u8> {
        reading_as(KeyKind::SingleByte);
        let s = self.string(cx, key)?;
        let byte = parse_single_byte(&s);
        if byte.is_none() {
            self.invalid(
                cx,
                key,
                "a single-byte (ASCII) character such as \",\", \"\\t\", \"|\" or \";\"",
                &format!("{s:?}"),
            );
            return None;
        }
        byte
    }

    /// Whether `key` holds a list (before reading it one way or the other). Recorded as a key
    /// that may be a list or a scalar, whichever it then turns out to be.
    pub fn is_list(&self, key: &'static str) -> bool {
        for kind in [KeyKind::List, KeyKind::String] {
            reading_as(kind);
            note_asked(&self.path, key, false);
        }
        self.entries
            .iter()
            .any(|e| e.key.eq_ignore_ascii_case(key) && matches!(e.value.value, Value::Seq(_)))
    }

    /// A list; each item is handed back with its YAML path.
    pub fn list(
        &mut self,
        cx: &mut ConfigCx,
        key: &'static str,
    ) -> Option<Vec<(String, &'n Node)>> {
        reading_as(KeyKind::List);
        let field = self.take(key)?;
        let path = self.key_path(key);
        match &field.node.value {
            Value::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("{path}[{i}]"), n))
                    .collect(),
            ),
            _ => {
                self.wrong_shape(cx, key, field, "a list");
                None
            }
        }
    }

    /// A nested map.
    pub fn map(&mut self, cx: &mut ConfigCx, key: &'static str) -> Option<MapReader<'n>> {
        reading_as(KeyKind::Map);
        let field = self.take(key)?;
        MapReader::new(field.node, self.key_path(key), cx)
    }

    /// A key of the original system: if present, it is an error that names the replacement.
    pub fn legacy(&mut self, cx: &mut ConfigCx, key: &'static str, replacement: &str) {
        note_asked(&self.path, key, true);
        let path = self.path.clone();
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.key.eq_ignore_ascii_case(key))
        {
            entry.used = true;
            let kind = ConfigErrorKind::LegacyKey {
                key: entry.key.to_string(),
                replacement: replacement.to_string(),
            };
            cx.error(kind, &path, entry.key_mark);
        }
    }

    /// Report an invalid value for `key`.
    pub fn invalid(&self, cx: &mut ConfigCx, key: &str, expected: &str, found: &str) {
        let kind = ConfigErrorKind::InvalidValue {
            expected: expected.to_string(),
            found: found.to_string(),
        };
        cx.error(kind, &self.key_path(key), self.entry_mark(key));
    }

    /// Where `key` was written (or the map itself if it was not).
    pub fn entry_mark(&self, key: &str) -> Mark {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
            .map_or(self.mark, |e| e.key_mark)
    }

    fn wrong_shape(&self, cx: &mut ConfigCx, key: &str, field: Field<'_>, expected: &str) {
        let kind = ConfigErrorKind::InvalidValue {
            expected: expected.to_string(),
            found: field.node.kind_name().to_string(),
        };
        cx.error(kind, &self.key_path(key), field.mark);
    }

    /// Report every key nobody read.
    pub fn finish(self, cx: &mut ConfigCx) {
        for e in self.entries.iter().filter(|e| !e.used) {
            let suggestion = closest(e.key, &self.asked).map(str::to_string);
            let kind = ConfigErrorKind::UnknownKey {
                key: e.key.to_string(),
                suggestion,
            };
            cx.error(kind, &self.path, e.key_mark);
        }
    }
}

/// A duration as written in a config or on the command line: a number with a unit, `ms`, `s`, `m`
/// or `h` (`500ms`, `1.5s`, `30s`, `5m`, `2h`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    std::time::Duration::try_from_secs_f64(seconds).ok()
}

/// A single-byte character as written in a config: the character itself, an escape (`\t`), or a
/// name (`tab`, `comma`, `pipe`, `semicolon`, `space`). Line breaks and non-ASCII are refused.
pub fn parse_single_byte(s: &str) -> Option<u8> {
    let byte = match s.to_ascii_lowercase().as_str() {
        "\\t" | "tab" => b'\t',
        "comma" => b',',
        "pipe" => b'|',
        "semicolon" => b';',
        "space" => b' ',
        _ if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
        _ => return None,
    };
    (!matches!(byte, b'\n' | b'\r')).then_some(byte)
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.to_ascii_lowercase()), *c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::yaml;

    fn cx() -> ConfigCx {
        let mut vars = Variables::new();
        vars.define("Dir", "/data");
        ConfigCx::new("p.yaml".into(), "/base".into(), vars)
    }

    fn messages(cx: ConfigCx) -> Vec<String> {
        match cx.finish(()) {
            Ok(()) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn durations_read_with_or_without_a_unit() {
        use std::time::Duration;
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 5m "), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        for bad in ["", "s", "5d", "-1s", "1e999", "5 minutes"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_keys_are_reported() {
        let node = yaml::parse("filePath: a.csv\nDelimter: ';'\n").unwrap();
        let mut cx = cx();
        let mut m = MapReader::new(&node, "Config", &mut cx).unwrap();
        assert_eq!(m.string(&mut cx, "FilePath").as_deref(), Some("a.csv"));
        assert_eq!(m.single_byte(&mut cx, "Delimiter"), None);
        m.finish(&mut cx);
        assert_eq!(
            messages(cx),
            ["p.yaml:2:1: Config: unknown key `Delimter` (did you mean `Delimiter`?)"]
        );
    }

    #[test]
    fn legacy_keys_name_their_replacement() {
        let node = yaml::parse("AppendMode: true\n").unwrap();
        let mut cx = cx();
        let mut m = MapReader::new(&node, "Config", &mut cx).unwrap();
        m.legacy(&mut cx, "AppendMode", "use `OutputMode: append`");
        m.finish(&mut cx);
        assert_eq!(
            messages(cx),
            ["p.yaml:1:1: Config: `AppendMode` is not supported: use `OutputMode: append`"]
        );
    }

    #[test]
    fn duplicate_keys_differing_in_case_are_errors() {
        let node = yaml::parse("Name: a\nname: b\n").unwrap();
        let mut cx = cx();
        let m = MapReader::new(&node, "", &mut cx).unwrap();
        m.finish(&mut cx);
        let msgs = messages(cx);
        assert_eq!(msgs.len(), 2, "{msgs:?}"); // the duplicate, and the unread first key
        assert!(msgs[0].contains("duplicate key `name`"), "{msgs:?}");
    }

    #[test]
    fn values_are_substituted_and_paths_resolved() {
        let node = yaml::parse("FilePath: '{Dir}/x.csv'\nOut: rel/../y.csv\nN: 12\n").unwrap();
        let mut cx = cx();
        let mut m = MapReader::new(&node, "", &mut cx).unwrap();
        assert_eq!(
            m.path_value(&mut cx, "FilePath"),
            Some(PathBuf::from("/data/x.csv"))
        );
        assert_eq!(
            m.path_value(&mut cx, "Out"),
            Some(PathBuf::from("/base/y.csv"))
        );
        assert_eq!(m.integer(&mut cx, "N", 1, 10), None);
        m.finish(&mut cx);
        assert_eq!(
            messages(cx),
            ["p.yaml:3:1: N: expected a whole number from 1 to 10, found \"12\""]
        );
    }

    #[test]
    fn delimiters_accept_escapes_and_names() {
        let node = yaml::parse("A: \"\\t\"\nB: '\\t'\nC: pipe\nD: ab\n").unwrap();
        let mut cx = cx();
        let mut m = MapReader::new(&node, "", &mut cx).unwrap();
        assert_eq!(m.single_byte(&mut cx, "A"), Some(b'\t'));
        assert_eq!(m.single_byte(&mut cx, "B"), Some(b'\t'));
        assert_eq!(m.single_byte(&mut cx, "C"), Some(b'|'));
        assert_eq!(m.single_byte(&mut cx, "D"), None);
        m.finish(&mut cx);
        assert_eq!(messages(cx).len(), 1);
    }
}

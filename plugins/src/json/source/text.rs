//! Reads each line's declared keys as text with their JSON kind, so that the delimited converters
//! can read a value as they read a CSV field.
//!
//! A line is checked as UTF-8 once and parsed by serde_json into the places of its values (nothing
//! is converted to a float or copied on the way); every declared key becomes a column of type `Struct { text: Utf8, kind:
//! UInt8 }`: a string's text unescaped, a number as written (every digit), `true`/`false`, a nested
//! object or array as compact JSON text; `null` and a missing key are a null text. A key given
//! twice keeps its last value.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt8Builder};
use arrow_array::StructArray;
use arrow_schema::{DataType, Field, Fields};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// What a value was in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null = 0,
    String = 1,
    Number = 2,
    Bool = 3,
    Nested = 4,
}

impl From<u8> for Kind {
    fn from(k: u8) -> Kind {
        match k {
            1 => Kind::String,
            2 => Kind::Number,
            3 => Kind::Bool,
            4 => Kind::Nested,
            _ => Kind::Null,
        }
    }
}

fn text_fields() -> Fields {
    Fields::from(vec![
        Field::new("text", DataType::Utf8, true),
        Field::new("kind", DataType::UInt8, false),
    ])
}

/// Which declared column each key is, and whether any other key fails the line.
#[derive(Debug)]
pub(super) struct Keys {
    names: Vec<String>,
    index: HashMap<String, usize>,
    unknown_rejected: bool,
}

impl Keys {
    pub(super) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        unknown_rejected: bool,
    ) -> Self {
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Keys {
            names,
            index,
            unknown_rejected,
        }
    }

    /// The column of `key`, tried first at `guess`: lines usually give their keys in one order.
    fn find(&self, key: &str, guess: usize) -> Option<usize> {
        if self.names.get(guess).is_some_and(|n| n == key) {
            return Some(guess);
        }
        self.index.get(key).copied()
    }
}

/// Lines in, one text column per declared key out.
pub(super) struct TextColumns<'k> {
    keys: &'k Keys,
    texts: Vec<StringBuilder>,
    kinds: Vec<UInt8Builder>,
    /// Where each key's value is in the line being read.
    slots: Vec<Option<Range<usize>>>,
    /// A nested value's compact text.
    nested: String,
}

impl<'k> TextColumns<'k> {
    pub(super) fn new(keys: &'k Keys, rows: usize) -> Self {
        let n = keys.names.len();
        TextColumns {
            keys,
            texts: (0..n)
                .map(|_| StringBuilder::with_capacity(rows, rows * 8))
                .collect(),
            kinds: (0..n).map(|_| UInt8Builder::with_capacity(rows)).collect(),
            slots: vec![None; n],
            nested: String::new(),
        }
    }

    /// Adds one line as a row, or, if it is not one JSON object in UTF-8 (or has a key that fails
    /// it), adds nothing and says why.
    pub(super) fn push(&mut self, line: &[u8]) -> Result<(), serde_json::Error> {
        let text = std::str::from_utf8(line)
            .map_err(|_| de::Error::custom("the line is not valid UTF-8"))?;
        self.slots.fill(None);
        let mut de = serde_json::Deserializer::from_str(text);
        Object {
            keys: self.keys,
            base: text.as_ptr() as usize,
            slots: &mut self.slots,
        }
        .deserialize(&mut de)?;
        de.end()?;
        // The line parsed, so every value in it is valid JSON and nothing below can fail: the
        // row is added whole.
        for c in 0..self.slots.len() {
            let raw = self.slots[c].clone().map(|r| &text[r]);
            let kind = append(&mut self.texts[c], raw, &mut self.nested);
            self.kinds[c].append_value(kind as u8);
        }
        Ok(())
    }

    /// The columns, one per declared key.
    pub(super) fn finish(mut self) -> Vec<StructArray> {
        self.texts
            .iter_mut()
            .zip(&mut self.kinds)
            .map(|(t, k)| {
                StructArray::new(
                    text_fields(),
                    vec![Arc::new(t.finish()), Arc::new(k.finish())],
                    None,
                )
            })
            .collect()
    }
}

/// Appends a value's text (`raw`: the value as written, `None` for a missing key) and returns
/// its kind.
fn append(texts: &mut StringBuilder, raw: Option<&str>, nested: &mut String) -> Kind {
    let kind = match raw.and_then(|r| r.as_bytes().first()) {
        None | Some(b'n') => Kind::Null,
        Some(b'"') => Kind::String,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'{' | b'[') => Kind::Nested,
        Some(_) => Kind::Number,
    };
    match (kind, raw) {
        (Kind::Null, _) | (_, None) => texts.append_null(),
        (Kind::String, Some(raw)) => texts.append_value(unquoted(raw)),
        (Kind::Nested, Some(raw)) => {
            nested.clear();
            compact(raw, nested);
            texts.append_value(&*nested);
        }
        (_, Some(raw)) => texts.append_value(raw),
    }
    kind
}

/// A JSON string's text (`raw` is a valid JSON string, with its quotes and escapes).
fn unquoted(raw: &str) -> Cow<'_, str> {
    if raw.contains('\\') {
        // Cannot fail on a string serde_json has parsed; the text as written if it ever did.
        serde_json::from_str::<String>(raw).map_or(Cow::Borrowed(raw), Cow::Owned)
    } else {
        let inside = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'));
        Cow::Borrowed(inside.unwrap_or(raw))
    }
}

/// Valid JSON `raw` without the whitespace between tokens, its strings written as serde_json
/// writes them.
fn compact(raw: &str, out: &mut String) {
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = string_end(rest);
            let s = &rest[..end];
            match unquoted(s) {
                Cow::Owned(text) => {
                    out.push_str(&serde_json::to_string(&text).unwrap_or_else(|_| s.into()))
                }
                Cow::Borrowed(_) => out.push_str(s),
            }
            rest = &rest[end..];
        } else {
            if !matches!(c, ' ' | '\t' | '\n' | '\r') {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
}

/// Where the JSON string that `s` starts with ends (just past its closing quote).
fn string_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// One line's object: where each declared key's value is, as a range of the line.
struct Object<'a> {
    keys: &'a Keys,
    /// The line's address, to turn a value's text into its range.
    base: usize,
    slots: &'a mut [Option<Range<usize>>],
}

impl<'de> DeserializeSeed<'de> for Object<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut guess = 0;
        while let Some(key) = map.next_key_seed(Key(self.keys, guess))? {
            match key {
                Some(c) => {
                    let raw: &RawValue = map.next_value()?;
                    let start = raw.get().as_ptr() as usize - self.base;
                    self.slots[c] = Some(start..start + raw.get().len());
                    guess = c + 1;
                }
                None if self.keys.unknown_rejected => {
                    return Err(de::Error::custom("a key that is not declared"))
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key as its column's index, if it is declared; the column expected next is tried first.
struct Key<'a>(&'a Keys, usize);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.find(key, self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::Array;

    fn read(lines: &[&str], unknown_rejected: bool) -> Vec<Vec<(Option<String>, Kind)>> {
        let keys = Keys::new(["a", "b"], unknown_rejected);
        let mut columns = TextColumns::new(&keys, lines.len());
        for l in lines {
            columns.push(l.as_bytes()).unwrap();
        }
        columns
            .finish()
            .iter()
            .map(|s| {
                let (t, k) = (
                    s.column(0).as_string::<i32>(),
                    s.column(1).as_primitive::<arrow_array::types::UInt8Type>(),
                );
                (0..s.len())
                    .map(|r| {
                        (
                            t.is_valid(r).then(|| t.value(r).to_string()),
                            Kind::from(k.value(r)),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn values_as_text_and_kind() {
        let columns = read(
            &[
                r#"{"a": "x\"\u00e9", "b": 1.50e3}"#,
                r#"{"b": true, "a": null}"#,
                r#"{"a": { "k" : [1, "s p", "\n"] }, "zz": 1, "b": "1", "b": false}"#,
            ],
            false,
        );
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            columns[0],
            vec![
                (s("x\"é"), Kind::String),
                (None, Kind::Null),
                (s(r#"{"k":[1,"s p","\n"]}"#), Kind::Nested),
            ]
        );
        assert_eq!(
            columns[1],
            vec![
                (s("1.50e3"), Kind::Number),
                (s("true"), Kind::Bool),
                (s("false"), Kind::Bool),
            ]
        );
    }

    #[test]
    fn a_bad_line_adds_no_row() {
        let keys = Keys::new(["a"], true);
        let mut columns = TextColumns::new(&keys, 4);
        for bad in [
            &b"[1]"[..],
            b"{\"a\":1} {}",
            b"{\"a\":",
            b"{\"c\":1}",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(
                columns.push(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        columns.push(b"{\"a\":2}").unwrap();
        assert_eq!(columns.finish()[0].len(), 1);
    }
}

//! Reads each line's declared keys as text with their JSON kind, so that the delimited converters
//! can read a value as they read a CSV field.
//!
//! A line is parsed by serde_json into borrowed raw values (nothing is converted to a float or
//! copied on the way); every declared key becomes a column of type `Struct { text: Utf8, kind:
//! UInt8 }`: a string's text unescaped, a number as written (every digit), `true`/`false`, a nested
//! object or array as compact JSON text; `null` and a missing key are a null text. A key given
//! twice keeps its last value.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
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
    index: HashMap<String, usize>,
    unknown_rejected: bool,
}

impl Keys {
    pub(super) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        unknown_rejected: bool,
    ) -> Self {
        let index = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i))
            .collect();
        Keys {
            index,
            unknown_rejected,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Lines in, one text column per declared key out.
pub(super) struct TextColumns<'k> {
    keys: &'k Keys,
    texts: Vec<StringBuilder>,
    kinds: Vec<UInt8Builder>,
}

impl<'k> TextColumns<'k> {
    pub(super) fn new(keys: &'k Keys, rows: usize) -> Self {
        TextColumns {
            keys,
            texts: (0..keys.len())
                .map(|_| StringBuilder::with_capacity(rows, rows * 8))
                .collect(),
            kinds: (0..keys.len())
                .map(|_| UInt8Builder::with_capacity(rows))
                .collect(),
        }
    }

    /// Adds one line as a row, or, if it is not one JSON object (or has a key that fails it),
    /// adds nothing and says why.
    pub(super) fn push(&mut self, line: &[u8]) -> Result<(), serde_json::Error> {
        let mut values: Vec<Option<&RawValue>> = vec![None; self.keys.len()];
        let mut de = serde_json::Deserializer::from_slice(line);
        Object {
            keys: self.keys,
            values: &mut values,
        }
        .deserialize(&mut de)?;
        de.end()?;
        // Every value is read before any is added, so that a line adds a whole row or nothing.
        let row = values
            .into_iter()
            .map(text_and_kind)
            .collect::<Result<Vec<_>, _>>()?;
        for (c, (text, kind)) in row.into_iter().enumerate() {
            self.texts[c].append_option(text.as_deref());
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

/// A value's text and kind.
fn text_and_kind(
    value: Option<&RawValue>,
) -> Result<(Option<Cow<'_, str>>, Kind), serde_json::Error> {
    let Some(raw) = value.map(RawValue::get) else {
        return Ok((None, Kind::Null));
    };
    Ok(match raw.as_bytes().first() {
        None | Some(b'n') => (None, Kind::Null),
        Some(b'"') => (Some(unquoted(raw)?), Kind::String),
        Some(b't' | b'f') => (Some(raw.into()), Kind::Bool),
        Some(b'{' | b'[') => {
            let mut nested = String::with_capacity(raw.len());
            compact(raw, &mut nested)?;
            (Some(nested.into()), Kind::Nested)
        }
        Some(_) => (Some(raw.into()), Kind::Number),
    })
}

/// A JSON string's text (`raw` is the string with its quotes and escapes).
fn unquoted(raw: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    if raw.contains('\\') {
        serde_json::from_str::<String>(raw).map(Into::into)
    } else {
        let inside = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'));
        Ok(inside.unwrap_or(raw).into())
    }
}

/// Valid JSON `raw` without the whitespace between tokens, its strings written as serde_json
/// writes them.
fn compact(raw: &str, out: &mut String) -> Result<(), serde_json::Error> {
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = string_end(rest);
            let s = &rest[..end];
            if s.contains('\\') {
                out.push_str(&serde_json::to_string(&serde_json::from_str::<String>(s)?)?);
            } else {
                out.push_str(s);
            }
            rest = &rest[end..];
        } else {
            if !matches!(c, ' ' | '\t' | '\n' | '\r') {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(())
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

/// One line's object: each declared key's raw value into its slot.
struct Object<'a, 'de> {
    keys: &'a Keys,
    values: &'a mut [Option<&'de RawValue>],
}

impl<'de> DeserializeSeed<'de> for Object<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Object<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key(self.keys))? {
            match key {
                Some(c) => self.values[c] = Some(map.next_value()?),
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

/// A key as its column's index, if it is declared.
struct Key<'a>(&'a Keys);

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
        Ok(self.0.index.get(key).copied())
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

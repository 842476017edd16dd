//! A decoder for `arrow-json` that reads any JSON value as text and notes its kind, so that the
//! delimited converters can read it as they read a CSV field.
//!
//! Every declared key becomes a column of type `Struct { text: Utf8, kind: UInt8 }`: a string's
//! text unescaped, a number as written (every digit, no float in between), `true`/`false`, a
//! nested object or array as compact JSON text; `null` and a missing key are a null text.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt8Builder};
use arrow_array::{ArrayRef, StructArray};
use arrow_json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use flowengine_engine::schema::ColumnSpec;

/// Marks the fields this decoder reads (the root struct is `arrow-json`'s own).
const TEXT: &str = "flowengine.json.text";

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

/// The declared keys as text columns, in order.
pub(super) fn schema(columns: &[ColumnSpec]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(&c.name, DataType::Struct(text_fields()), true).with_metadata(
                std::collections::HashMap::from([(TEXT.to_string(), String::new())]),
            )
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Gives [`TextDecoder`] to the fields of [`schema`].
#[derive(Debug)]
pub(super) struct Factory;

impl DecoderFactory for Factory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        Ok(field
            .metadata()
            .contains_key(TEXT)
            .then(|| Box::new(TextDecoder) as Box<dyn ArrayDecoder>))
    }
}

/// Any JSON value as its text and kind.
struct TextDecoder;

impl ArrayDecoder for TextDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut texts = StringBuilder::with_capacity(pos.len(), pos.len() * 8);
        let mut kinds = UInt8Builder::with_capacity(pos.len());
        let mut nested = String::new();
        for &p in pos {
            let (text, kind) = match tape.get(p) {
                TapeElement::Null => (None, Kind::Null),
                TapeElement::String(s) => (Some(tape.get_string(s)), Kind::String),
                TapeElement::Number(n) => (Some(tape.get_string(n)), Kind::Number),
                TapeElement::True => (Some("true"), Kind::Bool),
                TapeElement::False => (Some("false"), Kind::Bool),
                TapeElement::StartObject(_) | TapeElement::StartList(_) => {
                    nested.clear();
                    compact(tape, p, &mut nested)?;
                    (Some(nested.as_str()), Kind::Nested)
                }
                other => {
                    return Err(ArrowError::JsonError(format!(
                        "unexpected {other:?} in a value"
                    )))
                }
            };
            texts.append_option(text);
            kinds.append_value(kind as u8);
        }
        let array = StructArray::new(
            text_fields(),
            vec![Arc::new(texts.finish()), Arc::new(kinds.finish())],
            None,
        );
        Ok(Arc::new(array))
    }
}

/// The value at `idx` as compact JSON (strings escaped by serde_json); returns the index after it.
fn compact(tape: &Tape<'_>, idx: u32, out: &mut String) -> Result<u32, ArrowError> {
    let quoted = |s: &str, out: &mut String| {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    };
    Ok(match tape.get(idx) {
        TapeElement::StartObject(end) => {
            out.push('{');
            let mut at = idx + 1;
            while at < end {
                if at > idx + 1 {
                    out.push(',');
                }
                at = compact(tape, at, out)?;
                out.push(':');
                at = compact(tape, at, out)?;
            }
            out.push('}');
            end + 1
        }
        TapeElement::StartList(end) => {
            out.push('[');
            let mut at = idx + 1;
            while at < end {
                if at > idx + 1 {
                    out.push(',');
                }
                at = compact(tape, at, out)?;
            }
            out.push(']');
            end + 1
        }
        TapeElement::String(s) => {
            quoted(tape.get_string(s), out);
            idx + 1
        }
        TapeElement::Number(n) => {
            out.push_str(tape.get_string(n));
            idx + 1
        }
        TapeElement::True => {
            out.push_str("true");
            idx + 1
        }
        TapeElement::False => {
            out.push_str("false");
            idx + 1
        }
        TapeElement::Null => {
            out.push_str("null");
            idx + 1
        }
        other => {
            return Err(ArrowError::JsonError(format!(
                "unexpected {other:?} in a nested value"
            )))
        }
    })
}

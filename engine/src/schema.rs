//! The one type vocabulary of pipeline files, and declared columns as Arrow fields.
//!
//! | written | Arrow type |
//! |---|---|
//! | `string`, `utf8`, `text` | `Utf8` |
//! | `int32`, `integer`, `int` | `Int32` |
//! | `int64`, `long` | `Int64` |
//! | `float32`, `float` | `Float32` |
//! | `double`, `float64` | `Float64` |
//! | `decimal(p,s)` | `Decimal128(p, s)`, exact |
//! | `bool`, `boolean` | `Boolean` |
//! | `date` | `Date32` |
//! | `datetime`, `timestamp` | `Timestamp(Microsecond, TimeZone)` |
//!
//! Nullability: an empty field is null in a `Nullable: true` column and an error otherwise, except
//! for strings, where an empty field in a non-nullable column is the empty string.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use crate::datefmt;
use crate::error::ConfigErrorKind;
use crate::load::config::{ConfigCx, MapReader};
use crate::load::yaml::{Mark, Node};

/// A declared column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Utf8,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Exact decimal with `precision` digits, `scale` of them after the point.
    Decimal {
        /// Total digits, 1..=38.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: i8,
    },
    /// true/false.
    Bool,
    /// Calendar date.
    Date,
    /// Date and time, microseconds; in `tz` when given, else a local (naive) time.
    Timestamp {
        /// IANA name or fixed offset such as `+02:00`.
        tz: Option<Arc<str>>,
    },
}

/// Names accepted in `Type:`, for error messages.
pub const TYPE_NAMES: &str =
    "string, int32, int64, float32, double, decimal(p,s), bool, date, datetime";

impl ColumnType {
    /// Parse a written type name (case-insensitive, aliases allowed).
    pub fn parse(written: &str) -> Result<Self, String> {
        let lower = written.trim().to_ascii_lowercase();
        let t = match lower.as_str() {
            "string" | "utf8" | "text" | "str" => ColumnType::Utf8,
            "int32" | "integer" | "int" => ColumnType::Int32,
            "int64" | "long" => ColumnType::Int64,
            "float32" | "float" => ColumnType::Float32,
            "double" | "float64" => ColumnType::Float64,
            "bool" | "boolean" => ColumnType::Bool,
            "date" | "date32" => ColumnType::Date,
            "datetime" | "timestamp" => ColumnType::Timestamp { tz: None },
            "decimal" => {
                return Err(
                    "`decimal` needs a precision and scale, e.g. `decimal(12,2)`".to_string(),
                )
            }
            _ => return parse_decimal_type(&lower),
        };
        Ok(t)
    }

    /// The Arrow type.
    pub fn to_arrow(&self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp { tz } => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Utf8 => f.write_str("string"),
            ColumnType::Int32 => f.write_str("int32"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float32 => f.write_str("float32"),
            ColumnType::Float64 => f.write_str("double"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Bool => f.write_str("bool"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp { tz: None } => f.write_str("datetime"),
            ColumnType::Timestamp { tz: Some(tz) } => write!(f, "datetime ({tz})"),
        }
    }
}

/// The pipeline-file name of an Arrow type (`string`, `decimal(12,2)`, `datetime`, ...), for messages
/// and for scripts; types outside the vocabulary use Arrow's own name.
pub fn type_name(ty: &DataType) -> String {
    match ty {
        DataType::Utf8 => "string".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "bool".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, _) => "datetime".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Null => "null".into(),
        other => other.to_string(),
    }
}

fn parse_decimal_type(lower: &str) -> Result<ColumnType, String> {
    let unknown = || format!("unknown type `{lower}`; expected one of {TYPE_NAMES}");
    let inner = lower
        .strip_prefix("decimal(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(unknown)?;
    let (p, s) = inner.split_once(',').ok_or_else(unknown)?;
    let precision: u8 = p.trim().parse().map_err(|_| unknown())?;
    let scale: i8 = s.trim().parse().map_err(|_| unknown())?;
    if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
        return Err(format!(
            "`{lower}`: precision must be 1..=38 and scale 0..=precision"
        ));
    }
    Ok(ColumnType::Decimal { precision, scale })
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Declared type.
    pub ty: ColumnType,
    /// Whether an empty field is null (true) or an error (false; strings read "").
    pub nullable: bool,
    /// strftime pattern for dates and datetimes.
    pub format: Option<String>,
    /// Position of the field in the input record, when it is not the column's own position.
    pub index: Option<usize>,
}

impl ColumnSpec {
    /// The Arrow field. It carries no metadata: the `Format` is how the source reads the text,
    /// not part of the data, so it stays with the source's [`ColumnSpec`] (a field's metadata
    /// would make batches from two sources with different formats disagree, and would be written
    /// into Parquet and Arrow files).
    pub fn to_field(&self) -> Field {
        Field::new(&self.name, self.ty.to_arrow(), self.nullable)
    }
}

/// An Arrow schema from declared columns.
pub fn to_schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(ColumnSpec::to_field).collect::<Vec<_>>(),
    ))
}

/// Read a source's required `OutputSchema: { Name, Description, Columns }`; `what` names one
/// column in the hint when it is missing (`column`, `key to read`). Returns `None` after recording
/// errors.
pub fn read_output_schema(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    what: &str,
) -> Option<Vec<ColumnSpec>> {
    let Some(mut s) = m.map(cx, "OutputSchema") else {
        let hint = format!(
            "declare every {what}, e.g. `OutputSchema: {{ Columns: [ {{ Name: id, Type: int64 }} ] }}`"
        );
        let kind = ConfigErrorKind::MissingKey("OutputSchema".into());
        cx.error_with_hint(kind, m.path(), m.mark(), &hint);
        return None;
    };
    let mark = s.mark();
    s.take("Name");
    s.take("Description");
    let list_path = s.key_path("Columns");
    let columns = match s.list(cx, "Columns") {
        Some(items) => read_columns(&items, &list_path, mark, cx),
        None => {
            s.missing(cx, "Columns");
            None
        }
    };
    s.finish(cx);
    columns
}

/// Read a `Columns:` list. Returns `None` after recording errors.
pub fn read_columns(
    items: &[(String, &Node)],
    list_path: &str,
    list_mark: Mark,
    cx: &mut ConfigCx,
) -> Option<Vec<ColumnSpec>> {
    if items.is_empty() {
        let kind = ConfigErrorKind::InvalidValue {
            expected: "at least one column".into(),
            found: "an empty list".into(),
        };
        cx.error(kind, list_path, list_mark);
        return None;
    }
    let mut columns = Vec::with_capacity(items.len());
    let mut ok = true;
    for (path, node) in items {
        match read_column(node, path, cx) {
            Some(c) => columns.push(c),
            None => ok = false,
        }
    }
    for (i, c) in columns.iter().enumerate() {
        if let Some(first) = columns[..i]
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&c.name))
        {
            let msg = format!(
                "duplicate column name `{}` (names match case-insensitively; first declared as `{}`)",
                c.name, first.name
            );
            cx.error(ConfigErrorKind::Graph(msg), &items[i].0, items[i].1.mark);
            ok = false;
        }
    }
    ok.then_some(columns)
}

fn read_column(node: &Node, path: &str, cx: &mut ConfigCx) -> Option<ColumnSpec> {
    let mut m = MapReader::new(node, path, cx)?;
    let name = m.required_string(cx, "Name");
    let ty_mark = m.entry_mark("Type");
    let ty = m
        .required_string(cx, "Type")
        .and_then(|t| match ColumnType::parse(&t) {
            Ok(t) => Some(t),
            Err(msg) => {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: format!("a type ({TYPE_NAMES})"),
                    found: format!("{t:?}"),
                };
                cx.error_with_hint(kind, &m.key_path("Type"), ty_mark, &msg);
                None
            }
        });
    let nullable = match (m.bool(cx, "Nullable"), m.bool(cx, "IsNullable")) {
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => false,
    };
    let index = m
        .integer(cx, "Index", 0, u32::MAX as u64)
        .map(|i| i as usize);
    let format = m.string(cx, "Format");
    let tz = m.string(cx, "TimeZone");
    m.take("Description");
    let mark = m.mark();
    m.finish(cx);

    let mut ty = ty?;
    let name = name?;
    if name.trim().is_empty() {
        cx.error(
            ConfigErrorKind::InvalidValue {
                expected: "a non-empty column name".into(),
                found: "\"\"".into(),
            },
            path,
            mark,
        );
        return None;
    }
    let format = match format {
        None => None,
        Some(_) if !matches!(ty, ColumnType::Date | ColumnType::Timestamp { .. }) => {
            let msg = format!("`Format` applies to date and datetime columns, not {ty}");
            cx.error(ConfigErrorKind::Graph(msg), path, mark);
            return None;
        }
        Some(f) => match datefmt::to_strftime(&f).and_then(|p| {
            datefmt::validate_strftime(&p)?;
            Ok(p)
        }) {
            Ok(p) => Some(p),
            Err(e) => {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "a date format such as `yyyy-MM-dd` or `%Y-%m-%d`".into(),
                    found: format!("{f:?} ({e})"),
                };
                cx.error(kind, path, mark);
                return None;
            }
        },
    };
    if let Some(tz) = tz {
        match &mut ty {
            ColumnType::Timestamp { tz: slot } => {
                if arrow_array::timezone::Tz::from_str(&tz).is_err() {
                    let kind = ConfigErrorKind::InvalidValue {
                        expected: "an IANA time zone (Europe/Paris) or an offset (+02:00)".into(),
                        found: format!("{tz:?}"),
                    };
                    cx.error(kind, path, mark);
                    return None;
                }
                *slot = Some(tz.into());
            }
            _ => {
                let msg = format!("`TimeZone` applies to datetime columns, not {ty}");
                cx.error(ConfigErrorKind::Graph(msg), path, mark);
                return None;
            }
        }
    }
    Some(ColumnSpec {
        name,
        ty,
        nullable,
        format,
        index,
    })
}

/// Describe how two schemas differ, column by column; `None` if they are equal.
pub fn describe_difference(a: &Schema, b: &Schema) -> Option<String> {
    let mut diffs = Vec::new();
    for (i, fa) in a.fields().iter().enumerate() {
        match b.fields().get(i) {
            None => diffs.push(format!("`{}` is missing on one side", fa.name())),
            Some(fb) if fa.name() != fb.name() => diffs.push(format!(
                "column {} is `{}` vs `{}`",
                i + 1,
                fa.name(),
                fb.name()
            )),
            Some(fb) if fa.data_type() != fb.data_type() => diffs.push(format!(
                "`{}` is {} vs {}",
                fa.name(),
                fa.data_type(),
                fb.data_type()
            )),
            _ => {}
        }
    }
    for fb in b.fields().iter().skip(a.fields().len()) {
        diffs.push(format!("`{}` is missing on one side", fb.name()));
    }
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

/// `a` with each column nullable where `a` or `b` allows nulls: the schema batches of both can be
/// conformed to. The two must already agree on names and types ([`describe_difference`]).
pub fn nullable_union(a: &SchemaRef, b: &Schema) -> SchemaRef {
    let widen = |(fa, fb): (&FieldRef, &FieldRef)| !fa.is_nullable() && fb.is_nullable();
    if !a.fields().iter().zip(b.fields()).any(widen) {
        return a.clone();
    }
    let fields: Vec<Field> = a
        .fields()
        .iter()
        .zip(b.fields())
        .map(|(fa, fb)| {
            let nullable = fa.is_nullable() || fb.is_nullable();
            fa.as_ref().clone().with_nullable(nullable)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, a.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::vars::Variables;
    use crate::load::yaml;

    #[test]
    fn aliases_map_to_one_vocabulary() {
        assert_eq!(ColumnType::parse("Integer"), Ok(ColumnType::Int32));
        assert_eq!(ColumnType::parse("long"), Ok(ColumnType::Int64));
        assert_eq!(ColumnType::parse("UTF8"), Ok(ColumnType::Utf8));
        assert_eq!(ColumnType::parse("float64"), Ok(ColumnType::Float64));
        assert_eq!(
            ColumnType::parse("decimal( 12, 2 )"),
            Ok(ColumnType::Decimal {
                precision: 12,
                scale: 2
            })
        );
        assert!(ColumnType::parse("decimal").is_err());
        assert!(ColumnType::parse("decimal(2,3)").is_err());
        assert!(ColumnType::parse("guid")
            .unwrap_err()
            .contains("expected one of"));
    }

    #[test]
    fn columns_become_arrow_fields() {
        let node = yaml::parse(
            "- { Name: id, Type: int64 }\n- { Name: d, Type: date, Format: dd/MM/yyyy, IsNullable: true }\n- { Name: t, Type: datetime, TimeZone: UTC }\n",
        )
        .unwrap();
        let mut cx = ConfigCx::new("p.yaml".into(), "/".into(), Variables::new());
        let yaml::Value::Seq(items) = &node.value else {
            unreachable!()
        };
        let items: Vec<(String, &Node)> = items
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("Columns[{i}]"), n))
            .collect();
        let cols = read_columns(&items, "Columns", node.mark, &mut cx).unwrap();
        assert!(!cx.has_errors());
        let schema = to_schema(&cols);
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert!(schema.field(1).is_nullable());
        assert!(
            schema.field(1).metadata().is_empty(),
            "no internal metadata"
        );
        assert_eq!(cols[1].format.as_deref(), Some("%d/%m/%Y"));
        assert_eq!(
            schema.field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn schema_differences_name_the_columns() {
        let a = Schema::new(vec![Field::new("a", DataType::Int32, false)]);
        let b = Schema::new(vec![Field::new("a", DataType::Utf8, false)]);
        assert_eq!(describe_difference(&a, &b).unwrap(), "`a` is Int32 vs Utf8");
        assert_eq!(describe_difference(&a, &a), None);
    }
}

//! A typed file's columns to the declared schema: which of its columns to read, which safe
//! widenings to apply, and which rows to reject.
//!
//! A column's type must be the declared one or widen to it without loss for every value (int32 to
//! int64, float32 to double, `decimal(5,2)` to `decimal(12,4)`, a dictionary or large string to
//! string, seconds or milliseconds to microseconds). A type that could lose a value is a clear
//! error naming both types, never a silent cast. Two conversions depend on the value, and reject
//! the rows they cannot carry: a null in a column declared not `Nullable`, and a nanosecond
//! timestamp that is not a whole number of microseconds (our `datetime`'s unit).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampNanosecondType;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use flowengine_engine::error::{ColumnRef, RowError, RowErrorKind, RunError, Stage};
use flowengine_engine::schema::{type_name, ColumnSpec, ColumnType};
use flowengine_engine::Batch;

/// How one declared column is made from the file's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum How {
    /// The file's type is the declared one.
    Same,
    /// A widening that keeps every value (arrow-cast).
    Widen,
    /// Nanoseconds to microseconds, rejecting values with a fraction of a microsecond.
    Nanos,
}

#[derive(Debug, Clone)]
struct Step {
    /// The column's place among the columns read (the file's order).
    read: usize,
    how: How,
    /// The file may hold nulls that the declared column may not.
    check_nulls: bool,
    name: String,
    ty: DataType,
}

/// The plan that turns the file's columns into the declared ones.
#[derive(Debug, Clone)]
pub struct Conform {
    /// Indices of the file's top-level columns to read, ascending.
    pub read: Vec<usize>,
    steps: Vec<Step>,
    schema: SchemaRef,
    /// What `--verbose` says about widenings.
    pub notes: Vec<String>,
}

impl Conform {
    /// Plan reading `declared` from a file of schema `file`; an error names every column that is
    /// missing or whose type cannot become the declared one.
    pub fn plan(file: &Schema, declared: &[ColumnSpec], schema: SchemaRef) -> Result<Self, String> {
        let mut found = Vec::with_capacity(declared.len());
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for column in declared {
            let Some((index, field)) = file.column_with_name(&column.name) else {
                problems.push(missing(file, &column.name));
                continue;
            };
            let want = column.ty.to_arrow();
            let Some(how) = how(field.data_type(), &want) else {
                let name = declared_name(field.data_type());
                if ColumnType::parse(&name).is_err() {
                    problems.push(format!(
                        "column `{}` is {} in the file, which no declared type holds; leave it \
                         out of `OutputSchema` (undeclared columns are not read)",
                        column.name,
                        file_type(field.data_type()),
                    ));
                    continue;
                }
                problems.push(format!(
                    "column `{}` is {} in the file and cannot become {} without losing values; \
                     declare it `{}` and convert it with a `Cast` node, or declare a wider type",
                    column.name,
                    file_type(field.data_type()),
                    column.ty,
                    name,
                ));
                continue;
            };
            if how != How::Same {
                notes.push(format!(
                    "column `{}`: the file's {} read as {}",
                    column.name,
                    file_type(field.data_type()),
                    column.ty
                ));
            }
            found.push((index, how, field.is_nullable() && !column.nullable, column));
        }
        if !problems.is_empty() {
            return Err(problems.join("\n  - "));
        }
        let mut read: Vec<usize> = found.iter().map(|f| f.0).collect();
        read.sort_unstable();
        read.dedup();
        let steps = found
            .into_iter()
            .map(|(index, how, check_nulls, column)| Step {
                read: read
                    .binary_search(&index)
                    .expect("every index is in `read`"),
                how,
                check_nulls,
                name: column.name.clone(),
                ty: column.ty.to_arrow(),
            })
            .collect();
        Ok(Conform {
            read,
            steps,
            schema,
            notes,
        })
    }

    /// The declared columns of `data` (the columns in [`Self::read`], in that order), whose first
    /// row is row `first` of the file (from 1); rows that cannot be carried become rejects.
    pub fn apply(
        &self,
        data: &RecordBatch,
        first: u64,
        node: &str,
        file: &Arc<str>,
        rejects: &mut Vec<RowError>,
    ) -> Result<Batch, RunError> {
        let rows = data.num_rows();
        let mut keep: Option<Vec<bool>> = None;
        let mut found = Vec::new();
        let mut columns = Vec::with_capacity(self.steps.len());
        for (c, step) in self.steps.iter().enumerate() {
            let array = data.column(step.read);
            let mut bad = |row: usize, reject: RowError| {
                let keep = keep.get_or_insert_with(|| vec![true; rows]);
                if std::mem::replace(&mut keep[row], false) {
                    found.push(reject);
                }
            };
            let at =
                |row: usize, kind, value: Option<String>, message: String, hint: &str| RowError {
                    node: node.to_string(),
                    stage: Stage::Convert,
                    kind,
                    file: Some(file.clone()),
                    line: None,
                    record: Some(first + row as u64),
                    byte_offset: None,
                    column: Some(ColumnRef {
                        name: step.name.clone(),
                        index: c,
                    }),
                    value,
                    message,
                    hint: Some(hint.to_string()),
                    raw: None,
                };
            if step.check_nulls && array.null_count() > 0 {
                for row in (0..rows).filter(|r| array.is_null(*r)) {
                    let message = format!("`{}` is null in the file", step.name);
                    let hint = "declare the column `Nullable: true`, or fill it before writing";
                    bad(
                        row,
                        at(row, RowErrorKind::NullInRequired, None, message, hint),
                    );
                }
            }
            let column = match step.how {
                How::Same => array.clone(),
                How::Widen => arrow_cast::cast(array, &step.ty).map_err(|e| {
                    RunError::Internal(format!("widening `{}` failed: {e}", step.name))
                })?,
                How::Nanos => {
                    let nanos = array.as_primitive::<TimestampNanosecondType>();
                    for (row, value) in nanos.iter().enumerate() {
                        if value.is_some_and(|v| v % 1000 != 0) {
                            let value = value.map(|v| v.to_string());
                            let message = format!(
                                "`{}` has a fraction of a microsecond, which a datetime cannot hold",
                                step.name
                            );
                            let hint = "round the values to microseconds before writing the file";
                            bad(
                                row,
                                at(row, RowErrorKind::TypeConversion, value, message, hint),
                            );
                        }
                    }
                    arrow_cast::cast(array, &step.ty).map_err(|e| {
                        RunError::Internal(format!("reading `{}` as microseconds: {e}", step.name))
                    })?
                }
            };
            columns.push(column);
        }
        found.sort_by_key(|r| r.record);
        rejects.append(&mut found);
        let mut lines: ArrayRef = Arc::new(UInt64Array::from_iter_values(
            (0..rows as u64).map(|r| first + r),
        ));
        if let Some(keep) = keep {
            // Before the batch is made: a rejected null may not stand in a required column.
            let mask = BooleanArray::from(keep);
            let filter = |a: &ArrayRef| {
                arrow_select::filter::filter(a.as_ref(), &mask)
                    .map_err(|e| RunError::Internal(format!("dropping rejected rows: {e}")))
            };
            columns = columns.iter().map(filter).collect::<Result<_, _>>()?;
            lines = filter(&lines)?;
        }
        let data = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| RunError::Internal(format!("conformed columns do not fit: {e}")))?;
        Ok(Batch::new(
            data,
            Some(file.clone()),
            lines.as_primitive().clone(),
        ))
    }
}

/// A declared column the file does not have, with the file's column of that name in another case.
fn missing(file: &Schema, name: &str) -> String {
    let like = file
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(name));
    match like {
        Some(f) => format!(
            "the file has no column `{name}` (names are compared exactly; it has `{}`)",
            f.name()
        ),
        None => {
            let names: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
            format!(
                "the file has no column `{name}`; its columns are {}",
                names.join(", ")
            )
        }
    }
}

/// A file's column type in messages: the vocabulary's name, with what it leaves out.
fn file_type(ty: &DataType) -> String {
    match ty {
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "seconds",
                TimeUnit::Millisecond => "milliseconds",
                TimeUnit::Microsecond => "microseconds",
                TimeUnit::Nanosecond => "nanoseconds",
            };
            match tz {
                Some(tz) => format!("datetime in {unit} ({tz})"),
                None => format!("datetime in {unit}"),
            }
        }
        DataType::Dictionary(_, value) => format!("dictionary-encoded {}", file_type(value)),
        DataType::LargeUtf8 => "large string".into(),
        DataType::Utf8View => "string view".into(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            "a list".into()
        }
        DataType::Struct(_) => "a struct".into(),
        DataType::Map(_, _) => "a map".into(),
        other => type_name(other).to_lowercase(),
    }
}

/// The type to declare for a file's column, where the vocabulary has one.
fn declared_name(ty: &DataType) -> String {
    match ty {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => "int32".into(),
        DataType::UInt32 => "int64".into(),
        DataType::Float16 => "float32".into(),
        DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Dictionary(_, value) => declared_name(value),
        DataType::Timestamp(_, _) => "datetime".into(),
        other => type_name(other),
    }
}

/// How a file's `from` becomes a declared `to`, if it can for every value.
fn how(from: &DataType, to: &DataType) -> Option<How> {
    use DataType::*;
    if from == to {
        return Some(How::Same);
    }
    let widens = match (from, to) {
        (Dictionary(_, value), _) => return how(value, to).map(|_| How::Widen),
        (Int8 | Int16 | UInt8 | UInt16, Int32) => true,
        (Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32, Int64) => true,
        (Float16 | Int8 | Int16 | UInt8 | UInt16, Float32) => true,
        (Float16 | Float32 | Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32, Float64) => true,
        (LargeUtf8 | Utf8View, Utf8) => true,
        (Decimal32(p0, s0) | Decimal64(p0, s0) | Decimal128(p0, s0), Decimal128(p, s)) => {
            s >= s0 && i16::from(*p) - i16::from(*s) >= i16::from(*p0) - i16::from(*s0)
        }
        (_, Decimal128(p, s)) => {
            integer_digits(from).is_some_and(|d| i16::from(*p) - i16::from(*s) >= d)
        }
        (Timestamp(unit, tz0), Timestamp(TimeUnit::Microsecond, tz)) => {
            // A time zone names how instants are shown; a naive time is not an instant.
            if tz0.is_some() != tz.is_some() {
                return None;
            }
            match unit {
                TimeUnit::Second | TimeUnit::Millisecond => true,
                TimeUnit::Microsecond => true,
                TimeUnit::Nanosecond => return Some(How::Nanos),
            }
        }
        _ => false,
    };
    widens.then_some(How::Widen)
}

/// Decimal digits an integer type's values may need.
fn integer_digits(ty: &DataType) -> Option<i16> {
    Some(match ty {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        DataType::UInt64 => 20,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int32Array, TimestampNanosecondArray};
    use arrow_schema::Field;
    use flowengine_engine::schema::to_schema;

    use super::*;

    fn spec(name: &str, ty: ColumnType, nullable: bool) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            ty,
            nullable,
            format: None,
            index: None,
        }
    }

    #[test]
    fn widenings_keep_every_value_and_nothing_else_passes() {
        use DataType::*;
        let micros = |tz: Option<&str>| Timestamp(TimeUnit::Microsecond, tz.map(Into::into));
        let ok = [
            (Int16, Int32),
            (UInt32, Int64),
            (Float32, Float64),
            (Int32, Float64),
            (Decimal128(5, 2), Decimal128(12, 4)),
            (Int32, Decimal128(12, 2)),
            (Utf8View, Utf8),
            (Dictionary(Box::new(Int32), Box::new(Utf8)), Utf8),
            (Timestamp(TimeUnit::Millisecond, None), micros(None)),
            (
                Timestamp(TimeUnit::Second, Some("UTC".into())),
                micros(Some("+02:00")),
            ),
        ];
        for (from, to) in ok {
            assert_eq!(how(&from, &to), Some(How::Widen), "{from} -> {to}");
        }
        let refused = [
            (Int64, Int32),
            (Int64, Float64),
            (Float64, Float32),
            (UInt64, Int64),
            (Decimal128(12, 4), Decimal128(12, 2)),
            (Decimal128(12, 2), Decimal128(11, 2)),
            (Int64, Decimal128(12, 2)),
            (Utf8, Int32),
            (Timestamp(TimeUnit::Millisecond, None), micros(Some("UTC"))),
            (Date64, Date32),
        ];
        for (from, to) in refused {
            assert_eq!(how(&from, &to), None, "{from} -> {to}");
        }
        assert_eq!(
            how(&Timestamp(TimeUnit::Nanosecond, None), &micros(None)),
            Some(How::Nanos)
        );
    }

    #[test]
    fn rows_the_declared_schema_cannot_carry_are_rejected() {
        let file = Schema::new(vec![
            Field::new("extra", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("n", DataType::Int32, true),
        ]);
        let declared = [
            spec("n", ColumnType::Int64, false),
            spec("t", ColumnType::Timestamp { tz: None }, true),
        ];
        let conform = Conform::plan(&file, &declared, to_schema(&declared)).unwrap();
        assert_eq!(conform.read, [1, 2]);
        assert_eq!(conform.notes.len(), 2);
        let data = RecordBatch::try_new(
            Arc::new(file.project(&[1, 2]).unwrap()),
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(1_000),
                    Some(2_000),
                    Some(3_001),
                ])),
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
            ],
        )
        .unwrap();
        let mut rejects = Vec::new();
        let batch = conform
            .apply(&data, 10, "read", &Arc::from("x.parquet"), &mut rejects)
            .unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.origin.lines.values(), &[10]);
        let found: Vec<_> = rejects.iter().map(|r| (r.record, r.kind)).collect();
        assert_eq!(
            found,
            [
                (Some(11), RowErrorKind::NullInRequired),
                (Some(12), RowErrorKind::TypeConversion)
            ]
        );
    }

    #[test]
    fn a_missing_or_narrowing_column_is_named() {
        let file = Schema::new(vec![
            Field::new("Id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]);
        let declared = [
            spec("id", ColumnType::Int64, false),
            spec("name", ColumnType::Int32, false),
        ];
        let e = Conform::plan(&file, &declared, to_schema(&declared)).unwrap_err();
        assert!(
            e.contains("no column `id`") && e.contains("it has `Id`"),
            "{e}"
        );
        assert!(e.contains("`name` is string in the file"), "{e}");
    }
}

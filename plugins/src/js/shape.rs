//! What a running `JavaScriptTransform` knows about its schemas ([`Shape`]: input columns, the
//! declared output fields, ports, where each output column comes from), why a row failed
//! ([`RowFault`]), and the rows of one batch the script has finished with ([`BatchOut`]: kept rows
//! appended to the output builders, their routes, and the rejected rows with their problems).

use std::collections::HashMap;

use arrow_array::UInt64Array;
use arrow_schema::SchemaRef;
use flowengine_engine::error::RowErrorKind;
use flowengine_engine::schema::{type_name, ColumnType};

use super::config::{FieldSpec, JsConfig};
use super::log::Log;
use super::values::{Builder, Column, Scalar};

/// Why one row failed, before it is placed in its file and line.
#[derive(Debug, Clone)]
pub struct RowFault {
    pub(super) kind: RowErrorKind,
    pub(super) message: String,
    pub(super) hint: Option<String>,
    pub(super) field: Option<(String, usize)>,
    pub(super) value: Option<String>,
}

impl RowFault {
    /// A problem of `kind`.
    pub fn new(kind: RowErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            field: None,
            value: None,
        }
    }

    /// With a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// About output field `name`, the `index`-th declared.
    pub fn with_field(mut self, name: String, index: usize) -> Self {
        self.field = Some((name, index));
        self
    }

    /// With the offending value as the script gave it.
    pub fn with_value(mut self, value: String) -> Self {
        self.value = Some(value);
        self
    }
}

/// A declared output field and the input column it replaces, if any.
#[derive(Debug)]
pub struct OutField {
    /// As declared.
    pub spec: FieldSpec,
    /// The input column of the same name (with `Inherit: true`).
    pub replaces: Option<usize>,
    /// Whether that column has the declared type, so an unset row can keep its input value.
    pub same_type: bool,
}

/// Where each output column comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    Input(usize),
    Field(usize),
}

/// What a batch needs to know about the transform's schemas; shared by every engine.
#[derive(Debug)]
pub struct Shape {
    /// Input column names in order.
    pub input_names: Vec<String>,
    input: SchemaRef,
    input_lower: HashMap<String, usize>,
    /// Declared fields.
    pub fields: Vec<OutField>,
    field_lower: HashMap<String, usize>,
    /// Named ports.
    pub ports: Vec<String>,
    /// Per input column, whether the script can read it from its row object (a column it never
    /// names need not be converted for it on every row).
    pub row_reads: Vec<bool>,
    /// `utils.log` output.
    pub log: Log,
    pub(super) output: SchemaRef,
    pub(super) sources: Vec<Source>,
}

impl Shape {
    pub(super) fn new(config: &JsConfig, input: SchemaRef, output: SchemaRef) -> Self {
        let input_names: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        let input_lower = lower_index(input_names.iter().map(String::as_str));
        let fields: Vec<OutField> = config
            .fields
            .iter()
            .map(|spec| {
                let replaces = config
                    .inherit
                    .then(|| input_lower.get(&spec.name.to_lowercase()).copied())
                    .flatten();
                let same_type =
                    replaces.is_some_and(|c| input.field(c).data_type() == &spec.ty.to_arrow());
                OutField {
                    spec: spec.clone(),
                    replaces,
                    same_type,
                }
            })
            .collect();
        let field_lower = lower_index(fields.iter().map(|f| f.spec.name.as_str()));
        let sources = output
            .fields()
            .iter()
            .map(|f| match field_lower.get(&f.name().to_lowercase()) {
                Some(&i) => Source::Field(i),
                None => Source::Input(input_lower[&f.name().to_lowercase()]),
            })
            .collect();
        let named = super::compiled::names::row_names(&config.script);
        let row_reads = input_names
            .iter()
            .map(|n| named.as_ref().is_none_or(|names| names.contains(n)))
            .collect();
        Self {
            row_reads,
            input_names,
            input,
            input_lower,
            fields,
            field_lower,
            ports: config.ports.clone(),
            log: Log::new(&config.node, config.log_level),
            output,
            sources,
        }
    }

    /// The Arrow type of input column `c`.
    pub fn input_type(&self, c: usize) -> &arrow_schema::DataType {
        self.input.field(c).data_type()
    }

    /// An input column by name, case-insensitively.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        lookup(name, &self.input_names, &self.input_lower)
    }

    /// A declared field by name, case-insensitively.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        let exact = self.fields.iter().position(|f| f.spec.name == name);
        exact.or_else(|| self.field_lower.get(&name.to_lowercase()).copied())
    }

    /// The declared field names, for messages.
    pub fn field_names(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.spec.name.as_str()).collect();
        if names.is_empty() {
            "(none)".into()
        } else {
            names.join(", ")
        }
    }

    /// (name, type, nullable) of every input column, for `context.input.schema()`.
    pub fn input_fields(&self) -> Vec<(String, String, bool)> {
        self.input
            .fields()
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type()), f.is_nullable()))
            .collect()
    }
}

/// Scripts almost always spell names as declared: try that before lower-casing (which allocates).
fn lookup(name: &str, names: &[String], lower: &HashMap<String, usize>) -> Option<usize> {
    let exact = names.iter().position(|n| n == name);
    exact.or_else(|| lower.get(&name.to_lowercase()).copied())
}

fn lower_index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, n) in names.enumerate() {
        map.entry(n.to_lowercase()).or_insert(i);
    }
    map
}

/// `setField` could not convert a value to its field's declared type.
pub fn conversion_fault(
    field: &str,
    index: usize,
    ty: &ColumnType,
    why: &str,
    shown: String,
) -> RowFault {
    RowFault::new(
        RowErrorKind::TypeConversion,
        format!("setField(\"{field}\") ({ty}): {why}"),
    )
    .with_field(field.to_string(), index)
    .with_value(shown)
    .with_hint("convert it in the script (Number(x), String(x), Math.round(x)), or declare a type that fits")
}

/// The script's `context.validate` calls refused the row, with these messages.
pub fn validation_fault(messages: &[String]) -> RowFault {
    let message = format!("validation failed: {}", messages.join("; "));
    RowFault::new(RowErrorKind::Validation, message)
        .with_hint("the script's context.validate calls refused the row; fix the data, or the rule")
}

/// A kept row left unset a field that replaces an input column of another type.
pub fn type_change_fault(name: &str, index: usize, ty: &ColumnType) -> RowFault {
    RowFault::new(
        RowErrorKind::ScriptError,
        format!("field `{name}` changes the type of the input column to {ty}, but the script did not set it on this row"),
    )
    .with_field(name.to_string(), index)
    .with_hint("set it on every kept row, or give the new field its own name")
}

/// A kept row has no value in a required field.
pub fn required_fault(name: &str, index: usize) -> RowFault {
    RowFault::new(
        RowErrorKind::NullInRequired,
        format!("required field `{name}` is null or was not set"),
    )
    .with_field(name.to_string(), index)
    .with_hint(
        "call context.output.setField with a value on every kept row, or drop `Required: true`",
    )
}

/// The rows of one batch the script has finished with.
#[derive(Debug, Default)]
pub struct BatchOut {
    lines: Option<UInt64Array>,
    pub(super) builders: Vec<Builder>,
    /// The declared fields' values on the kept rows, when a compiled script made them whole.
    pub(super) built: Vec<arrow_array::ArrayRef>,
    pub(super) kept: Vec<u32>,
    pub(super) routes: Vec<u64>,
    pub(super) rejects: Vec<(usize, Vec<RowFault>)>,
    /// Reused for each kept row's values.
    scratch: Vec<Scalar>,
}

impl BatchOut {
    pub(super) fn new(shape: &Shape, lines: UInt64Array, rows: usize) -> Self {
        Self {
            builders: shape
                .fields
                .iter()
                .map(|f| Builder::new(&f.spec.ty, rows))
                .collect(),
            lines: Some(lines),
            built: Vec::new(),
            kept: Vec::with_capacity(rows),
            routes: Vec::with_capacity(rows),
            rejects: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A batch's results as a compiled script made them.
    pub(super) fn compiled(
        lines: UInt64Array,
        kept: Vec<u32>,
        routes: Vec<u64>,
        rejects: Vec<(usize, Vec<RowFault>)>,
        built: Vec<arrow_array::ArrayRef>,
    ) -> Self {
        Self {
            lines: Some(lines),
            builders: Vec::new(),
            built,
            kept,
            routes,
            rejects,
            scratch: Vec::new(),
        }
    }

    /// The source line of `row`.
    pub fn line(&self, row: usize) -> u64 {
        self.lines
            .as_ref()
            .filter(|l| row < l.len())
            .map_or(0, |l| l.value(row))
    }

    /// Row `row` is bad.
    pub fn reject(&mut self, row: usize, problems: Vec<RowFault>) {
        self.rejects.push((row, problems));
    }

    /// Row `row` is kept with the values the script set (`None`: not set), going to the outputs
    /// in `route` (bit 0 the default output, bit k the k-th port).
    pub fn keep(
        &mut self,
        row: usize,
        slots: &mut [Option<Scalar>],
        route: u64,
        shape: &Shape,
        columns: &[Column],
    ) {
        let mut values = std::mem::take(&mut self.scratch);
        values.clear();
        let mut problems = Vec::new();
        for ((i, f), slot) in shape
            .fields
            .iter()
            .enumerate()
            .zip(slots.iter_mut().map(Option::take))
        {
            let name = &f.spec.name;
            let value = match (slot, f.replaces) {
                (Some(v), _) => v,
                (None, Some(c)) if f.same_type => columns[c].to_scalar(row),
                (None, Some(_)) => {
                    problems.push(type_change_fault(name, i, &f.spec.ty));
                    Scalar::Null
                }
                (None, None) => Scalar::Null,
            };
            if value == Scalar::Null && f.spec.required {
                problems.push(required_fault(name, i));
            }
            values.push(value);
        }
        if problems.is_empty() {
            for (b, v) in self.builders.iter_mut().zip(&values) {
                b.append(v);
            }
            self.kept.push(row as u32);
            self.routes.push(route);
        } else {
            self.reject(row, problems);
        }
        self.scratch = values;
    }
}

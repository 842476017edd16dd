//! `Cast`: change the declared type of columns. A value that does not convert exactly (text that
//! is not a number, a fraction cast to an integer, a decimal that would round) is a
//! `TYPE_CONVERSION` reject with its line, column and value; the error policy decides the rest.
//!
//! ```yaml
//! Config:
//!   Columns: { age: int64, account_value: "decimal(12,2)", signup: date }
//! ```

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowengine_engine::component::{BuildCx, BuiltTransform, NodeCx, Transform, TransformConfig};
use flowengine_engine::error::{BuildError, ColumnRef, PlanError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::schema::TYPE_NAMES;
use flowengine_engine::Batch;

use super::coerce::{castable, declared_type};
use super::eval::{convert, CastFailures};
use super::type_name;
use super::{filter_columns, find_column, read_columns, reject_failures, run_error};
use super::{unknown_column, FailureSite};

/// Parsed `Cast` config.
#[derive(Debug, Clone)]
pub struct CastConfig {
    columns: Vec<(String, Target)>,
}

/// The column index and target type of every cast, in the order written.
type Casts = Vec<(usize, DataType)>;

/// One column's cast as written.
#[derive(Debug, Clone)]
struct Target {
    /// The key's YAML path, for plan-time errors.
    path: String,
    ty: DataType,
}

/// Parse a `Cast` `Config` map: `Columns`, a map from column name to type.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let columns = read_columns(m, cx, "column: type", |node, path, mark, cx| {
        let written = node.as_scalar().and_then(|s| cx.substitute(s, &path, mark));
        match written.as_deref().map(declared_type) {
            Some(Ok(ty)) => Some(Target { path, ty }),
            Some(Err(_)) | None => {
                let found =
                    written.map_or_else(|| node.kind_name().to_string(), |w| format!("{w:?}"));
                let kind = flowengine_engine::error::ConfigErrorKind::InvalidValue {
                    expected: format!("a type ({TYPE_NAMES})"),
                    found,
                };
                cx.error(kind, &path, mark);
                None
            }
        }
    })?;
    Some(Box::new(CastConfig { columns }))
}

impl CastConfig {
    /// The column index and target type of every cast, and the output schema.
    fn plan(&self, input: &Schema) -> Result<(Casts, SchemaRef), Vec<PlanError>> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut casts = Vec::new();
        let mut errors = Vec::new();
        for (name, Target { path, ty }) in &self.columns {
            // No position: the message has always named the key without one.
            let problem = |message: String| PlanError::at(path, None, message);
            let Some(i) = find_column(input, name) else {
                errors.push(problem(unknown_column(input, name)));
                continue;
            };
            let from = input.field(i).data_type();
            if !castable(from, ty) {
                errors.push(problem(format!(
                    "a {} column cannot be cast to {}",
                    type_name(from),
                    type_name(ty)
                )));
                continue;
            }
            if casts.iter().any(|(k, _)| *k == i) {
                errors.push(problem(format!("column `{name}` is cast twice")));
                continue;
            }
            // The declared parse format belongs to the old type.
            fields[i] = Field::new(
                fields[i].name().clone(),
                ty.clone(),
                fields[i].is_nullable(),
            );
            casts.push((i, ty.clone()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((casts, Arc::new(Schema::new(fields))))
    }
}

impl TransformConfig for CastConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.plan(input).map(|(_, s)| s)
    }

    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let (casts, schema) = self.plan(&input).map_err(|errors| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&errors),
        })?;
        Ok(BuiltTransform::batches(Cast {
            node: cx.node.clone(),
            casts,
            schema,
        }))
    }
}

struct Cast {
    node: String,
    casts: Vec<(usize, DataType)>,
    schema: SchemaRef,
}

impl Transform for Cast {
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let err = |e| run_error(&self.node, e);
        let mut columns = batch.data.columns().to_vec();
        let mut failures = Vec::new();
        for (i, ty) in &self.casts {
            let input = columns[*i].clone();
            let (out, failed) = convert(&input, ty).map_err(err)?;
            if let Some(rows) = failed {
                let site = FailureSite {
                    column: Some(ColumnRef {
                        name: self.schema.field(*i).name().clone(),
                        index: *i,
                    }),
                    hint: "fix the value, or declare the column with a type that holds it",
                };
                let failure = CastFailures {
                    rows,
                    values: input,
                    target: ty.clone(),
                };
                failures.push((site, failure));
            }
            columns[*i] = out;
        }
        let (batch, columns) =
            match reject_failures(&self.node, &batch, &failures, rejects).map_err(err)? {
                Some(keep) => (
                    batch.filter(&keep).map_err(err)?,
                    filter_columns(&columns, &keep).map_err(err)?,
                ),
                None => (batch, columns),
            };
        let data = RecordBatch::try_new(self.schema.clone(), columns).map_err(err)?;
        batch.with_data(data).map_err(err)
    }
}

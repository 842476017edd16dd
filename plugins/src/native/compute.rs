//! `Compute`: add or replace columns, each computed from an expression.
//!
//! ```yaml
//! Config:
//!   Columns:
//!     full_name: "first_name || ' ' || last_name"
//!     age: "age + 1"            # an existing name replaces that column in place
//! ```
//!
//! Expressions are computed in the order written, and each sees the columns defined above it. A
//! value a `CAST` cannot convert rejects its row.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use flowengine_engine::component::{BuildCx, BuiltTransform, NodeCx, Transform, TransformConfig};
use flowengine_engine::error::{BuildError, ColumnRef, PlanError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

use super::run_error;
use super::tree::Expr;
use super::{eval, filter_columns, find_column, read_columns, reject_failures};
use super::{FailureSite, Written};

/// Parsed `Compute` config.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    columns: Vec<(String, Written)>,
}

/// Parse a `Compute` `Config` map: `Columns`, a map from column name to expression.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let columns = read_columns(m, cx, "name: expression", |node, path, mark, cx| {
        Written::parse(node, path, mark, cx)
    })?;
    Some(Box::new(ComputeConfig { columns }))
}

/// One computed column: where it goes and how it is computed.
#[derive(Debug)]
struct Step {
    /// Its index in the output (an existing column's, or the next new one).
    index: usize,
    name: String,
    expr: Expr,
}

impl ComputeConfig {
    /// Type-check every expression against the schema as it stands when it runs.
    fn plan(&self, input: &SchemaRef) -> Result<(Vec<Step>, SchemaRef), Vec<PlanError>> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut steps = Vec::with_capacity(self.columns.len());
        let mut errors = Vec::new();
        for (name, written) in &self.columns {
            let schema = Schema::new(fields.clone());
            let expr = match written.check(&schema) {
                Ok(e) => super::coerce::as_column(e),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let field = Field::new(name.clone(), expr.ty.clone(), expr.nullable);
            let index = match find_column(&schema, name) {
                Some(i) => {
                    fields[i] = field;
                    i
                }
                None => {
                    fields.push(field);
                    fields.len() - 1
                }
            };
            steps.push(Step {
                index,
                name: name.clone(),
                expr,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((steps, Arc::new(Schema::new(fields))))
    }
}

impl TransformConfig for ComputeConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.plan(input).map(|(_, schema)| schema)
    }

    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let (steps, schema) = self.plan(&input).map_err(|errors| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&errors),
        })?;
        Ok(BuiltTransform::batches(Compute {
            node: cx.node.clone(),
            steps,
            schema,
        }))
    }
}

struct Compute {
    node: String,
    steps: Vec<Step>,
    schema: SchemaRef,
}

impl Transform for Compute {
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let err = |e| run_error(&self.node, e);
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.data.columns().to_vec();
        let mut failures = Vec::new();
        for step in &self.steps {
            let mut failed = Vec::new();
            let value = eval::evaluate(&step.expr, &columns, rows, &mut failed).map_err(err)?;
            failures.extend(failed.into_iter().map(|f| {
                let site = FailureSite {
                    column: Some(ColumnRef {
                        name: step.name.clone(),
                        index: step.index,
                    }),
                    hint: "a CAST in this column's expression could not convert the value; fix it, or use TRY_CAST to get null",
                };
                (site, f)
            }));
            if step.index == columns.len() {
                columns.push(value);
            } else {
                columns[step.index] = value;
            }
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

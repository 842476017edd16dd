//! `Filter`: keep the rows where `Condition` is true. A false or null condition drops the row
//! (counted as filtered); a value a `CAST` in the condition cannot convert rejects the row.

use std::sync::Arc;

use arrow_arith::boolean::{and, or};
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, BooleanArray};
use arrow_schema::{DataType, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, RowCondition, Transform, TransformConfig,
};
use flowengine_engine::error::{BuildError, PlanError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

use super::tree::{Expr, Kind};
use super::{eval, reject_failures, run_error, FailureSite, Written};

/// Parsed `Filter` config.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    node: String,
    condition: Written,
}

/// Parse a `Filter` `Config` map: `Condition` (required).
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let condition = Written::required(m, cx, "Condition")?;
    Some(Box::new(FilterConfig {
        node: node.node.clone(),
        condition,
    }))
}

impl FilterConfig {
    fn check(&self, input: &SchemaRef) -> Result<Expr, PlanError> {
        let e = self.condition.check(input)?;
        if !matches!(e.ty, DataType::Boolean | DataType::Null) {
            return Err(self.condition.error(format!(
                "the condition must be a bool, found {}\n    {}",
                super::type_name(&e.ty),
                self.condition.text
            )));
        }
        Ok(e)
    }
}

impl TransformConfig for FilterConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.check(input)
            .map(|_| input.clone())
            .map_err(|e| vec![e])
    }

    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let condition = self.check(&input).map_err(|e| BuildError::Invalid {
            node: cx.node.clone(),
            message: e.to_string(),
        })?;
        Ok(BuiltTransform::batches(Filter {
            node: cx.node.clone(),
            condition: Arc::new(condition),
        }))
    }

    /// The condition over just the columns it reads, so a source converts those first and
    /// builds the other columns only for the rows that pass.
    fn condition(&self, input: &SchemaRef) -> Option<Arc<dyn RowCondition>> {
        let full = self.check(input).ok()?;
        let mut columns = Vec::new();
        columns_read(&full, &mut columns);
        columns.sort_unstable();
        columns.dedup();
        let projected = Arc::new(input.project(&columns).ok()?);
        let condition = self.check(&projected).ok()?;
        Some(Arc::new(Early {
            node: self.node.clone(),
            columns,
            condition,
        }))
    }
}

/// Every column `e` reads, in the order met (with repeats).
fn columns_read(e: &Expr, out: &mut Vec<usize>) {
    if let Kind::Column(i) = e.kind {
        out.push(i);
    }
    for child in e.children() {
        columns_read(child, out);
    }
}

/// Which rows pass, from the condition's value: false and null do not.
pub(crate) fn passing(value: &ArrayRef, rows: usize) -> BooleanArray {
    match value.data_type() {
        // `WHERE NULL`: nothing passes.
        DataType::Null => BooleanArray::from(vec![false; rows]),
        _ => eval::true_where_valid(value.as_boolean()),
    }
}

/// A `Filter`'s condition as its source evaluates it, over the columns it reads.
#[derive(Debug)]
struct Early {
    node: String,
    columns: Vec<usize>,
    /// Checked against the schema of just `columns`.
    condition: Expr,
}

impl RowCondition for Early {
    fn columns(&self) -> &[usize] {
        &self.columns
    }

    fn may_keep(&self, columns: &[ArrayRef], rows: usize) -> Result<BooleanArray, RunError> {
        let err = |e| run_error(&self.node, e);
        let mut failures = Vec::new();
        let value = eval::evaluate(&self.condition, columns, rows, &mut failures).map_err(err)?;
        let mut keep = passing(&value, rows);
        // A value a CAST cannot convert rejects its row in the `Filter`: let the row reach it.
        for f in &failures {
            keep = or(&keep, &eval::true_where_valid(&f.rows)).map_err(err)?;
        }
        Ok(keep)
    }
}

struct Filter {
    node: String,
    condition: Arc<Expr>,
}

impl Transform for Filter {
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let err = |e| run_error(&self.node, e);
        let mut failures = Vec::new();
        let columns = batch.data.columns();
        let value = eval::evaluate(&self.condition, columns, batch.num_rows(), &mut failures)
            .map_err(err)?;
        let mut keep = passing(&value, batch.num_rows());
        let sited: Vec<_> = failures
            .into_iter()
            .map(|f| {
                let site = FailureSite {
                    column: None,
                    hint: "a CAST in `Condition` could not convert this value; fix it, or use TRY_CAST to get null",
                };
                (site, f)
            })
            .collect();
        if let Some(ok) = reject_failures(&self.node, &batch, &sited, rejects).map_err(err)? {
            keep = and(&keep, &ok).map_err(err)?;
        }
        if keep.true_count() == keep.len() {
            return Ok(batch);
        }
        batch.filter(&keep).map_err(err)
    }
}

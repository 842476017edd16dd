//! `Filter`: keep the rows where `Condition` is true. A false or null condition drops the row
//! (counted as filtered); a value a `CAST` in the condition cannot convert rejects the row.

use std::sync::Arc;

use arrow_arith::boolean::and;
use arrow_array::cast::AsArray;
use arrow_schema::{DataType, SchemaRef};
use flowengine_engine::component::{BuildCx, NodeCx, Transform, TransformConfig};
use flowengine_engine::config::{ConfigCx, MapReader};
use flowengine_engine::error::{BuildError, RowError, RunError};
use flowengine_engine::Batch;

use super::expr::Expr;
use super::{eval, reject_failures, run_error, FailureSite, Written};

/// Parsed `Filter` config.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    condition: Written,
}

/// Parse a `Filter` `Config` map: `Condition` (required).
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let condition = Written::required(m, cx, "Condition")?;
    Some(Box::new(FilterConfig { condition }))
}

impl FilterConfig {
    fn check(&self, input: &SchemaRef) -> Result<Expr, String> {
        let e = self.condition.check(input)?;
        if !matches!(e.ty, DataType::Boolean | DataType::Null) {
            return Err(self.condition.blame(&format!(
                "the condition must be a bool, found {}\n    {}",
                super::type_name(&e.ty),
                self.condition.text
            )));
        }
        Ok(e)
    }
}

impl TransformConfig for FilterConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, String> {
        self.check(input).map(|_| input.clone())
    }

    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<Box<dyn Transform>, BuildError> {
        let condition = self.check(&input).map_err(|message| BuildError::Invalid {
            node: cx.node.clone(),
            message,
        })?;
        Ok(Box::new(Filter {
            node: cx.node.clone(),
            condition: Arc::new(condition),
        }))
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
        let mut keep = match value.data_type() {
            // `WHERE NULL`: nothing passes.
            DataType::Null => arrow_array::BooleanArray::from(vec![false; batch.num_rows()]),
            _ => eval::true_where_valid(value.as_boolean()),
        };
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

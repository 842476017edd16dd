//! `Select`: keep, drop, reorder and rename columns. No value is touched, so it cannot reject.
//!
//! ```yaml
//! Config:
//!   Columns: [id, full_name, { Name: value_band, As: band }]   # keep these, in this order
//!   # or: Drop: [notes, email]                                # keep all others, in order
//!   # Rename: { customer_id: cust }                           # with either
//! ```

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use flowengine_engine::component::{BuildCx, BuiltTransform, NodeCx, Transform, TransformConfig};
use flowengine_engine::error::{BuildError, ConfigErrorKind, PlanError, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::load::yaml::Node;
use flowengine_engine::Batch;

use super::{find_column, run_error, unknown_column};

/// Which columns go out.
#[derive(Debug, Clone)]
enum Pick {
    /// These, in this order, each with an optional new name.
    Keep(Vec<(String, Option<String>)>),
    /// All but these, in input order.
    Drop(Vec<String>),
}

/// Parsed `Select` config.
#[derive(Debug, Clone)]
pub struct SelectConfig {
    pick: Pick,
    rename: Vec<(String, String)>,
}

/// Parse a `Select` `Config` map: exactly one of `Columns` and `Drop`, and optional `Rename`.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let keep = m.list(cx, "Columns").map(|items| {
        items
            .into_iter()
            .map(|(path, node)| keep_item(node, path, cx))
            .collect::<Option<Vec<_>>>()
    });
    let drop = m.list(cx, "Drop").map(|items| {
        items
            .into_iter()
            .map(|(path, node)| name(node, &path, cx))
            .collect::<Option<Vec<_>>>()
    });
    let rename = m.map(cx, "Rename").map(|mut r| {
        let mut pairs = Vec::new();
        for (key, mark, value) in r.take_all() {
            let path = format!("{}.{key}", r.path());
            match value.as_scalar() {
                Some(to) => pairs.push((key.to_string(), cx.substitute(to, &path, mark)?)),
                None => {
                    not_a_name(cx, &path, value);
                    return None;
                }
            }
        }
        Some(pairs)
    });
    let pick = match (keep, drop) {
        (Some(keep), None) => Pick::Keep(keep?),
        (None, Some(drop)) => Pick::Drop(drop?),
        (Some(_), Some(_)) => {
            let kind = ConfigErrorKind::InvalidValue {
                expected: "one of `Columns` (keep) and `Drop`".into(),
                found: "both".into(),
            };
            cx.error(kind, m.path(), m.mark());
            return None;
        }
        (None, None) if rename.is_some() => Pick::Drop(Vec::new()),
        (None, None) => {
            let kind = ConfigErrorKind::MissingKey("Columns` or `Drop` (or `Rename`)".into());
            cx.error(kind, m.path(), m.mark());
            return None;
        }
    };
    let rename = rename.unwrap_or(Some(Vec::new()))?;
    Some(Box::new(SelectConfig { pick, rename }))
}

fn not_a_name(cx: &mut ConfigCx, path: &str, node: &Node) {
    let kind = ConfigErrorKind::InvalidValue {
        expected: "a column name".into(),
        found: node.kind_name().into(),
    };
    cx.error(kind, path, node.mark);
}

/// A column name written as a scalar, substituted.
pub(crate) fn name(node: &Node, path: &str, cx: &mut ConfigCx) -> Option<String> {
    match node.as_scalar() {
        Some(s) => cx.substitute(s, path, node.mark),
        None => {
            not_a_name(cx, path, node);
            None
        }
    }
}

/// `id` or `{ Name: id, As: customer }`.
pub(crate) fn keep_item(
    node: &Node,
    path: String,
    cx: &mut ConfigCx,
) -> Option<(String, Option<String>)> {
    if node.as_scalar().is_some() {
        return name(node, &path, cx).map(|n| (n, None));
    }
    let mut e = MapReader::new(node, path, cx)?;
    let column = e.required_string(cx, "Name");
    let alias = e.string(cx, "As");
    e.finish(cx);
    Some((column?, alias))
}

impl SelectConfig {
    /// The input index and output name of every output column.
    fn plan(&self, input: &Schema) -> Result<Vec<(usize, String)>, Vec<PlanError>> {
        let mut errors = Vec::new();
        let find = |n: &str, errors: &mut Vec<String>| {
            let found = find_column(input, n);
            if found.is_none() {
                errors.push(unknown_column(input, n));
            }
            found
        };
        let mut out: Vec<(usize, String)> = match &self.pick {
            Pick::Keep(items) => items
                .iter()
                .filter_map(|(n, alias)| {
                    let i = find(n, &mut errors)?;
                    Some((
                        i,
                        alias
                            .clone()
                            .unwrap_or_else(|| input.field(i).name().clone()),
                    ))
                })
                .collect(),
            Pick::Drop(names) => {
                let dropped: Vec<usize> =
                    names.iter().filter_map(|n| find(n, &mut errors)).collect();
                (0..input.fields().len())
                    .filter(|i| !dropped.contains(i))
                    .map(|i| (i, input.field(i).name().clone()))
                    .collect()
            }
        };
        for (from, to) in &self.rename {
            let Some(i) = find(from, &mut errors) else {
                continue;
            };
            match out.iter_mut().find(|(k, _)| *k == i) {
                Some(slot) => slot.1 = to.clone(),
                None => errors.push(format!("`Rename` names `{from}`, which is not selected")),
            }
        }
        for (k, (_, n)) in out.iter().enumerate() {
            if out[..k].iter().any(|(_, m)| m.eq_ignore_ascii_case(n)) {
                errors.push(format!(
                    "two output columns are named `{n}` (names are compared case-insensitively)"
                ));
            }
        }
        if out.is_empty() && errors.is_empty() {
            errors.push("no column is left".into());
        }
        // Names here are not kept with their positions, so each problem is the node's.
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.into_iter().map(PlanError::new).collect())
        }
    }

    fn schema(input: &Schema, plan: &[(usize, String)]) -> SchemaRef {
        let fields: Vec<_> = plan
            .iter()
            .map(|(i, n)| input.field(*i).clone().with_name(n.clone()))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

impl TransformConfig for SelectConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.plan(input).map(|p| Self::schema(input, &p))
    }

    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let plan = self.plan(&input).map_err(|errors| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&errors),
        })?;
        Ok(BuiltTransform::batches(Select {
            node: cx.node.clone(),
            schema: Self::schema(&input, &plan),
            indices: plan.into_iter().map(|(i, _)| i).collect(),
        }))
    }
}

struct Select {
    node: String,
    schema: SchemaRef,
    indices: Vec<usize>,
}

impl Transform for Select {
    fn apply(&self, batch: Batch, _: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let columns = self
            .indices
            .iter()
            .map(|&i| batch.data.column(i).clone())
            .collect();
        let data = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| run_error(&self.node, e))?;
        batch.with_data(data).map_err(|e| run_error(&self.node, e))
    }
}

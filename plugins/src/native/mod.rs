//! Native column transforms: `Filter`, `Compute`, `Select` and `Cast`, on Arrow kernels.
//!
//! The expression language (documented in `docs/expressions.md`) goes through `parse` (text →
//! sqlparser AST), `check` (AST → the typed [`tree::Expr`], with the rules of `coerce`) and `eval`
//! (the tree on whole columns). Each stage depends only on the ones before it and on `tree`. The transforms are thin: read the config, check it against the
//! input schema when the planner asks for the output schema, and at run time evaluate, reject the
//! rows a conversion failed on, and drop the rows a condition did not keep. Every one of them is
//! parallel by batch; the executor keeps the order.
//!
//! # Design
//!
//! Expressions go through three stages, matching the pipeline's own:
//!
//! 1. **Parse, at load** (`parse::parse`, called from `Written::parse` in this module). sqlparser's
//!    `Parser::parse_expr` with the generic dialect gives an AST with spans; trailing tokens are an error. A
//!    syntax error is a `ConfigError` at the YAML position of the value, so it is collected with the others.
//! 2. **Type-check, at plan** (`check::check`). `TransformConfig::output_schema` is the only place the
//!    input schema is known. Each problem is a `PlanError` carrying the YAML path and position of the
//!    expression (kept from load in `Written`); its message shows the column inside the expression with a
//!    caret, and the known columns. Every problem of one plugin is returned at once, and the planner
//!    lists them under the node. `check` resolves names to
//!    column indices, coerces operands (a constant takes the type of the column it meets when it converts
//!    exactly; otherwise both widen), folds constant sub-expressions, and records the result type and
//!    nullability of every node. `build` checks again (cheap) to get the typed tree.
//! 3. **Evaluate, per batch** (`eval::evaluate`). Each node maps whole arrays to whole arrays with
//!    arrow-arith (arithmetic, Kleene `AND`/`OR`), arrow-ord (comparison), arrow-string (`LIKE`,
//!    `substr`), arrow-select (`zip` for `CASE`/`COALESCE`, `nullif` for division by zero) and arrow-cast.
//!    Constants stay one-value arrays and reach kernels as `Scalar` datums. `||`, `upper`/`lower`/`trim`,
//!    `length` and `replace` are tight loops over a `StringArray` with a pre-sized builder, since Arrow has
//!    no kernel for them.
//!
//! A `CAST` that cannot convert a value (checked exactly: a numeric conversion must round-trip) makes the
//! value null and records a `CastFailures` (a row mask, the input values, the target type). The transform turns
//! failures into `TYPE_CONVERSION` rejects (`reject_failures`, with the batch's `Origin` for file and line)
//! and removes those rows; the executor applies the policy. `CASE` evaluates every branch on every row
//! (that is what `zip` needs) but keeps a branch's failures only on the rows that branch takes, as a
//! row-at-a-time engine would. `Filter` removes false and null rows without
//! rejecting them, so they count as filtered. All four declare `parallel()`, so the executor runs them on
//! its pool and keeps the order.
//!
//! **A `Filter` right after a `DelimitedSource` is evaluated while decoding** (late materialization).
//! `FilterConfig::condition` re-checks the condition against the schema of just the columns it reads. The
//! source converts those columns for every record of a range, evaluates the condition, and converts the
//! other columns only for the records it may keep (`convert::Take`). Records it rules out are still
//! *checked* (`Take::Check`: parsed, UTF-8-checked and reported, but not appended), so a bad value is a
//! reject or a failed run exactly as without the optimization, and the golden cases
//! `native-filter-early-*` hold that. A row a `CAST` in the condition cannot convert is kept, so the
//! `Filter` rejects it itself. The `Filter` still evaluates the condition on what arrives (all rows pass,
//! so it returns the batch unchanged). On J2 about 42% of the rows are filtered, and building the other
//! ten columns only for the rest saved about 7% of CPU time at 10M rows.

pub mod cast;
pub mod check;
pub mod coerce;
pub mod compute;
pub mod eval;
pub mod filter;
pub mod parse;
pub mod select;
#[cfg(test)]
mod tests;
pub mod tree;

use arrow_array::{Array, ArrayRef, BooleanArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::Schema;
use flowengine_engine::error::{
    ColumnRef, ConfigErrorKind, PlanError, RowError, RowErrorKind, Stage,
};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::load::yaml::{Mark, Node};
use flowengine_engine::schema::type_name;
use flowengine_engine::Batch;

use eval::CastFailures;
use tree::Expr;

/// An expression as written in the pipeline file: its text, its syntax tree, and where it was
/// written, so a type error found later (against the input schema) can still point at it.
#[derive(Debug, Clone)]
pub struct Written {
    text: String,
    ast: sqlparser::ast::Expr,
    path: String,
    mark: Mark,
}

impl Written {
    /// Read and parse the expression in `node` (the value at `path`). A syntax error is reported
    /// in `cx` at the value's position.
    fn parse(node: &Node, path: String, mark: Mark, cx: &mut ConfigCx) -> Option<Written> {
        let Some(raw) = node.as_scalar() else {
            let kind = ConfigErrorKind::InvalidValue {
                expected: "an expression (a string)".into(),
                found: node.kind_name().into(),
            };
            cx.error(kind, &path, mark);
            return None;
        };
        let text = cx.substitute(raw, &path, node.mark)?;
        match parse::parse(&text) {
            Ok(ast) => Some(Written {
                mark: node.mark,
                text,
                ast,
                path,
            }),
            Err(e) => {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "an expression (see docs/expressions.md)".into(),
                    found: format!("a syntax error: {}", e.render(&text)),
                };
                cx.error(kind, &path, node.mark);
                None
            }
        }
    }

    /// Read the required expression under `key`.
    fn required(m: &mut MapReader<'_>, cx: &mut ConfigCx, key: &'static str) -> Option<Written> {
        let Some(field) = m.take(key) else {
            m.missing(cx, key);
            return None;
        };
        Written::parse(field.node, m.key_path(key), field.mark, cx)
    }

    /// An expression written inside another value (an aggregate's `FILTER (WHERE ...)`), placed
    /// at that value's `path` and `mark`; a syntax error comes back as its message.
    pub(crate) fn from_text(text: &str, path: String, mark: Mark) -> Result<Written, String> {
        let ast = parse::parse(text).map_err(|e| e.render(text))?;
        Ok(Written {
            text: text.to_string(),
            ast,
            path,
            mark,
        })
    }

    /// Type-check against `schema`; the error names where the expression was written and the
    /// position in it (and, for an unknown column, the known columns).
    pub(crate) fn check(&self, schema: &Schema) -> Result<Expr, PlanError> {
        check::check(&self.ast, schema).map_err(|e| self.error(e.render(&self.text)))
    }

    /// A plan-time problem with this expression, placed at its key and value.
    pub(crate) fn error(&self, message: impl Into<String>) -> PlanError {
        PlanError::at(&self.path, Some(self.mark), message)
    }
}

/// Read `Columns`, a required, non-empty map from column name to a value that `read` turns into a
/// `T` (reporting its own errors and returning `None`). `entry` describes one entry, for the
/// message about an empty map.
fn read_columns<T>(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    entry: &str,
    mut read: impl FnMut(&Node, String, Mark, &mut ConfigCx) -> Option<T>,
) -> Option<Vec<(String, T)>> {
    let Some(mut map) = m.map(cx, "Columns") else {
        if !m.has("Columns") {
            m.missing(cx, "Columns");
        }
        return None;
    };
    let mut columns = Vec::new();
    let mut ok = true;
    for (name, mark, node) in map.take_all() {
        let path = format!("{}.{name}", map.path());
        match read(node, path, mark, cx) {
            Some(value) => columns.push((name.to_string(), value)),
            None => ok = false,
        }
    }
    if columns.is_empty() && ok {
        m.invalid(
            cx,
            "Columns",
            &format!("at least one `{entry}`"),
            "an empty map",
        );
        return None;
    }
    ok.then_some(columns)
}

/// What a failed conversion is called in the reject: its column, and the hint.
pub(crate) struct FailureSite {
    pub(crate) column: Option<ColumnRef>,
    pub(crate) hint: &'static str,
}

/// Turn conversion failures into rejects (in row order, the first failure of each row) and the
/// mask of rows that stay. `None` when nothing failed.
pub(crate) fn reject_failures(
    node: &str,
    batch: &Batch,
    failures: &[(FailureSite, CastFailures)],
    rejects: &mut Vec<RowError>,
) -> Result<Option<BooleanArray>, arrow_schema::ArrowError> {
    if failures.is_empty() {
        return Ok(None);
    }
    let rows = batch.num_rows();
    let mut failed = vec![None::<usize>; rows];
    for (k, (_, f)) in failures.iter().enumerate() {
        for (i, slot) in failed.iter_mut().enumerate() {
            if slot.is_none() && f.rows.is_valid(i) && f.rows.value(i) {
                *slot = Some(k);
            }
        }
    }
    let options = FormatOptions::default();
    for (i, k) in failed.iter().enumerate() {
        let Some(k) = *k else { continue };
        let (site, f) = &failures[k];
        let value = ArrayFormatter::try_new(f.values.as_ref(), &options)?
            .value(i)
            .to_string();
        rejects.push(RowError {
            node: node.to_string(),
            stage: Stage::Convert,
            kind: RowErrorKind::TypeConversion,
            file: batch.origin.file.clone(),
            line: batch.origin.line(i),
            record: None,
            byte_offset: None,
            column: site.column.clone(),
            message: format!(
                "{} cannot be converted to {}",
                flowengine_engine::error::quote_value(&value),
                type_name(&f.target)
            ),
            value: Some(value),
            hint: Some(site.hint.to_string()),
            raw: None,
        });
    }
    Ok(Some(failed.iter().map(|k| Some(k.is_none())).collect()))
}

/// Every column of `columns` filtered by `keep`.
fn filter_columns(
    columns: &[ArrayRef],
    keep: &BooleanArray,
) -> Result<Vec<ArrayRef>, arrow_schema::ArrowError> {
    columns
        .iter()
        .map(|c| arrow_select::filter::filter(c.as_ref(), keep))
        .collect()
}

/// The position of `name` among `schema`'s columns: exact, else the one case-insensitive match.
pub(crate) fn find_column(schema: &Schema, name: &str) -> Option<usize> {
    let fields = schema.fields();
    fields.iter().position(|f| f.name() == name).or_else(|| {
        let mut matches =
            (0..fields.len()).filter(|&i| fields[i].name().eq_ignore_ascii_case(name));
        let first = matches.next()?;
        matches.next().is_none().then_some(first)
    })
}

pub(crate) fn unknown_column(schema: &Schema, name: &str) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let suggestion = flowengine_engine::load::config::closest(name, &names)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!(
        "unknown column `{name}`{suggestion}; known columns: {}",
        names.join(", ")
    )
}

/// Wrap a kernel failure (an overflow, say) as the run's error for this node.
fn run_error(node: &str, e: arrow_schema::ArrowError) -> flowengine_engine::error::RunError {
    flowengine_engine::error::RunError::Node {
        node: node.to_string(),
        message: e.to_string(),
    }
}

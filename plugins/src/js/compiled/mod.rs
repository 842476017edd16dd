//! A script compiled to columnar code: `process(context)` analysed once at plan time
//! ([`analyse`]) into a [`Plan`] of whole-batch expressions ([`eval`]), so a batch runs as a few
//! passes over its columns instead of one boa call per row.
//!
//! JavaScript's semantics are the contract: the same rows kept, filtered and rejected (with the
//! same messages), the same values, the same routes as on boa. What the analysis cannot prove
//! equal stays on boa: a whole script when it uses a construct outside the subset (the
//! [`Refusal`] names the first, with its line and column), or one batch when its data need it (a
//! null in a column the script reads as a value, an int64 beyond ±2^53, which JavaScript sees as a
//! BigInt).

pub mod analyse;
pub mod eval;
pub mod names;

use std::cell::RefCell;
use std::fmt;

use arrow_arith::aggregate::{max, min};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Float32Array, Float64Array, StringArray,
    UInt32Array,
};
use arrow_buffer::BooleanBuffer;
use arrow_schema::ArrowError;
use arrow_select::interleave::interleave;
use arrow_select::take::take;
use boa_engine::ast::Position;
use boa_engine::{Context, JsString, JsValue};
use flowengine_engine::schema::ColumnType;
use flowengine_engine::Batch;

use super::shape::{self as shapes, BatchOut, RowFault, Shape};
use super::values::{self, Builder, Scalar};
use eval::{Bools, Expr, Nums, Strs, Val};

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE: i64 = (1 << 53) - 1;

/// Why a script runs on boa: the first construct outside the compiled subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What it is.
    pub what: String,
    /// Its line in the script (1-based).
    pub line: u32,
    /// Its column (1-based, in characters).
    pub column: u32,
}

impl Refusal {
    fn new(what: String, at: Position) -> Self {
        Self {
            what,
            line: at.line_number(),
            column: at.column_number(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.what, self.line, self.column
        )
    }
}

/// `context.output.setField(field, value)`, on the rows where `path` holds. `None`: null.
#[derive(Debug, Clone)]
pub struct Set {
    field: usize,
    path: Expr,
    value: Option<Expr>,
}

/// `context.route.send(port)` or `sendCopy(port)`, on the rows where `path` holds.
#[derive(Debug, Clone)]
pub struct Send {
    port: usize,
    copy: bool,
    path: Expr,
}

/// `context.validate.check(passes, message)` (and each name of `validate.required`), on the rows
/// where `path` holds: where `passes` does not, the row gets `message` (`None`: "a check failed").
#[derive(Debug, Clone)]
pub struct Check {
    path: Expr,
    passes: Expr,
    message: Option<Expr>,
}

/// A compiled `process`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The rows `process` returns true for.
    keep: Expr,
    /// Every `setField`, in the order the script makes them.
    sets: Vec<Set>,
    /// Every send, in order.
    sends: Vec<Send>,
    /// Every validation, in order.
    checks: Vec<Check>,
    /// Input columns read as values (a null there is a JavaScript `null`, not in the subset).
    value_reads: Vec<usize>,
}

/// Compile `script` for `shape`, or say what keeps it on boa.
pub fn compile(script: &str, shape: &Shape) -> Result<Plan, Refusal> {
    analyse::analyse(script, shape)
}

impl Plan {
    /// Why `batch` must run on boa, if it must.
    pub fn needs_boa(&self, batch: &Batch, shape: &Shape) -> Option<String> {
        for &c in &self.value_reads {
            let column = batch.data.column(c);
            let name = &shape.input_names[c];
            if column.null_count() > 0 {
                return Some(format!(
                    "a null in `{name}`, which the script reads as a value"
                ));
            }
            if let Some(ints) = column.as_primitive_opt::<Int64Type>() {
                let low = min(ints).unwrap_or(0);
                let high = max(ints).unwrap_or(0);
                if low < -MAX_SAFE || high > MAX_SAFE {
                    return Some(format!(
                        "an int64 in `{name}` beyond ±2^53 (a BigInt in JavaScript)"
                    ));
                }
            }
        }
        None
    }

    /// Run the script over `batch` (which [`Plan::needs_boa`] passed).
    pub fn run(&self, batch: &Batch, shape: &Shape) -> Result<BatchOut, ArrowError> {
        let rows = batch.num_rows();
        let cx = eval::Batch {
            columns: batch.data.columns(),
            rows,
        };
        let mut faults: Vec<(usize, RowFault)> = Vec::new();
        let mut converted = Vec::with_capacity(self.sets.len());
        for set in &self.sets {
            let path = cx.bools(&set.path)?.to_buffer(rows);
            let field = &shape.fields[set.field].spec;
            let values = match &set.value {
                None => new_null_array(&field.ty.to_arrow(), rows),
                Some(e) => {
                    let (values, failed) = convert(cx.eval(e)?, &field.ty, &path, rows)?;
                    for (row, why, shown) in failed {
                        faults.push((
                            row,
                            shapes::conversion_fault(
                                &field.name,
                                set.field,
                                &field.ty,
                                &why,
                                shown,
                            ),
                        ));
                    }
                    values
                }
            };
            converted.push((path, values));
        }
        self.validate(&cx, &mut faults)?;
        let keep = cx.bools(&self.keep)?.to_buffer(rows);
        let mut candidate = keep.iter().collect::<Vec<bool>>();
        for (row, _) in &faults {
            candidate[*row] = false;
        }
        let fields = self.assemble_fields(batch, shape, &converted, &candidate, &mut faults)?;
        faults.sort_by_key(|(row, _)| *row);
        let mut rejects: Vec<(usize, Vec<RowFault>)> = Vec::new();
        for (row, fault) in faults {
            match rejects.last_mut() {
                Some((last, problems)) if *last == row => problems.push(fault),
                _ => rejects.push((row, vec![fault])),
            }
        }
        let kept: Vec<u32> = (0..rows)
            .filter(|&r| candidate[r] && !fields.faulted[r])
            .map(|r| r as u32)
            .collect();
        let routes = self.routes(&cx, &kept)?;
        let built = fields
            .choices
            .into_iter()
            .map(|c| c.pick(&kept, rows))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BatchOut::compiled(
            batch.origin.lines.clone(),
            kept,
            routes,
            rejects,
            built,
        ))
    }

    /// For each declared field, where each candidate row's value comes from (the last `setField`
    /// that ran on it, else the input column it replaces, else null); the rows `keep` refuses
    /// (a required field null, an unset field that changes a column's type) get their faults.
    fn assemble_fields(
        &self,
        batch: &Batch,
        shape: &Shape,
        converted: &[(BooleanBuffer, ArrayRef)],
        candidate: &[bool],
        faults: &mut Vec<(usize, RowFault)>,
    ) -> Result<Fields, ArrowError> {
        let rows = batch.num_rows();
        let mut faulted = vec![false; rows];
        let mut choices = Vec::with_capacity(shape.fields.len());
        for (i, f) in shape.fields.iter().enumerate() {
            let sets: Vec<usize> = (0..self.sets.len())
                .filter(|&s| self.sets[s].field == i)
                .collect();
            let mut sources: Vec<ArrayRef> = sets.iter().map(|&s| converted[s].1.clone()).collect();
            let input = match f.replaces {
                Some(c) if f.same_type => {
                    sources.push(batch.data.column(c).clone());
                    Some(sources.len() - 1)
                }
                _ => None,
            };
            sources.push(new_null_array(&f.spec.ty.to_arrow(), 1));
            let null = sources.len() - 1;
            let mut from = vec![(null, 0); rows];
            for row in (0..rows).filter(|&r| candidate[r]) {
                let winner = sets.iter().rposition(|&s| converted[s].0.value(row));
                let (source, at) = match (winner, input) {
                    (Some(k), _) => (k, row),
                    (None, Some(k)) => (k, row),
                    (None, None) => (null, 0),
                };
                from[row] = (source, at);
                let name = &f.spec.name;
                if winner.is_none() && f.replaces.is_some() && !f.same_type {
                    faults.push((row, shapes::type_change_fault(name, i, &f.spec.ty)));
                    faulted[row] = true;
                }
                if f.spec.required && sources[source].is_null(at) {
                    faults.push((row, shapes::required_fault(name, i)));
                    faulted[row] = true;
                }
            }
            choices.push(Choice {
                sources,
                null,
                from,
            });
        }
        Ok(Fields { choices, faulted })
    }

    /// The rows whose `validate` calls failed get one fault with every message, in order.
    fn validate(
        &self,
        cx: &eval::Batch<'_>,
        faults: &mut Vec<(usize, RowFault)>,
    ) -> Result<(), ArrowError> {
        if self.checks.is_empty() {
            return Ok(());
        }
        let mut messages: Vec<Vec<String>> = vec![Vec::new(); cx.rows];
        for check in &self.checks {
            let path = cx.bools(&check.path)?.to_buffer(cx.rows);
            let passes = cx.bools(&check.passes)?.to_buffer(cx.rows);
            let failed = &path & &!&passes;
            if failed.count_set_bits() == 0 {
                continue;
            }
            let text = match &check.message {
                Some(m) => Some(cx.eval(m)?),
                None => None,
            };
            for row in failed.set_indices() {
                messages[row].push(match &text {
                    Some(Val::Str(s)) => s.at(row).to_string(),
                    _ => "a check failed".to_string(),
                });
            }
        }
        for (row, m) in messages.into_iter().enumerate() {
            if !m.is_empty() {
                faults.push((row, shapes::validation_fault(&m)));
            }
        }
        Ok(())
    }

    /// Each kept row's outputs: bit 0 the default output unless the row was sent, bit k+1 port k.
    fn routes(&self, cx: &eval::Batch<'_>, kept: &[u32]) -> Result<Vec<u64>, ArrowError> {
        if self.sends.is_empty() {
            return Ok(vec![1; kept.len()]);
        }
        let paths = self
            .sends
            .iter()
            .map(|s| cx.bools(&s.path).map(|b| b.to_buffer(cx.rows)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(kept
            .iter()
            .map(|&row| {
                let (mut send, mut copy) = (0u64, 0u64);
                for (s, path) in self.sends.iter().zip(&paths) {
                    if path.value(row as usize) {
                        let bit = 1u64 << (s.port + 1);
                        if s.copy {
                            copy |= bit;
                        } else {
                            send |= bit;
                        }
                    }
                }
                u64::from(send == 0) | send | copy
            })
            .collect())
    }
}

/// The declared fields of a batch, before the kept rows are known.
struct Fields {
    choices: Vec<Choice>,
    /// Rows refused for a field's sake.
    faulted: Vec<bool>,
}

/// One field's candidate arrays (each as long as the batch, but the last: one null) and, per
/// row, which array and row its value comes from.
struct Choice {
    sources: Vec<ArrayRef>,
    null: usize,
    from: Vec<(usize, usize)>,
}

impl Choice {
    /// The field's values on the kept rows.
    fn pick(self, kept: &[u32], rows: usize) -> Result<ArrayRef, ArrowError> {
        let from: Vec<(usize, usize)> = kept.iter().map(|&r| self.from[r as usize]).collect();
        let first = from.first().map_or(self.null, |&(s, _)| s);
        if from.iter().all(|&(s, _)| s == first) {
            if first == self.null {
                return Ok(new_null_array(self.sources[first].data_type(), kept.len()));
            }
            let source = &self.sources[first];
            if kept.len() == rows {
                return Ok(source.clone());
            }
            return take(source, &UInt32Array::from(kept.to_vec()), None);
        }
        let refs: Vec<&dyn Array> = self.sources.iter().map(|a| a.as_ref()).collect();
        interleave(&refs, &from)
    }
}

thread_local! {
    /// For conversions through `values::from_js`, which wants a context (only Dates use it).
    /// Never dropped, as the engines are not (see `engine::with_engine`): a boa context dropped
    /// while the thread's locals are torn down can outlive boa's own and corrupt the heap.
    static CONVERTER: RefCell<Option<std::mem::ManuallyDrop<Context>>> = const { RefCell::new(None) };
}

/// A failed conversion: the row, why, and the value as the script gave it.
type Failed = (usize, String, String);

/// `setField`'s conversion of a whole column of values to the declared type, on the rows where
/// `path` holds (other rows are null). Exactly `values::from_js`: the common cases are done
/// column-wise the way it does them, the rest through it, row by row.
fn convert(
    value: Val,
    ty: &ColumnType,
    path: &BooleanBuffer,
    rows: usize,
) -> Result<(ArrayRef, Vec<Failed>), ArrowError> {
    let ok = |a: ArrayRef| Ok((a, Vec::new()));
    match (&value, ty) {
        (Val::Str(s), ColumnType::Utf8) => return ok(std::sync::Arc::new(s.to_array(rows))),
        (Val::Num(Nums::Arr(n)), ColumnType::Float64) => {
            return ok(std::sync::Arc::new(Float64Array::new(n.clone(), None)))
        }
        (Val::Num(Nums::Arr(n)), ColumnType::Float32) => {
            return ok(std::sync::Arc::new(
                n.iter().map(|&v| Some(v as f32)).collect::<Float32Array>(),
            ))
        }
        (Val::Bool(Bools::Arr(b)), ColumnType::Bool) => {
            return ok(std::sync::Arc::new(BooleanArray::new(b.clone(), None)))
        }
        (Val::Num(n), ColumnType::Utf8) => {
            let n = n.clone();
            return ok(std::sync::Arc::new(
                (0..rows)
                    .map(|i| Some(values::number_text(num_at(&n, i))))
                    .collect::<StringArray>(),
            ));
        }
        _ => {}
    }
    CONVERTER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let ctx = cell.get_or_insert_with(|| std::mem::ManuallyDrop::new(Context::default()));
        let mut builder = Builder::new(ty, rows);
        let mut failed = Vec::new();
        for row in 0..rows {
            if !path.value(row) {
                builder.append(&Scalar::Null);
                continue;
            }
            let js = js_value(&value, row);
            match values::from_js(&js, ty, ctx) {
                Ok(v) => builder.append(&v),
                Err(why) => {
                    failed.push((row, why, values::describe(&js)));
                    builder.append(&Scalar::Null);
                }
            }
        }
        Ok((builder.finish()?, failed))
    })
}

fn num_at(n: &Nums, i: usize) -> f64 {
    match n {
        Nums::Const(v) => *v,
        Nums::Arr(a) => a[i],
    }
}

/// Row `i` of a compiled value as boa would hold it.
fn js_value(v: &Val, i: usize) -> JsValue {
    match v {
        Val::Num(n) => JsValue::new(num_at(n, i)),
        Val::Str(Strs::Const(s)) => JsString::from(&**s).into(),
        Val::Str(Strs::Arr(a)) => JsString::from(a.value(i)).into(),
        Val::Bool(Bools::Const(b)) => JsValue::new(*b),
        Val::Bool(Bools::Arr(b)) => JsValue::new(b.value(i)),
    }
}

#[cfg(test)]
mod tests;

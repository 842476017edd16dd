//! Evaluation of typed expressions with Arrow compute kernels, one batch at a time.
//!
//! Every node turns whole arrays into whole arrays; no node runs per row through an interpreter.
//! Constants stay one-value arrays ([`Value::Scalar`]) and are handed to kernels as Arrow scalars,
//! so `age >= 30` never materialises a column of 30s.

use std::sync::Arc;

use arrow_arith::boolean::{and, and_kleene, is_not_null, is_null, not, or, or_kleene};
use arrow_arith::temporal::{date_part, DatePart};
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Datum, Int32Array, Int64Array, Scalar,
    StringArray, UInt32Array,
};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_schema::{ArrowError, DataType};
use flowengine_engine::schema::type_name;

use super::coerce::lossy_target;
use super::tree::{Arith, Cmp, Expr, Kind, Part, StrFn};

/// `b` with nulls as false: a null condition does not hold.
pub fn true_where_valid(b: &BooleanArray) -> BooleanArray {
    // prep_null_mask_filter expects a null buffer.
    if b.null_count() == 0 {
        b.clone()
    } else {
        arrow_select::filter::prep_null_mask_filter(b)
    }
}

/// Rows whose value a CAST could not convert: the caller rejects them.
#[derive(Debug)]
pub struct CastFailures {
    /// True where the conversion failed; one entry per row of the batch.
    pub rows: BooleanArray,
    /// The values that were being converted, for messages.
    pub values: ArrayRef,
    /// The target type, for messages.
    pub target: DataType,
}

/// A node's result: a column, or one value that stands for every row.
#[derive(Debug, Clone)]
enum Value {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Value {
    fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// The value as a column of `n` rows.
    fn array(&self, n: usize) -> Result<ArrayRef, ArrowError> {
        match self {
            Value::Array(a) => Ok(a.clone()),
            Value::Scalar(a) if n == 1 => Ok(a.clone()),
            Value::Scalar(a) => {
                let zeros = UInt32Array::from(vec![0u32; n]);
                arrow_select::take::take(a.as_ref(), &zeros, None)
            }
        }
    }

    /// Wrap a kernel's output: scalar when every input was.
    fn wrap(out: ArrayRef, scalar: bool) -> Value {
        if scalar {
            Value::Scalar(out)
        } else {
            Value::Array(out)
        }
    }
}

/// Run `f` on two values as Arrow datums (scalars stay scalars).
fn datums<T: Array + 'static>(
    l: &Value,
    r: &Value,
    f: impl Fn(&dyn Datum, &dyn Datum) -> Result<T, ArrowError>,
) -> Result<Value, ArrowError> {
    let out = match (l, r) {
        (Value::Array(a), Value::Array(b)) | (Value::Scalar(a), Value::Scalar(b)) => f(a, b)?,
        (Value::Array(a), Value::Scalar(b)) => f(a, &Scalar::new(b.clone()))?,
        (Value::Scalar(a), Value::Array(b)) => f(&Scalar::new(a.clone()), b)?,
    };
    Ok(Value::wrap(Arc::new(out), l.is_scalar() && r.is_scalar()))
}

/// Compare as SQL (and DuckDB) does: every NaN is one value, above every number, and `-0 = 0`.
/// Arrow's kernels order floats by IEEE total order, where neither holds, so floats are made
/// canonical first.
fn compare(
    l: &Value,
    r: &Value,
    kernel: impl Fn(&dyn Datum, &dyn Datum) -> Result<BooleanArray, ArrowError>,
) -> Result<Value, ArrowError> {
    let canon = |v: &Value| match v {
        Value::Array(a) => Value::Array(canonical_floats(a)),
        Value::Scalar(a) => Value::Scalar(canonical_floats(a)),
    };
    datums(&canon(l), &canon(r), kernel)
}

/// Floats as SQL compares them: `-0` is `0`, and every NaN is the one NaN, which sorts after
/// every number. Arrow (its comparison kernels and `arrow-row`) orders floats by their bits
/// (IEEE total order), which tells them apart.
pub fn canonical_floats(column: &ArrayRef) -> ArrayRef {
    fn canon<T: arrow_array::ArrowPrimitiveType>(
        a: &arrow_array::PrimitiveArray<T>,
        f: impl Fn(T::Native) -> T::Native,
    ) -> ArrayRef {
        Arc::new(a.unary::<_, T>(f))
    }
    match column.data_type() {
        DataType::Float64 => canon(
            column.as_primitive::<arrow_array::types::Float64Type>(),
            |v| {
                if v.is_nan() {
                    f64::NAN
                } else if v == 0.0 {
                    0.0
                } else {
                    v
                }
            },
        ),
        DataType::Float32 => canon(
            column.as_primitive::<arrow_array::types::Float32Type>(),
            |v| {
                if v.is_nan() {
                    f32::NAN
                } else if v == 0.0 {
                    0.0
                } else {
                    v
                }
            },
        ),
        _ => column.clone(),
    }
}

/// Evaluate `e` over `batch`: one value per row. Values a CAST cannot convert are null in the
/// result and listed in `failures`.
pub fn evaluate(
    e: &Expr,
    columns: &[ArrayRef],
    rows: usize,
    failures: &mut Vec<CastFailures>,
) -> Result<ArrayRef, ArrowError> {
    let cx = Cx { columns, rows };
    cx.eval(e, failures)?.array(rows)
}

/// Evaluate an expression without columns (constant folding at plan time). A conversion failure
/// is an error here, so the caller can leave it to the rows.
pub fn eval_constant(e: &Expr) -> Result<ArrayRef, ArrowError> {
    let cx = Cx {
        columns: &[],
        rows: 1,
    };
    let mut failures = Vec::new();
    let out = cx.eval(e, &mut failures)?.array(1)?;
    if failures.is_empty() {
        Ok(out)
    } else {
        Err(ArrowError::CastError("constant does not convert".into()))
    }
}

struct Cx<'a> {
    columns: &'a [ArrayRef],
    rows: usize,
}

impl Cx<'_> {
    fn eval(&self, e: &Expr, failures: &mut Vec<CastFailures>) -> Result<Value, ArrowError> {
        Ok(match &e.kind {
            Kind::Column(i) => {
                let column = self.columns.get(*i);
                let column =
                    column.ok_or_else(|| ArrowError::ComputeError("column out of range".into()))?;
                Value::Array(column.clone())
            }
            Kind::Literal(a) => Value::Scalar(a.clone()),
            Kind::Arith(op, l, r) => {
                let l = self.eval(l, failures)?;
                let r = self.eval(r, failures)?;
                self.arith(*op, &l, &r, &e.ty)?
            }
            Kind::Neg(a) => self.unary(a, failures, |a| arrow_arith::numeric::neg(a))?,
            Kind::Compare(op, l, r) => {
                let l = self.eval(l, failures)?;
                let r = self.eval(r, failures)?;
                let kernel = match op {
                    Cmp::Eq => arrow_ord::cmp::eq,
                    Cmp::Ne => arrow_ord::cmp::neq,
                    Cmp::Lt => arrow_ord::cmp::lt,
                    Cmp::Le => arrow_ord::cmp::lt_eq,
                    Cmp::Gt => arrow_ord::cmp::gt,
                    Cmp::Ge => arrow_ord::cmp::gt_eq,
                };
                compare(&l, &r, kernel)?
            }
            Kind::And(l, r) => self.logic(l, r, failures, and_kleene)?,
            Kind::Or(l, r) => self.logic(l, r, failures, or_kleene)?,
            Kind::Not(a) => self.unary(a, failures, |a| Ok(Arc::new(not(a.as_boolean())?)))?,
            Kind::IsNull(a, negated) => {
                let negated = *negated;
                self.unary(a, failures, |a| {
                    let out = if negated { is_not_null(a) } else { is_null(a) };
                    Ok(Arc::new(out?))
                })?
            }
            Kind::Concat(l, r) => {
                let l = self.eval(l, failures)?;
                let r = self.eval(r, failures)?;
                concat(&l, &r, self.rows)?
            }
            Kind::Case(branches, otherwise) => {
                self.case(branches, otherwise.as_deref(), &e.ty, failures)?
            }
            Kind::Coalesce(items) => self.coalesce(items, failures)?,
            Kind::InList(v, items, negated) => self.in_list(v, items, *negated, failures)?,
            Kind::Like(v, p, negated, insensitive) => {
                let v = self.eval(v, failures)?;
                let p = self.eval(p, failures)?;
                let kernel = match (negated, insensitive) {
                    (false, false) => arrow_string::like::like,
                    (true, false) => arrow_string::like::nlike,
                    (false, true) => arrow_string::like::ilike,
                    (true, true) => arrow_string::like::nilike,
                };
                datums(&v, &p, kernel)?
            }
            Kind::Str(f, a) => {
                let f = *f;
                self.unary(a, failures, |a| {
                    Ok(Arc::new(string_fn(f, a.as_string::<i32>())))
                })?
            }
            Kind::Length(a) => self.unary(a, failures, |a| {
                let lengths: Int32Array = a
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(|s| s.chars().count() as i32))
                    .collect();
                Ok(Arc::new(lengths))
            })?,
            Kind::Substr(a, start, len) => self.unary(a, failures, |a| {
                let s =
                    arrow_string::substring::substring_by_char(a.as_string::<i32>(), *start, *len)?;
                Ok(Arc::new(s))
            })?,
            Kind::Replace(s, from, to) => {
                let s = self.eval(s, failures)?;
                let from = self.eval(from, failures)?;
                let to = self.eval(to, failures)?;
                replace(&s, &from, &to, self.rows)?
            }
            Kind::DatePart(part, a) => {
                let part = arrow_part(*part);
                self.unary(a, failures, |a| date_part(a, part))?
            }
            Kind::Cast(a, try_) => {
                let input = self.eval(a, failures)?;
                let scalar = input.is_scalar();
                let n = if scalar { 1 } else { self.rows };
                let input = input.array(n)?;
                let (out, failed) = convert(&input, &e.ty)?;
                if let Some(rows) = failed.filter(|_| !try_) {
                    let rows = if scalar {
                        // A constant that fails fails for every row.
                        BooleanArray::from(vec![rows.value(0); self.rows])
                    } else {
                        rows
                    };
                    let values = if scalar {
                        Value::Scalar(input).array(self.rows)?
                    } else {
                        input
                    };
                    failures.push(CastFailures {
                        rows,
                        values,
                        target: e.ty.clone(),
                    });
                }
                Value::wrap(out, scalar)
            }
        })
    }

    fn unary(
        &self,
        a: &Expr,
        failures: &mut Vec<CastFailures>,
        f: impl Fn(&dyn Array) -> Result<ArrayRef, ArrowError>,
    ) -> Result<Value, ArrowError> {
        Ok(match self.eval(a, failures)? {
            Value::Array(a) => Value::Array(f(a.as_ref())?),
            Value::Scalar(a) => Value::Scalar(f(a.as_ref())?),
        })
    }

    fn logic(
        &self,
        l: &Expr,
        r: &Expr,
        failures: &mut Vec<CastFailures>,
        f: fn(&BooleanArray, &BooleanArray) -> Result<BooleanArray, ArrowError>,
    ) -> Result<Value, ArrowError> {
        let l = self.eval(l, failures)?;
        let r = self.eval(r, failures)?;
        let scalar = l.is_scalar() && r.is_scalar();
        let n = if scalar { 1 } else { self.rows };
        let out = f(l.array(n)?.as_boolean(), r.array(n)?.as_boolean())?;
        Ok(Value::wrap(Arc::new(out), scalar))
    }

    fn arith(&self, op: Arith, l: &Value, r: &Value, ty: &DataType) -> Result<Value, ArrowError> {
        use arrow_arith::numeric;
        let r = match op {
            Arith::Div | Arith::Rem => match zero_as_null(r)? {
                Some(r) => r,
                // Dividing by a constant zero: null everywhere.
                None => {
                    let n = if l.is_scalar() { 1 } else { self.rows };
                    return Ok(Value::wrap(new_null_array(ty, n), l.is_scalar()));
                }
            },
            _ => r.clone(),
        };
        let kernel = match op {
            Arith::Add => numeric::add,
            Arith::Sub => numeric::sub,
            Arith::Mul => numeric::mul,
            Arith::Div => numeric::div,
            Arith::Rem => numeric::rem,
        };
        datums(l, &r, kernel).map_err(|e| match e {
            ArrowError::ArithmeticOverflow(m) => ArrowError::ArithmeticOverflow(format!(
                "{m}; the result does not fit {}: CAST an operand to double or a decimal",
                type_name(ty)
            )),
            other => other,
        })
    }

    fn case(
        &self,
        branches: &[(Expr, Expr)],
        otherwise: Option<&Expr>,
        ty: &DataType,
        failures: &mut Vec<CastFailures>,
    ) -> Result<Value, ArrowError> {
        // Rows already given to an earlier branch: a CAST in a later condition or result does
        // not fail them, as it would not run for them in a row-at-a-time engine.
        let mut taken = BooleanArray::from(vec![false; self.rows]);
        let mut chosen = Vec::with_capacity(branches.len());
        for (cond, then) in branches {
            let open = not(&taken)?;
            let mut local = Vec::new();
            let mask = self.eval(cond, &mut local)?.array(self.rows)?;
            keep_failures(local, &open, failures)?;
            let mask = true_where_valid(mask.as_boolean());
            let mut local = Vec::new();
            let value = self.eval(then, &mut local)?;
            keep_failures(local, &and(&mask, &open)?, failures)?;
            taken = or(&taken, &mask)?;
            chosen.push((mask, value));
        }
        let mut result = match otherwise {
            Some(e) => {
                let mut local = Vec::new();
                let value = self.eval(e, &mut local)?;
                keep_failures(local, &not(&taken)?, failures)?;
                value
            }
            None => Value::Scalar(new_null_array(ty, 1)),
        };
        // The first true condition wins, so fold from the last branch backwards.
        for (mask, value) in chosen.iter().rev() {
            result = Value::Array(datums_zip(mask, value, &result)?);
        }
        Ok(result)
    }

    fn coalesce(
        &self,
        items: &[Expr],
        failures: &mut Vec<CastFailures>,
    ) -> Result<Value, ArrowError> {
        let mut values = items
            .iter()
            .map(|e| self.eval(e, failures))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(mut result) = values.pop() else {
            return Err(ArrowError::ComputeError(
                "COALESCE without arguments".into(),
            ));
        };
        for v in values.into_iter().rev() {
            let present = is_not_null(v.array(self.rows)?.as_ref())?;
            result = Value::Array(datums_zip(&present, &v, &result)?);
        }
        Ok(result)
    }

    fn in_list(
        &self,
        v: &Expr,
        items: &[Expr],
        negated: bool,
        failures: &mut Vec<CastFailures>,
    ) -> Result<Value, ArrowError> {
        let v = self.eval(v, failures)?;
        // x IN (a, b) is x = a OR x = b, which gives SQL's nulls: no match and a null item is null.
        let mut result: Option<Value> = None;
        for item in items {
            let item = self.eval(item, failures)?;
            let eq = compare(&v, &item, arrow_ord::cmp::eq)?;
            result = Some(match result {
                None => eq,
                Some(prev) => {
                    let scalar = prev.is_scalar() && eq.is_scalar();
                    let n = if scalar { 1 } else { self.rows };
                    let out = or_kleene(prev.array(n)?.as_boolean(), eq.array(n)?.as_boolean())?;
                    Value::wrap(Arc::new(out), scalar)
                }
            });
        }
        let result =
            result.unwrap_or_else(|| Value::Scalar(Arc::new(BooleanArray::from(vec![false]))));
        if !negated {
            return Ok(result);
        }
        let scalar = result.is_scalar();
        let n = if scalar { 1 } else { self.rows };
        Ok(Value::wrap(
            Arc::new(not(result.array(n)?.as_boolean())?),
            scalar,
        ))
    }
}

/// Keep the failures of `local` only on the rows where `rows` is true.
fn keep_failures(
    local: Vec<CastFailures>,
    rows: &BooleanArray,
    failures: &mut Vec<CastFailures>,
) -> Result<(), ArrowError> {
    for mut f in local {
        f.rows = and(&f.rows, rows)?;
        if f.rows.true_count() > 0 {
            failures.push(f);
        }
    }
    Ok(())
}

fn datums_zip(mask: &BooleanArray, t: &Value, f: &Value) -> Result<ArrayRef, ArrowError> {
    let d = |v: &Value| -> Box<dyn Datum> {
        match v {
            Value::Array(a) => Box::new(a.clone()),
            Value::Scalar(a) => Box::new(Scalar::new(a.clone())),
        }
    };
    arrow_select::zip::zip(mask, d(t).as_ref(), d(f).as_ref())
}

/// A divisor with its zeros made null (SQL engines differ; null keeps a bad row from ending the
/// run). `None` when the divisor is a constant zero or null.
fn zero_as_null(r: &Value) -> Result<Option<Value>, ArrowError> {
    let zero = arrow_cast::cast(&Int64Array::from(vec![0]), r_type(r))?;
    let is_zero = compare(r, &Value::Scalar(zero), arrow_ord::cmp::eq)?;
    Ok(match (r, is_zero) {
        (Value::Scalar(a), Value::Scalar(z)) => {
            let z = z.as_boolean();
            (a.is_valid(0) && !z.value(0)).then(|| r.clone())
        }
        (Value::Array(a), Value::Array(z)) => {
            let z = z.as_boolean();
            if z.true_count() == 0 {
                Some(r.clone())
            } else {
                Some(Value::Array(arrow_select::nullif::nullif(a.as_ref(), z)?))
            }
        }
        _ => Some(r.clone()),
    })
}

fn r_type(v: &Value) -> &DataType {
    match v {
        Value::Array(a) | Value::Scalar(a) => a.data_type(),
    }
}

/// Convert `input` to `to`: values that do not convert, or would change (a dropped fraction, a
/// rounded decimal), are null in the output and true in the returned mask.
pub fn convert(
    input: &ArrayRef,
    to: &DataType,
) -> Result<(ArrayRef, Option<BooleanArray>), ArrowError> {
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut out = cast_with_options(input, to, &safe)?;
    let mut failed = if out.logical_null_count() > input.logical_null_count() {
        Some(arrow_arith::boolean::and(
            &is_not_null(input)?,
            &is_null(&out)?,
        )?)
    } else {
        None
    };
    if lossy_target(input.data_type(), to) {
        let back = cast_with_options(&out, input.data_type(), &safe)?;
        let changed = true_where_valid(&arrow_ord::cmp::neq(&back, input)?);
        if changed.true_count() > 0 {
            out = arrow_select::nullif::nullif(out.as_ref(), &changed)?;
            failed = Some(match failed {
                Some(f) => arrow_arith::boolean::or(&f, &changed)?,
                None => changed,
            });
        }
    }
    Ok((out, failed.filter(|f| f.true_count() > 0)))
}

/// `a || b`, writing each row once (no intermediate arrays, constants not repeated).
fn concat(l: &Value, r: &Value, rows: usize) -> Result<Value, ArrowError> {
    let scalar = l.is_scalar() && r.is_scalar();
    let n = if scalar { 1 } else { rows };
    let part = |v: &Value| -> Result<(ArrayRef, bool), ArrowError> {
        Ok(match v {
            Value::Array(a) => (a.clone(), false),
            Value::Scalar(a) => (a.clone(), true),
        })
    };
    let (la, lc) = part(l)?;
    let (ra, rc) = part(r)?;
    let (ls, rs) = (la.as_string::<i32>(), ra.as_string::<i32>());
    let bytes = ls.value_data().len() * if lc { n } else { 1 }
        + rs.value_data().len() * if rc { n } else { 1 };
    let mut out = StringBuilder::with_capacity(n, bytes);
    for i in 0..n {
        match (row(ls, lc, i), row(rs, rc, i)) {
            (Some(a), Some(b)) => {
                use std::fmt::Write;
                // Writing into the builder cannot fail.
                let _ = out.write_str(a);
                let _ = out.write_str(b);
                out.append_value("");
            }
            _ => out.append_null(),
        }
    }
    Ok(Value::wrap(Arc::new(out.finish()), scalar))
}

/// Row `i` of `s`, or its only row when it is a constant.
fn row(s: &StringArray, constant: bool, i: usize) -> Option<&str> {
    let i = if constant { 0 } else { i };
    s.is_valid(i).then(|| s.value(i))
}

fn replace(s: &Value, from: &Value, to: &Value, rows: usize) -> Result<Value, ArrowError> {
    let scalar = s.is_scalar() && from.is_scalar() && to.is_scalar();
    let n = if scalar { 1 } else { rows };
    let (s, from, to) = (s.array(n)?, from.array(n)?, to.array(n)?);
    let (s, from, to) = (
        s.as_string::<i32>(),
        from.as_string::<i32>(),
        to.as_string::<i32>(),
    );
    let out: StringArray = (0..n)
        .map(
            |i| match (s.is_valid(i), from.is_valid(i), to.is_valid(i)) {
                (true, true, true) if from.value(i).is_empty() => Some(s.value(i).to_string()),
                (true, true, true) => Some(s.value(i).replace(from.value(i), to.value(i))),
                _ => None,
            },
        )
        .collect();
    Ok(Value::wrap(Arc::new(out), scalar))
}

fn string_fn(f: StrFn, a: &StringArray) -> StringArray {
    let mut out = StringBuilder::with_capacity(a.len(), a.value_data().len());
    for v in a.iter() {
        match v {
            None => out.append_null(),
            Some(s) => match f {
                StrFn::Upper => out.append_value(s.to_uppercase()),
                StrFn::Lower => out.append_value(s.to_lowercase()),
                StrFn::Trim => out.append_value(s.trim()),
                StrFn::LTrim => out.append_value(s.trim_start()),
                StrFn::RTrim => out.append_value(s.trim_end()),
            },
        }
    }
    out.finish()
}

fn arrow_part(p: Part) -> DatePart {
    match p {
        Part::Year => DatePart::Year,
        Part::Quarter => DatePart::Quarter,
        Part::Month => DatePart::Month,
        Part::Day => DatePart::Day,
        Part::DayOfWeek => DatePart::DayOfWeekSunday0,
        Part::DayOfYear => DatePart::DayOfYear,
        Part::Hour => DatePart::Hour,
        Part::Minute => DatePart::Minute,
        Part::Second => DatePart::Second,
    }
}

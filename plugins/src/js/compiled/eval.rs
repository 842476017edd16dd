//! The compiled form of a script's values ([`Expr`]) and their evaluation over a whole batch with
//! JavaScript's semantics: numbers are doubles (NaN compares false, `%` keeps the dividend's sign,
//! division by zero is ±Infinity or NaN), strings compare by UTF-16 code units, numbers print as
//! `Number.prototype.toString` does. Every value here is non-null: the analysis only compiles
//! reads of columns whose batch has no nulls (the run checks that per batch).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Scalar, StringArray};
use arrow_buffer::{BooleanBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType};

/// `+ - * / %` and the comparisons: the native expressions' operators, with JavaScript's meaning here.
pub use crate::native::tree::{Arith, Cmp};

/// The JavaScript type of a compiled value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// number
    Num,
    /// string
    Str,
    /// boolean
    Bool,
}

impl Ty {
    /// As `typeof` names it.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Num => "number",
            Ty::Str => "string",
            Ty::Bool => "boolean",
        }
    }
}

/// String methods of no argument that give a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFn {
    Upper,
    Lower,
    Trim,
    TrimStart,
    TrimEnd,
}

/// String methods that cut by UTF-16 positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `s.slice(start, end)`: negative positions count from the end.
    Slice,
    /// `s.substring(start, end)`: negative positions are 0, and the two are swapped if reversed.
    Substring,
}

/// String methods of one string argument that give a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrTest {
    Includes,
    StartsWith,
    EndsWith,
}

/// `Math` functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathFn {
    Abs,
    Floor,
    Ceil,
    Round,
    Trunc,
    Sqrt,
    Sign,
    Min,
    Max,
}

/// A compiled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number literal.
    Num(f64),
    /// A string literal.
    Str(Arc<str>),
    /// `true` or `false`.
    Bool(bool),
    /// An input column as JavaScript sees it (int32, int64 within ±2^53, float, decimal of up to
    /// 15 digits: numbers; utf8: strings; bool).
    Column(usize, Ty),
    /// Whether an input column is null on the row (`x == null`).
    IsNull(usize),
    /// Arithmetic on two numbers.
    Arith(Arith, Box<Expr>, Box<Expr>),
    /// `-x`
    Neg(Box<Expr>),
    /// `a + b + …` where one operand is a string: each part as `String(x)` gives it.
    Concat(Vec<Expr>),
    /// Two values of one type compared.
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    /// `!b` of a boolean.
    Not(Box<Expr>),
    /// A value as a condition (`Boolean(x)`).
    Truthy(Box<Expr>),
    /// Both booleans true.
    And(Box<Expr>, Box<Expr>),
    /// Either boolean true.
    Or(Box<Expr>, Box<Expr>),
    /// `c ? a : b`, `a` and `b` of one type.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// A string method giving a string.
    Str1(StrFn, Box<Expr>),
    /// `s.length` (UTF-16 code units).
    Length(Box<Expr>),
    /// `s.slice(start, end)` or `s.substring(start, end)` (`end` absent: to the end).
    Cut(Cut, Box<Expr>, Box<Expr>, Option<Box<Expr>>),
    /// A string method giving a boolean.
    Test(StrTest, Box<Expr>, Box<Expr>),
    /// A `Math` function of numbers.
    Math(MathFn, Vec<Expr>),
    /// `context.utils.format(value, format)`, with a format it accepts for the value's type.
    Format(Box<Expr>, Arc<str>),
}

impl Expr {
    /// Its JavaScript type.
    pub fn ty(&self) -> Ty {
        match self {
            Expr::Num(_) | Expr::Arith(..) | Expr::Neg(_) | Expr::Length(_) | Expr::Math(..) => {
                Ty::Num
            }
            Expr::Str(_) | Expr::Concat(_) | Expr::Str1(..) | Expr::Format(..) | Expr::Cut(..) => {
                Ty::Str
            }
            Expr::Bool(_)
            | Expr::IsNull(_)
            | Expr::Cmp(..)
            | Expr::Not(_)
            | Expr::Truthy(_)
            | Expr::And(..)
            | Expr::Or(..)
            | Expr::Test(..) => Ty::Bool,
            Expr::Column(_, ty) => *ty,
            Expr::Select(_, a, _) => a.ty(),
        }
    }

    /// `a && b` of booleans, folded where one side is a literal.
    pub fn and(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::Bool(true), x) | (x, Expr::Bool(true)) => x,
            (Expr::Bool(false), _) | (_, Expr::Bool(false)) => Expr::Bool(false),
            (a, b) => Expr::And(Box::new(a), Box::new(b)),
        }
    }

    /// `a || b` of booleans, folded where one side is a literal.
    pub fn or(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::Bool(false), x) | (x, Expr::Bool(false)) => x,
            (Expr::Bool(true), _) | (_, Expr::Bool(true)) => Expr::Bool(true),
            (a, b) => Expr::Or(Box::new(a), Box::new(b)),
        }
    }

    /// `!b` of a boolean, folded.
    pub fn negate(b: Expr) -> Expr {
        match b {
            Expr::Bool(v) => Expr::Bool(!v),
            Expr::Not(inner) => *inner,
            b => Expr::Not(Box::new(b)),
        }
    }

    /// A value as a condition.
    pub fn truthy(e: Expr) -> Expr {
        match e {
            e if e.ty() == Ty::Bool => e,
            Expr::Num(n) => Expr::Bool(n != 0.0 && !n.is_nan()),
            Expr::Str(s) => Expr::Bool(!s.is_empty()),
            e => Expr::Truthy(Box::new(e)),
        }
    }

    /// The input columns it reads as values (not only for a null test).
    pub fn columns_read(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Column(c, _) => out.push(*c),
            Expr::Num(_) | Expr::Str(_) | Expr::Bool(_) | Expr::IsNull(_) => {}
            Expr::Neg(a)
            | Expr::Not(a)
            | Expr::Truthy(a)
            | Expr::Str1(_, a)
            | Expr::Length(a)
            | Expr::Format(a, _) => a.columns_read(out),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Test(_, a, b) => {
                a.columns_read(out);
                b.columns_read(out);
            }
            Expr::Select(c, a, b) => {
                for e in [c, a, b] {
                    e.columns_read(out);
                }
            }
            Expr::Cut(_, s, start, end) => {
                s.columns_read(out);
                start.columns_read(out);
                if let Some(end) = end {
                    end.columns_read(out);
                }
            }
            Expr::Concat(parts) | Expr::Math(_, parts) => {
                for e in parts {
                    e.columns_read(out);
                }
            }
        }
    }
}

/// Numbers of a batch: one for every row, or one per row.
#[derive(Debug, Clone)]
pub enum Nums {
    Const(f64),
    Arr(ScalarBuffer<f64>),
}

impl Nums {
    fn at(&self, i: usize) -> f64 {
        match self {
            Nums::Const(v) => *v,
            Nums::Arr(a) => a[i],
        }
    }
}

/// Strings of a batch.
#[derive(Debug, Clone)]
pub enum Strs {
    Const(Arc<str>),
    Arr(StringArray),
}

impl Strs {
    /// The `i`-th string.
    pub fn at(&self, i: usize) -> &str {
        match self {
            Strs::Const(v) => v,
            Strs::Arr(a) => a.value(i),
        }
    }

    /// As an Arrow array of `rows` rows.
    pub fn to_array(&self, rows: usize) -> StringArray {
        match self {
            Strs::Const(v) => StringArray::from_iter_values(std::iter::repeat_n(&**v, rows)),
            Strs::Arr(a) => a.clone(),
        }
    }
}

/// Booleans of a batch.
#[derive(Debug, Clone)]
pub enum Bools {
    Const(bool),
    Arr(BooleanBuffer),
}

impl Bools {
    /// As a buffer of `rows` bits.
    pub fn to_buffer(&self, rows: usize) -> BooleanBuffer {
        match self {
            Bools::Const(true) => BooleanBuffer::new_set(rows),
            Bools::Const(false) => BooleanBuffer::new_unset(rows),
            Bools::Arr(b) => b.clone(),
        }
    }

    fn at(&self, i: usize) -> bool {
        match self {
            Bools::Const(v) => *v,
            Bools::Arr(b) => b.value(i),
        }
    }
}

/// A value of a batch.
#[derive(Debug, Clone)]
pub enum Val {
    Num(Nums),
    Str(Strs),
    Bool(Bools),
}

impl Val {
    /// The `i`-th value as `String(x)` writes it, appended to `out`.
    fn write_text(&self, i: usize, out: &mut String, digits: &mut ryu_js::Buffer) {
        match self {
            Val::Num(n) => out.push_str(digits.format(n.at(i))),
            Val::Str(s) => out.push_str(s.at(i)),
            Val::Bool(b) => out.push_str(if b.at(i) { "true" } else { "false" }),
        }
    }
}

/// Evaluates expressions over one batch's columns.
pub struct Batch<'a> {
    /// The input columns.
    pub columns: &'a [ArrayRef],
    /// Rows in the batch.
    pub rows: usize,
}

impl Batch<'_> {
    /// The value of `e` on every row.
    pub fn eval(&self, e: &Expr) -> Result<Val, ArrowError> {
        Ok(match e {
            Expr::Num(v) => Val::Num(Nums::Const(*v)),
            Expr::Str(v) => Val::Str(Strs::Const(Arc::clone(v))),
            Expr::Bool(v) => Val::Bool(Bools::Const(*v)),
            Expr::Column(c, _) => self.column(*c)?,
            Expr::IsNull(c) => Val::Bool(match self.columns[*c].logical_nulls() {
                Some(nulls) => Bools::Arr(!nulls.inner()),
                None => Bools::Const(false),
            }),
            Expr::Arith(op, a, b) => {
                let (a, b) = (self.nums(a)?, self.nums(b)?);
                Val::Num(self.map2(&a, &b, arith(*op)))
            }
            Expr::Neg(a) => {
                let a = self.nums(a)?;
                Val::Num(self.map2(&a, &Nums::Const(0.0), |x, _| -x))
            }
            Expr::Concat(parts) => Val::Str(self.concat(parts)?),
            Expr::Cmp(op, a, b) => Val::Bool(self.compare(*op, a, b)?),
            Expr::Not(a) => Val::Bool(match self.bools(a)? {
                Bools::Const(v) => Bools::Const(!v),
                Bools::Arr(b) => Bools::Arr(!&b),
            }),
            Expr::Truthy(a) => Val::Bool(self.truthy(a)?),
            Expr::And(a, b) => Val::Bool(self.logic(a, b, true)?),
            Expr::Or(a, b) => Val::Bool(self.logic(a, b, false)?),
            Expr::Select(c, a, b) => self.select(c, a, b)?,
            Expr::Str1(f, a) => {
                let a = self.strs(a)?;
                Val::Str(self.map_str(&a, |s, out| out.push_str(&str_fn(*f, s))))
            }
            Expr::Cut(how, s, start, end) => {
                let s = self.strs(s)?;
                let start = self.nums(start)?;
                let end = end.as_ref().map(|e| self.nums(e)).transpose()?;
                let mut out =
                    arrow_array::builder::StringBuilder::with_capacity(self.rows, self.rows * 8);
                let mut units = Vec::new();
                for i in 0..self.rows {
                    let text = s.at(i);
                    let end = end.as_ref().map(|e| e.at(i));
                    match cut(*how, text, start.at(i), end, &mut units) {
                        Some(piece) => out.append_value(piece),
                        None => {
                            return Err(NeedsBoa::error("a cut through a character beyond U+FFFF"))
                        }
                    }
                }
                Val::Str(Strs::Arr(out.finish()))
            }
            Expr::Length(a) => {
                let a = self.strs(a)?;
                Val::Num(Nums::Arr(
                    (0..self.rows).map(|i| utf16_len(a.at(i)) as f64).collect(),
                ))
            }
            Expr::Test(t, a, b) => {
                let (a, b) = (self.strs(a)?, self.strs(b)?);
                let test = |s: &str, p: &str| match t {
                    StrTest::Includes => s.contains(p),
                    StrTest::StartsWith => s.starts_with(p),
                    StrTest::EndsWith => s.ends_with(p),
                };
                Val::Bool(Bools::Arr(BooleanBuffer::collect_bool(self.rows, |i| {
                    test(a.at(i), b.at(i))
                })))
            }
            Expr::Math(f, args) => Val::Num(self.math(*f, args)?),
            Expr::Format(a, format) => Val::Str(self.format(a, format)?),
        })
    }

    /// The value of a boolean expression.
    pub fn bools(&self, e: &Expr) -> Result<Bools, ArrowError> {
        match self.eval(e)? {
            Val::Bool(b) => Ok(b),
            _ => Err(mistyped(e, Ty::Bool)),
        }
    }

    fn nums(&self, e: &Expr) -> Result<Nums, ArrowError> {
        match self.eval(e)? {
            Val::Num(n) => Ok(n),
            _ => Err(mistyped(e, Ty::Num)),
        }
    }

    fn strs(&self, e: &Expr) -> Result<Strs, ArrowError> {
        match self.eval(e)? {
            Val::Str(s) => Ok(s),
            _ => Err(mistyped(e, Ty::Str)),
        }
    }

    /// A column's values as JavaScript numbers, strings or booleans (nulls were ruled out).
    fn column(&self, c: usize) -> Result<Val, ArrowError> {
        let a = &self.columns[c];
        let nums = |v: Vec<f64>| Val::Num(Nums::Arr(ScalarBuffer::from(v)));
        Ok(match a.data_type() {
            DataType::Utf8 => Val::Str(Strs::Arr(a.as_string::<i32>().clone())),
            DataType::Boolean => Val::Bool(Bools::Arr(a.as_boolean().values().clone())),
            DataType::Float64 => {
                Val::Num(Nums::Arr(a.as_primitive::<Float64Type>().values().clone()))
            }
            DataType::Float32 | DataType::Int32 | DataType::Int64 => {
                // Exact for int32 and float32; int64 as `as f64` does, as boa does (values within
                // ±2^53, which the run checks, are exact too).
                let doubles = arrow_cast::cast(a, &DataType::Float64)?;
                Val::Num(Nums::Arr(
                    doubles.as_primitive::<Float64Type>().values().clone(),
                ))
            }
            DataType::Decimal128(_, s) => {
                let div = 10f64.powi(i32::from(*s));
                nums(
                    a.as_primitive::<Decimal128Type>()
                        .values()
                        .iter()
                        .map(|&v| v as f64 / div)
                        .collect(),
                )
            }
            other => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "a compiled script cannot read a {other} column"
                )))
            }
        })
    }

    fn map2(&self, a: &Nums, b: &Nums, f: impl Fn(f64, f64) -> f64) -> Nums {
        match (a, b) {
            (Nums::Const(x), Nums::Const(y)) => Nums::Const(f(*x, *y)),
            (Nums::Arr(x), Nums::Const(y)) => Nums::Arr(x.iter().map(|&x| f(x, *y)).collect()),
            (Nums::Const(x), Nums::Arr(y)) => Nums::Arr(y.iter().map(|&y| f(*x, y)).collect()),
            (Nums::Arr(x), Nums::Arr(y)) => {
                Nums::Arr(x.iter().zip(y.iter()).map(|(&x, &y)| f(x, y)).collect())
            }
        }
    }

    fn map_str(&self, a: &Strs, f: impl Fn(&str, &mut String)) -> Strs {
        let mut out = arrow_array::builder::StringBuilder::with_capacity(self.rows, self.rows * 8);
        let mut text = String::new();
        for i in 0..self.rows {
            text.clear();
            f(a.at(i), &mut text);
            out.append_value(&text);
        }
        Strs::Arr(out.finish())
    }

    fn concat(&self, parts: &[Expr]) -> Result<Strs, ArrowError> {
        let values = parts
            .iter()
            .map(|p| self.eval(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = arrow_array::builder::StringBuilder::with_capacity(self.rows, self.rows * 16);
        let mut text = String::new();
        let mut digits = ryu_js::Buffer::new();
        for i in 0..self.rows {
            text.clear();
            for v in &values {
                v.write_text(i, &mut text, &mut digits);
            }
            out.append_value(&text);
        }
        Ok(Strs::Arr(out.finish()))
    }

    fn compare(&self, op: Cmp, a: &Expr, b: &Expr) -> Result<Bools, ArrowError> {
        let rows = self.rows;
        Ok(match (self.eval(a)?, self.eval(b)?) {
            (Val::Num(x), Val::Num(y)) => {
                let f = num_cmp(op);
                match (&x, &y) {
                    (Nums::Arr(x), Nums::Const(y)) => {
                        Bools::Arr(BooleanBuffer::collect_bool(rows, |i| f(x[i], *y)))
                    }
                    _ => Bools::Arr(BooleanBuffer::collect_bool(rows, |i| f(x.at(i), y.at(i)))),
                }
            }
            (Val::Str(x), Val::Str(y)) => Bools::Arr(BooleanBuffer::collect_bool(rows, |i| {
                ordering_is(op, utf16_cmp(x.at(i), y.at(i)))
            })),
            (Val::Bool(x), Val::Bool(y)) => {
                let (x, y) = (x.to_buffer(rows), y.to_buffer(rows));
                match op {
                    Cmp::Eq => Bools::Arr(!&(&x ^ &y)),
                    Cmp::Ne => Bools::Arr(&x ^ &y),
                    _ => return Err(mistyped(a, Ty::Num)),
                }
            }
            _ => return Err(mistyped(b, a.ty())),
        })
    }

    fn truthy(&self, a: &Expr) -> Result<Bools, ArrowError> {
        let rows = self.rows;
        Ok(match self.eval(a)? {
            Val::Bool(b) => b,
            Val::Num(n) => Bools::Arr(BooleanBuffer::collect_bool(rows, |i| {
                let v = n.at(i);
                v != 0.0 && !v.is_nan()
            })),
            Val::Str(s) => Bools::Arr(BooleanBuffer::collect_bool(rows, |i| !s.at(i).is_empty())),
        })
    }

    fn logic(&self, a: &Expr, b: &Expr, and: bool) -> Result<Bools, ArrowError> {
        let rows = self.rows;
        let (a, b) = (self.bools(a)?, self.bools(b)?);
        Ok(match (a, b) {
            (Bools::Const(x), Bools::Const(y)) => Bools::Const(if and { x && y } else { x || y }),
            (Bools::Const(c), other) | (other, Bools::Const(c)) => match (and, c) {
                (true, true) | (false, false) => other,
                (true, false) => Bools::Const(false),
                (false, true) => Bools::Const(true),
            },
            (x, y) => {
                let (x, y) = (x.to_buffer(rows), y.to_buffer(rows));
                Bools::Arr(if and { &x & &y } else { &x | &y })
            }
        })
    }

    fn select(&self, c: &Expr, a: &Expr, b: &Expr) -> Result<Val, ArrowError> {
        let rows = self.rows;
        let cond = match self.bools(c)? {
            Bools::Const(true) => return self.eval(a),
            Bools::Const(false) => return self.eval(b),
            Bools::Arr(c) => c,
        };
        Ok(match (self.eval(a)?, self.eval(b)?) {
            (Val::Num(x), Val::Num(y)) => Val::Num(Nums::Arr(
                (0..rows)
                    .map(|i| if cond.value(i) { x.at(i) } else { y.at(i) })
                    .collect(),
            )),
            (Val::Bool(x), Val::Bool(y)) => {
                let (x, y) = (x.to_buffer(rows), y.to_buffer(rows));
                Val::Bool(Bools::Arr(&(&cond & &x) | &(&!&cond & &y)))
            }
            (Val::Str(x), Val::Str(y)) => {
                let datum = |s: &Strs| -> Box<dyn arrow_array::Datum> {
                    match s {
                        Strs::Const(v) => Box::new(Scalar::new(StringArray::from(vec![&**v]))),
                        Strs::Arr(a) => Box::new(a.clone()),
                    }
                };
                let mask = BooleanArray::new(cond, None);
                let picked = arrow_select::zip::zip(&mask, &*datum(&x), &*datum(&y))?;
                Val::Str(Strs::Arr(picked.as_string::<i32>().clone()))
            }
            _ => return Err(mistyped(b, a.ty())),
        })
    }

    fn format(&self, a: &Expr, format: &str) -> Result<Strs, ArrowError> {
        Ok(match self.eval(a)? {
            Val::Num(n) => {
                let mut out =
                    arrow_array::builder::StringBuilder::with_capacity(self.rows, self.rows * 8);
                for i in 0..self.rows {
                    let text = crate::js::format::format_number(n.at(i), format)
                        .map_err(ArrowError::InvalidArgumentError)?;
                    out.append_value(text);
                }
                Strs::Arr(out.finish())
            }
            Val::Str(s) => s,
            Val::Bool(b) => Strs::Arr(StringArray::from_iter_values((0..self.rows).map(|i| {
                if b.at(i) {
                    "true"
                } else {
                    "false"
                }
            }))),
        })
    }

    fn math(&self, f: MathFn, args: &[Expr]) -> Result<Nums, ArrowError> {
        let args = args
            .iter()
            .map(|a| self.nums(a))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, rest)) = args.split_first() else {
            return Ok(Nums::Const(match f {
                MathFn::Min => f64::INFINITY,
                _ => f64::NEG_INFINITY,
            }));
        };
        let one = |g: fn(f64) -> f64| self.map2(first, &Nums::Const(0.0), |x, _| g(x));
        Ok(match f {
            MathFn::Abs => one(f64::abs),
            MathFn::Floor => one(f64::floor),
            MathFn::Ceil => one(f64::ceil),
            MathFn::Trunc => one(f64::trunc),
            MathFn::Sqrt => one(f64::sqrt),
            MathFn::Round => one(js_round),
            MathFn::Sign => one(js_sign),
            MathFn::Min | MathFn::Max => {
                let pick = if f == MathFn::Min { js_min } else { js_max };
                rest.iter()
                    .fold(first.clone(), |acc, next| self.map2(&acc, next, pick))
            }
        })
    }
}

fn mistyped(e: &Expr, wanted: Ty) -> ArrowError {
    ArrowError::InvalidArgumentError(format!(
        "compiled script: a {} where a {} was expected",
        e.ty().name(),
        wanted.name()
    ))
}

fn arith(op: Arith) -> fn(f64, f64) -> f64 {
    match op {
        Arith::Add => |x, y| x + y,
        Arith::Sub => |x, y| x - y,
        Arith::Mul => |x, y| x * y,
        Arith::Div => |x, y| x / y,
        // Rust's `%` on doubles is C's fmod, as JavaScript's is: the dividend's sign, NaN for 0.
        Arith::Rem => |x, y| x % y,
    }
}

fn num_cmp(op: Cmp) -> fn(f64, f64) -> bool {
    match op {
        Cmp::Eq => |x, y| x == y,
        Cmp::Ne => |x, y| x != y,
        Cmp::Lt => |x, y| x < y,
        Cmp::Le => |x, y| x <= y,
        Cmp::Gt => |x, y| x > y,
        Cmp::Ge => |x, y| x >= y,
    }
}

fn ordering_is(op: Cmp, o: Ordering) -> bool {
    match op {
        Cmp::Eq => o == Ordering::Equal,
        Cmp::Ne => o != Ordering::Equal,
        Cmp::Lt => o == Ordering::Less,
        Cmp::Le => o != Ordering::Greater,
        Cmp::Gt => o == Ordering::Greater,
        Cmp::Ge => o != Ordering::Less,
    }
}

/// Order two strings as JavaScript does, by UTF-16 code units. That is the order of their UTF-8
/// bytes except where a character above U+FFFF (a surrogate pair, 0xD800…) meets one from
/// U+E000 to U+FFFF at the first difference.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    let same = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut start = same;
    while !a.is_char_boundary(start) {
        start -= 1;
    }
    match (a[start..].chars().next(), b[start..].chars().next()) {
        (Some(x), Some(y)) => {
            let unit = |c: char| {
                let mut buf = [0u16; 2];
                c.encode_utf16(&mut buf)[0]
            };
            unit(x)
                .cmp(&unit(y))
                .then_with(|| a[start..].cmp(&b[start..]))
        }
        _ => a.len().cmp(&b.len()),
    }
}

fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        return s.len();
    }
    s.chars().map(char::len_utf16).sum()
}

/// JavaScript's white space and line terminators, which `trim` removes.
fn js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// `slice` or `substring` of `text` by UTF-16 positions, as JavaScript cuts it; `None` for a cut
/// through a surrogate pair, whose half a JavaScript string holds and UTF-8 cannot.
fn cut<'a>(
    how: Cut,
    text: &'a str,
    start: f64,
    end: Option<f64>,
    units: &mut Vec<u16>,
) -> Option<std::borrow::Cow<'a, str>> {
    let ascii = text.is_ascii();
    let len = if ascii { text.len() } else { utf16_len(text) } as f64;
    // ToIntegerOrInfinity: NaN is 0, fractions go towards 0.
    let integer = |x: f64| if x.is_nan() { 0.0 } else { x.trunc() };
    let (from, to) = {
        let start = integer(start);
        let end = end.map_or(len, integer);
        match how {
            Cut::Slice => {
                let at = |x: f64| {
                    if x < 0.0 {
                        (len + x).max(0.0)
                    } else {
                        x.min(len)
                    }
                };
                (at(start), at(end))
            }
            Cut::Substring => {
                let (a, b) = (start.clamp(0.0, len), end.clamp(0.0, len));
                (a.min(b), a.max(b))
            }
        }
    };
    if from >= to {
        return Some("".into());
    }
    let (from, to) = (from as usize, to as usize);
    if ascii {
        return Some(text[from..to].into());
    }
    units.clear();
    units.extend(text.encode_utf16());
    let low = |u: u16| (0xdc00..=0xdfff).contains(&u);
    let high = |u: u16| (0xd800..=0xdbff).contains(&u);
    if low(units[from]) || high(units[to - 1]) {
        return None;
    }
    String::from_utf16(&units[from..to]).ok().map(Into::into)
}

/// A value the compiled code cannot hold exactly (half of a surrogate pair): the batch runs on
/// boa instead. Carried as an `ArrowError::ExternalError` out of the evaluation.
#[derive(Debug)]
pub struct NeedsBoa(pub &'static str);

impl std::fmt::Display for NeedsBoa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NeedsBoa {}

impl NeedsBoa {
    fn error(why: &'static str) -> ArrowError {
        ArrowError::ExternalError(Box::new(NeedsBoa(why)))
    }

    /// Why `e` sends its batch to boa, if it does.
    pub fn of(e: &ArrowError) -> Option<&'static str> {
        match e {
            ArrowError::ExternalError(inner) => inner.downcast_ref::<NeedsBoa>().map(|n| n.0),
            _ => None,
        }
    }
}

fn str_fn(f: StrFn, s: &str) -> std::borrow::Cow<'_, str> {
    match f {
        StrFn::Upper => s.to_uppercase().into(),
        StrFn::Lower => s.to_lowercase().into(),
        StrFn::Trim => s.trim_matches(js_space).into(),
        StrFn::TrimStart => s.trim_start_matches(js_space).into(),
        StrFn::TrimEnd => s.trim_end_matches(js_space).into(),
    }
}

/// `Math.round`: halves go up (towards +∞); -0.5 ≤ x < 0 gives -0.
fn js_round(x: f64) -> f64 {
    if !x.is_finite() || x == x.trunc() {
        return x;
    }
    if (-0.5..0.0).contains(&x) {
        return -0.0;
    }
    let r = x.floor();
    if x - r >= 0.5 {
        r + 1.0
    } else {
        r
    }
}

/// `Math.sign`: NaN, ±0 stay as they are.
fn js_sign(x: f64) -> f64 {
    if x.is_nan() || x == 0.0 {
        x
    } else {
        x.signum()
    }
}

/// `Math.min` of two: NaN wins, -0 is below +0.
fn js_min(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else {
        x.min(y)
    }
}

/// `Math.max` of two: NaN wins, +0 is above -0.
fn js_max(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == y {
        if x.is_sign_positive() {
            x
        } else {
            y
        }
    } else {
        x.max(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        for (n, text) in [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (1e-7, "1e-7"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(crate::js::values::number_text(n), text);
        }
    }

    #[test]
    fn strings_order_by_utf16_code_units() {
        assert_eq!(utf16_cmp("a", "b"), Ordering::Less);
        assert_eq!(utf16_cmp("ab", "a"), Ordering::Greater);
        // U+FF61 sorts after U+1F600 in UTF-8 and code points, before it in UTF-16.
        assert_eq!(utf16_cmp("\u{ff61}", "\u{1f600}"), Ordering::Greater);
        assert_eq!(utf16_cmp("x\u{1f600}", "x\u{ff61}"), Ordering::Less);
        assert_eq!(utf16_cmp("é", "é"), Ordering::Equal);
    }

    #[test]
    fn math_follows_javascript() {
        assert_eq!(js_round(2.5), 3.0);
        assert_eq!(js_round(-2.5), -2.0);
        assert!(js_round(-0.4).is_sign_negative());
        assert_eq!(js_round(0.49999999999999994), 0.0);
        assert!(js_max(-0.0, 0.0).is_sign_positive());
        assert!(js_min(0.0, -0.0).is_sign_negative());
        assert!(js_max(1.0, f64::NAN).is_nan());
        assert!(js_sign(-0.0).is_sign_negative());
    }
}

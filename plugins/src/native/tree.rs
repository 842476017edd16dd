//! The typed expression tree: what [`super::check`] produces and [`super::eval`] runs.
//!
//! The tree ([`Expr`]) names columns by index and carries the Arrow type and nullability of every
//! node. It depends on no other stage: parsing and checking build it, evaluation reads it.

use std::fmt;

use arrow_array::ArrayRef;
use arrow_schema::DataType;

/// A typed expression node.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What it computes.
    pub kind: Kind,
    /// The Arrow type of its values.
    pub ty: DataType,
    /// Whether it can be null.
    pub nullable: bool,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (never integer division)
    Div,
    /// `%`
    Rem,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// String functions of one string argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFn {
    /// `upper(s)`
    Upper,
    /// `lower(s)`
    Lower,
    /// `trim(s)`
    Trim,
    /// `ltrim(s)`
    LTrim,
    /// `rtrim(s)`
    RTrim,
}

/// Date parts (`year(d)`, `EXTRACT(YEAR FROM d)`, `date_part('year', d)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Calendar year.
    Year,
    /// 1..=4.
    Quarter,
    /// 1..=12.
    Month,
    /// 1..=31.
    Day,
    /// 0 (Sunday) ..= 6.
    DayOfWeek,
    /// 1..=366.
    DayOfYear,
    /// 0..=23.
    Hour,
    /// 0..=59.
    Minute,
    /// 0..=59.
    Second,
}

impl Part {
    pub(super) fn parse(name: &str) -> Option<Part> {
        Some(match name.to_ascii_lowercase().as_str() {
            "year" | "years" => Part::Year,
            "quarter" => Part::Quarter,
            "month" | "months" => Part::Month,
            "day" | "days" => Part::Day,
            "dow" | "dayofweek" => Part::DayOfWeek,
            "doy" | "dayofyear" => Part::DayOfYear,
            "hour" | "hours" => Part::Hour,
            "minute" | "minutes" => Part::Minute,
            "second" | "seconds" => Part::Second,
            _ => return None,
        })
    }

    pub(super) fn needs_time(self) -> bool {
        matches!(self, Part::Hour | Part::Minute | Part::Second)
    }
}

pub(super) const PART_NAMES: &str =
    "year, quarter, month, day, dayofweek, dayofyear, hour, minute, second";

/// What a node computes.
#[derive(Debug, Clone)]
pub enum Kind {
    /// An input column, by index.
    Column(usize),
    /// A constant: an array of one value of the node's type.
    Literal(ArrayRef),
    /// `a + b` and friends; operands already coerced.
    Arith(Arith, Box<Expr>, Box<Expr>),
    /// `-a`
    Neg(Box<Expr>),
    /// `a = b` and friends; operands already coerced to one type.
    Compare(Cmp, Box<Expr>, Box<Expr>),
    /// `a AND b` (three-valued).
    And(Box<Expr>, Box<Expr>),
    /// `a OR b` (three-valued).
    Or(Box<Expr>, Box<Expr>),
    /// `NOT a`
    Not(Box<Expr>),
    /// `a IS NULL` (`negated`: `IS NOT NULL`); never null.
    IsNull(Box<Expr>, bool),
    /// `a || b`, both strings.
    Concat(Box<Expr>, Box<Expr>),
    /// `CASE WHEN c THEN r ... ELSE e END`, results coerced to the node's type.
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    /// `COALESCE(a, b, ...)`, coerced to the node's type.
    Coalesce(Vec<Expr>),
    /// `a [NOT] IN (x, y, ...)`, items coerced to `a`'s type.
    InList(Box<Expr>, Vec<Expr>, bool),
    /// `a [NOT] [I]LIKE p`: (value, pattern, negated, case-insensitive).
    Like(Box<Expr>, Box<Expr>, bool, bool),
    /// A one-argument string function.
    Str(StrFn, Box<Expr>),
    /// `length(s)` in characters.
    Length(Box<Expr>),
    /// `substr(s, start[, len])`: 0-based start (converted from SQL's 1-based), length in chars.
    Substr(Box<Expr>, i64, Option<u64>),
    /// `replace(s, from, to)`.
    Replace(Box<Expr>, Box<Expr>, Box<Expr>),
    /// A date part of a date or timestamp, as int32.
    DatePart(Part, Box<Expr>),
    /// `CAST(a AS t)` (`try`: `TRY_CAST`, null on failure instead of a reject).
    Cast(Box<Expr>, bool),
}

pub(super) fn node(kind: Kind, ty: DataType, nullable: bool) -> Expr {
    Expr { kind, ty, nullable }
}

pub(super) fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

impl Expr {
    /// The direct sub-expressions.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            Kind::Column(_) | Kind::Literal(_) => Vec::new(),
            Kind::Arith(_, a, b)
            | Kind::Compare(_, a, b)
            | Kind::And(a, b)
            | Kind::Or(a, b)
            | Kind::Concat(a, b)
            | Kind::Like(a, b, _, _) => vec![a, b],
            Kind::Neg(a)
            | Kind::Not(a)
            | Kind::IsNull(a, _)
            | Kind::Str(_, a)
            | Kind::Length(a)
            | Kind::Substr(a, _, _)
            | Kind::DatePart(_, a)
            | Kind::Cast(a, _) => vec![a],
            Kind::Replace(a, b, c) => vec![a, b, c],
            Kind::Case(branches, otherwise) => branches
                .iter()
                .flat_map(|(c, r)| [c, r])
                .chain(otherwise.as_deref())
                .collect(),
            Kind::Coalesce(items) => items.iter().collect(),
            Kind::InList(a, items, _) => std::iter::once(a.as_ref()).chain(items).collect(),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format!("{self:?}").to_ascii_lowercase())
    }
}

//! Stage 2 of the expression language, at plan: the sqlparser AST checked against the input
//! schema into a typed tree ([`Expr`]).
//!
//! Type-checking needs the input schema and happens when the planner asks for the transform's
//! output schema. It resolves names to column indices, coerces operands (the rules are in
//! [`super::coerce`]), folds constant sub-expressions (with [`super::eval`]), and records the
//! result type and nullability of every node.

use std::sync::Arc;

use arrow_array::{new_null_array, Array, ArrayRef, BooleanArray, Float64Array, Int64Array};
use arrow_array::{Decimal128Array, StringArray};
use arrow_schema::{DataType, Schema};
use flowengine_engine::schema::{type_name, ColumnType};
use sqlparser::ast::{self as sql, Spanned};

use super::coerce::{
    cast_node, coerce_pair, coerce_to, common_type, is_numeric, null_as, to_string,
};
use super::parse::{ExprError, Pos};
use super::tree::{boxed, node, Arith, Cmp, Expr, Kind, Part, StrFn, PART_NAMES};

/// A column as the type-checker sees it.
#[derive(Debug, Clone)]
struct Scope<'a> {
    schema: &'a Schema,
}

impl Scope<'_> {
    fn known(&self) -> String {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A quoted name matches exactly first; otherwise names match case-insensitively, as keys do.
    fn lookup(&self, ident: &sql::Ident) -> Result<usize, ExprError> {
        let fields = self.schema.fields();
        if ident.quote_style.is_some() {
            if let Some(i) = fields.iter().position(|f| f.name() == &ident.value) {
                return Ok(i);
            }
        }
        let matches: Vec<usize> = (0..fields.len())
            .filter(|&i| fields[i].name().eq_ignore_ascii_case(&ident.value))
            .collect();
        match matches.as_slice() {
            [i] => Ok(*i),
            [] => {
                let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                let suggestion = flowengine_engine::load::config::closest(&ident.value, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                Err(ExprError::new(
                    format!(
                        "unknown column `{}`{suggestion}; known columns: {}",
                        ident.value,
                        self.known()
                    ),
                    Pos::of(ident.span),
                ))
            }
            _ => Err(ExprError::new(
                format!(
                    "`{}` matches several columns that differ only in case; quote the exact name",
                    ident.value
                ),
                Pos::of(ident.span),
            )),
        }
    }
}

/// Type-check a parsed expression against `schema`.
pub fn check(ast: &sql::Expr, schema: &Schema) -> Result<Expr, ExprError> {
    Checker {
        scope: Scope { schema },
    }
    .expr(ast)
}

struct Checker<'a> {
    scope: Scope<'a>,
}

impl Checker<'_> {
    fn expr(&self, ast: &sql::Expr) -> Result<Expr, ExprError> {
        let pos = Pos::of(ast.span());
        match ast {
            sql::Expr::Identifier(ident) => {
                let i = self.scope.lookup(ident)?;
                let field = self.scope.schema.field(i);
                Ok(node(
                    Kind::Column(i),
                    field.data_type().clone(),
                    field.is_nullable(),
                ))
            }
            sql::Expr::CompoundIdentifier(parts) => {
                let joined: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                Err(ExprError::new(
                    format!(
                        "qualified names are not supported; for a column named `{}`, quote it: \"{}\"",
                        joined.join("."),
                        joined.join(".")
                    ),
                    pos,
                ))
            }
            sql::Expr::Value(v) => literal(&v.value, Pos::of(v.span).or(pos)),
            sql::Expr::Nested(inner) => self.expr(inner),
            sql::Expr::UnaryOp { op, expr } => self.unary(*op, expr, pos),
            sql::Expr::BinaryOp { left, op, right } => self.binary(left, op, right, pos),
            sql::Expr::IsNull(e) => self.is_null(e, false),
            sql::Expr::IsNotNull(e) => self.is_null(e, true),
            sql::Expr::InList {
                expr,
                list,
                negated,
            } => self.in_list(expr, list, *negated),
            sql::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => self.between(expr, *negated, low, high, pos),
            sql::Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | sql::Expr::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(ExprError::new(
                        "LIKE ANY and LIKE ... ESCAPE are not supported; `\\` escapes `%` and `_`",
                        pos,
                    ));
                }
                let insensitive = matches!(ast, sql::Expr::ILike { .. });
                self.like(expr, pattern, *negated, insensitive)
            }
            sql::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref(), pos),
            sql::Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return Err(ExprError::new("CAST ... FORMAT is not supported", pos));
                }
                let try_ = matches!(kind, sql::CastKind::TryCast | sql::CastKind::SafeCast);
                let target = sql_type(data_type, pos)?;
                let inner = self.expr(expr)?;
                cast_node(inner, target, try_, pos)
            }
            sql::Expr::TypedString(ts) => {
                let target = sql_type(&ts.data_type, pos)?;
                let text = literal(&ts.value.value, pos)?;
                cast_node(text, target, false, pos)
            }
            sql::Expr::Extract { field, expr, .. } => {
                let name = field.to_string();
                let part = Part::parse(&name).ok_or_else(|| {
                    ExprError::new(
                        format!("unknown date part `{name}`; known parts: {PART_NAMES}"),
                        pos,
                    )
                })?;
                self.date_part(part, expr, pos)
            }
            sql::Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let from = substring_from.as_deref();
                self.substr(expr, from, substring_for.as_deref())
            }
            sql::Expr::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_what.is_some() || trim_characters.is_some() {
                    return Err(ExprError::new(
                        "TRIM of given characters is not supported; `trim(s)` removes whitespace",
                        pos,
                    ));
                }
                let f = match trim_where {
                    None | Some(sql::TrimWhereField::Both) => StrFn::Trim,
                    Some(sql::TrimWhereField::Leading) => StrFn::LTrim,
                    Some(sql::TrimWhereField::Trailing) => StrFn::RTrim,
                };
                self.string_fn(f, expr)
            }
            sql::Expr::Function(f) => self.function(f, pos),
            other => Err(ExprError::new(
                format!(
                    "`{other}` is not part of the expression language (see docs/expressions.md)"
                ),
                pos,
            )),
        }
    }

    fn unary(
        &self,
        op: sql::UnaryOperator,
        e: &sql::Expr,
        pos: Option<Pos>,
    ) -> Result<Expr, ExprError> {
        let inner = self.expr(e)?;
        match op {
            sql::UnaryOperator::Not => {
                expect_bool(&inner, "NOT", Pos::of(e.span()))?;
                let nullable = inner.nullable;
                Ok(node(Kind::Not(boxed(inner)), DataType::Boolean, nullable))
            }
            sql::UnaryOperator::Minus | sql::UnaryOperator::Plus => {
                if !is_numeric(&inner.ty) && inner.ty != DataType::Null {
                    return Err(ExprError::new(
                        format!("`{op}` needs a number, found {}", type_name(&inner.ty)),
                        pos,
                    ));
                }
                if op == sql::UnaryOperator::Plus {
                    return Ok(inner);
                }
                let (ty, nullable) = (inner.ty.clone(), inner.nullable);
                fold(node(Kind::Neg(boxed(inner)), ty, nullable))
            }
            other => Err(ExprError::new(
                format!("operator `{other}` is not supported"),
                pos,
            )),
        }
    }

    fn binary(
        &self,
        l: &sql::Expr,
        op: &sql::BinaryOperator,
        r: &sql::Expr,
        pos: Option<Pos>,
    ) -> Result<Expr, ExprError> {
        use sql::BinaryOperator as B;
        let left = self.expr(l)?;
        let right = self.expr(r)?;
        let arith = |a| arith(a, left.clone(), right.clone(), pos);
        let cmp = |c| compare(c, left.clone(), right.clone(), pos);
        match op {
            B::Plus => arith(Arith::Add),
            B::Minus => arith(Arith::Sub),
            B::Multiply => arith(Arith::Mul),
            B::Divide => arith(Arith::Div),
            B::Modulo => arith(Arith::Rem),
            B::Eq => cmp(Cmp::Eq),
            B::NotEq => cmp(Cmp::Ne),
            B::Lt => cmp(Cmp::Lt),
            B::LtEq => cmp(Cmp::Le),
            B::Gt => cmp(Cmp::Gt),
            B::GtEq => cmp(Cmp::Ge),
            B::And | B::Or => {
                expect_bool(&left, &op.to_string(), Pos::of(l.span()))?;
                expect_bool(&right, &op.to_string(), Pos::of(r.span()))?;
                let nullable = left.nullable || right.nullable;
                let kind = if *op == B::And {
                    Kind::And(boxed(left), boxed(right))
                } else {
                    Kind::Or(boxed(left), boxed(right))
                };
                fold(node(kind, DataType::Boolean, nullable))
            }
            B::StringConcat => {
                let nullable = left.nullable || right.nullable;
                let left = to_string(left, pos)?;
                let right = to_string(right, pos)?;
                fold(node(
                    Kind::Concat(boxed(left), boxed(right)),
                    DataType::Utf8,
                    nullable,
                ))
            }
            other => Err(ExprError::new(
                format!("operator `{other}` is not supported"),
                pos,
            )),
        }
    }

    fn is_null(&self, e: &sql::Expr, negated: bool) -> Result<Expr, ExprError> {
        let inner = self.expr(e)?;
        fold(node(
            Kind::IsNull(boxed(inner), negated),
            DataType::Boolean,
            false,
        ))
    }

    fn in_list(&self, e: &sql::Expr, list: &[sql::Expr], negated: bool) -> Result<Expr, ExprError> {
        let value = self.expr(e)?;
        let mut items = Vec::with_capacity(list.len());
        let mut nullable = value.nullable;
        for item in list {
            let pos = Pos::of(item.span());
            let checked = self.expr(item)?;
            // Each item is compared with the value, so it takes the value's type.
            let (v, it) = coerce_pair(value.clone(), checked, pos, "IN")?;
            if v.ty != value.ty {
                return Err(ExprError::new(
                    format!(
                        "IN: an item of type {} cannot be compared with a value of type {}; CAST the value",
                        type_name(&it.ty),
                        type_name(&value.ty)
                    ),
                    pos,
                ));
            }
            nullable |= it.nullable;
            items.push(it);
        }
        fold(node(
            Kind::InList(boxed(value), items, negated),
            DataType::Boolean,
            nullable,
        ))
    }

    fn between(
        &self,
        e: &sql::Expr,
        negated: bool,
        low: &sql::Expr,
        high: &sql::Expr,
        pos: Option<Pos>,
    ) -> Result<Expr, ExprError> {
        let value = self.expr(e)?;
        let lo = compare(Cmp::Ge, value.clone(), self.expr(low)?, pos)?;
        let hi = compare(Cmp::Le, value, self.expr(high)?, pos)?;
        let nullable = lo.nullable || hi.nullable;
        let both = fold(node(
            Kind::And(boxed(lo), boxed(hi)),
            DataType::Boolean,
            nullable,
        ))?;
        if negated {
            fold(node(Kind::Not(boxed(both)), DataType::Boolean, nullable))
        } else {
            Ok(both)
        }
    }

    fn like(
        &self,
        e: &sql::Expr,
        pattern: &sql::Expr,
        negated: bool,
        insensitive: bool,
    ) -> Result<Expr, ExprError> {
        let value = self.expr(e)?;
        let pat = self.expr(pattern)?;
        expect_string(&value, "LIKE", Pos::of(e.span()))?;
        expect_string(&pat, "LIKE", Pos::of(pattern.span()))?;
        let nullable = value.nullable || pat.nullable;
        let value = null_as(value, &DataType::Utf8);
        let pat = null_as(pat, &DataType::Utf8);
        fold(node(
            Kind::Like(boxed(value), boxed(pat), negated, insensitive),
            DataType::Boolean,
            nullable,
        ))
    }

    fn case(
        &self,
        operand: Option<&sql::Expr>,
        conditions: &[sql::CaseWhen],
        otherwise: Option<&sql::Expr>,
        pos: Option<Pos>,
    ) -> Result<Expr, ExprError> {
        let operand = operand.map(|o| self.expr(o)).transpose()?;
        let mut branches = Vec::with_capacity(conditions.len());
        for when in conditions {
            let cpos = Pos::of(when.condition.span());
            let cond = self.expr(&when.condition)?;
            let cond = match &operand {
                // `CASE x WHEN v` is `CASE WHEN x = v`.
                Some(op) => compare(Cmp::Eq, op.clone(), cond, cpos)?,
                None => {
                    expect_bool(&cond, "CASE WHEN", cpos)?;
                    cond
                }
            };
            branches.push((cond, self.expr(&when.result)?));
        }
        let otherwise = otherwise.map(|e| self.expr(e)).transpose()?;
        let mut results: Vec<&Expr> = branches.iter().map(|(_, r)| r).collect();
        results.extend(otherwise.iter());
        let ty = common_type(&results, "CASE", pos)?;
        let nullable = otherwise.as_ref().is_none_or(|e| e.nullable)
            || branches.iter().any(|(_, r)| r.nullable);
        let branches = branches
            .into_iter()
            .map(|(c, r)| Ok((c, coerce_to(r, &ty, pos)?)))
            .collect::<Result<Vec<_>, ExprError>>()?;
        let otherwise = otherwise
            .map(|e| coerce_to(e, &ty, pos).map(boxed))
            .transpose()?;
        Ok(node(Kind::Case(branches, otherwise), ty, nullable))
    }

    fn args(&self, f: &sql::Function, pos: Option<Pos>) -> Result<Vec<sql::Expr>, ExprError> {
        let name = f.name.to_string();
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return Err(ExprError::new(
                format!("`{name}`: FILTER, OVER and WITHIN GROUP are not supported"),
                pos,
            ));
        }
        match &f.args {
            sql::FunctionArguments::None => Ok(Vec::new()),
            sql::FunctionArguments::List(list)
                if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                list.args
                    .iter()
                    .map(|a| match a {
                        sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                        other => Err(ExprError::new(
                            format!("`{name}`: argument `{other}` is not supported"),
                            pos,
                        )),
                    })
                    .collect()
            }
            _ => Err(ExprError::new(
                format!("`{name}`: this form of argument list is not supported"),
                pos,
            )),
        }
    }

    fn function(&self, f: &sql::Function, pos: Option<Pos>) -> Result<Expr, ExprError> {
        let name = f.name.to_string().to_ascii_lowercase();
        let args = self.args(f, pos)?;
        let arity = |n: std::ops::RangeInclusive<usize>| {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                let want = if n.start() == n.end() {
                    n.start().to_string()
                } else {
                    format!("{} to {}", n.start(), n.end())
                };
                Err(ExprError::new(
                    format!("`{name}` takes {want} arguments, found {}", args.len()),
                    pos,
                ))
            }
        };
        let string_fn = |f| {
            arity(1..=1)?;
            self.string_fn(f, &args[0])
        };
        match name.as_str() {
            "upper" => string_fn(StrFn::Upper),
            "lower" => string_fn(StrFn::Lower),
            "trim" => string_fn(StrFn::Trim),
            "ltrim" => string_fn(StrFn::LTrim),
            "rtrim" => string_fn(StrFn::RTrim),
            "length" | "char_length" | "character_length" => {
                arity(1..=1)?;
                let s = self.expr(&args[0])?;
                expect_string(&s, &name, Pos::of(args[0].span()))?;
                let nullable = s.nullable;
                let s = null_as(s, &DataType::Utf8);
                fold(node(Kind::Length(boxed(s)), DataType::Int32, nullable))
            }
            "substr" | "substring" => {
                arity(2..=3)?;
                self.substr(&args[0], Some(&args[1]), args.get(2))
            }
            "replace" => {
                arity(3..=3)?;
                let mut parts = Vec::with_capacity(3);
                let mut nullable = false;
                for a in &args {
                    let e = self.expr(a)?;
                    expect_string(&e, "replace", Pos::of(a.span()))?;
                    nullable |= e.nullable;
                    parts.push(boxed(null_as(e, &DataType::Utf8)));
                }
                let [s, from, to] = <[Box<Expr>; 3]>::try_from(parts)
                    .map_err(|_| ExprError::new("`replace` takes 3 arguments", pos))?;
                fold(node(Kind::Replace(s, from, to), DataType::Utf8, nullable))
            }
            "coalesce" => {
                if args.is_empty() {
                    return Err(ExprError::new("`coalesce` needs at least one argument", pos));
                }
                let items = args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let ty = common_type(&items.iter().collect::<Vec<_>>(), "COALESCE", pos)?;
                let nullable = items.iter().all(|e| e.nullable);
                let items = items
                    .into_iter()
                    .map(|e| coerce_to(e, &ty, pos))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(node(Kind::Coalesce(items), ty, nullable))
            }
            "date_part" | "datepart" => {
                arity(2..=2)?;
                let part = match &args[0] {
                    sql::Expr::Value(v) => match &v.value {
                        sql::Value::SingleQuotedString(s) => Part::parse(s),
                        _ => None,
                    },
                    _ => None,
                }
                .ok_or_else(|| {
                    ExprError::new(
                        format!("`date_part` takes a quoted part name first: one of {PART_NAMES}"),
                        Pos::of(args[0].span()).or(pos),
                    )
                })?;
                self.date_part(part, &args[1], pos)
            }
            other => match Part::parse(other) {
                Some(part) if !other.ends_with('s') => {
                    arity(1..=1)?;
                    self.date_part(part, &args[0], pos)
                }
                _ => Err(ExprError::new(
                    format!(
                        "unknown function `{other}`; known functions: upper, lower, trim, ltrim, rtrim, length, substr, replace, coalesce, date_part, {PART_NAMES}"
                    ),
                    pos,
                )),
            },
        }
    }

    fn string_fn(&self, f: StrFn, arg: &sql::Expr) -> Result<Expr, ExprError> {
        let s = self.expr(arg)?;
        expect_string(
            &s,
            &format!("{f:?}").to_ascii_lowercase(),
            Pos::of(arg.span()),
        )?;
        let nullable = s.nullable;
        let s = null_as(s, &DataType::Utf8);
        fold(node(Kind::Str(f, boxed(s)), DataType::Utf8, nullable))
    }

    fn substr(
        &self,
        s: &sql::Expr,
        from: Option<&sql::Expr>,
        len: Option<&sql::Expr>,
    ) -> Result<Expr, ExprError> {
        let value = self.expr(s)?;
        expect_string(&value, "substr", Pos::of(s.span()))?;
        let start = match from {
            Some(e) => const_int(e, "substr: the start", 1)?,
            None => 1,
        };
        let len = len
            .map(|e| const_int(e, "substr: the length", 0))
            .transpose()?;
        let nullable = value.nullable;
        let value = null_as(value, &DataType::Utf8);
        fold(node(
            Kind::Substr(boxed(value), start - 1, len.map(|l| l as u64)),
            DataType::Utf8,
            nullable,
        ))
    }

    fn date_part(&self, part: Part, e: &sql::Expr, pos: Option<Pos>) -> Result<Expr, ExprError> {
        let value = self.expr(e)?;
        let ok = match &value.ty {
            DataType::Date32 => !part.needs_time(),
            DataType::Timestamp(..) | DataType::Null => true,
            _ => false,
        };
        if !ok {
            return Err(ExprError::new(
                format!(
                    "{} of a {} value: date parts need a date (year..dayofyear) or a datetime",
                    format!("{part:?}").to_ascii_lowercase(),
                    type_name(&value.ty)
                ),
                Pos::of(e.span()).or(pos),
            ));
        }
        let nullable = value.nullable;
        let value = null_as(value, &DataType::Date32);
        fold(node(
            Kind::DatePart(part, boxed(value)),
            DataType::Int32,
            nullable,
        ))
    }
}

/// A constant whole number argument (such as substr's start), at least `min`.
fn const_int(e: &sql::Expr, what: &str, min: i64) -> Result<i64, ExprError> {
    let pos = Pos::of(e.span());
    let n = match e {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::Number(n, _) => n.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    };
    match n {
        Some(n) if n >= min => Ok(n),
        _ => Err(ExprError::new(
            format!("{what} must be a whole number literal of at least {min}, found `{e}`"),
            pos,
        )),
    }
}

fn expect_bool(e: &Expr, what: &str, pos: Option<Pos>) -> Result<(), ExprError> {
    if matches!(e.ty, DataType::Boolean | DataType::Null) {
        Ok(())
    } else {
        Err(ExprError::new(
            format!("{what} needs a bool, found {}", type_name(&e.ty)),
            pos,
        ))
    }
}

fn expect_string(e: &Expr, what: &str, pos: Option<Pos>) -> Result<(), ExprError> {
    if matches!(e.ty, DataType::Utf8 | DataType::Null) {
        Ok(())
    } else {
        Err(ExprError::new(
            format!(
                "`{what}` needs a string, found {}; use CAST(... AS string)",
                type_name(&e.ty)
            ),
            pos,
        ))
    }
}

fn literal(v: &sql::Value, pos: Option<Pos>) -> Result<Expr, ExprError> {
    let lit = |a: ArrayRef, nullable| {
        let ty = a.data_type().clone();
        Ok(node(Kind::Literal(a), ty, nullable))
    };
    match v {
        sql::Value::Null => lit(new_null_array(&DataType::Null, 1), true),
        sql::Value::Boolean(b) => lit(Arc::new(BooleanArray::from(vec![*b])), false),
        sql::Value::SingleQuotedString(s) => {
            lit(Arc::new(StringArray::from(vec![s.as_str()])), false)
        }
        sql::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                lit(Arc::new(Int64Array::from(vec![i])), false)
            } else if let Some(d) = decimal_literal(n) {
                lit(d, false)
            } else if let Ok(f) = n.parse::<f64>() {
                lit(Arc::new(Float64Array::from(vec![f])), false)
            } else {
                Err(ExprError::new(format!("bad number `{n}`"), pos))
            }
        }
        sql::Value::DoubleQuotedString(s) => Err(ExprError::new(
            format!(
                "\"{s}\" is a column name in double quotes; write text in single quotes: '{s}'"
            ),
            pos,
        )),
        other => Err(ExprError::new(
            format!("literal `{other}` is not supported"),
            pos,
        )),
    }
}

/// `12.50` is an exact decimal(4,2), as in SQL; exponents make floats.
fn decimal_literal(n: &str) -> Option<ArrayRef> {
    let (int, frac) = n.split_once('.')?;
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let scale = frac.len();
    let precision = digits.len().max(scale).max(1);
    if precision > 38 {
        return None;
    }
    let value: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let array = Decimal128Array::from(vec![value])
        .with_precision_and_scale(precision as u8, scale as i8)
        .ok()?;
    Some(Arc::new(array))
}

/// Map a SQL type name onto the pipeline type vocabulary.
fn sql_type(t: &sql::DataType, pos: Option<Pos>) -> Result<DataType, ExprError> {
    let written = t.to_string().to_ascii_lowercase();
    let compact: String = written.chars().filter(|c| !c.is_whitespace()).collect();
    let alias = match compact.as_str() {
        "varchar" | "char" | "charactervarying" => "string",
        "bigint" => "int64",
        "real" => "float32",
        "doubleprecision" => "double",
        other => other,
    };
    let alias = alias.replace("numeric(", "decimal(");
    ColumnType::parse(&alias)
        .map(|t| t.to_arrow())
        .map_err(|_| {
            ExprError::new(
                format!(
                    "unknown type `{written}` in CAST; types: {}, and the SQL names varchar, bigint, real, double precision, numeric(p,s)",
                    flowengine_engine::schema::TYPE_NAMES
                ),
                pos,
            )
        })
}

fn arith(op: Arith, l: Expr, r: Expr, pos: Option<Pos>) -> Result<Expr, ExprError> {
    let sym = match op {
        Arith::Add => "+",
        Arith::Sub => "-",
        Arith::Mul => "*",
        Arith::Div => "/",
        Arith::Rem => "%",
    };
    let numeric = |t: &DataType| is_numeric(t) || *t == DataType::Null;
    if !numeric(&l.ty) || !numeric(&r.ty) {
        let hint = if l.ty == DataType::Utf8 || r.ty == DataType::Utf8 {
            "; `||` joins strings"
        } else {
            ""
        };
        return Err(ExprError::new(
            format!(
                "`{sym}` needs numbers, found {} and {}{hint}",
                type_name(&l.ty),
                type_name(&r.ty)
            ),
            pos,
        ));
    }
    let (l, r) = coerce_pair(l, r, pos, sym)?;
    // Whole numbers compute in int64 so int32 columns do not overflow; `/` is true division.
    let ty = match (&l.ty, op) {
        (t, Arith::Div) if t.is_integer() || *t == DataType::Null => DataType::Float64,
        (t, _) if t.is_integer() || *t == DataType::Null => DataType::Int64,
        (t, _) => t.clone(),
    };
    let (l, r) = if matches!(ty, DataType::Decimal128(..)) {
        (l, r)
    } else {
        (coerce_to(l, &ty, pos)?, coerce_to(r, &ty, pos)?)
    };
    // Decimal precision and scale follow Arrow's rules; ask the kernel on empty input.
    let out_ty = if matches!(ty, DataType::Decimal128(..)) {
        let probe_l = arrow_array::new_empty_array(&l.ty);
        let probe_r = arrow_array::new_empty_array(&r.ty);
        let probed = match op {
            Arith::Add => arrow_arith::numeric::add(&probe_l, &probe_r),
            Arith::Sub => arrow_arith::numeric::sub(&probe_l, &probe_r),
            Arith::Mul => arrow_arith::numeric::mul(&probe_l, &probe_r),
            Arith::Div => arrow_arith::numeric::div(&probe_l, &probe_r),
            Arith::Rem => arrow_arith::numeric::rem(&probe_l, &probe_r),
        };
        probed
            .map_err(|e| ExprError::new(format!("`{sym}`: {e}"), pos))?
            .data_type()
            .clone()
    } else {
        ty
    };
    // Division by zero gives null, so `/` and `%` can always be null.
    let nullable = l.nullable || r.nullable || matches!(op, Arith::Div | Arith::Rem);
    fold(node(Kind::Arith(op, boxed(l), boxed(r)), out_ty, nullable))
}

fn compare(op: Cmp, l: Expr, r: Expr, pos: Option<Pos>) -> Result<Expr, ExprError> {
    let sym = match op {
        Cmp::Eq => "=",
        Cmp::Ne => "<>",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    };
    let (l, r) = coerce_pair(l, r, pos, sym)?;
    let (l, r) = if l.ty == DataType::Null {
        (null_as(l, &DataType::Utf8), null_as(r, &DataType::Utf8))
    } else {
        (l, r)
    };
    let nullable = l.nullable || r.nullable;
    fold(node(
        Kind::Compare(op, boxed(l), boxed(r)),
        DataType::Boolean,
        nullable,
    ))
}

/// Evaluate a node whose inputs are all constants now, so per-batch work is only on columns.
fn fold(e: Expr) -> Result<Expr, ExprError> {
    if !e
        .children()
        .iter()
        .all(|c| matches!(c.kind, Kind::Literal(_)))
        || e.children().is_empty()
    {
        return Ok(e);
    }
    match crate::native::eval::eval_constant(&e) {
        Ok(a) => {
            let nullable = a.null_count() > 0;
            let ty = e.ty.clone();
            Ok(node(Kind::Literal(a), ty, nullable))
        }
        // Leave it to the batch: the same error is then reported with the row.
        Err(_) => Ok(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::parse::parse;
    use arrow_schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("age", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("active", DataType::Boolean, false),
            Field::new("signup", DataType::Date32, false),
            Field::new("value", DataType::Float64, false),
            Field::new("Odd Name", DataType::Int64, false),
        ])
    }

    fn checked(text: &str) -> Result<Expr, ExprError> {
        check(&parse(text)?, &schema())
    }

    #[test]
    fn literals_take_the_column_type() {
        let e = checked("age >= 30").unwrap();
        let Kind::Compare(_, l, r) = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(l.ty, DataType::Int32);
        assert_eq!(r.ty, DataType::Int32);
        let e = checked("signup >= '2020-01-01'").unwrap();
        let Kind::Compare(_, _, r) = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(r.ty, DataType::Date32);
    }

    #[test]
    fn unknown_column_names_the_known_ones_and_the_position() {
        let err = checked("agee * 2").unwrap_err();
        assert!(
            err.message
                .contains("unknown column `agee` (did you mean `age`?)"),
            "{err}"
        );
        assert!(err.message.contains("known columns: age, name"), "{err}");
        assert_eq!(err.pos, Some(Pos { line: 1, column: 1 }));
        let err = checked("age + \"nope\"").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 1, column: 7 }));
    }

    #[test]
    fn quoted_names_and_case() {
        assert_eq!(checked("\"Odd Name\" + 1").unwrap().ty, DataType::Int64);
        assert_eq!(checked("AGE").unwrap().ty, DataType::Int32);
    }

    #[test]
    fn type_errors() {
        for (text, want) in [
            ("name + 1", "`+` needs numbers, found string and int64"),
            ("active AND age", "AND needs a bool, found int32"),
            ("upper(age)", "`upper` needs a string, found int32"),
            ("hour(signup)", "hour of a date value"),
            ("age = 'x'", "`=` cannot combine int32 and string"),
            ("nosuch(age)", "unknown function `nosuch`"),
            ("CAST(signup AS int)", "cannot CAST date to int32"),
            (
                "CAST('x' AS int)",
                "the constant `x` cannot be converted to int32",
            ),
            ("age >= ", "Expected: an expression"),
            ("age age", "unexpected `age`"),
        ] {
            let err = checked(text).unwrap_err();
            assert!(err.message.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn integer_arithmetic_widens_and_division_is_true_division() {
        assert_eq!(checked("age * 2").unwrap().ty, DataType::Int64);
        assert_eq!(checked("age / 2").unwrap().ty, DataType::Float64);
        assert_eq!(checked("value + age").unwrap().ty, DataType::Float64);
    }

    #[test]
    fn case_types_and_nullability() {
        let e = checked("CASE WHEN value >= 50000 THEN 'high' ELSE 'low' END").unwrap();
        assert_eq!(e.ty, DataType::Utf8);
        assert!(!e.nullable);
        assert!(checked("CASE WHEN active THEN 1 END").unwrap().nullable);
    }

    #[test]
    fn render_points_at_the_column() {
        let err = checked("age + nme").unwrap_err();
        let shown = err.render("age + nme");
        assert!(shown.ends_with("    age + nme\n          ^"), "{shown}");
    }
}

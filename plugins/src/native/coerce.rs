//! Type coercion rules of the expression language, used by [`super::check`]: which types CAST
//! converts between, how a constant takes the type of the column it meets (exactly, or not at all),
//! the type two operands widen to, and how a bare `NULL` gets a type.

use arrow_array::{new_null_array, Array, ArrayRef};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, TimeUnit};
use flowengine_engine::schema::{type_name, ColumnType};

use super::parse::{ExprError, Pos};
use super::tree::{boxed, node, Expr, Kind};

/// A bare `NULL` has no type of its own; as a column it is a string column of nulls, as in CASE.
pub fn as_column(e: Expr) -> Expr {
    null_as(e, &DataType::Utf8)
}

pub(super) fn is_numeric(ty: &DataType) -> bool {
    ty.is_integer() || ty.is_floating() || matches!(ty, DataType::Decimal128(..))
}

/// A literal `NULL` takes the type the context asks for.
pub(super) fn null_as(e: Expr, ty: &DataType) -> Expr {
    if e.ty == DataType::Null {
        node(Kind::Literal(new_null_array(ty, 1)), ty.clone(), true)
    } else {
        e
    }
}

/// Can values of `from` be converted to `to` by CAST at all?
pub fn castable(from: &DataType, to: &DataType) -> bool {
    use DataType as D;
    let base = |t: &DataType| {
        matches!(t, D::Utf8 | D::Boolean | D::Date32 | D::Timestamp(..)) || is_numeric(t)
    };
    match (from, to) {
        (D::Null, _) => true,
        (D::Date32 | D::Timestamp(..), t) | (t, D::Date32 | D::Timestamp(..))
            if is_numeric(t) || *t == D::Boolean =>
        {
            false
        }
        _ => base(from) && base(to),
    }
}

pub(super) fn cast_node(
    inner: Expr,
    target: DataType,
    try_: bool,
    pos: Option<Pos>,
) -> Result<Expr, ExprError> {
    if inner.ty == target {
        return Ok(inner);
    }
    if !castable(&inner.ty, &target) {
        return Err(ExprError::new(
            format!(
                "cannot CAST {} to {}",
                type_name(&inner.ty),
                type_name(&target)
            ),
            pos,
        ));
    }
    // A constant is converted now, so a bad literal is a config error rather than a reject on
    // every row.
    if let Kind::Literal(a) = &inner.kind {
        let out = cast_literal(a, &target).ok_or_else(|| {
            ExprError::new(
                format!(
                    "the constant `{}` cannot be converted to {}",
                    show(a),
                    type_name(&target)
                ),
                pos,
            )
        })?;
        let nullable = out.null_count() > 0;
        return Ok(node(Kind::Literal(out), target, nullable));
    }
    let nullable = inner.nullable || try_;
    Ok(node(Kind::Cast(boxed(inner), try_), target, nullable))
}

fn show(a: &ArrayRef) -> String {
    arrow_cast::display::ArrayFormatter::try_new(a.as_ref(), &Default::default())
        .map(|f| f.value(0).to_string())
        .unwrap_or_default()
}

/// Convert a one-value array exactly: `None` when the value does not convert or would change
/// (a fraction dropped, a decimal rounded).
pub fn cast_literal(a: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let out = cast_with_options(a, to, &safe).ok()?;
    if out.logical_null_count() > a.logical_null_count() {
        return None;
    }
    if lossy_target(a.data_type(), to) {
        let back = cast_with_options(&out, a.data_type(), &safe).ok()?;
        if back.to_data() != a.to_data() {
            return None;
        }
    }
    Some(out)
}

/// Numeric conversions that can drop digits, so a conversion must round-trip to count as exact.
pub fn lossy_target(from: &DataType, to: &DataType) -> bool {
    is_numeric(from) && (to.is_integer() || matches!(to, DataType::Decimal128(..)))
}

/// The type two operands are compared or combined in, when neither is a constant that can simply
/// take the other's type.
fn wider(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType as D;
    if a == b {
        return Some(a.clone());
    }
    Some(match (a, b) {
        (D::Null, t) | (t, D::Null) => t.clone(),
        (D::Int32, D::Int64) | (D::Int64, D::Int32) => D::Int64,
        (D::Float32, D::Float64) | (D::Float64, D::Float32) => D::Float64,
        (x, y) if x.is_floating() && is_numeric(y) || y.is_floating() && is_numeric(x) => {
            D::Float64
        }
        (D::Decimal128(p1, s1), D::Decimal128(p2, s2)) => {
            let s = (*s1).max(*s2);
            let int = (*p1 as i16 - *s1 as i16).max(*p2 as i16 - *s2 as i16);
            D::Decimal128((int + s as i16).min(38) as u8, s)
        }
        (D::Decimal128(..), i) | (i, D::Decimal128(..)) if i.is_integer() => {
            let as_dec = if *i == D::Int32 {
                D::Decimal128(10, 0)
            } else {
                D::Decimal128(19, 0)
            };
            let other = if matches!(a, D::Decimal128(..)) { a } else { b };
            return wider(other, &as_dec);
        }
        (D::Timestamp(u, _), D::Timestamp(v, _)) if u == v => D::Timestamp(*u, None),
        _ => return None,
    })
}

/// Give `e` type `ty`: constants are converted now (exactly), columns through a CAST node whose
/// conversion cannot fail (a widening).
pub(super) fn coerce_to(e: Expr, ty: &DataType, pos: Option<Pos>) -> Result<Expr, ExprError> {
    if &e.ty == ty {
        return Ok(e);
    }
    if let Kind::Literal(a) = &e.kind {
        if let Some(out) = cast_literal(a, ty) {
            let nullable = e.nullable;
            return Ok(node(Kind::Literal(out), ty.clone(), nullable));
        }
        return Err(ExprError::new(
            format!(
                "the constant `{}` is not a valid {}",
                show(a),
                type_name(ty)
            ),
            pos,
        ));
    }
    let nullable = e.nullable;
    Ok(node(Kind::Cast(boxed(e), false), ty.clone(), nullable))
}

/// Bring two operands to one type. A constant takes the column's type when it converts exactly
/// (`age >= 30` stays int32, `signup_date >= '2020-01-01'` compares dates); otherwise both widen.
pub(super) fn coerce_pair(
    l: Expr,
    r: Expr,
    pos: Option<Pos>,
    what: &str,
) -> Result<(Expr, Expr), ExprError> {
    if l.ty == r.ty {
        return Ok((l, r));
    }
    let literal_fits = |lit: &Expr, other: &Expr| match &lit.kind {
        Kind::Literal(a) if !matches!(other.kind, Kind::Literal(_)) => {
            let text_to_number = a.data_type() == &DataType::Utf8 && is_numeric(&other.ty);
            !text_to_number && cast_literal(a, &other.ty).is_some()
        }
        _ => false,
    };
    if literal_fits(&r, &l) {
        let ty = l.ty.clone();
        return Ok((l, coerce_to(r, &ty, pos)?));
    }
    if literal_fits(&l, &r) {
        let ty = r.ty.clone();
        return Ok((coerce_to(l, &ty, pos)?, r));
    }
    let Some(ty) = wider(&l.ty, &r.ty) else {
        return Err(mismatch(what, &l.ty, &r.ty, pos));
    };
    Ok((coerce_to(l, &ty, pos)?, coerce_to(r, &ty, pos)?))
}

fn mismatch(what: &str, l: &DataType, r: &DataType, pos: Option<Pos>) -> ExprError {
    ExprError::new(
        format!(
            "`{what}` cannot combine {} and {}; CAST one side",
            type_name(l),
            type_name(r)
        ),
        pos,
    )
}

pub(super) fn common_type(
    items: &[&Expr],
    what: &str,
    pos: Option<Pos>,
) -> Result<DataType, ExprError> {
    // Columns decide first, so `CASE WHEN .. THEN price ELSE 0 END` keeps price's type.
    let mut ty = DataType::Null;
    let columns = items.iter().filter(|e| !matches!(e.kind, Kind::Literal(_)));
    let literals = items.iter().filter(|e| matches!(e.kind, Kind::Literal(_)));
    for e in columns {
        ty = wider(&ty, &e.ty).ok_or_else(|| mismatch(what, &ty, &e.ty, pos))?;
    }
    for e in literals {
        let Kind::Literal(a) = &e.kind else { continue };
        if ty == DataType::Null || cast_literal(a, &ty).is_none() {
            ty = wider(&ty, &e.ty).ok_or_else(|| mismatch(what, &ty, &e.ty, pos))?;
        }
    }
    if ty == DataType::Null {
        // Every branch is NULL: a string column of nulls.
        ty = DataType::Utf8;
    }
    Ok(ty)
}

/// `x || y` takes any type and formats it as the sinks do (ISO dates, `true`/`false`).
pub(super) fn to_string(e: Expr, pos: Option<Pos>) -> Result<Expr, ExprError> {
    match &e.ty {
        DataType::Utf8 => Ok(e),
        DataType::Null => Ok(null_as(e, &DataType::Utf8)),
        _ => cast_node(e, DataType::Utf8, false, pos),
    }
}

/// The Arrow type a declared type name means, for `Cast`'s config.
pub fn declared_type(written: &str) -> Result<DataType, String> {
    ColumnType::parse(written).map(|t| t.to_arrow())
}

/// The timestamp type CAST produces (`datetime` without a zone).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

//! One output column's state across groups: what each aggregate function keeps per group, how a
//! batch of values folds in, and the column of results at the end.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Decimal128Array, Float64Array, Int64Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::DataType;
use flowengine_engine::error::RunError;

use super::super::keys::{self, KeySet};
use super::super::node_error;
use super::{Func, Planned};

/// The largest magnitude a `decimal(38, s)` holds, plus one.
const DECIMAL_LIMIT: i128 = 10i128.pow(38);

/// One output column's state across groups.
pub(super) enum State {
    /// `count(*)`, or `count(col)` (which counts the values that are not null).
    Count {
        counts: Vec<i64>,
    },
    /// `count(DISTINCT col)`: each group's values seen, as the group's number followed by the
    /// value's key (so NaNs are one value, and `-0` and `0` another).
    CountDistinct {
        converter: RowConverter,
        seen: KeySet,
        counts: Vec<i64>,
    },
    SumInt {
        sums: Vec<Option<i64>>,
    },
    SumFloat {
        sums: Vec<Option<f64>>,
        avg: Option<Vec<i64>>,
    },
    SumDecimal {
        sums: Vec<Option<i128>>,
        /// For `avg`: the counts, and how many digits the result's scale adds (4, fewer near 38).
        avg: Option<(Vec<i64>, u8)>,
        out: DataType,
    },
    /// `min`, `max`, `first`, `last`: each group's value as an `arrow-row` key of its column.
    Pick {
        func: Func,
        ty: DataType,
        converter: RowConverter,
        /// `min`, `max`: each group's value so far, as compared.
        best: Vec<Option<Box<[u8]>>>,
        values: Vec<Option<Option<Box<[u8]>>>>,
    },
}

impl State {
    /// The state of `p`, whose input column (if any) is of type `ty`.
    pub(super) fn new(p: &Planned, ty: Option<&DataType>) -> Result<State, String> {
        let converter = |ty: &DataType| {
            RowConverter::new(vec![SortField::new(ty.clone())]).map_err(|e| e.to_string())
        };
        Ok(match (p.func, ty) {
            (Func::Count, Some(ty)) if p.distinct => State::CountDistinct {
                converter: converter(ty)?,
                seen: KeySet::default(),
                counts: Vec::new(),
            },
            (Func::CountStar | Func::Count, _) => State::Count { counts: Vec::new() },
            (Func::Sum, Some(DataType::Int32 | DataType::Int64)) => {
                State::SumInt { sums: Vec::new() }
            }
            (Func::Sum | Func::Avg, Some(DataType::Decimal128(_, s))) => {
                let added = match p.field.data_type() {
                    DataType::Decimal128(_, out) => (*out - s) as u8,
                    _ => 0,
                };
                State::SumDecimal {
                    sums: Vec::new(),
                    avg: (p.func == Func::Avg).then(|| (Vec::new(), added)),
                    out: p.field.data_type().clone(),
                }
            }
            (Func::Sum | Func::Avg, Some(_)) => State::SumFloat {
                sums: Vec::new(),
                avg: (p.func == Func::Avg).then(Vec::new),
            },
            (func, Some(ty)) => State::Pick {
                func,
                converter: converter(ty)?,
                ty: ty.clone(),
                best: Vec::new(),
                values: Vec::new(),
            },
            (_, None) => return Err("internal error (a bug in FlowEngine): no column".into()),
        })
    }

    /// Bytes the state takes.
    pub(super) fn bytes(&self) -> usize {
        match self {
            State::Count { counts } => counts.capacity() * 8,
            State::CountDistinct { seen, counts, .. } => seen.bytes() + counts.capacity() * 8,
            State::SumInt { sums, .. } => sums.capacity() * 16,
            State::SumFloat { sums, avg, .. } => {
                sums.capacity() * 16 + avg.as_ref().map_or(0, |a| a.capacity() * 8)
            }
            State::SumDecimal { sums, avg, .. } => {
                sums.capacity() * 32 + avg.as_ref().map_or(0, |a| a.0.capacity() * 8)
            }
            State::Pick { values, best, .. } => {
                values.capacity() * 24
                    + best.capacity() * 16
                    + best.iter().flatten().map(|b| b.len()).sum::<usize>()
                    + values
                        .iter()
                        .map(|v| v.as_ref().and_then(|v| v.as_ref()).map_or(0, |b| b.len()))
                        .sum::<usize>()
            }
        }
    }

    /// Fold a batch in: row `r` has value `values[r]` (none for `count(*)`) and belongs to group
    /// `group[r]`; there are `groups` groups so far.
    pub(super) fn update(
        &mut self,
        node: &str,
        values: Option<&ArrayRef>,
        group: &[usize],
        groups: usize,
    ) -> Result<(), RunError> {
        let column = || {
            values.ok_or_else(|| {
                RunError::Internal(format!("{node}: an aggregate lost its input column"))
            })
        };
        let overflow = |what: &str| RunError::Node {
            node: node.to_string(),
            message: format!("{what} overflowed; no wrong number is written"),
        };
        match self {
            State::Count { counts } => {
                counts.resize(groups, 0);
                match values {
                    Some(values) => {
                        for (r, &g) in group.iter().enumerate() {
                            counts[g] += i64::from(values.is_valid(r));
                        }
                    }
                    None => group.iter().for_each(|&g| counts[g] += 1),
                }
            }
            State::CountDistinct {
                converter,
                seen,
                counts,
            } => {
                counts.resize(groups, 0);
                let values = column()?;
                let rows = converter
                    .convert_columns(&[keys::normalize(values)])
                    .map_err(|e| node_error(node, e))?;
                let mut key = Vec::new();
                for (r, &g) in group.iter().enumerate() {
                    if values.is_valid(r) {
                        key.clear();
                        key.extend_from_slice(&(g as u64).to_le_bytes());
                        key.extend_from_slice(rows.row(r).as_ref());
                        counts[g] += i64::from(seen.insert(&key).1);
                    }
                }
            }
            State::SumInt { sums } => {
                sums.resize(groups, None);
                let values = as_i64(column()?);
                for (r, &g) in group.iter().enumerate() {
                    if let Some(v) = values.get(r).copied().flatten() {
                        let s = sums[g]
                            .unwrap_or(0)
                            .checked_add(v)
                            .ok_or_else(|| overflow("a sum (int64)"))?;
                        sums[g] = Some(s);
                    }
                }
            }
            State::SumFloat { sums, avg } => {
                sums.resize(groups, None);
                if let Some(counts) = avg.as_mut() {
                    counts.resize(groups, 0);
                }
                let values = as_f64(column()?);
                for (r, &g) in group.iter().enumerate() {
                    if let Some(v) = values[r] {
                        sums[g] = Some(sums[g].unwrap_or(0.0) + v);
                        if let Some(counts) = avg.as_mut() {
                            counts[g] += 1;
                        }
                    }
                }
            }
            State::SumDecimal { sums, avg, .. } => {
                sums.resize(groups, None);
                if let Some((counts, _)) = avg.as_mut() {
                    counts.resize(groups, 0);
                }
                let values = column()?.as_primitive::<Decimal128Type>();
                for (r, &g) in group.iter().enumerate() {
                    if values.is_null(r) {
                        continue;
                    }
                    let s = sums[g]
                        .unwrap_or(0)
                        .checked_add(values.value(r))
                        .filter(|s| s.abs() < DECIMAL_LIMIT)
                        .ok_or_else(|| overflow("a decimal sum (38 digits)"))?;
                    sums[g] = Some(s);
                    if let Some((counts, _)) = avg.as_mut() {
                        counts[g] += 1;
                    }
                }
            }
            State::Pick {
                func,
                converter,
                values: picked,
                best,
                ..
            } => {
                picked.resize(groups, None);
                let array = column()?;
                let convert = |a: &ArrayRef| {
                    converter
                        .convert_columns(std::slice::from_ref(a))
                        .map_err(|e| node_error(node, e))
                };
                let raw = convert(array)?;
                if matches!(func, Func::First | Func::Last) {
                    for (r, &g) in group.iter().enumerate() {
                        if *func == Func::Last || picked[g].is_none() {
                            picked[g] = Some(array.is_valid(r).then(|| raw.row(r).as_ref().into()));
                        }
                    }
                    return Ok(());
                }
                // min and max compare as `Sort` does (one NaN, above every number; -0 = 0), and
                // keep the value as it was (`-0.0` stays `-0.0`).
                best.resize(groups, None);
                let compared = convert(&keys::normalize(array))?;
                for (r, &g) in group.iter().enumerate() {
                    if array.is_null(r) {
                        continue;
                    }
                    let candidate = compared.row(r);
                    let better = match &best[g] {
                        None => true,
                        Some(old) if *func == Func::Min => candidate.as_ref() < &old[..],
                        Some(old) => candidate.as_ref() > &old[..],
                    };
                    if better {
                        best[g] = Some(candidate.as_ref().into());
                        picked[g] = Some(Some(raw.row(r).as_ref().into()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The column of results, groups in `order`.
    pub(super) fn finish(
        &mut self,
        node: &str,
        order: &[usize],
        groups: usize,
    ) -> Result<ArrayRef, RunError> {
        Ok(match self {
            State::Count { counts } | State::CountDistinct { counts, .. } => {
                counts.resize(groups, 0);
                Arc::new(Int64Array::from_iter_values(
                    order.iter().map(|&g| counts[g]),
                ))
            }
            State::SumInt { sums, .. } => {
                sums.resize(groups, None);
                Arc::new(Int64Array::from_iter(order.iter().map(|&g| sums[g])))
            }
            State::SumFloat { sums, avg, .. } => {
                sums.resize(groups, None);
                let value = |g: usize| match avg.as_ref() {
                    Some(counts) => sums[g].map(|s| s / counts[g] as f64),
                    None => sums[g],
                };
                Arc::new(Float64Array::from_iter(order.iter().map(|&g| value(g))))
            }
            State::SumDecimal { sums, avg, out, .. } => {
                sums.resize(groups, None);
                let mut values = Vec::with_capacity(order.len());
                for &g in order {
                    values.push(match (sums[g], avg.as_ref()) {
                        (Some(s), Some((counts, added))) => {
                            Some(decimal_avg(s, counts[g], *added).ok_or_else(|| {
                                RunError::Node {
                                node: node.to_string(),
                                message:
                                    "an average overflowed decimal(38); no wrong number is written"
                                        .into(),
                            }
                            })?)
                        }
                        (s, _) => s,
                    });
                }
                let array = Decimal128Array::from(values).with_data_type(out.clone());
                Arc::new(array)
            }
            State::Pick {
                converter,
                values,
                ty,
                ..
            } => {
                values.resize(groups, None);
                let parser = converter.parser();
                // Nulls are rebuilt from a null row of the converter's own making.
                let null = converter
                    .convert_columns(&[arrow_array::new_null_array(ty, 1)])
                    .map_err(|e| node_error(node, e))?;
                let rows = order.iter().map(|&g| match &values[g] {
                    Some(Some(bytes)) => parser.parse(bytes),
                    _ => null.row(0),
                });
                let mut columns = converter
                    .convert_rows(rows)
                    .map_err(|e| node_error(node, e))?;
                columns.remove(0)
            }
        })
    }
}

/// `sum / count` with `added` more digits of scale, rounded half away from zero.
fn decimal_avg(sum: i128, count: i64, added: u8) -> Option<i128> {
    let scaled = sum.checked_mul(10i128.pow(u32::from(added)))?;
    let count = i128::from(count);
    let (q, r) = (scaled / count, scaled % count);
    let q = if r.abs() * 2 >= count {
        q + scaled.signum()
    } else {
        q
    };
    (q.abs() < DECIMAL_LIMIT).then_some(q)
}

fn as_i64(array: &ArrayRef) -> Vec<Option<i64>> {
    match array.data_type() {
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        _ => array.as_primitive::<Int64Type>().iter().collect(),
    }
}

fn as_f64(array: &ArrayRef) -> Vec<Option<f64>> {
    match array.data_type() {
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|v| v as f64))
            .collect(),
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        _ => array.as_primitive::<Float64Type>().iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_averages_round_half_away_from_zero() {
        // 1.00 + 2.00 + 2.00 = 5.00 over 3 = 1.666666 -> 1.666667 (scale 2 + 4).
        assert_eq!(decimal_avg(500, 3, 4), Some(1_666_667));
        assert_eq!(decimal_avg(-500, 3, 4), Some(-1_666_667));
        assert_eq!(decimal_avg(1, 2, 0), Some(1));
        assert_eq!(decimal_avg(-1, 2, 0), Some(-1));
        assert_eq!(decimal_avg(i128::MAX, 1, 4), None);
    }
}

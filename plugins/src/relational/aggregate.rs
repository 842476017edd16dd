//! `Aggregate`: one row per group of `GroupBy` keys (one row in all without them), with the
//! `Columns` computed over each group: `count(*)`, `count(col)`, `sum`, `avg`, `min`, `max`,
//! `first`, `last`.
//!
//! Result types are SQL's: `count` is `int64`; `sum` of integers is `int64` and of `decimal(p,s)`
//! an exact `decimal(38,s)`, and an overflow of either is the run's error, never a wrong number;
//! `avg` of integers or doubles is a `double`, and of `decimal(p,s)` a `decimal(38,s+4)` rounded
//! half away from zero; `min`, `max`, `first` and `last` keep the column's type. Nulls are skipped
//! except by `count(*)`, `first` and `last`; a group with no value has a null `sum`/`avg`/`min`/`max`.
//! `min` and `max` order values as `Sort` does (NaN above every number).
//!
//! Groups are found with the keys of `keys.rs` in a [`KeySet`]; each column keeps one state per
//! group. The output comes in key order (ascending, nulls last), or first-appearance order with
//! `Order: input`. The groups must fit the node's share of `MemoryLimit`; past it the run fails
//! and says how much they took (spilling groups is not supported yet).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, Output, StatefulTransform, TransformConfig,
};
use flowengine_engine::error::{BuildError, ConfigErrorKind, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::Batch;

use super::keys::{self, KeyItem, KeySet, Keys};
use super::{node_error, Provenance};

/// The largest magnitude a `decimal(38, s)` holds, plus one.
const DECIMAL_LIMIT: i128 = 10i128.pow(38);

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
}

/// One output column: its name, function and input column as written.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    func: Func,
    column: Option<String>,
    path: String,
}

/// Whether the output follows the keys or the order groups first appear in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Keys,
    Input,
}

/// Parsed `Aggregate` config.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    group_by: Vec<KeyItem>,
    columns: Vec<Spec>,
    order: Order,
}

/// Parse an `Aggregate` `Config` map: `GroupBy` (optional), `Columns` (required) and `Order`.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let group_by = match m.has("GroupBy") {
        true => Some(keys::read_items(m, cx, "GroupBy", false)?),
        false => Some(Vec::new()),
    };
    let columns = match m.map(cx, "Columns") {
        Some(mut c) => {
            let mut specs = Vec::new();
            let mut ok = true;
            for (name, mark, node) in c.take_all() {
                let path = format!("{}.{name}", c.path());
                let Some(text) = node.as_scalar() else {
                    let kind = ConfigErrorKind::InvalidValue {
                        expected: "an aggregate such as `sum(amount)`".into(),
                        found: node.kind_name().into(),
                    };
                    cx.error(kind, &path, node.mark);
                    ok = false;
                    continue;
                };
                let Some(text) = cx.substitute(text, &path, mark) else {
                    ok = false;
                    continue;
                };
                match parse_call(&text) {
                    Ok((func, column)) => specs.push(Spec {
                        name: name.to_string(),
                        func,
                        column,
                        path,
                    }),
                    Err(message) => {
                        let kind = ConfigErrorKind::InvalidValue {
                            expected: message,
                            found: format!("`{text}`"),
                        };
                        cx.error(kind, &path, node.mark);
                        ok = false;
                    }
                }
            }
            if specs.is_empty() && ok {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "at least one `name: aggregate`".into(),
                    found: "an empty map".into(),
                };
                cx.error(kind, c.path(), c.mark());
                ok = false;
            }
            ok.then_some(specs)
        }
        None => {
            m.missing(cx, "Columns");
            None
        }
    };
    let order = m
        .choice(
            cx,
            "Order",
            &[("keys", Order::Keys), ("input", Order::Input)],
        )
        .unwrap_or(Order::Keys);
    Some(Box::new(AggregateConfig {
        group_by: group_by?,
        columns: columns?,
        order,
    }))
}

/// `sum(amount)`, `count(*)`, `max("first name")`: a function and its column.
fn parse_call(text: &str) -> Result<(Func, Option<String>), String> {
    let expected = || {
        "an aggregate: count(*), count(col), sum(col), avg(col), min(col), max(col), first(col) or last(col)"
            .to_string()
    };
    let text = text.trim();
    let open = text.find('(').ok_or_else(expected)?;
    let inner = text[open + 1..]
        .strip_suffix(')')
        .ok_or_else(expected)?
        .trim();
    let name = text[..open].trim().to_ascii_lowercase();
    let upper = inner.to_ascii_uppercase();
    if upper.starts_with("DISTINCT ") || upper.contains(" FILTER") || text.contains(") FILTER") {
        return Err("an aggregate without DISTINCT or FILTER, which are not supported yet".into());
    }
    let column = match inner.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => inner.to_string(),
    };
    let func = match (name.as_str(), inner) {
        ("count", "*") => return Ok((Func::CountStar, None)),
        ("count", _) => Func::Count,
        ("sum", _) => Func::Sum,
        ("avg", _) => Func::Avg,
        ("min", _) => Func::Min,
        ("max", _) => Func::Max,
        ("first", _) => Func::First,
        ("last", _) => Func::Last,
        _ => return Err(expected()),
    };
    if column.is_empty()
        || column == "*"
        || (!inner.starts_with('"') && inner.contains(char::is_whitespace))
    {
        return Err(expected());
    }
    Ok((func, Some(column)))
}

/// A column spec checked against the input: its input column and output field.
#[derive(Debug, Clone)]
struct Planned {
    func: Func,
    column: Option<usize>,
    field: Field,
}

impl AggregateConfig {
    fn plan(&self, input: &Schema) -> Result<(Keys, Vec<Planned>, SchemaRef), Vec<PlanError>> {
        let keys = Keys::resolve(&self.group_by, input);
        let mut errors = keys.as_ref().err().cloned().unwrap_or_default();
        let mut fields: Vec<Field> = Vec::new();
        if let Ok(keys) = &keys {
            fields.extend(keys.columns.iter().map(|&i| input.field(i).clone()));
        }
        let mut planned = Vec::new();
        for spec in &self.columns {
            match plan_column(spec, input) {
                Ok(p) => {
                    if fields.iter().any(|f| f.name() == &spec.name) {
                        errors.push(PlanError::at(
                            &spec.path,
                            None,
                            format!("`{}` is already a column of the output", spec.name),
                        ));
                    }
                    fields.push(p.field.clone());
                    planned.push(p);
                }
                Err(e) => errors.push(e),
            }
        }
        match keys {
            Ok(keys) if errors.is_empty() => Ok((keys, planned, Arc::new(Schema::new(fields)))),
            _ => Err(errors),
        }
    }
}

fn plan_column(spec: &Spec, input: &Schema) -> Result<Planned, PlanError> {
    let field = |ty: DataType, nullable: bool| Field::new(&spec.name, ty, nullable);
    let Some(name) = &spec.column else {
        return Ok(Planned {
            func: spec.func,
            column: None,
            field: field(DataType::Int64, false),
        });
    };
    let i = crate::native::find_column(input, name).ok_or_else(|| {
        PlanError::at(&spec.path, None, crate::native::unknown_column(input, name))
    })?;
    let ty = input.field(i).data_type().clone();
    let numeric = || {
        PlanError::at(
            &spec.path,
            None,
            format!(
                "`{name}` is {}; sum and avg need a number",
                flowengine_engine::schema::type_name(&ty)
            ),
        )
    };
    let out = match (spec.func, &ty) {
        (Func::Count | Func::CountStar, _) => field(DataType::Int64, false),
        (Func::Sum, DataType::Int32 | DataType::Int64) => field(DataType::Int64, true),
        (Func::Sum, DataType::Float32 | DataType::Float64) => field(DataType::Float64, true),
        (Func::Sum, DataType::Decimal128(_, s)) => field(DataType::Decimal128(38, *s), true),
        (Func::Avg, DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64) => {
            field(DataType::Float64, true)
        }
        (Func::Avg, DataType::Decimal128(_, s)) => {
            field(DataType::Decimal128(38, (*s + 4).min(38)), true)
        }
        (Func::Sum | Func::Avg, _) => return Err(numeric()),
        (Func::Min | Func::Max | Func::First | Func::Last, _) => field(ty.clone(), true),
    };
    Ok(Planned {
        func: spec.func,
        column: Some(i),
        field: out,
    })
}

impl TransformConfig for AggregateConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.plan(input).map(|(_, _, schema)| schema)
    }

    fn stateful(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let (keys, planned, output) = self.plan(&input).map_err(|e| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&e),
        })?;
        let states = planned
            .iter()
            .map(|p| State::new(p, &input))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| BuildError::Invalid {
                node: cx.node.clone(),
                message,
            })?;
        Ok(BuiltTransform::Stateful(Box::new(Aggregate {
            node: cx.node.clone(),
            names: self.columns.iter().map(|c| c.name.clone()).collect(),
            grouped: !self.group_by.is_empty(),
            keys,
            groups: KeySet::default(),
            firsts: Vec::new(),
            states,
            output,
            order: self.order,
            limit: usize::try_from(cx.state_bytes).unwrap_or(usize::MAX),
            rows: 0,
            provenance: Provenance::default(),
            done: false,
        })))
    }
}

struct Aggregate {
    node: String,
    /// The output column of each state.
    names: Vec<String>,
    grouped: bool,
    keys: Keys,
    groups: KeySet,
    /// Per group, its key as its first row wrote it: what the output shows.
    firsts: Vec<Box<[u8]>>,
    states: Vec<State>,
    output: SchemaRef,
    order: Order,
    limit: usize,
    rows: u64,
    provenance: Provenance,
    done: bool,
}

impl StatefulTransform for Aggregate {
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        let n = batch.num_rows();
        self.provenance.add(&batch);
        self.rows += n as u64;
        out.aggregated += n as u64;
        let group: Vec<usize> = if self.grouped {
            let columns = batch.data.columns();
            let rows = self.keys.rows(&self.node, columns)?;
            let mut raw = None;
            let mut group = Vec::with_capacity(n);
            for r in 0..n {
                let (g, new) = self.groups.insert(rows.row(r).as_ref());
                if new {
                    // The group's key as its first row wrote it (`-0.0` stays `-0.0`).
                    if raw.is_none() {
                        raw = Some(self.keys.raw_rows(&self.node, columns)?);
                    }
                    let raw = raw.as_ref().expect("set above");
                    self.firsts.push(raw.row(r).as_ref().into());
                }
                group.push(g);
            }
            group
        } else {
            self.groups.insert(&[]);
            vec![0; n]
        };
        let groups = self.groups.len();
        for (state, name) in self.states.iter_mut().zip(&self.names) {
            state
                .update(&self.node, batch.data.columns(), &group, groups)
                .map_err(|e| in_column(e, name))?;
        }
        self.check_memory()
    }

    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        if self.done {
            return Ok(false);
        }
        self.done = true;
        if !self.grouped && self.groups.is_empty() {
            // SQL: an aggregate without GROUP BY gives one row, even over no rows.
            self.groups.insert(&[]);
        }
        let groups = self.groups.len();
        let mut order: Vec<usize> = (0..groups).collect();
        let keys = self.groups.keys();
        if self.order == Order::Keys && self.grouped {
            order.sort_by(|&a, &b| keys[a].cmp(keys[b]));
        }
        let mut columns: Vec<ArrayRef> = if self.grouped {
            let picked: Vec<&[u8]> = order.iter().map(|&g| &self.firsts[g][..]).collect();
            self.keys.decode(&self.node, &picked)?
        } else {
            Vec::new()
        };
        for (state, name) in self.states.iter_mut().zip(&self.names) {
            let column = state.finish(&self.node, &order, groups);
            columns.push(column.map_err(|e| in_column(e, name))?);
        }
        let data = RecordBatch::try_new(self.output.clone(), columns)
            .map_err(|e| node_error(&self.node, e))?;
        // A group row stands for many input rows: it has no line of its own.
        let lines = arrow_array::UInt64Array::from(vec![None::<u64>; data.num_rows()]);
        out.batches
            .push(Batch::new(data, self.provenance.file(), lines));
        Ok(false)
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "{} rows aggregated into {} groups ({} of keys)",
            self.rows,
            self.groups.len(),
            human_bytes(self.groups.bytes() as u64)
        )]
    }

    fn aggregates(&self) -> bool {
        true
    }
}

impl Aggregate {
    fn check_memory(&self) -> Result<(), RunError> {
        let firsts =
            self.firsts.capacity() * 16 + self.firsts.iter().map(|k| k.len()).sum::<usize>();
        let used =
            self.groups.bytes() + firsts + self.states.iter().map(State::bytes).sum::<usize>();
        if used <= self.limit {
            return Ok(());
        }
        Err(RunError::Node {
            node: self.node.clone(),
            message: format!(
                "its {} groups take {}, more than its share of `MemoryLimit` ({}); raise \
                 `Settings.MemoryLimit` (the nodes that hold rows share half of it), or group by \
                 fewer columns",
                self.groups.len(),
                human_bytes(used as u64),
                human_bytes(self.limit as u64)
            ),
        })
    }
}

/// Name the output column in a node's error.
fn in_column(e: RunError, name: &str) -> RunError {
    match e {
        RunError::Node { node, message } => RunError::Node {
            node,
            message: format!("column `{name}`: {message}"),
        },
        e => e,
    }
}

/// One output column's state across groups.
enum State {
    Count {
        column: Option<usize>,
        counts: Vec<i64>,
    },
    SumInt {
        column: usize,
        sums: Vec<Option<i64>>,
    },
    SumFloat {
        column: usize,
        sums: Vec<Option<f64>>,
        avg: Option<Vec<i64>>,
    },
    SumDecimal {
        column: usize,
        sums: Vec<Option<i128>>,
        /// For `avg`: the counts, and how many digits the result's scale adds (4, fewer near 38).
        avg: Option<(Vec<i64>, u8)>,
        out: DataType,
    },
    /// `min`, `max`, `first`, `last`: each group's value as an `arrow-row` key of its column.
    Pick {
        column: usize,
        func: Func,
        ty: DataType,
        converter: RowConverter,
        /// `min`, `max`: each group's value so far, as compared.
        best: Vec<Option<Box<[u8]>>>,
        values: Vec<Option<Option<Box<[u8]>>>>,
    },
}

impl State {
    fn new(p: &Planned, input: &Schema) -> Result<State, String> {
        let column = p.column;
        let ty = column.map(|i| input.field(i).data_type().clone());
        Ok(match (p.func, ty) {
            (Func::CountStar | Func::Count, _) => State::Count {
                column: column.filter(|_| p.func == Func::Count),
                counts: Vec::new(),
            },
            (Func::Sum, Some(DataType::Int32 | DataType::Int64)) => State::SumInt {
                column: column.unwrap_or_default(),
                sums: Vec::new(),
            },
            (Func::Sum | Func::Avg, Some(DataType::Decimal128(_, s))) => {
                let added = match p.field.data_type() {
                    DataType::Decimal128(_, out) => (*out - s) as u8,
                    _ => 0,
                };
                State::SumDecimal {
                    column: column.unwrap_or_default(),
                    sums: Vec::new(),
                    avg: (p.func == Func::Avg).then(|| (Vec::new(), added)),
                    out: p.field.data_type().clone(),
                }
            }
            (Func::Sum | Func::Avg, Some(_)) => State::SumFloat {
                column: column.unwrap_or_default(),
                sums: Vec::new(),
                avg: (p.func == Func::Avg).then(Vec::new),
            },
            (func, Some(ty)) => State::Pick {
                column: column.unwrap_or_default(),
                func,
                converter: RowConverter::new(vec![SortField::new(ty.clone())])
                    .map_err(|e| e.to_string())?,
                ty,
                best: Vec::new(),
                values: Vec::new(),
            },
            (_, None) => return Err("internal error (a bug in FlowEngine): no column".into()),
        })
    }

    fn bytes(&self) -> usize {
        match self {
            State::Count { counts, .. } => counts.capacity() * 8,
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

    /// Fold a batch in: row `r` belongs to group `group[r]`; there are `groups` groups so far.
    fn update(
        &mut self,
        node: &str,
        columns: &[ArrayRef],
        group: &[usize],
        groups: usize,
    ) -> Result<(), RunError> {
        let overflow = |what: &str| RunError::Node {
            node: node.to_string(),
            message: format!("{what} overflowed; no wrong number is written"),
        };
        match self {
            State::Count { column, counts } => {
                counts.resize(groups, 0);
                match column.map(|c| &columns[c]) {
                    Some(values) => {
                        for (r, &g) in group.iter().enumerate() {
                            counts[g] += i64::from(values.is_valid(r));
                        }
                    }
                    None => group.iter().for_each(|&g| counts[g] += 1),
                }
            }
            State::SumInt { column, sums } => {
                sums.resize(groups, None);
                let values = as_i64(&columns[*column]);
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
            State::SumFloat { column, sums, avg } => {
                sums.resize(groups, None);
                if let Some(counts) = avg.as_mut() {
                    counts.resize(groups, 0);
                }
                let values = as_f64(&columns[*column]);
                for (r, &g) in group.iter().enumerate() {
                    if let Some(v) = values[r] {
                        sums[g] = Some(sums[g].unwrap_or(0.0) + v);
                        if let Some(counts) = avg.as_mut() {
                            counts[g] += 1;
                        }
                    }
                }
            }
            State::SumDecimal {
                column, sums, avg, ..
            } => {
                sums.resize(groups, None);
                if let Some((counts, _)) = avg.as_mut() {
                    counts.resize(groups, 0);
                }
                let values = columns[*column].as_primitive::<Decimal128Type>();
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
                column,
                func,
                converter,
                values,
                best,
                ..
            } => {
                values.resize(groups, None);
                let array = &columns[*column];
                let convert = |a: &ArrayRef| {
                    converter
                        .convert_columns(std::slice::from_ref(a))
                        .map_err(|e| node_error(node, e))
                };
                let raw = convert(array)?;
                if matches!(func, Func::First | Func::Last) {
                    for (r, &g) in group.iter().enumerate() {
                        if *func == Func::Last || values[g].is_none() {
                            values[g] = Some(array.is_valid(r).then(|| raw.row(r).as_ref().into()));
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
                        values[g] = Some(Some(raw.row(r).as_ref().into()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The column of results, groups in `order`.
    fn finish(&mut self, node: &str, order: &[usize], groups: usize) -> Result<ArrayRef, RunError> {
        Ok(match self {
            State::Count { counts, .. } => {
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
    fn calls_read_as_sql_writes_them() {
        assert_eq!(parse_call("count(*)"), Ok((Func::CountStar, None)));
        assert_eq!(
            parse_call("SUM(amount)"),
            Ok((Func::Sum, Some("amount".into())))
        );
        assert_eq!(
            parse_call("max(\"first name\")"),
            Ok((Func::Max, Some("first name".into())))
        );
        assert!(parse_call("sum(a b)").is_err());
        assert!(parse_call("median(a)").is_err());
        assert!(parse_call("count(DISTINCT a)")
            .unwrap_err()
            .contains("not supported yet"));
        assert!(parse_call("sum(a) FILTER (WHERE a > 1)")
            .unwrap_err()
            .contains("not supported yet"));
    }

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

//! `Aggregate`: one row per group of `GroupBy` keys (one row in all without them), with the
//! `Columns` computed over each group: `count(*)`, `count(col)`, `count(DISTINCT col)`, `sum`,
//! `avg`, `min`, `max`, `first`, `last`, each optionally with `FILTER (WHERE condition)`.
//!
//! Result types are SQL's: `count` is `int64`; `sum` of integers is `int64` and of `decimal(p,s)`
//! an exact `decimal(38,s)`, and an overflow of either is the run's error, never a wrong number;
//! `avg` of integers or doubles is a `double`, and of `decimal(p,s)` a `decimal(38,s+4)` rounded
//! half away from zero; `min`, `max`, `first` and `last` keep the column's type. Nulls are skipped
//! except by `count(*)`, `first` and `last`; a group with no value has a null `sum`/`avg`/`min`/`max`.
//! `min` and `max` order values as `Sort` does (NaN above every number).
//!
//! - `groups.rs`: the groups in memory (keys of `keys.rs` in a [`KeySet`](super::keys::KeySet))
//!   and their result rows;
//! - `state.rs`: what each function keeps per group.
//!
//! The output comes in key order (ascending, nulls last), or first-appearance order with `Order:
//! input`. Once the groups pass half the node's share of `MemoryLimit`, the groups it has keep
//! folding rows in, and the rows of new groups go to key partitions on disk (`partition.rs`), each
//! aggregated on its own at the end; the result rows of all of them are merged in output order.

mod groups;
mod state;

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, Output, StatefulTransform, TransformConfig,
};
use flowengine_engine::error::{BuildError, ConfigErrorKind, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::Batch;

use super::keys::{self, KeyItem, Keys};
use super::partition::{self, Partitions};
use super::sort::{Cursor, Merge};
use super::{node_error, Provenance};
use crate::native::tree::Expr;
use crate::native::{eval, FailureSite, Written};
use crate::spill::{SpillDir, SpillFile};
use groups::Groups;

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

/// One output column: its name and its call as written.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    func: Func,
    column: Option<String>,
    distinct: bool,
    filter: Option<Written>,
    path: String,
}

/// Whether the output follows the keys or the order groups first appear in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
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
                let call = parse_call(&text).and_then(|call| {
                    let filter = call.filter.as_deref().map(|condition| {
                        Written::from_text(condition, path.clone(), node.mark)
                            .map_err(|e| format!("a FILTER condition that parses ({e})"))
                    });
                    Ok((call, filter.transpose()?))
                });
                match call {
                    Ok((call, filter)) => specs.push(Spec {
                        name: name.to_string(),
                        func: call.func,
                        column: call.column,
                        distinct: call.distinct,
                        filter,
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

/// An aggregate call as written: `sum(amount)`, `count(*)`, `max("first name")`,
/// `count(DISTINCT country)`, `sum(amount) FILTER (WHERE amount > 0)`.
#[derive(Debug, PartialEq)]
struct Call {
    func: Func,
    column: Option<String>,
    distinct: bool,
    /// The `FILTER` condition's text.
    filter: Option<String>,
}

fn parse_call(text: &str) -> Result<Call, String> {
    let expected = || {
        "an aggregate: count(*), count(col), count(DISTINCT col), sum(col), avg(col), min(col), max(col), first(col) or last(col), optionally followed by FILTER (WHERE condition)"
            .to_string()
    };
    let text = text.trim();
    let open = text.find('(').ok_or_else(expected)?;
    let close = closing(text, open).ok_or_else(expected)?;
    let name = text[..open].trim().to_ascii_lowercase();
    let (distinct, inner) = match strip_word(text[open + 1..close].trim(), "DISTINCT") {
        Some(rest) => (true, rest),
        None => (false, text[open + 1..close].trim()),
    };
    let filter = match text[close + 1..].trim() {
        "" => None,
        rest => Some(parse_filter(rest)?),
    };
    let column = match inner.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => inner.to_string(),
    };
    let func = match (name.as_str(), inner) {
        ("count", "*") if !distinct => Func::CountStar,
        ("count", _) => Func::Count,
        ("sum", _) => Func::Sum,
        ("avg", _) => Func::Avg,
        ("min", _) => Func::Min,
        ("max", _) => Func::Max,
        ("first", _) => Func::First,
        ("last", _) => Func::Last,
        _ => return Err(expected()),
    };
    if distinct && func != Func::Count {
        return Err("count(DISTINCT col): DISTINCT is supported in count only".into());
    }
    let column = match func {
        Func::CountStar => None,
        _ if column.is_empty()
            || column == "*"
            || (!inner.starts_with('"') && inner.contains(char::is_whitespace)) =>
        {
            return Err(expected())
        }
        _ => Some(column),
    };
    Ok(Call {
        func,
        column,
        distinct,
        filter,
    })
}

/// Where the parenthesis opened at `open` closes (quoted names may hold parentheses).
fn closing(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices().skip_while(|&(i, _)| i < open) {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `text` after the keyword `word` (any case) and the space after it.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

/// The condition of `FILTER (WHERE condition)`.
fn parse_filter(text: &str) -> Result<String, String> {
    let expected = || "FILTER (WHERE condition) after the call".to_string();
    let rest = text.get(..6).filter(|h| h.eq_ignore_ascii_case("FILTER"));
    let rest = rest.map(|_| text[6..].trim()).ok_or_else(expected)?;
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(expected)?;
    let condition = strip_word(inner.trim(), "WHERE").ok_or_else(expected)?;
    match condition.trim() {
        "" => Err(expected()),
        c => Ok(c.to_string()),
    }
}

/// A column spec checked against the input: its input column, its `FILTER` and output field.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    func: Func,
    distinct: bool,
    column: Option<usize>,
    filter: Option<Expr>,
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
    let filter = match &spec.filter {
        Some(written) => {
            let e = written.check(input)?;
            if !matches!(e.ty, DataType::Boolean | DataType::Null) {
                return Err(written.error(format!(
                    "a FILTER condition must be a bool, found {}",
                    flowengine_engine::schema::type_name(&e.ty)
                )));
            }
            Some(e)
        }
        None => None,
    };
    let field = |ty: DataType, nullable: bool| Field::new(&spec.name, ty, nullable);
    let planned = |column, field| Planned {
        func: spec.func,
        distinct: spec.distinct,
        column,
        filter: filter.clone(),
        field,
    };
    let Some(name) = &spec.column else {
        return Ok(planned(None, field(DataType::Int64, false)));
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
    Ok(planned(Some(i), out))
}

impl TransformConfig for AggregateConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.plan(input).map(|(_, _, schema)| schema)
    }

    fn stateful(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let invalid = |message| BuildError::Invalid {
            node: cx.node.clone(),
            message,
        };
        let (keys, planned, output) = self
            .plan(&input)
            .map_err(|e| invalid(PlanError::join(&e)))?;
        let grouped = !self.group_by.is_empty();
        let groups = Groups::new(&cx.node, keys, grouped, &planned, &input).map_err(invalid)?;
        let runs = groups::with_seq(&output);
        let merge_keys = match self.order {
            Order::Keys => Keys::resolve(&self.group_by, &runs),
            Order::Input => Keys::resolve(&[partition::seq_item()], &runs),
        }
        .map_err(|e| invalid(PlanError::join(&e)))?;
        Ok(BuiltTransform::Stateful(Box::new(Aggregate {
            node: cx.node.clone(),
            group_by: self.group_by.clone(),
            planned,
            input,
            output,
            runs,
            merge_keys,
            order: self.order,
            groups,
            // Without `GroupBy` there is one group: nothing to partition.
            spill: match grouped {
                true => Some(SpillDir::create(&cx.temp_dir, &cx.node)?),
                false => None,
            },
            parts: None,
            merge: None,
            limit: usize::try_from(cx.state_bytes).unwrap_or(usize::MAX),
            chunk_size: cx.chunk_size.max(1),
            seq: 0,
            rows: 0,
            peak_groups: 0,
            spilled_rows: 0,
            provenance: Provenance::default(),
            done: false,
        })))
    }
}

struct Aggregate {
    node: String,
    group_by: Vec<KeyItem>,
    planned: Vec<Planned>,
    input: SchemaRef,
    output: SchemaRef,
    /// The output with each group's first input position: the runs merged after an overflow.
    runs: SchemaRef,
    /// What the runs are merged by: the keys, or the position (`Order: input`).
    merge_keys: Keys,
    order: Order,
    /// The groups in memory.
    groups: Groups,
    /// Made at build, so a directory that cannot be written fails before rows move.
    spill: Option<SpillDir>,
    /// The rows of groups first seen after the overflow, until `finish`.
    parts: Option<Partitions>,
    merge: Option<Merge>,
    limit: usize,
    chunk_size: usize,
    /// Input position of the next row.
    seq: u64,
    rows: u64,
    /// Groups in memory at most, and rows spilled, for the notes.
    peak_groups: usize,
    spilled_rows: u64,
    provenance: Provenance,
    done: bool,
}

impl StatefulTransform for Aggregate {
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        let (batch, masks) = self.reject_filter_failures(batch, out)?;
        let n = batch.num_rows();
        self.provenance.add(&batch);
        self.rows += n as u64;
        out.aggregated += n as u64;
        let columns = batch.data.columns();
        if let Some(parts) = self.parts.as_mut() {
            // Rows of the groups in memory fold in there; the others go to disk.
            let rows = self.groups.rows(columns)?;
            let known: Vec<bool> = (0..n)
                .map(|r| self.groups.contains(rows.row(r).as_ref()))
                .collect();
            let unknown: Vec<bool> = known.iter().map(|k| !k).collect();
            parts.write(&batch, &rows, &unknown)?;
            self.spilled_rows = parts.rows;
            let known = BooleanArray::from(known);
            let part = batch
                .filter(&known)
                .map_err(|e| node_error(&self.node, e))?;
            let masks = self.masks(part.data.columns(), part.num_rows(), &mut Vec::new())?;
            self.groups.fold(part.data.columns(), &masks, |_| 0)?;
            return self.check_memory(&self.groups, "the groups it had before spilling");
        }
        let seq = self.seq;
        self.groups.fold(columns, &masks, |r| seq + r as u64)?;
        self.seq += n as u64;
        self.peak_groups = self.groups.len();
        if self.groups.bytes() <= self.limit / 2 {
            return Ok(());
        }
        // The key set grows by doubling: past half its share, the next growth could pass it.
        match self.spill.as_mut() {
            Some(spill) => {
                self.parts = Some(Partitions::new(&self.node, spill, &self.input, self.seq)?);
                Ok(())
            }
            None => self.check_memory(&self.groups, "its one group"),
        }
    }

    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        if self.parts.is_some() {
            self.merge_partitions()?;
        }
        let data = match self.merge.as_mut() {
            Some(merge) => {
                let chunk = merge.next_chunk(self.chunk_size, &self.merge_keys, &self.node)?;
                let Some(chunk) = chunk else {
                    return Ok(false);
                };
                let width = self.output.fields().len();
                RecordBatch::try_new(self.output.clone(), chunk.columns()[..width].to_vec())
                    .map_err(|e| node_error(&self.node, e))?
            }
            None if self.done => return Ok(false),
            None => {
                self.done = true;
                self.groups.finish(self.order, &self.output, false)?
            }
        };
        // A group row stands for many input rows: it has no line of its own.
        let lines = arrow_array::UInt64Array::from(vec![None::<u64>; data.num_rows()]);
        out.batches
            .push(Batch::new(data, self.provenance.file(), lines));
        Ok(self.merge.is_some())
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "{} rows aggregated into {} groups in memory at most",
            self.rows, self.peak_groups,
        )];
        if self.spilled_rows > 0 || self.merge.is_some() {
            notes.push(format!(
                "the groups outgrew half their share of `MemoryLimit` ({}): {} rows of later \
                 groups were spilled by key and aggregated one partition at a time",
                human_bytes(self.limit as u64),
                self.spilled_rows
            ));
        }
        notes
    }

    fn aggregates(&self) -> bool {
        true
    }
}

impl Aggregate {
    /// Each state's `FILTER` over `columns`: true where it holds. Values a CAST in it cannot
    /// convert go to `failures`.
    fn masks(
        &self,
        columns: &[ArrayRef],
        rows: usize,
        failures: &mut Vec<(FailureSite, eval::CastFailures)>,
    ) -> Result<Vec<Option<BooleanArray>>, RunError> {
        let mut masks = Vec::with_capacity(self.planned.len());
        for p in &self.planned {
            let Some(filter) = &p.filter else {
                masks.push(None);
                continue;
            };
            let mut failed = Vec::new();
            let value = eval::evaluate(filter, columns, rows, &mut failed)
                .map_err(|e| node_error(&self.node, e))?;
            failures.extend(failed.into_iter().map(|f| {
                let site = FailureSite {
                    column: None,
                    hint: "a CAST in a FILTER condition could not convert this value; fix it, or use TRY_CAST to get null",
                };
                (site, f)
            }));
            masks.push(Some(crate::native::filter::passing(&value, rows)));
        }
        Ok(masks)
    }

    /// `batch` without the rows a `FILTER` condition cannot be evaluated on, which are rejected
    /// (as `Filter` rejects them), and the masks of the rows left.
    fn reject_filter_failures(
        &self,
        batch: Batch,
        out: &mut Output,
    ) -> Result<(Batch, Vec<Option<BooleanArray>>), RunError> {
        let mut failures = Vec::new();
        let masks = self.masks(batch.data.columns(), batch.num_rows(), &mut failures)?;
        let ok = crate::native::reject_failures(&self.node, &batch, &failures, &mut out.rejects)
            .map_err(|e| node_error(&self.node, e))?;
        let Some(ok) = ok else {
            return Ok((batch, masks));
        };
        let batch = batch.filter(&ok).map_err(|e| node_error(&self.node, e))?;
        let masks = self.masks(batch.data.columns(), batch.num_rows(), &mut Vec::new())?;
        Ok((batch, masks))
    }

    /// After an overflow: the groups in memory and each partition's become runs in output order,
    /// then one merge of them.
    fn merge_partitions(&mut self) -> Result<(), RunError> {
        let (Some(parts), Some(spill)) = (self.parts.take(), self.spill.as_mut()) else {
            return Ok(());
        };
        let files = parts.finish()?;
        let first = self.groups.finish(self.order, &self.runs, true)?;
        let mut runs = vec![spill.write(&self.runs, chunks(first, self.chunk_size))?];
        // Free the groups in memory before the partitions take their place.
        let keys = Keys::resolve(&self.group_by, &self.input)
            .map_err(|e| RunError::Internal(PlanError::join(&e)))?;
        self.groups = Groups::new(&self.node, keys, true, &self.planned, &self.input)
            .map_err(RunError::Internal)?;
        for file in files {
            runs.push(self.aggregate_partition(&file)?);
        }
        let spill = self.spill.as_ref().expect("checked above");
        let mut cursors = Vec::new();
        for run in &runs {
            let reader = spill.read(run)?;
            cursors.extend(Cursor::spilled(reader, &self.merge_keys, &self.node)?);
        }
        self.merge = Some(Merge::new(cursors));
        Ok(())
    }

    /// One partition's groups, as a run in output order.
    fn aggregate_partition(&mut self, file: &SpillFile) -> Result<SpillFile, RunError> {
        let spill = self.spill.as_mut().expect("only after an overflow");
        let mut reader = spill.read(file)?;
        let keys = Keys::resolve(&self.group_by, &self.input)
            .map_err(|e| RunError::Internal(PlanError::join(&e)))?;
        let mut groups = Groups::new(&self.node, keys, true, &self.planned, &self.input)
            .map_err(RunError::Internal)?;
        while let Some(batch) = reader.next_batch()? {
            let (columns, seq, _) = partition::split_position(&batch);
            let masks = self.masks(&columns, batch.num_rows(), &mut Vec::new())?;
            groups.fold(&columns, &masks, |r| seq.value(r))?;
            self.check_memory(&groups, "one partition of its groups")?;
        }
        let run = groups.finish(self.order, &self.runs, true)?;
        let spill = self.spill.as_mut().expect("only after an overflow");
        spill.write(&self.runs, chunks(run, self.chunk_size))
    }

    fn check_memory(&self, groups: &Groups, what: &str) -> Result<(), RunError> {
        let used = groups.bytes();
        if used <= self.limit {
            return Ok(());
        }
        Err(RunError::Node {
            node: self.node.clone(),
            message: format!(
                "{what} ({} groups) take {}, more than its share of `MemoryLimit` ({}); raise \
                 `Settings.MemoryLimit` (the nodes that hold rows share half of it){}",
                groups.len(),
                human_bytes(used as u64),
                human_bytes(self.limit as u64),
                match self.planned.iter().any(|p| p.distinct) {
                    true => ", or count fewer distinct values (each group's count(DISTINCT) values stay in memory)",
                    false => "",
                }
            ),
        })
    }
}

/// `batch` in slices of `size` rows, so a run is read back (and merged) a chunk at a time, not
/// whole.
fn chunks(batch: RecordBatch, size: usize) -> impl Iterator<Item = Result<RecordBatch, RunError>> {
    let rows = batch.num_rows();
    (0..rows)
        .step_by(size)
        .map(move |start| Ok(batch.slice(start, size.min(rows - start))))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(func: Func, column: Option<&str>) -> Call {
        Call {
            func,
            column: column.map(String::from),
            distinct: false,
            filter: None,
        }
    }

    #[test]
    fn calls_read_as_sql_writes_them() {
        assert_eq!(parse_call("count(*)"), Ok(call(Func::CountStar, None)));
        assert_eq!(
            parse_call("SUM(amount)"),
            Ok(call(Func::Sum, Some("amount")))
        );
        assert_eq!(
            parse_call("max(\"first name\")"),
            Ok(call(Func::Max, Some("first name")))
        );
        assert_eq!(
            parse_call("max(\"a (b)\")"),
            Ok(call(Func::Max, Some("a (b)")))
        );
        assert!(parse_call("sum(a b)").is_err());
        assert!(parse_call("median(a)").is_err());
        assert!(parse_call("sum(a").is_err());
    }

    #[test]
    fn distinct_and_filter_read_as_sql_writes_them() {
        let distinct = parse_call("count( distinct country )").unwrap();
        assert_eq!(distinct.func, Func::Count);
        assert!(distinct.distinct);
        assert_eq!(distinct.column.as_deref(), Some("country"));
        // A column named `distinct` is still a column.
        assert!(!parse_call("count(distinct)").unwrap().distinct);
        assert!(parse_call("sum(DISTINCT a)")
            .unwrap_err()
            .contains("DISTINCT is supported in count only"));
        assert!(parse_call("count(DISTINCT *)").is_err());
        let filtered = parse_call("sum(a) filter ( where a > (1 + 2) )").unwrap();
        assert_eq!(filtered.filter.as_deref(), Some("a > (1 + 2)"));
        assert_eq!(
            parse_call("count(*) FILTER (WHERE ok)").unwrap().func,
            Func::CountStar
        );
        for bad in [
            "sum(a) WHERE a > 1",
            "sum(a) FILTER a > 1",
            "sum(a) FILTER (a > 1)",
            "sum(a) FILTER (WHERE )",
        ] {
            assert!(
                parse_call(bad).unwrap_err().contains("FILTER (WHERE"),
                "{bad}"
            );
        }
    }
}

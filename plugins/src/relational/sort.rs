//! `Sort`: order every row by `By` (SQL `ORDER BY` items), stably, in bounded memory.
//!
//! Batches are held until they pass half the node's share of `MemoryLimit`; then they are sorted
//! (keys as `arrow-row` byte strings, a stable parallel sort of row positions) and written as one
//! sorted run to the spill directory. At the end, with no run spilled, the held rows go out in
//! order; otherwise what is held becomes the last run and the runs are merged (a k-way merge over
//! a heap of run cursors, ties to the earlier run, which keeps the sort stable).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_row::Rows;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::interleave::interleave_record_batch;
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, Output, StatefulTransform, TransformConfig,
};
use flowengine_engine::error::{BuildError, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::Batch;
use rayon::prelude::*;

use super::keys::{self, KeyItem, Keys};
use super::{node_error, Provenance};
use crate::spill::{SpillDir, SpillFile, SpillReader};

/// The column that carries each row's source line through a spill file.
const LINE: &str = "__flowengine_line";

/// Parsed `Sort` config.
#[derive(Debug, Clone)]
pub struct SortConfig {
    by: Vec<KeyItem>,
}

/// Parse a `Sort` `Config` map: `By` (required).
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    if !m.has("By") {
        m.missing(cx, "By");
        return None;
    }
    let by = keys::read_items(m, cx, "By", true)?;
    Some(Box::new(SortConfig { by }))
}

impl TransformConfig for SortConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        Keys::resolve(&self.by, input).map(|_| input.clone())
    }

    fn stateful(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let keys = Keys::resolve(&self.by, &input).map_err(|e| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&e),
        })?;
        let spill = SpillDir::create(&cx.temp_dir, &cx.node)?;
        let mut fields = input.fields().to_vec();
        fields.push(Arc::new(Field::new(LINE, DataType::UInt64, false)));
        Ok(BuiltTransform::Stateful(Box::new(Sort {
            node: cx.node.clone(),
            keys,
            chunk_size: cx.chunk_size.max(1),
            hold_bytes: usize::try_from(cx.state_bytes / 2).unwrap_or(usize::MAX),
            input,
            with_lines: Arc::new(Schema::new(fields)),
            held: Vec::new(),
            held_bytes: 0,
            runs: Vec::new(),
            spill,
            provenance: Provenance::default(),
            rows: 0,
            emit: None,
        })))
    }
}

struct Sort {
    node: String,
    keys: Keys,
    chunk_size: usize,
    /// Bytes of batches held before they are spilled as a run.
    hold_bytes: usize,
    input: SchemaRef,
    /// The input schema plus [`LINE`]: what runs and merged chunks hold.
    with_lines: SchemaRef,
    held: Vec<RecordBatch>,
    held_bytes: usize,
    runs: Vec<SpillFile>,
    spill: SpillDir,
    provenance: Provenance,
    rows: u64,
    emit: Option<Emit>,
}

/// Where `finish` takes its next chunk from.
enum Emit {
    /// Nothing was spilled: the held batches, in this order.
    Held {
        order: Vec<(usize, usize)>,
        next: usize,
    },
    /// Runs were spilled: their merge.
    Merge(Merge),
}

impl StatefulTransform for Sort {
    fn push(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RunError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.provenance.add(&batch);
        self.rows += batch.num_rows() as u64;
        let held = with_lines(&self.with_lines, &batch)?;
        self.held_bytes += held.get_array_memory_size();
        self.held.push(held);
        if self.held_bytes > self.hold_bytes {
            self.spill_held()?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        if self.emit.is_none() {
            self.emit = Some(if self.runs.is_empty() {
                let order = self.order(&self.held)?;
                Emit::Held { order, next: 0 }
            } else {
                if !self.held.is_empty() {
                    self.spill_held()?;
                }
                Emit::Merge(Merge::open(
                    &self.spill,
                    &self.runs,
                    &self.keys,
                    &self.node,
                )?)
            });
        }
        let chunk = match self.emit.as_mut() {
            Some(Emit::Held { order, next }) => {
                let end = (*next + self.chunk_size).min(order.len());
                let picked = &order[*next..end];
                *next = end;
                if picked.is_empty() {
                    None
                } else {
                    let held: Vec<&RecordBatch> = self.held.iter().collect();
                    Some(
                        interleave_record_batch(&held, picked)
                            .map_err(|e| node_error(&self.node, e))?,
                    )
                }
            }
            Some(Emit::Merge(merge)) => {
                merge.next_chunk(self.chunk_size, &self.keys, &self.node)?
            }
            None => None,
        };
        let Some(chunk) = chunk else {
            self.held.clear();
            return Ok(false);
        };
        out.batches.push(self.without_lines(chunk)?);
        Ok(true)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.spill.cleaned > 0 {
            notes.push(format!(
                "removed {} spill directories left by killed runs",
                self.spill.cleaned
            ));
        }
        if self.runs.is_empty() {
            notes.push(format!("sorted {} rows in memory", self.rows));
        } else {
            let bytes: u64 = self.runs.iter().map(|r| r.bytes).sum();
            notes.push(format!(
                "sorted {} rows in {} runs spilled to {} ({})",
                self.rows,
                self.runs.len(),
                self.spill.path().display(),
                human_bytes(bytes)
            ));
        }
        notes
    }
}

impl Sort {
    /// Positions of the rows of `batches` in key order; equal keys keep their input order.
    fn order(&self, batches: &[RecordBatch]) -> Result<Vec<(usize, usize)>, RunError> {
        let rows: Vec<Rows> = batches
            .par_iter()
            .map(|b| self.keys.rows(&self.node, b.columns()))
            .collect::<Result<_, _>>()?;
        let mut order: Vec<(usize, usize)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
            .collect();
        // `par_sort_by` is a stable merge sort.
        order.par_sort_by(|a, b| rows[a.0].row(a.1).cmp(&rows[b.0].row(b.1)));
        Ok(order)
    }

    /// Sort what is held and write it as one run.
    fn spill_held(&mut self) -> Result<(), RunError> {
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let order = self.order(&held)?;
        let refs: Vec<&RecordBatch> = held.iter().collect();
        let chunks = order.chunks(self.chunk_size).map(|picked| {
            interleave_record_batch(&refs, picked).map_err(|e| node_error(&self.node, e))
        });
        let run = self.spill.write(&self.with_lines, chunks)?;
        self.runs.push(run);
        Ok(())
    }

    /// A chunk with its [`LINE`] column as the batch's provenance.
    fn without_lines(&self, chunk: RecordBatch) -> Result<Batch, RunError> {
        let last = chunk.num_columns() - 1;
        let lines = chunk.column(last).as_primitive::<UInt64Type>().clone();
        let columns: Vec<ArrayRef> = chunk.columns()[..last].to_vec();
        let data = RecordBatch::try_new(self.input.clone(), columns)
            .map_err(|e| node_error(&self.node, e))?;
        Ok(Batch::new(data, self.provenance.file(), lines))
    }
}

/// `batch`'s rows with their source lines as a last column.
fn with_lines(schema: &SchemaRef, batch: &Batch) -> Result<RecordBatch, RunError> {
    let mut columns = batch.data.columns().to_vec();
    columns.push(Arc::new(batch.origin.lines.clone()));
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| RunError::Internal(format!("sort: a batch does not fit its schema: {e}")))
}

/// One spilled run being merged: its current batch, that batch's keys, and the next row.
struct Cursor {
    reader: SpillReader,
    batch: RecordBatch,
    keys: Rows,
    next: usize,
    /// The batch's place in the chunk being built.
    slot: usize,
}

/// A k-way merge of sorted runs.
struct Merge {
    cursors: Vec<Cursor>,
    /// Cursors with rows left, as a binary min-heap on (key, run).
    heap: Vec<usize>,
}

impl Merge {
    fn open(
        spill: &SpillDir,
        runs: &[SpillFile],
        keys: &Keys,
        node: &str,
    ) -> Result<Merge, RunError> {
        let mut cursors = Vec::with_capacity(runs.len());
        for run in runs {
            let mut reader = spill.read(run)?;
            if let Some(batch) = next_nonempty(&mut reader)? {
                let rows = keys.rows(node, batch.columns())?;
                cursors.push(Cursor {
                    reader,
                    batch,
                    keys: rows,
                    next: 0,
                    slot: 0,
                });
            }
        }
        let mut merge = Merge {
            heap: (0..cursors.len()).collect(),
            cursors,
        };
        for i in (0..merge.heap.len() / 2).rev() {
            merge.sift_down(i);
        }
        Ok(merge)
    }

    /// Whether cursor `a`'s next row goes before cursor `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
        match ca.keys.row(ca.next).cmp(&cb.keys.row(cb.next)) {
            std::cmp::Ordering::Equal => a < b,
            o => o.is_lt(),
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.before(self.heap[l], self.heap[least]) {
                least = l;
            }
            if r < self.heap.len() && self.before(self.heap[r], self.heap[least]) {
                least = r;
            }
            if least == i {
                return;
            }
            self.heap.swap(i, least);
            i = least;
        }
    }

    /// Up to `size` rows in order, or `None` when every run is done.
    fn next_chunk(
        &mut self,
        size: usize,
        keys: &Keys,
        node: &str,
    ) -> Result<Option<RecordBatch>, RunError> {
        if self.heap.is_empty() {
            return Ok(None);
        }
        let mut sources: Vec<RecordBatch> = Vec::with_capacity(self.heap.len() * 2);
        for &c in &self.heap {
            self.cursors[c].slot = sources.len();
            sources.push(self.cursors[c].batch.clone());
        }
        let mut picked = Vec::with_capacity(size);
        while picked.len() < size && !self.heap.is_empty() {
            let top = self.heap[0];
            let cursor = &mut self.cursors[top];
            picked.push((cursor.slot, cursor.next));
            cursor.next += 1;
            if cursor.next == cursor.batch.num_rows() {
                match next_nonempty(&mut cursor.reader)? {
                    Some(batch) => {
                        cursor.keys = keys.rows(node, batch.columns())?;
                        cursor.next = 0;
                        cursor.slot = sources.len();
                        sources.push(batch.clone());
                        cursor.batch = batch;
                    }
                    None => {
                        let last = self.heap.len() - 1;
                        self.heap.swap(0, last);
                        self.heap.pop();
                    }
                }
            }
            self.sift_down(0);
        }
        let refs: Vec<&RecordBatch> = sources.iter().collect();
        interleave_record_batch(&refs, &picked)
            .map(Some)
            .map_err(|e| node_error(node, e))
    }
}

fn next_nonempty(reader: &mut SpillReader) -> Result<Option<RecordBatch>, RunError> {
    while let Some(batch) = reader.next_batch()? {
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Float64Array, Int64Array, StringArray, UInt64Array};
    use proptest::prelude::*;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
            Field::new("id", DataType::Int64, false),
        ]))
    }

    /// Sort `rows` (in batches of `batch` rows) with `state_bytes`; the ids and lines out, and
    /// how many runs were spilled.
    fn sort(
        rows: &[(Option<String>, Option<f64>)],
        batch: usize,
        state_bytes: u64,
        temp: &std::path::Path,
    ) -> (Vec<i64>, Vec<u64>, usize) {
        let by = ["k", "v DESC NULLS FIRST"]
            .iter()
            .map(|t| {
                let (column, descending, nulls_first) = keys::parse_item(t, true).unwrap();
                KeyItem {
                    column,
                    descending,
                    nulls_first,
                    path: String::new(),
                }
            })
            .collect();
        let cx = BuildCx {
            node: "sort".into(),
            chunk_size: 7,
            batch_bytes: 1 << 20,
            state_bytes,
            temp_dir: temp.to_path_buf(),
        };
        let BuiltTransform::Stateful(mut t) = SortConfig { by }.build(schema(), &cx).unwrap()
        else {
            panic!("a sort is stateful");
        };
        let mut out = Output::default();
        for (n, chunk) in rows.chunks(batch.max(1)).enumerate() {
            let first = (n * batch) as i64;
            let ids = Int64Array::from_iter_values(first..first + chunk.len() as i64);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter(chunk.iter().map(|r| r.0.clone()))),
                Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.1))),
                Arc::new(ids.clone()),
            ];
            let data = RecordBatch::try_new(schema(), columns).unwrap();
            let lines = UInt64Array::from_iter_values(ids.values().iter().map(|&i| i as u64 + 2));
            t.push(Batch::new(data, None, lines), &mut out).unwrap();
        }
        while t.finish(&mut out).unwrap() {}
        let notes = t.notes().join("\n");
        let runs = notes
            .split(" in ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut ids = Vec::new();
        let mut lines = Vec::new();
        for b in &out.batches {
            let col = b
                .data
                .column(2)
                .as_primitive::<arrow_array::types::Int64Type>();
            ids.extend(col.values().iter().copied());
            lines.extend(b.origin.lines.values().iter().copied());
        }
        (ids, lines, runs)
    }

    /// The order SQL gives: `k ASC NULLS LAST, v DESC NULLS FIRST`, NaN above every number,
    /// `-0 = 0`, ties in input order.
    fn expected(rows: &[(Option<String>, Option<f64>)]) -> Vec<i64> {
        let mut ids: Vec<usize> = (0..rows.len()).collect();
        let canon = |v: f64| if v.is_nan() { f64::NAN } else { v + 0.0 };
        ids.sort_by(|&a, &b| {
            let (ka, kb) = (&rows[a].0, &rows[b].0);
            let by_k = match (ka, kb) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Greater,
                (_, None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
            };
            let by_v = match (rows[a].1, rows[b].1) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Less,
                (_, None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => canon(y).total_cmp(&canon(x)),
            };
            by_k.then(by_v)
        });
        ids.into_iter().map(|i| i as i64).collect()
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            Just(Some(f64::NAN)),
            Just(Some(-f64::NAN)),
            Just(Some(-0.0)),
            Just(Some(0.0)),
            Just(Some(f64::INFINITY)),
            (-3i32..3).prop_map(|v| Some(v as f64)),
        ]
    }

    fn key() -> impl Strategy<Value = Option<String>> {
        prop_oneof![Just(None), "[abé]{0,2}".prop_map(Some)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// In memory or spilled to many runs, the order is SQL's, stable, with each row's line.
        #[test]
        fn spilled_or_not_the_order_is_sqls(
            rows in proptest::collection::vec((key(), value()), 0..300),
            batch in 1usize..40,
        ) {
            let temp = tempfile::tempdir().unwrap();
            let want = expected(&rows);
            let (in_memory, lines, runs) = sort(&rows, batch, 1 << 30, temp.path());
            prop_assert_eq!(runs, 0);
            prop_assert_eq!(&in_memory, &want);
            let want_lines: Vec<u64> = want.iter().map(|&i| i as u64 + 2).collect();
            prop_assert_eq!(lines, want_lines.clone());
            // A tiny share: every batch or two is a run of its own.
            let (spilled, lines, runs) = sort(&rows, batch, 1, temp.path());
            prop_assert_eq!(&spilled, &want);
            prop_assert_eq!(lines, want_lines);
            prop_assert!(rows.is_empty() || runs >= 1);
            // Every spill directory is gone with its sort.
            prop_assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
        }
    }
}

//! `Sort`: order every row by `By` (SQL `ORDER BY` items), stably, in bounded memory.
//!
//! Each batch is sorted as it arrives (keys as `arrow-row` byte strings, a stable sort of row
//! positions; on the pool, alongside the decoding of later batches, and small enough to stay in
//! cache). Sorted batches are held until they pass half the node's share of `MemoryLimit`; then
//! they are merged into one sorted run in the spill directory. At the end the runs and the batches
//! still held are merged (a k-way merge over a tournament tree of cursors; ties go to the earlier cursor, and
//! cursors are in input order, which keeps the sort stable).

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
            merge: None,
            spilling: Default::default(),
            merging: Default::default(),
        })))
    }
}

struct Sort {
    node: String,
    keys: Keys,
    chunk_size: usize,
    /// Bytes of batches (and their keys) held before they are merged into a spilled run.
    hold_bytes: usize,
    input: SchemaRef,
    /// The input schema plus [`LINE`]: what runs and merged chunks hold.
    with_lines: SchemaRef,
    /// Batches since the last run, each sorted on arrival.
    held: Vec<Cursor>,
    held_bytes: usize,
    runs: Vec<SpillFile>,
    spill: SpillDir,
    provenance: Provenance,
    rows: u64,
    /// The final merge, once `finish` has begun.
    merge: Option<Merge>,
    /// Time spent merging and writing runs, and in the final merge.
    spilling: std::time::Duration,
    merging: std::time::Duration,
}

impl StatefulTransform for Sort {
    /// Each batch is sorted on arrival (so the work is spread over the run, on the pool, and each
    /// sort fits in cache); a run is a merge of the batches held.
    fn push(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RunError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.provenance.add(&batch);
        self.rows += batch.num_rows() as u64;
        let data = with_lines(&self.with_lines, &batch)?;
        let keys = self.keys.rows(&self.node, data.columns())?;
        let mut order: Vec<u32> = (0..data.num_rows() as u32).collect();
        // Stable: equal keys keep their order within the batch.
        order.sort_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
        self.held_bytes += data.get_array_memory_size() + keys.size() + order.len() * 4;
        self.held.push(Cursor::held(data, keys, order));
        if self.held_bytes > self.hold_bytes {
            self.spill_held()?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        let started = std::time::Instant::now();
        let more = self.finish_chunk(out);
        self.merging += started.elapsed();
        more
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
                "sorted {} rows in {} runs spilled to {} ({}; {:.2} s writing runs, {:.2} s merging)",
                self.rows,
                self.runs.len(),
                self.spill.path().display(),
                human_bytes(bytes),
                self.spilling.as_secs_f64(),
                self.merging.as_secs_f64(),
            ));
        }
        notes
    }
}

impl Sort {
    /// The next chunk of the output: the merge of the spilled runs (earlier input, so first on
    /// ties) and the batches still held.
    fn finish_chunk(&mut self, out: &mut Output) -> Result<bool, RunError> {
        if self.merge.is_none() {
            let mut cursors = Vec::with_capacity(self.runs.len() + self.held.len());
            for run in &self.runs {
                cursors.extend(Cursor::spilled(
                    self.spill.read(run)?,
                    &self.keys,
                    &self.node,
                )?);
            }
            cursors.append(&mut self.held);
            self.merge = Some(Merge::new(cursors));
        }
        let merge = self.merge.as_mut().expect("set above");
        match merge.next_chunk(self.chunk_size, &self.keys, &self.node)? {
            Some(chunk) => {
                out.batches.push(self.without_lines(chunk)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Merge what is held and write it as one run.
    fn spill_held(&mut self) -> Result<(), RunError> {
        let started = std::time::Instant::now();
        let mut merge = Merge::new(std::mem::take(&mut self.held));
        self.held_bytes = 0;
        let (size, keys, node) = (self.chunk_size, &self.keys, &self.node);
        let chunks = std::iter::from_fn(|| merge.next_chunk(size, keys, node).transpose());
        let run = self.spill.write(&self.with_lines, chunks)?;
        self.runs.push(run);
        self.spilling += started.elapsed();
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

/// A sorted sequence of rows being merged: a held batch in its sorted order, or a spilled run
/// read a batch at a time.
pub(super) struct Cursor {
    batch: RecordBatch,
    keys: Rows,
    /// Row positions in key order; `None`: the batch is already in order (a run's).
    order: Option<Vec<u32>>,
    next: usize,
    reader: Option<SpillReader>,
    /// The batch's place in the chunk being built.
    slot: usize,
}

impl Cursor {
    fn held(batch: RecordBatch, keys: Rows, order: Vec<u32>) -> Cursor {
        Cursor {
            batch,
            keys,
            order: Some(order),
            next: 0,
            reader: None,
            slot: 0,
        }
    }

    /// A run's cursor, or `None` if the run is empty.
    pub(super) fn spilled(
        mut reader: SpillReader,
        keys: &Keys,
        node: &str,
    ) -> Result<Option<Cursor>, RunError> {
        let Some(batch) = next_nonempty(&mut reader)? else {
            return Ok(None);
        };
        Ok(Some(Cursor {
            keys: keys.rows(node, batch.columns())?,
            batch,
            order: None,
            next: 0,
            reader: Some(reader),
            slot: 0,
        }))
    }

    /// The position in `batch` of the next row.
    fn row(&self) -> usize {
        match &self.order {
            Some(order) => order[self.next] as usize,
            None => self.next,
        }
    }

    /// Step past the row just taken. False when the cursor has no rows left; a run's cursor
    /// loads its next batch, pushed to `sources` for the chunk being built.
    fn advance(
        &mut self,
        sources: &mut Vec<RecordBatch>,
        keys: &Keys,
        node: &str,
    ) -> Result<bool, RunError> {
        self.next += 1;
        if self.next < self.batch.num_rows() {
            return Ok(true);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(false);
        };
        let Some(batch) = next_nonempty(reader)? else {
            return Ok(false);
        };
        self.keys = keys.rows(node, batch.columns())?;
        self.next = 0;
        self.slot = sources.len();
        sources.push(batch.clone());
        self.batch = batch;
        Ok(true)
    }
}

/// A k-way merge of sorted cursors, as a tournament (loser) tree: after each row, one
/// comparison per level of the tree finds the next, half of what a binary heap needs.
pub(super) struct Merge {
    cursors: Vec<Cursor>,
    /// Whether each cursor still has rows.
    live: Vec<bool>,
    /// For internal node `i` (1..k) of the implicit tree whose leaves are `k..2k`, the cursor
    /// that lost the match played there.
    losers: Vec<usize>,
    /// The cursor whose row goes next.
    winner: usize,
}

impl Merge {
    /// Ties go to the earlier cursor, so cursors in input order make a stable merge.
    pub(super) fn new(cursors: Vec<Cursor>) -> Merge {
        let k = cursors.len();
        let mut merge = Merge {
            live: vec![true; k],
            losers: vec![0; k],
            winner: 0,
            cursors,
        };
        if k > 0 {
            merge.winner = merge.play(1);
        }
        merge
    }

    /// The winner of the subtree at `node`, recording the losers of its matches.
    fn play(&mut self, node: usize) -> usize {
        let k = self.cursors.len();
        if node >= k {
            return node - k;
        }
        let (l, r) = (self.play(2 * node), self.play(2 * node + 1));
        let (winner, loser) = if self.before(l, r) { (l, r) } else { (r, l) };
        self.losers[node] = loser;
        winner
    }

    /// Whether cursor `a`'s next row goes before cursor `b`'s; a finished cursor goes last.
    fn before(&self, a: usize, b: usize) -> bool {
        match (self.live[a], self.live[b]) {
            (false, false) => a < b,
            (live_a, false) | (live_a @ false, _) => live_a,
            (true, true) => {
                let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
                match ca.keys.row(ca.row()).cmp(&cb.keys.row(cb.row())) {
                    std::cmp::Ordering::Equal => a < b,
                    o => o.is_lt(),
                }
            }
        }
    }

    /// The winner moved on (or finished): replay its path to the root.
    fn replay(&mut self) {
        let k = self.cursors.len();
        let mut candidate = self.winner;
        let mut node = (candidate + k) / 2;
        while node >= 1 {
            let other = self.losers[node];
            if self.before(other, candidate) {
                self.losers[node] = candidate;
                candidate = other;
            }
            node /= 2;
        }
        self.winner = candidate;
    }

    /// Up to `size` rows in order, or `None` when every cursor is done.
    pub(super) fn next_chunk(
        &mut self,
        size: usize,
        keys: &Keys,
        node: &str,
    ) -> Result<Option<RecordBatch>, RunError> {
        if self.cursors.is_empty() || !self.live[self.winner] {
            return Ok(None);
        }
        let mut sources: Vec<RecordBatch> = Vec::with_capacity(self.cursors.len() * 2);
        for (c, cursor) in self.cursors.iter_mut().enumerate() {
            if self.live[c] {
                cursor.slot = sources.len();
                sources.push(cursor.batch.clone());
            }
        }
        let mut picked = Vec::with_capacity(size);
        while picked.len() < size && self.live[self.winner] {
            let w = self.winner;
            let cursor = &mut self.cursors[w];
            picked.push((cursor.slot, cursor.row()));
            if !cursor.advance(&mut sources, keys, node)? {
                self.live[w] = false;
            }
            self.replay();
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

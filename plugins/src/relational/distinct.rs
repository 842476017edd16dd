//! `Distinct`: keep one row per key (`On`, default every column), the first or the last, in
//! input order. Dropped rows are counted as duplicates. Nulls equal each other, as NaNs do and
//! `-0` and `0` (SQL `DISTINCT`).
//!
//! `Keep: first` streams: each batch goes on at once without the rows whose key was seen before.
//! The keys seen are one byte arena and a hash table of offsets into it, so a key costs its bytes
//! plus 16. `Keep: last` must see every row before it knows which one is last, so it holds the
//! batches until the input ends. Either way, once the state passes half the node's share of
//! `MemoryLimit`, rows go to spill files partitioned by key and are deduplicated one partition at
//! a time (`overflow.rs`).

use std::sync::{Arc, RwLock};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_row::Rows;
use arrow_schema::SchemaRef;
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, Output, RowCondition, StatefulTransform, TransformConfig,
};
use flowengine_engine::error::{BuildError, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::Batch;

use super::keys::{self, KeyItem, KeySet, Keys};
use super::node_error;
use super::overflow::Overflow;
use crate::spill::SpillDir;

/// Which of the rows with one key stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    First,
    Last,
}

/// Parsed `Distinct` config.
#[derive(Debug, Clone)]
pub struct DistinctConfig {
    node: String,
    on: Option<Vec<KeyItem>>,
    keep: Keep,
    /// The keys passed on so far, shared by the run's `Distinct` and its source's condition.
    seen: Arc<Seen>,
}

/// The keys a `Distinct` has passed on. It writes them a batch at a time, in input order; a
/// source reads them to leave out rows that repeat a key already passed on (such a row comes
/// later in the input than the one passed on, so it is a duplicate whatever else arrives).
#[derive(Default)]
struct Seen(RwLock<KeySet>);

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seen")
    }
}

impl Seen {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeySet> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parse a `Distinct` `Config` map: `On` (default: every column) and `Keep` (`first`, `last`).
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let on = match m.has("On") {
        true => Some(keys::read_items(m, cx, "On", false)?),
        false => None,
    };
    let keep = m
        .choice(cx, "Keep", &[("first", Keep::First), ("last", Keep::Last)])
        .unwrap_or(Keep::First);
    Some(Box::new(DistinctConfig {
        node: node.node.clone(),
        on,
        keep,
        seen: Arc::default(),
    }))
}

impl DistinctConfig {
    fn keys(&self, input: &SchemaRef) -> Result<Keys, Vec<PlanError>> {
        match &self.on {
            Some(on) => Keys::resolve(on, input),
            None => Keys::all(input),
        }
    }
}

impl TransformConfig for DistinctConfig {
    /// With `Keep: first` and `On` columns, the source converts the key columns first and builds
    /// the others only for rows whose key has not been passed on yet.
    fn condition(&self, input: &SchemaRef) -> Option<Arc<dyn RowCondition>> {
        let on = self.on.as_ref().filter(|_| self.keep == Keep::First)?;
        let mut columns: Vec<usize> = Keys::resolve(on, input).ok()?.columns;
        columns.sort_unstable();
        columns.dedup();
        let projected = Arc::new(input.project(&columns).ok()?);
        Some(Arc::new(Early {
            node: self.node.clone(),
            columns,
            keys: Keys::resolve(on, &projected).ok()?,
            seen: self.seen.clone(),
        }))
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.keys(input).map(|_| input.clone())
    }

    fn stateful(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let keys = self.keys(&input).map_err(|e| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&e),
        })?;
        Ok(BuiltTransform::Stateful(Box::new(Distinct {
            node: cx.node.clone(),
            keys,
            keep: self.keep,
            seen: self.seen.clone(),
            limit: usize::try_from(cx.state_bytes).unwrap_or(usize::MAX),
            held: Vec::new(),
            held_bytes: 0,
            last: Vec::new(),
            finished: 0,
            spill: Some(SpillDir::create(&cx.temp_dir, &cx.node)?),
            overflow: None,
            input,
            chunk_size: cx.chunk_size.max(1),
            seq: 0,
        })))
    }
}

struct Distinct {
    node: String,
    keys: Keys,
    keep: Keep,
    seen: Arc<Seen>,
    /// Bytes the keys (and, for `Keep: last`, the held batches) may take.
    limit: usize,
    /// `Keep: last`: every batch, until the input ends.
    held: Vec<Batch>,
    held_bytes: usize,
    /// `Keep: last`: per key (by its index in `seen`), the batch and row of its last row.
    last: Vec<(u32, u32)>,
    /// `Keep: last`: held batches already sent on by `finish`.
    finished: usize,
    /// `Keep: first`: where rows go once the keys outgrow `limit` (made at build, so a
    /// directory that cannot be written fails before rows move).
    spill: Option<SpillDir>,
    overflow: Option<Overflow>,
    input: SchemaRef,
    chunk_size: usize,
    /// Rows seen, which is the input position of the next one.
    seq: u64,
}

impl StatefulTransform for Distinct {
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        let rows = self.keys.rows(&self.node, batch.data.columns())?;
        if let Some(overflow) = self.overflow.as_mut() {
            // Keys seen before the overflow are still known: their rows are duplicates now.
            let seen = self.seen.read();
            let candidate: Vec<bool> = (0..batch.num_rows())
                .map(|r| !seen.contains(rows.row(r).as_ref()))
                .collect();
            drop(seen);
            out.duplicates += candidate.iter().filter(|&&c| !c).count() as u64;
            return overflow.spill(&batch, &rows, &candidate);
        }
        self.seq += batch.num_rows() as u64;
        match self.keep {
            Keep::First => {
                let mut seen = self.seen.write();
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|r| Some(seen.insert(rows.row(r).as_ref()).1))
                    .collect();
                drop(seen);
                let kept = keep.true_count();
                out.duplicates += (batch.num_rows() - kept) as u64;
                if kept > 0 {
                    let batch = match kept == batch.num_rows() {
                        true => batch,
                        false => batch.filter(&keep).map_err(|e| node_error(&self.node, e))?,
                    };
                    out.batches.push(batch);
                }
            }
            Keep::Last => self.hold(batch, &rows)?,
        }
        match (self.check_memory(), self.spill.take()) {
            (Ok(()), spill) => {
                self.spill = spill;
                Ok(())
            }
            // Past its share, the state goes on disk (see `overflow.rs`).
            (Err(_), Some(spill)) => self.overflow(spill),
            (Err(e), None) => Err(e),
        }
    }

    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        if let Some(overflow) = self.overflow.as_mut() {
            let chunk = overflow.next_chunk(&self.keys, self.chunk_size, &mut out.duplicates)?;
            return Ok(chunk.map(|b| out.batches.push(b)).is_some());
        }
        if self.keep == Keep::First || self.finished == self.held.len() {
            return Ok(false);
        }
        let b = self.finished;
        self.finished += 1;
        let placeholder = empty(&self.held[b]);
        let batch = std::mem::replace(&mut self.held[b], placeholder);
        let mut keep = vec![false; batch.num_rows()];
        // Every key's last row is in exactly one batch; mark this batch's.
        for &(lb, lr) in &self.last {
            if lb as usize == b {
                keep[lr as usize] = true;
            }
        }
        let keep = BooleanArray::from(keep);
        let kept = keep.true_count();
        out.duplicates += (batch.num_rows() - kept) as u64;
        if kept > 0 {
            let batch = batch.filter(&keep).map_err(|e| node_error(&self.node, e))?;
            out.batches.push(batch);
        }
        Ok(self.finished < self.held.len())
    }

    fn notes(&self) -> Vec<String> {
        let seen = self.seen.read();
        let mut notes = vec![format!(
            "{} distinct keys in memory ({} of keys)",
            seen.len(),
            human_bytes(seen.bytes() as u64)
        )];
        if let Some(overflow) = &self.overflow {
            let rows = match self.keep {
                Keep::First => "later rows with new keys",
                Keep::Last => "rows",
            };
            notes.push(format!(
                "the state outgrew half its share of `MemoryLimit` ({}): {} {rows} were spilled \
                 by key and deduplicated one partition at a time",
                human_bytes(self.limit as u64),
                overflow.spilled_rows
            ));
        }
        notes
    }

    fn prefiltered_are_duplicates(&self) -> bool {
        true
    }
}

/// `Distinct`'s condition as its source evaluates it: false for a row whose key was passed on.
#[derive(Debug)]
struct Early {
    node: String,
    columns: Vec<usize>,
    /// The keys over just `columns`.
    keys: Keys,
    seen: Arc<Seen>,
}

impl RowCondition for Early {
    fn columns(&self) -> &[usize] {
        &self.columns
    }

    fn may_keep(&self, columns: &[ArrayRef], rows: usize) -> Result<BooleanArray, RunError> {
        let keys = self.keys.rows(&self.node, columns)?;
        let seen = self.seen.read();
        Ok((0..rows)
            .map(|r| Some(!seen.contains(keys.row(r).as_ref())))
            .collect())
    }
}

impl Distinct {
    /// Go on with rows partitioned on disk: `Keep: first` keeps the keys it has, and spills the
    /// rows of new keys; `Keep: last` spills every row, those it holds first.
    fn overflow(&mut self, spill: SpillDir) -> Result<(), RunError> {
        let start = match self.keep {
            Keep::First => self.seq,
            Keep::Last => 0,
        };
        let mut overflow = Overflow::new(&self.node, spill, self.keep, self.input.clone(), start)?;
        for batch in std::mem::take(&mut self.held) {
            let rows = self.keys.rows(&self.node, batch.data.columns())?;
            overflow.spill(&batch, &rows, &vec![true; batch.num_rows()])?;
        }
        if self.keep == Keep::Last {
            self.last = Vec::new();
            self.held_bytes = 0;
            *self.seen.write() = KeySet::default();
        }
        self.overflow = Some(overflow);
        Ok(())
    }

    /// Hold `batch` and note, for each of its rows, that it is its key's last so far.
    fn hold(&mut self, batch: Batch, rows: &Rows) -> Result<(), RunError> {
        let b = u32::try_from(self.held.len()).map_err(|_| self.too_many("batches"))?;
        let mut seen = self.seen.write();
        for r in 0..batch.num_rows() {
            let (key, _) = seen.insert(rows.row(r).as_ref());
            let at = (b, r as u32);
            match self.last.get_mut(key) {
                Some(last) => *last = at,
                None => self.last.push(at),
            }
        }
        drop(seen);
        self.held_bytes += batch.data.get_array_memory_size();
        self.held.push(batch);
        Ok(())
    }

    fn check_memory(&self) -> Result<(), RunError> {
        let (keys, bytes) = {
            let seen = self.seen.read();
            (seen.len(), seen.bytes())
        };
        let used = bytes + self.held_bytes + self.last.len() * 8;
        // The key set grows by doubling: past half its share, the next growth would pass it.
        // Then the state spills instead (see `overflow.rs`).
        if used <= self.limit / 2 {
            return Ok(());
        }
        let what = match self.keep {
            Keep::First => format!("its {keys} distinct keys"),
            Keep::Last => format!(
                "its {keys} distinct keys and the rows it holds until the input ends (`Keep: last`)"
            ),
        };
        Err(RunError::Node {
            node: self.node.clone(),
            message: format!(
                "{what} take {}, more than its share of `MemoryLimit` ({}); raise \
                 `Settings.MemoryLimit` (each Distinct or Sort gets half of it, shared), or use \
                 fewer `On` columns",
                human_bytes(used as u64),
                human_bytes(self.limit as u64)
            ),
        })
    }

    fn too_many(&self, what: &str) -> RunError {
        RunError::Node {
            node: self.node.clone(),
            message: format!("more than 2^32 {what}"),
        }
    }
}

fn empty(batch: &Batch) -> Batch {
    Batch::new(
        RecordBatch::new_empty(batch.data.schema()),
        batch.origin.file.clone(),
        arrow_array::UInt64Array::from(Vec::<u64>::new()),
    )
}

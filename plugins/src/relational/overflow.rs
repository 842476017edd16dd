//! What `Distinct` does once its state outgrows its share of `MemoryLimit`.
//!
//! `Keep: first`: the keys seen so far stay in memory and no key is added to them: a later row
//! with one of them is still dropped at once. Every other row (its key was first seen after the
//! overflow, or is being seen now) goes to the key partitions of `partition.rs`. At the end each
//! partition is deduplicated on its own (its first row of each key is the key's first row after
//! the overflow). Every row passed on before the overflow comes before every row after it.
//!
//! `Keep: last`: nothing was passed on yet, so every row held goes to the partitions, then every
//! later row; each partition keeps its last row of each key.
//!
//! Either way the rows kept from each partition are written back in input order, and those runs
//! are merged by input position, so the output is in input order throughout.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;
use flowengine_engine::error::RunError;
use flowengine_engine::Batch;

use super::distinct::Keep;
use super::keys::{KeySet, Keys};
use super::node_error;
use super::partition::{self, Partitions};
use super::sort::{Cursor, Merge};
use crate::spill::{SpillDir, SpillFile};

/// The rows of a `Distinct` past its memory share, partitioned by key on disk.
pub(super) struct Overflow {
    node: String,
    spill: SpillDir,
    keep: Keep,
    input: SchemaRef,
    /// The partitions' schema: the input's, the position and the line.
    schema: SchemaRef,
    /// Until `finish` begins.
    parts: Option<Partitions>,
    /// The final merge, once `finish` has begun.
    merge: Option<Merge>,
    seq_keys: Keys,
    file: Option<Arc<str>>,
    pub(super) spilled_rows: u64,
}

impl Overflow {
    /// Start spilling into `spill`; the next row is the `seq`-th of the input.
    pub(super) fn new(
        node: &str,
        mut spill: SpillDir,
        keep: Keep,
        input: SchemaRef,
        seq: u64,
    ) -> Result<Overflow, RunError> {
        let parts = Partitions::new(node, &mut spill, &input, seq)?;
        Ok(Overflow {
            node: node.to_string(),
            seq_keys: partition::seq_keys(node, &parts.schema)?,
            schema: parts.schema.clone(),
            spill,
            keep,
            input,
            parts: Some(parts),
            merge: None,
            file: None,
            spilled_rows: 0,
        })
    }

    /// Spill the rows of `batch` where `candidate` is true, by key.
    pub(super) fn spill(
        &mut self,
        batch: &Batch,
        keys: &arrow_row::Rows,
        candidate: &[bool],
    ) -> Result<(), RunError> {
        self.file = batch.origin.file.clone();
        let parts = self.parts.as_mut().ok_or_else(|| finished(&self.node))?;
        parts.write(batch, keys, candidate)?;
        self.spilled_rows = parts.rows;
        Ok(())
    }

    /// The next chunk of rows kept after the overflow, in input order; the duplicates found on
    /// the way are added to `duplicates`.
    pub(super) fn next_chunk(
        &mut self,
        keys: &Keys,
        chunk_size: usize,
        duplicates: &mut u64,
    ) -> Result<Option<Batch>, RunError> {
        if let Some(parts) = self.parts.take() {
            let mut cursors = Vec::new();
            for part in parts.finish()? {
                let kept = self.dedup(&part, keys, duplicates)?;
                let reader = self.spill.read(&kept)?;
                cursors.extend(Cursor::spilled(reader, &self.seq_keys, &self.node)?);
            }
            self.merge = Some(Merge::new(cursors));
        }
        let merge = self.merge.as_mut().ok_or_else(|| finished(&self.node))?;
        let Some(chunk) = merge.next_chunk(chunk_size, &self.seq_keys, &self.node)? else {
            return Ok(None);
        };
        let (columns, _, lines) = partition::split_position(&chunk);
        let lines = lines.clone();
        let data = RecordBatch::try_new(self.input.clone(), columns)
            .map_err(|e| node_error(&self.node, e))?;
        Ok(Some(Batch::new(data, self.file.clone(), lines)))
    }

    /// The first (or last) row of each key in one partition, in input order, as a new run.
    fn dedup(
        &mut self,
        part: &SpillFile,
        keys: &Keys,
        duplicates: &mut u64,
    ) -> Result<SpillFile, RunError> {
        // `Keep: last`: a first pass finds each key's last position.
        let mut last: Vec<u64> = Vec::new();
        let mut seen = KeySet::default();
        if self.keep == Keep::Last {
            let mut reader = self.spill.read(part)?;
            while let Some(batch) = reader.next_batch()? {
                let rows = keys.rows(&self.node, batch.columns())?;
                let (_, seq, _) = partition::split_position(&batch);
                for r in 0..batch.num_rows() {
                    let (k, new) = seen.insert(rows.row(r).as_ref());
                    match new {
                        true => last.push(seq.value(r)),
                        false => last[k] = seq.value(r),
                    }
                }
            }
        }
        let mut reader = self.spill.read(part)?;
        let mut kept = self.spill.writer(&self.schema, 1 << 20)?;
        while let Some(batch) = reader.next_batch()? {
            let rows = keys.rows(&self.node, batch.columns())?;
            let (_, seq, _) = partition::split_position(&batch);
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|r| {
                    let key = rows.row(r);
                    Some(match self.keep {
                        Keep::First => seen.insert(key.as_ref()).1,
                        Keep::Last => seen
                            .find(key.as_ref())
                            .is_some_and(|k| last[k] == seq.value(r)),
                    })
                })
                .collect();
            *duplicates += (batch.num_rows() - keep.true_count()) as u64;
            let batch = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| node_error(&self.node, e))?;
            kept.write(&batch)?;
        }
        kept.finish()
    }
}

fn finished(node: &str) -> RunError {
    RunError::Internal(format!("{node}: the overflow was used after it finished"))
}

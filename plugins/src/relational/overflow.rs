//! What `Distinct` (`Keep: first`) does once its keys outgrow their share of `MemoryLimit`.
//!
//! The keys seen so far stay in memory and no key is added to them: a later row with one of them
//! is still dropped at once. Every other row (its key was first seen after the overflow, or is
//! being seen now) goes, with its position in the input, to one of [`PARTITIONS`] spill files
//! chosen by a hash of its key, so all rows with one key land in one file, in input order. At the
//! end each file is deduplicated on its own (its first row of each key is the key's first row
//! after the overflow), the rows kept are written back in input order, and those runs are merged
//! by input position. Every row passed on before the overflow comes before every row after it, so
//! the output is in input order throughout.

use std::hash::BuildHasher;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowengine_engine::error::RunError;
use flowengine_engine::Batch;

use super::keys::{KeyItem, KeySet, Keys};
use super::node_error;
use super::sort::{Cursor, Merge};
use crate::spill::{SpillDir, SpillFile, SpillWriter};

/// Spill files the overflowing rows are spread over. Each must fit the node's share at the end.
const PARTITIONS: usize = 64;
/// Rows a partition collects before they are written.
const FLUSH_ROWS: usize = 512;
/// The columns a spilled row carries besides its own: its input position and line.
const SEQ: &str = "__flowengine_seq";
const LINE: &str = "__flowengine_line";

/// The rows of a `Distinct` past its memory share, partitioned by key on disk.
pub(super) struct Overflow {
    node: String,
    spill: SpillDir,
    input: SchemaRef,
    schema: SchemaRef,
    writers: Vec<SpillWriter>,
    /// Per partition, slices not written yet, and their rows: written a few thousand rows at a
    /// time rather than a few rows per input batch.
    pending: Vec<Vec<RecordBatch>>,
    pending_rows: Vec<usize>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Input position of the next row.
    seq: u64,
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
        input: SchemaRef,
        seq: u64,
    ) -> Result<Overflow, RunError> {
        let mut fields = input.fields().to_vec();
        fields.push(Arc::new(Field::new(SEQ, DataType::UInt64, false)));
        fields.push(Arc::new(Field::new(LINE, DataType::UInt64, true)));
        let schema = Arc::new(Schema::new(fields));
        let writers = (0..PARTITIONS)
            .map(|_| spill.writer(&schema, 64 << 10))
            .collect::<Result<_, _>>()?;
        let seq_item = KeyItem {
            column: SEQ.into(),
            descending: false,
            nulls_first: false,
            path: String::new(),
        };
        let seq_keys = Keys::resolve(&[seq_item], &schema).map_err(|_| {
            RunError::Internal("distinct: the spill schema lost its position column".into())
        })?;
        Ok(Overflow {
            node: node.to_string(),
            spill,
            input,
            schema,
            writers,
            pending: vec![Vec::new(); PARTITIONS],
            pending_rows: vec![0; PARTITIONS],
            hasher: Default::default(),
            seq,
            merge: None,
            seq_keys,
            file: None,
            spilled_rows: 0,
        })
    }

    /// Spill the rows of `batch` where `candidate` is true (keys not in memory), by key.
    pub(super) fn spill(
        &mut self,
        batch: &Batch,
        keys: &arrow_row::Rows,
        candidate: &[bool],
    ) -> Result<(), RunError> {
        self.file = batch.origin.file.clone();
        let n = batch.num_rows();
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); PARTITIONS];
        for (r, _) in candidate.iter().enumerate().filter(|(_, &c)| c) {
            let p = self.hasher.hash_one(keys.row(r).as_ref()) as usize % PARTITIONS;
            rows_of[p].push(r as u32);
        }
        let mut columns = batch.data.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from_iter_values(
            self.seq..self.seq + n as u64,
        )));
        columns.push(Arc::new(batch.origin.lines.clone()));
        self.seq += n as u64;
        let whole = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| node_error(&self.node, e))?;
        // One `take` puts the rows in partition order; each partition gets a slice of it.
        let counts: Vec<usize> = rows_of.iter().map(Vec::len).collect();
        let order = UInt32Array::from(rows_of.concat());
        let taken = arrow_select::take::take_record_batch(&whole, &order)
            .map_err(|e| node_error(&self.node, e))?;
        let mut start = 0;
        for (p, count) in counts.into_iter().enumerate() {
            if count == 0 {
                continue;
            }
            self.spilled_rows += count as u64;
            self.pending[p].push(taken.slice(start, count));
            self.pending_rows[p] += count;
            start += count;
            if self.pending_rows[p] >= FLUSH_ROWS {
                self.flush(p)?;
            }
        }
        Ok(())
    }

    /// Write partition `p`'s pending slices as one batch.
    fn flush(&mut self, p: usize) -> Result<(), RunError> {
        if self.pending[p].is_empty() {
            return Ok(());
        }
        let slices = std::mem::take(&mut self.pending[p]);
        self.pending_rows[p] = 0;
        let batch = arrow_select::concat::concat_batches(&self.schema, &slices)
            .map_err(|e| node_error(&self.node, e))?;
        self.writers[p].write(&batch)
    }

    /// The next chunk of first rows after the overflow, in input order; the duplicates found on
    /// the way are added to `duplicates`.
    pub(super) fn next_chunk(
        &mut self,
        keys: &Keys,
        chunk_size: usize,
        duplicates: &mut u64,
    ) -> Result<Option<Batch>, RunError> {
        if self.merge.is_none() {
            for p in 0..PARTITIONS {
                self.flush(p)?;
            }
            let mut cursors = Vec::new();
            for writer in std::mem::take(&mut self.writers) {
                let part = writer.finish()?;
                let kept = self.dedup(&part, keys, duplicates)?;
                let reader = self.spill.read(&kept)?;
                cursors.extend(Cursor::spilled(reader, &self.seq_keys, &self.node)?);
            }
            self.merge = Some(Merge::new(cursors));
        }
        let merge = self.merge.as_mut().expect("set above");
        let Some(chunk) = merge.next_chunk(chunk_size, &self.seq_keys, &self.node)? else {
            return Ok(None);
        };
        let width = self.input.fields().len();
        let lines = chunk.column(width + 1).as_primitive::<UInt64Type>().clone();
        let columns: Vec<ArrayRef> = chunk.columns()[..width].to_vec();
        let data = RecordBatch::try_new(self.input.clone(), columns)
            .map_err(|e| node_error(&self.node, e))?;
        Ok(Some(Batch::new(data, self.file.clone(), lines)))
    }

    /// The first row of each key in one partition, in input order, as a new run.
    fn dedup(
        &mut self,
        part: &SpillFile,
        keys: &Keys,
        duplicates: &mut u64,
    ) -> Result<SpillFile, RunError> {
        let mut reader = self.spill.read(part)?;
        let mut seen = KeySet::default();
        let mut kept = self.spill.writer(&self.schema, 1 << 20)?;
        while let Some(batch) = reader.next_batch()? {
            let rows = keys.rows(&self.node, batch.columns())?;
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|r| Some(seen.insert(rows.row(r).as_ref()).1))
                .collect();
            *duplicates += (batch.num_rows() - keep.true_count()) as u64;
            let batch = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| node_error(&self.node, e))?;
            kept.write(&batch)?;
        }
        kept.finish()
    }
}

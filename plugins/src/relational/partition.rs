//! Rows spread over spill files by a hash of their key, so every row with one key lands in one
//! file, in input order, with its input position and line. `Distinct` and `Aggregate` use it once
//! their keys outgrow their share of `MemoryLimit`, then finish one file at a time.

use std::hash::BuildHasher;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowengine_engine::error::RunError;
use flowengine_engine::Batch;

use super::keys::{KeyItem, Keys};
use super::node_error;
use crate::spill::{SpillDir, SpillFile, SpillWriter};

/// Spill files the rows are spread over. Each must fit the node's share at the end.
pub(super) const PARTITIONS: usize = 64;
/// Rows a partition collects before they are written.
const FLUSH_ROWS: usize = 512;
/// The columns a spilled row carries besides its own: its input position and line.
pub(super) const SEQ: &str = "__flowengine_seq";
const LINE: &str = "__flowengine_line";

/// Partition files being written.
pub(super) struct Partitions {
    node: String,
    /// The input's columns, then [`SEQ`] and the line.
    pub(super) schema: SchemaRef,
    writers: Vec<SpillWriter>,
    /// Per partition, slices not written yet, and their rows: written a few hundred rows at a
    /// time rather than a few rows per input batch.
    pending: Vec<Vec<RecordBatch>>,
    pending_rows: Vec<usize>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Input position of the next row.
    seq: u64,
    /// Rows written so far.
    pub(super) rows: u64,
}

impl Partitions {
    /// Start partitions in `spill` for rows of `input`; the next row is the `seq`-th of the input.
    pub(super) fn new(
        node: &str,
        spill: &mut SpillDir,
        input: &SchemaRef,
        seq: u64,
    ) -> Result<Partitions, RunError> {
        let schema = with_position(input);
        let writers = (0..PARTITIONS)
            .map(|_| spill.writer(&schema, 64 << 10))
            .collect::<Result<_, _>>()?;
        Ok(Partitions {
            node: node.to_string(),
            schema,
            writers,
            pending: vec![Vec::new(); PARTITIONS],
            pending_rows: vec![0; PARTITIONS],
            hasher: Default::default(),
            seq,
            rows: 0,
        })
    }

    /// Write the rows of `batch` where `chosen` is true, each to its key's partition; every row
    /// of `batch` takes an input position.
    pub(super) fn write(
        &mut self,
        batch: &Batch,
        keys: &arrow_row::Rows,
        chosen: &[bool],
    ) -> Result<(), RunError> {
        let n = batch.num_rows();
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); PARTITIONS];
        for (r, _) in chosen.iter().enumerate().filter(|(_, &c)| c) {
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
            self.rows += count as u64;
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

    /// The partition files, complete.
    pub(super) fn finish(mut self) -> Result<Vec<SpillFile>, RunError> {
        for p in 0..PARTITIONS {
            self.flush(p)?;
        }
        self.writers.into_iter().map(SpillWriter::finish).collect()
    }
}

/// `schema` with [`SEQ`] (non-null) and a nullable line column after its own.
fn with_position(schema: &SchemaRef) -> SchemaRef {
    let mut fields = schema.fields().to_vec();
    fields.push(Arc::new(Field::new(SEQ, DataType::UInt64, false)));
    fields.push(Arc::new(Field::new(LINE, DataType::UInt64, true)));
    Arc::new(Schema::new(fields))
}

/// The [`SEQ`] column as a key, ascending.
pub(super) fn seq_item() -> KeyItem {
    KeyItem {
        column: SEQ.into(),
        descending: false,
        nulls_first: false,
        path: String::new(),
    }
}

/// Keys that order rows by their [`SEQ`] column in `schema`.
pub(super) fn seq_keys(node: &str, schema: &Schema) -> Result<Keys, RunError> {
    Keys::resolve(&[seq_item()], schema)
        .map_err(|_| RunError::Internal(format!("{node}: a spill schema lost its position column")))
}

/// A partition's batch back as the input's columns, its positions and its lines.
pub(super) fn split_position(batch: &RecordBatch) -> (Vec<ArrayRef>, &UInt64Array, &UInt64Array) {
    let width = batch.num_columns() - 2;
    let columns = batch.columns()[..width].to_vec();
    let seq = batch.column(width).as_primitive::<UInt64Type>();
    let lines = batch.column(width + 1).as_primitive::<UInt64Type>();
    (columns, seq, lines)
}

//! A row group's column writers as independent lanes on the worker pool.
//!
//! Each column has a queue of leaves and at most one task draining it, so a column's values reach
//! its writer in order while the columns go at their own pace. Encoding batch by batch with a
//! barrier left a core idle at the end of every batch, waiting for the slowest column; with lanes,
//! the next batch's columns (or the source's decoding) fill that gap.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowLeafColumn};
use parquet::errors::ParquetError;

/// How many batches a column may lag behind the sink before `push` waits for it: enough to ride
/// out one slow column, few enough that the batches held stay a small part of memory.
const DEPTH: usize = 8;

/// How long a waiting pool thread sleeps when it found no other work: short, because work may
/// arrive on the pool without anything telling this thread.
const NAP: Duration = Duration::from_micros(200);

/// The column writers of the row group being encoded.
pub(super) struct Lanes {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a leaf is written or a lane goes idle.
    progress: Condvar,
}

struct State {
    lanes: Vec<Lane>,
    /// The first error of any lane; later leaves are dropped unwritten.
    failed: Option<ParquetError>,
}

struct Lane {
    /// `None` while a task is draining the lane.
    writer: Option<ArrowColumnWriter>,
    queue: VecDeque<ArrowLeafColumn>,
}

impl Lane {
    fn idle(&self) -> bool {
        self.writer.is_some() && self.queue.is_empty()
    }
}

impl Lanes {
    pub(super) fn new(writers: Vec<ArrowColumnWriter>) -> Self {
        let lanes = writers
            .into_iter()
            .map(|writer| Lane {
                writer: Some(writer),
                queue: VecDeque::new(),
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    lanes,
                    failed: None,
                }),
                progress: Condvar::new(),
            }),
        }
    }

    /// Queue one batch's leaves (one per column, in column order) and start a task on every idle
    /// lane. Waits first while some column is `DEPTH` batches behind.
    pub(super) fn push(&self, leaves: Vec<ArrowLeafColumn>) -> Result<(), ParquetError> {
        let mut state = self.wait_until(|s| s.lanes.iter().all(|l| l.queue.len() < DEPTH))?;
        let mut start = Vec::new();
        for (i, (lane, leaf)) in state.lanes.iter_mut().zip(leaves).enumerate() {
            lane.queue.push_back(leaf);
            if let Some(writer) = lane.writer.take() {
                start.push((i, writer));
            }
        }
        drop(state);
        for (i, writer) in start {
            let shared = self.shared.clone();
            rayon::spawn(move || shared.drain(i, writer));
        }
        Ok(())
    }

    /// Wait for every queued leaf to be written, then hand the writers over for `next`'s.
    pub(super) fn swap(
        &self,
        next: Vec<ArrowColumnWriter>,
    ) -> Result<Vec<ArrowColumnWriter>, ParquetError> {
        let mut state = self.wait_until(|s| s.lanes.iter().all(Lane::idle))?;
        debug_assert_eq!(state.lanes.len(), next.len(), "one writer per lane");
        Ok(state
            .lanes
            .iter_mut()
            .zip(next)
            .filter_map(|(lane, next)| lane.writer.replace(next))
            .collect())
    }

    /// Lock the state once `ready` holds (or a lane failed). A pool thread runs other pool work
    /// while it waits, so waiting never costs the pool a thread that has work to do.
    fn wait_until(
        &self,
        ready: impl Fn(&State) -> bool,
    ) -> Result<MutexGuard<'_, State>, ParquetError> {
        loop {
            let mut state = self.shared.lock();
            if let Some(e) = state.failed.take() {
                return Err(e);
            }
            if ready(&state) {
                return Ok(state);
            }
            drop(state);
            if let Some(rayon::Yield::Executed) = rayon::yield_now() {
                continue;
            }
            state = self.shared.lock();
            if !ready(&state) && state.failed.is_none() {
                // A timeout is no error here: the loop looks again either way.
                drop(self.shared.progress.wait_timeout(state, NAP));
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A lane never panics while holding the lock (writes run unlocked, under catch_unwind).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write lane `i`'s leaves until its queue is empty, then give the writer back.
    fn drain(&self, i: usize, mut writer: ArrowColumnWriter) {
        let mut state = self.lock();
        while let Some(leaf) = state.lanes[i].queue.pop_front() {
            if state.failed.is_some() {
                continue;
            }
            drop(state);
            let written =
                catch_unwind(AssertUnwindSafe(|| writer.write(&leaf))).unwrap_or_else(|_| {
                    Err(ParquetError::General("the column encoder panicked".into()))
                });
            drop(leaf);
            state = self.lock();
            if let Err(e) = written {
                state.failed.get_or_insert(e);
            }
            self.progress.notify_all();
        }
        state.lanes[i].writer = Some(writer);
        self.progress.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::SchemaRef;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::arrow_writer::compute_leaves;
    use parquet::arrow::ArrowWriter;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + rows));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (from..from + rows).map(|i| format!("name {}", i % 7)),
        ));
        RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap()
    }

    fn leaves(schema: &SchemaRef, b: &RecordBatch) -> Vec<ArrowLeafColumn> {
        schema
            .fields()
            .iter()
            .zip(b.columns())
            .flat_map(|(f, a)| compute_leaves(f, a).unwrap())
            .collect()
    }

    /// Many more batches than `DEPTH`, pushed from a pool thread, come back whole and in order.
    #[test]
    fn batches_reach_the_file_in_order_through_the_lanes() {
        let schema = batch(0, 1).schema();
        let out = tempfile::tempfile().unwrap();
        let writer = ArrowWriter::try_new(out.try_clone().unwrap(), schema.clone(), None).unwrap();
        let (mut file, factory) = writer.into_serialized_writer().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let groups = pool.install(|| {
            let lanes = Lanes::new(factory.create_column_writers(0).unwrap());
            for k in 0..(DEPTH as i64 * 5) {
                lanes.push(leaves(&schema, &batch(k * 100, 100))).unwrap();
            }
            let first = lanes
                .swap(factory.create_column_writers(1).unwrap())
                .unwrap();
            lanes.push(leaves(&schema, &batch(4000, 5))).unwrap();
            let second = lanes
                .swap(factory.create_column_writers(2).unwrap())
                .unwrap();
            [first, second]
        });
        for writers in groups {
            let mut group = file.next_row_group().unwrap();
            for w in writers {
                w.close().unwrap().append_to_row_group(&mut group).unwrap();
            }
            group.close().unwrap();
        }
        file.close().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(out)
            .unwrap()
            .build()
            .unwrap();
        let ids: Vec<i64> = reader
            .flat_map(|b| {
                let b = b.unwrap();
                let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                ids.values().to_vec()
            })
            .collect();
        assert_eq!(ids, (0..4005).collect::<Vec<_>>());
    }
}

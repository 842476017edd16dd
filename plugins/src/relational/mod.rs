//! The relational transforms: `Sort`, `Distinct`, `Aggregate`, `Lookup`, `Limit` and `Sample`. Each keeps state across
//! batches, so each is a [`StatefulTransform`](flowengine_engine::component::StatefulTransform):
//! the executor feeds it every batch in arrival order, on its pool, then asks for the rest.
//!
//! Keys are rows of key columns as `arrow-row` byte strings (`keys.rs`): they compare as SQL's
//! `ORDER BY` and hash as its `DISTINCT` (nulls equal, NaNs equal, `-0 = 0`). What does not fit
//! the node's share of `MemoryLimit` goes to spill files (`crate::spill`).

use std::sync::Arc;

use flowengine_engine::error::RunError;
use flowengine_engine::Batch;

pub mod aggregate;
pub mod distinct;
pub mod keys;
pub mod limit;
pub mod lookup;
mod overflow;
mod partition;
pub mod sort;

/// The file the rows of a transform's output came from: one file if every input batch named the
/// same one, else none (rows merged from several sources keep their lines, not their files).
#[derive(Debug, Default)]
struct Provenance {
    first: Option<Option<Arc<str>>>,
    mixed: bool,
}

impl Provenance {
    fn add(&mut self, batch: &Batch) {
        match &self.first {
            None => self.first = Some(batch.origin.file.clone()),
            Some(file) if *file != batch.origin.file => self.mixed = true,
            Some(_) => {}
        }
    }

    fn file(&self) -> Option<Arc<str>> {
        if self.mixed {
            None
        } else {
            self.first.clone().flatten()
        }
    }
}

/// A kernel failure as the run's error for `node`.
fn node_error(node: &str, e: arrow_schema::ArrowError) -> RunError {
    RunError::Node {
        node: node.to_string(),
        message: e.to_string(),
    }
}

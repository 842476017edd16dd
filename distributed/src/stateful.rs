//! A transform that keeps state across batches (`Sort`, `Distinct`, `Aggregate`, `Lookup`,
//! `Limit`, `Sample`) as one DataFusion operator, driven as the local engine drives it: its
//! named input ports read to their end first, then every batch of its main input to `push` in
//! arrival order, then `finish` until it says there is no more, each call on the run's worker
//! pool. A transform that hands back a batch transform once its ports are read (a `Lookup` with
//! its reference loaded) runs that on the pool a window of batches at a time, in order. A node
//! that has the rows it needs (a `Limit`) counts what still arrives as filtered, and a source
//! whose every path ends in such nodes stops reading.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use flowengine_engine::component::{Output, StatefulTransform, Transform};
use flowengine_engine::error::{RowError, RunError};
use flowengine_engine::Batch;
use futures::{FutureExt, Stream, StreamExt};
use rayon::prelude::*;
use tokio::sync::mpsc::Sender;

use crate::exec::{properties, Inputs};
use crate::origin;
use crate::state::{Node, Run};

/// Its input ports: the main input, then each named one with the schema of its rows.
pub(crate) struct Ports {
    pub(crate) main: Inputs,
    pub(crate) sides: Vec<(Inputs, SchemaRef)>,
}

/// A built stateful transform and its inputs.
pub(crate) struct StatefulExec {
    ports: Arc<Ports>,
    children: Vec<Arc<dyn ExecutionPlan>>,
    transform: Arc<Mutex<Option<Box<dyn StatefulTransform>>>>,
    /// Its index in the plan (to say it has the rows it needs).
    index: usize,
    node: Arc<Node>,
    run: Arc<Run>,
    input_data: SchemaRef,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl StatefulExec {
    pub(crate) fn new(
        ports: Ports,
        transform: Box<dyn StatefulTransform>,
        (index, node): (usize, Arc<Node>),
        run: Arc<Run>,
        input_data: SchemaRef,
        output_data: &SchemaRef,
    ) -> Self {
        let schema = origin::schema(output_data);
        let children = (ports.main.plans().into_iter())
            .chain(ports.sides.iter().flat_map(|(s, _)| s.plans()))
            .cloned()
            .collect();
        StatefulExec {
            ports: Arc::new(ports),
            children,
            transform: Arc::new(Mutex::new(Some(transform))),
            index,
            node,
            run,
            input_data,
            properties: properties(&schema),
            schema,
        }
    }
}

impl fmt::Debug for StatefulExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatefulExec")
            .field("node", &self.node.name)
            .finish()
    }
}

impl DisplayAs for StatefulExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowEngineStatefulTransform: node={} type={}",
            self.node.name, self.node.type_name
        )
    }
}

impl ExecutionPlan for StatefulExec {
    fn name(&self) -> &str {
        "FlowEngineStatefulTransform"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.children.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Its inputs are wired to the plan's connections when it is built; nothing swaps them.
        if children.len() == self.children.len() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(format!(
                "{} inputs given for {} connections",
                children.len(),
                self.children.len()
            )))
        }
    }

    fn execute(&self, partition: usize, cx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let transform = self
            .transform
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|_| partition == 0)
            .ok_or_else(|| {
                DataFusionError::Internal(format!("`{}` executed twice", self.node.name))
            })?;
        let main = self.ports.main.execute(&self.input_data, cx.clone())?;
        let mut sides = Vec::with_capacity(self.ports.sides.len());
        for (inputs, data) in &self.ports.sides {
            sides.push((inputs.execute(data, cx.clone())?, data.clone()));
        }
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let driver = Driver {
            tx: builder.tx(),
            index: self.index,
            node: self.node.clone(),
            run: self.run.clone(),
            input_data: self.input_data.clone(),
            schema: self.schema.clone(),
        };
        builder.spawn_blocking(move || {
            let run = driver.run.clone();
            run.guarded(&driver.node.name, || driver.drive(transform, main, sides))
        });
        Ok(builder.build())
    }
}

/// What drives one stateful transform, on a blocking thread.
struct Driver {
    tx: Sender<Result<RecordBatch>>,
    index: usize,
    node: Arc<Node>,
    run: Arc<Run>,
    input_data: SchemaRef,
    schema: SchemaRef,
}

/// Whether the consumer still reads (it stops only when the run is failing).
type Open = bool;

impl Driver {
    fn drive(
        &self,
        mut t: Box<dyn StatefulTransform>,
        main: SendableRecordBatchStream,
        sides: Vec<(SendableRecordBatchStream, SchemaRef)>,
    ) -> std::result::Result<(), RunError> {
        self.node.set_aggregates(t.aggregates());
        let result = self.drive_ports(t.as_mut(), main, sides);
        // Kept on failure too (what it spilled before the run stopped), as on the local engine.
        self.node
            .notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(t.notes());
        result
    }

    /// Its input ports to their end, then its main input, in the mode it asks for.
    fn drive_ports(
        &self,
        t: &mut dyn StatefulTransform,
        main: SendableRecordBatchStream,
        sides: Vec<(SendableRecordBatchStream, SchemaRef)>,
    ) -> std::result::Result<(), RunError> {
        for (port, (mut side, data)) in sides.into_iter().enumerate() {
            while let Some(batch) = self.next(&mut side, &data)? {
                self.node.received_reference(batch.rows_counted());
                self.on_pool(|| t.push_side(port, batch))?;
            }
        }
        match self.on_pool(|| t.batches())? {
            Some(batches) => self.drive_batches(&*batches, main),
            None => self.drive_stateful(t, main),
        }
    }

    /// The next batch of `input`, without its origin columns; `None` at its end.
    fn next(
        &self,
        input: &mut (impl Stream<Item = Result<RecordBatch>> + Unpin),
        data: &SchemaRef,
    ) -> std::result::Result<Option<Batch>, RunError> {
        let next = tokio::runtime::Handle::current().block_on(input.next());
        self.batch_of(next, data)
    }

    /// The next batch of `input` if one is already waiting (`Ok(None)` if not, or at its end).
    fn waiting(
        &self,
        input: &mut (impl Stream<Item = Result<RecordBatch>> + Unpin),
        data: &SchemaRef,
    ) -> std::result::Result<Option<Batch>, RunError> {
        match input.next().now_or_never() {
            Some(next) => self.batch_of(next, data),
            None => Ok(None),
        }
    }

    fn batch_of(
        &self,
        next: Option<Result<RecordBatch>>,
        data: &SchemaRef,
    ) -> std::result::Result<Option<Batch>, RunError> {
        self.run.check()?;
        let Some(record) = next else {
            return Ok(None);
        };
        let record = record.map_err(|e| RunError::Internal(format!("an input failed: {e}")))?;
        origin::strip(&record, data)
            .map(Some)
            .map_err(|e| RunError::Internal(format!("a batch lost its origin: {e}")))
    }

    /// `work` on the run's worker pool (so rayon inside it uses the run's threads), timed.
    fn on_pool<T: Send>(
        &self,
        work: impl FnOnce() -> std::result::Result<T, RunError> + Send,
    ) -> std::result::Result<T, RunError> {
        let started = Instant::now();
        let done = self.run.pool.install(work);
        self.node.busy(started);
        done
    }

    fn drive_stateful(
        &self,
        t: &mut dyn StatefulTransform,
        mut main: SendableRecordBatchStream,
    ) -> std::result::Result<(), RunError> {
        let mut satisfied = false;
        while let Some(mut batch) = self.next(&mut main, &self.input_data)? {
            self.count_in(&mut batch, t.prefiltered_are_duplicates());
            if satisfied {
                // Rows already on the way when it had enough: drained so that no producer waits.
                self.node.left_out(batch.num_rows() as u64, 0, 0);
                continue;
            }
            let mut out = Output::default();
            self.on_pool(|| t.push(batch, &mut out))?;
            if !self.emit(out, false)? {
                return Ok(());
            }
            if t.satisfied() {
                satisfied = true;
                self.run.satisfy(self.index);
            }
        }
        loop {
            self.run.check()?;
            let mut out = Output::default();
            let more = self.on_pool(|| t.finish(&mut out))?;
            if !self.emit(out, false)? || !more {
                return Ok(());
            }
        }
    }

    /// A batch of the main input counted in. The rows its source left out for this node's
    /// condition are this node's filtered rows (or `duplicates`, for a `Distinct`), counted once.
    fn count_in(&self, batch: &mut Batch, duplicates: bool) {
        self.node.received(batch.rows_counted());
        let prefiltered = std::mem::take(&mut batch.prefiltered);
        match duplicates {
            true => self.node.left_out(0, prefiltered, 0),
            false => self.node.left_out(prefiltered, 0, 0),
        }
    }

    /// The batch transform a stateful one handed back, over its main input: a window of batches
    /// at a time on the pool, emitted in order.
    fn drive_batches(
        &self,
        t: &dyn Transform,
        main: SendableRecordBatchStream,
    ) -> std::result::Result<(), RunError> {
        // Looked at again after its end when a window stops there.
        let mut main = main.fuse();
        // The first batch of a window waited for, then those already waiting behind it, as the
        // local engine takes a window (a slow input is not held back to fill one).
        while let Some(first) = self.next(&mut main, &self.input_data)? {
            let mut window = vec![first];
            while window.len() < self.run.window {
                match self.waiting(&mut main, &self.input_data)? {
                    Some(batch) => window.push(batch),
                    None => break,
                }
            }
            for batch in &mut window {
                self.count_in(batch, false);
            }
            let results = self.on_pool(|| {
                Ok(window
                    .into_par_iter()
                    .map(|batch| {
                        let rows = batch.num_rows();
                        let mut rejects = Vec::new();
                        let result = t.apply(batch, &mut rejects);
                        (rows, result, rejects)
                    })
                    .collect::<Vec<_>>())
            })?;
            for (rows, result, rejects) in results {
                let batch = result?;
                let filtered = rows.saturating_sub(batch.num_rows() + rejects.len());
                let out = Output {
                    batches: vec![batch],
                    filtered: filtered as u64,
                    rejects,
                    ..Output::default()
                };
                // A batch transform's result goes on even with no row left, as on the local
                // engine (the next node counts the batch).
                if !self.emit(out, true)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// What one call handed on: its counts, its rejects under the node's policy, then its
    /// batches (those with rows, unless `keep_empty`) to the consumer.
    fn emit(&self, mut out: Output, keep_empty: bool) -> std::result::Result<Open, RunError> {
        self.node
            .left_out(out.filtered, out.duplicates, out.aggregated);
        self.take_rejects(&mut out.rejects)?;
        for batch in (out.batches.into_iter()).filter(|b| keep_empty || b.num_rows() > 0) {
            self.node.sent(&batch);
            let record = origin::carry(&batch, &self.schema)
                .map_err(|e| RunError::Internal(format!("carrying a batch's origin: {e}")))?;
            if self.tx.blocking_send(Ok(record)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn take_rejects(&self, rejects: &mut Vec<RowError>) -> std::result::Result<(), RunError> {
        self.run.take_rejects(&self.node, rejects)
    }
}

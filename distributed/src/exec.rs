//! FlowEngine's nodes as DataFusion operators: [`SourceExec`] reads a built source, and
//! [`TransformExec`] applies a built transform to each batch of its input, in order. Both run
//! our own code (the same decoders and kernels as the local engine, hence the same values, lines
//! and rejects); DataFusion drives them, and their rows cross operators with their origin as
//! two trailing columns (`origin.rs`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::{
    RecordBatchReceiverStreamBuilder, RecordBatchStreamAdapter,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use flowengine_engine::component::{BuiltSource, Routed, Settle, Transform};
use flowengine_engine::error::{RowError, RunError};
use flowengine_engine::Batch;
use futures::stream::BoxStream;
use futures::StreamExt;
use rayon::prelude::*;

use crate::origin;
use crate::state::{Node, Run};

pub(crate) fn properties(schema: &SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// A built source as a one-partition leaf: its sequential part on a blocking thread, its pieces
/// finished on the worker pool a window at a time, settled and emitted in order.
pub(crate) struct SourceExec {
    source: Mutex<Option<BuiltSource>>,
    /// Its index in the plan (to tell whether every node downstream has the rows it needs).
    index: usize,
    node: Arc<Node>,
    run: Arc<Run>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl SourceExec {
    pub(crate) fn new(
        source: BuiltSource,
        (index, node): (usize, Arc<Node>),
        run: Arc<Run>,
        data: &SchemaRef,
    ) -> Self {
        let schema = origin::schema(data);
        SourceExec {
            source: Mutex::new(Some(source)),
            index,
            node,
            run,
            properties: properties(&schema),
            schema,
        }
    }
}

impl fmt::Debug for SourceExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceExec")
            .field("node", &self.node.name)
            .finish()
    }
}

impl DisplayAs for SourceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowEngineSource: node={} type={}",
            self.node.name, self.node.type_name
        )
    }
}

impl ExecutionPlan for SourceExec {
    fn name(&self) -> &str {
        "FlowEngineSource"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("a source has no inputs".into()))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _cx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|_| partition == 0)
            .ok_or_else(|| {
                DataFusionError::Internal(format!("source `{}` executed twice", self.node.name))
            })?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let (node, run, schema) = (self.node.clone(), self.run.clone(), self.schema.clone());
        let index = self.index;
        builder.spawn_blocking(move || {
            let emit = |batch: Batch| -> bool {
                match origin::carry(&batch, &schema) {
                    Ok(b) => tx.blocking_send(Ok(b)).is_ok(),
                    Err(e) => {
                        let _ = run.fail(RunError::Internal(format!(
                            "carrying a batch's origin: {e}"
                        )));
                        false
                    }
                }
            };
            run.guarded(&node.name, || read(source, (index, &node), &run, emit))
        });
        Ok(builder.build())
    }
}

/// Reads `source` to its end (or until `emit` says stop), applying the node's error policy;
/// then keeps what the source said about how it read.
fn read(
    mut source: BuiltSource,
    (index, node): (usize, &Node),
    run: &Run,
    emit: impl FnMut(Batch) -> bool,
) -> std::result::Result<(), RunError> {
    let result = read_all(&mut source, (index, node), run, emit);
    let notes = match &source {
        BuiltSource::Batches(s) => s.notes(),
        BuiltSource::Deferred(s) => s.notes(),
    };
    node.notes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .splice(0..0, notes);
    result
}

fn read_all(
    source: &mut BuiltSource,
    (index, node): (usize, &Node),
    run: &Run,
    mut emit: impl FnMut(Batch) -> bool,
) -> std::result::Result<(), RunError> {
    // Every node downstream has the rows it needs (a `Limit`): the rest of the input is not read.
    let enough = || {
        let stop = run.downstream_satisfied(index);
        if stop {
            let rows = node.summary().rows_in;
            node.notes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!(
                "stopped reading after {rows} rows: every node downstream had the rows it needs"
            ));
        }
        stop
    };
    let mut deliver =
        |batch: Batch, mut rejects: Vec<RowError>| -> std::result::Result<bool, RunError> {
            run.read(batch.rows_counted() + rejects.len() as u64);
            node.received(batch.rows_counted() + rejects.len() as u64);
            run.take_rejects(node, &mut rejects)?;
            // A batch whose every row was left out for the next node's condition still goes
            // on: that node counts those rows as its own.
            if batch.rows_counted() == 0 {
                return Ok(true);
            }
            node.sent(&batch);
            Ok(emit(batch))
        };
    match source {
        BuiltSource::Batches(s) => loop {
            run.check()?;
            if enough() {
                return Ok(());
            }
            let mut rejects = Vec::new();
            let started = Instant::now();
            let batch = s.next_batch(&mut rejects)?;
            node.busy(started);
            match batch {
                Some(batch) => {
                    if !deliver(batch, rejects)? {
                        return Ok(());
                    }
                }
                None => {
                    // Rows rejected at the end of the input (a last record cut short) were read.
                    run.read(rejects.len() as u64);
                    node.read_without_batch(rejects.len() as u64);
                    run.take_rejects(node, &mut rejects)?;
                    return Ok(());
                }
            }
        },
        BuiltSource::Deferred(s) => loop {
            run.check()?;
            if enough() {
                return Ok(());
            }
            let started = Instant::now();
            let mut pieces = Vec::with_capacity(run.window);
            while pieces.len() < run.window {
                match s.next_pending()? {
                    Some(p) => pieces.push(p),
                    None => break,
                }
            }
            node.busy(started);
            if pieces.is_empty() {
                return Ok(());
            }
            let finished: Vec<_> = run.pool.install(|| {
                pieces
                    .into_par_iter()
                    .map(|piece| {
                        let started = Instant::now();
                        let mut rejects = Vec::new();
                        let batch = catch_unwind(AssertUnwindSafe(|| piece.finish(&mut rejects)))
                            .unwrap_or_else(|_| {
                                Err(RunError::Internal("a source piece panicked".into()))
                            });
                        node.busy(started);
                        (batch, rejects)
                    })
                    .collect()
            });
            for (batch, mut rejects) in finished {
                let batch = batch?;
                if s.settle(&mut rejects) == Settle::Redo {
                    break;
                }
                if !deliver(batch, rejects)? {
                    return Ok(());
                }
            }
        },
    }
}

/// A built batch transform over its inputs (several for fan-in, merged in arrival order): each
/// batch through [`Transform::apply_routed`] on the run's worker pool, up to the run's window at
/// once for a parallel transform (a sequential one on a thread of its own), its rejects settled
/// and its results emitted in input order. A result is one batch per output, the default first
/// ([`TransformExec::execute_ports`]); a transform with named ports is read through a
/// [`Fork`](crate::fork::Fork), one without as a plain one-output operator.
pub(crate) struct TransformExec {
    inputs: Inputs,
    transform: Arc<dyn Transform>,
    parallel: bool,
    node: Arc<Node>,
    run: Arc<Run>,
    input_data: SchemaRef,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

/// What one transform's outputs give, per input batch: a batch per output, the default first.
pub(crate) type PortsStream = BoxStream<'static, Result<Vec<RecordBatch>>>;

impl TransformExec {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        inputs: Inputs,
        transform: Arc<dyn Transform>,
        parallel: bool,
        node: Arc<Node>,
        run: Arc<Run>,
        input_data: SchemaRef,
        output_data: &SchemaRef,
    ) -> Self {
        let schema = origin::schema(output_data);
        TransformExec {
            inputs,
            transform,
            parallel,
            node,
            run,
            input_data,
            properties: properties(&schema),
            schema,
        }
    }

    /// The node's results, one batch per output for each batch in.
    pub(crate) fn execute_ports(&self, cx: Arc<TaskContext>) -> Result<PortsStream> {
        let input = self.inputs.execute(&self.input_data, cx)?;
        let work = Work {
            transform: self.transform.clone(),
            node: self.node.clone(),
            run: self.run.clone(),
            input_data: self.input_data.clone(),
            schema: self.schema.clone(),
        };
        if !self.parallel {
            return Ok(work.on_one_thread(input));
        }
        let window = self.run.window;
        let (each, each_settle) = (work.clone(), work.clone());
        let applied = input
            .map(move |next| {
                let work = each.clone();
                async move {
                    let record = next?;
                    let run = work.run.clone();
                    run.on_pool(move || work.apply_on_pool(&record))
                        .await
                        .map_err(|e| run.fail(e))
                }
            })
            .buffered(window)
            .map(move |applied| {
                applied.and_then(|(out, rejects)| each_settle.settle(out, rejects))
            });
        // Once its input has ended: what the transform said about how it ran.
        let notes =
            futures::stream::once(async move { work.keep_notes() }).filter_map(|()| async { None });
        Ok(applied.chain(notes).boxed())
    }
}

impl fmt::Debug for TransformExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformExec")
            .field("node", &self.node.name)
            .finish()
    }
}

impl DisplayAs for TransformExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowEngineTransform: node={} type={} parallel={}",
            self.node.name, self.node.type_name, self.parallel
        )
    }
}

impl ExecutionPlan for TransformExec {
    fn name(&self) -> &str {
        "FlowEngineTransform"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.plans()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true; self.inputs.len()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(TransformExec {
            inputs: self.inputs.with_plans(children)?,
            transform: self.transform.clone(),
            parallel: self.parallel,
            node: self.node.clone(),
            run: self.run.clone(),
            input_data: self.input_data.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(&self, partition: usize, cx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 || self.node.has_ports() {
            return Err(DataFusionError::Internal(format!(
                "`{}` is read through a fork (it routes rows), on partition 0",
                self.node.name
            )));
        }
        let default = self.execute_ports(cx)?.map(|ports| {
            ports.and_then(|mut p| {
                (!p.is_empty())
                    .then(|| p.swap_remove(0))
                    .ok_or_else(|| DataFusionError::Internal("a result without outputs".into()))
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            default,
        )))
    }
}

/// The connections into one node's main input, each with the rows received on it (for the
/// accounting check), merged in arrival order when there are several (fan-in), as the local
/// engine merges them.
#[derive(Clone)]
pub(crate) struct Inputs {
    plans: Vec<Arc<dyn ExecutionPlan>>,
    received: Vec<Arc<AtomicU64>>,
}

impl Inputs {
    pub(crate) fn new(connections: Vec<(Arc<dyn ExecutionPlan>, Arc<AtomicU64>)>) -> Self {
        let (plans, received) = connections.into_iter().unzip();
        Inputs { plans, received }
    }

    pub(crate) fn plans(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.plans.iter().collect()
    }

    fn len(&self) -> usize {
        self.plans.len()
    }

    fn with_plans(&self, plans: Vec<Arc<dyn ExecutionPlan>>) -> Result<Inputs> {
        if plans.len() != self.plans.len() {
            return Err(DataFusionError::Internal(format!(
                "{} inputs given for {} connections",
                plans.len(),
                self.plans.len()
            )));
        }
        Ok(Inputs {
            plans,
            received: self.received.clone(),
        })
    }

    /// Every connection's stream, counted, as one stream of rows of `data` (and their origin).
    pub(crate) fn execute(
        &self,
        data: &SchemaRef,
        cx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut streams = Vec::with_capacity(self.plans.len());
        for (plan, received) in self.plans.iter().zip(&self.received) {
            let received = received.clone();
            let counted = plan.execute(0, cx.clone())?.inspect(move |next| {
                if let Ok(record) = next {
                    let rows = record.num_rows() as u64 + origin::prefiltered(record);
                    received.fetch_add(rows, Ordering::Relaxed);
                }
            });
            streams.push(counted.boxed());
        }
        let merged = match streams.len() {
            1 => streams.pop().expect("one stream"),
            _ => futures::stream::select_all(streams).boxed(),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            origin::schema(data),
            merged,
        )))
    }
}

/// A node's connections as one operator (for a sink, whose `DataSinkExec` takes one input).
pub(crate) struct InputsExec {
    inputs: Inputs,
    data: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl InputsExec {
    pub(crate) fn new(inputs: Inputs, data: SchemaRef) -> Self {
        InputsExec {
            inputs,
            properties: properties(&origin::schema(&data)),
            data,
        }
    }
}

impl fmt::Debug for InputsExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputsExec")
            .field("inputs", &self.inputs.len())
            .finish()
    }
}

impl DisplayAs for InputsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowEngineInputs: connections={}", self.inputs.len())
    }
}

impl ExecutionPlan for InputsExec {
    fn name(&self) -> &str {
        "FlowEngineInputs"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.plans()
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
        Ok(Arc::new(InputsExec {
            inputs: self.inputs.with_plans(children)?,
            data: self.data.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(&self, partition: usize, cx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "connections read on partition {partition}"
            )));
        }
        self.inputs.execute(&self.data, cx)
    }
}

/// What applying a transform to a batch needs.
#[derive(Clone)]
struct Work {
    transform: Arc<dyn Transform>,
    node: Arc<Node>,
    run: Arc<Run>,
    input_data: SchemaRef,
    schema: SchemaRef,
}

impl Work {
    /// A sequential transform (`Parallel: false`) keeps state in its thread (a script's globals
    /// live in the thread's engine), so every batch goes through it on one blocking thread, in
    /// order, as on the local engine's node thread.
    fn on_one_thread(self, mut input: SendableRecordBatchStream) -> PortsStream {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // It stops at its next batch once nothing reads its results (`blocking_send` fails).
        tokio::task::spawn_blocking(move || {
            let run = self.run.clone();
            let guarded = run.guarded(&self.node.name, || {
                let runtime = tokio::runtime::Handle::current();
                while let Some(next) = runtime.block_on(input.next()) {
                    let out = next
                        .and_then(|record| self.apply(&record))
                        .and_then(|(out, rejects)| self.settle(out, rejects));
                    let failed = out.is_err();
                    if tx.blocking_send(out).is_err() || failed {
                        break;
                    }
                }
                self.keep_notes();
                Ok(())
            });
            if let Err(e) = guarded {
                let _ = tx.blocking_send(Err(e));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) })
            .boxed()
    }

    /// What the transform said about how it ran, into the node's notes.
    fn keep_notes(&self) {
        let notes = self.transform.notes();
        self.node
            .notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(notes);
    }

    /// One batch through the transform, on whichever thread; its rejects are settled in order
    /// afterwards ([`Work::settle`]).
    fn apply(&self, record: &RecordBatch) -> Result<(Routed, Vec<RowError>)> {
        self.apply_on_pool(record).map_err(|e| self.run.fail(e))
    }

    fn apply_on_pool(
        &self,
        record: &RecordBatch,
    ) -> std::result::Result<(Routed, Vec<RowError>), RunError> {
        self.run.check()?;
        let mut batch = origin::strip(record, &self.input_data)
            .map_err(|e| RunError::Internal(format!("a batch lost its origin: {e}")))?;
        let rows = batch.num_rows();
        self.node.received(batch.rows_counted());
        // Rows its source left out for this node's condition are its filtered rows, once.
        let prefiltered = std::mem::take(&mut batch.prefiltered);
        let mut rejects = Vec::new();
        let started = Instant::now();
        let out = catch_unwind(AssertUnwindSafe(|| {
            self.transform.apply_routed(batch, &mut rejects)
        }))
        .unwrap_or_else(|_| {
            Err(RunError::Internal(format!(
                "transform `{}` panicked",
                self.node.name
            )))
        })?;
        self.node.busy(started);
        let filtered = rows
            .checked_sub(out.emitted)
            .and_then(|left| left.checked_sub(rejects.len()));
        let Some(filtered) = filtered else {
            return Err(RunError::Internal(format!(
                "node `{}` emitted {} rows and rejected {} from a batch of {rows}",
                self.node.name,
                out.emitted,
                rejects.len()
            )));
        };
        self.node.left_out(filtered as u64 + prefiltered, 0, 0);
        Ok((out, rejects))
    }

    /// A batch's rejects under the node's policy, in input order, then its outputs on (even
    /// with no row left: the next node counts it, as on the local engine).
    fn settle(&self, out: Routed, mut rejects: Vec<RowError>) -> Result<Vec<RecordBatch>> {
        let mut settled = || -> std::result::Result<_, RunError> {
            self.run.take_rejects(&self.node, &mut rejects)?;
            self.node.sent_routed(&out);
            std::iter::once(&out.main)
                .chain(&out.ports)
                .map(|batch| origin::carry(batch, &self.schema))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| RunError::Internal(format!("carrying a batch's origin: {e}")))
        };
        settled().map_err(|e| self.run.fail(e))
    }
}

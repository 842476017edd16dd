//! FlowEngine's nodes as DataFusion operators: [`SourceExec`] reads a built source, and
//! [`TransformExec`] applies a built transform to each batch of its input, in order. Both run
//! our own code (the same decoders and kernels as the local engine, hence the same values, lines
//! and rejects); DataFusion drives them, and their rows cross operators with their origin as
//! two trailing columns (`origin.rs`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
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
use flowengine_engine::component::{BuiltSource, Settle, Transform};
use flowengine_engine::error::{RowError, RunError};
use flowengine_engine::Batch;
use futures::StreamExt;
use rayon::prelude::*;

use crate::origin;
use crate::state::{Node, Run};

fn properties(schema: &SchemaRef) -> Arc<PlanProperties> {
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
    node: Arc<Node>,
    run: Arc<Run>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl SourceExec {
    pub(crate) fn new(
        source: BuiltSource,
        node: Arc<Node>,
        run: Arc<Run>,
        data: &SchemaRef,
    ) -> Self {
        let schema = origin::schema(data);
        SourceExec {
            source: Mutex::new(Some(source)),
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
            read(source, &node, &run, emit).map_err(|e| run.fail(e))
        });
        Ok(builder.build())
    }
}

/// Reads `source` to its end (or until `emit` says stop), applying the node's error policy.
fn read(
    source: BuiltSource,
    node: &Node,
    run: &Run,
    mut emit: impl FnMut(Batch) -> bool,
) -> std::result::Result<(), RunError> {
    let mut deliver =
        |batch: Batch, mut rejects: Vec<RowError>| -> std::result::Result<bool, RunError> {
            run.read(batch.rows_counted() + rejects.len() as u64);
            node.received(batch.rows_counted() + rejects.len() as u64);
            run.take_rejects(node, &mut rejects)?;
            if batch.num_rows() == 0 {
                return Ok(true);
            }
            node.sent(&batch);
            Ok(emit(batch))
        };
    match source {
        BuiltSource::Batches(mut s) => loop {
            run.check()?;
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
        BuiltSource::Deferred(mut s) => loop {
            run.check()?;
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

/// A built batch transform over one input: each batch through [`Transform::apply`] on the
/// run's worker pool, up to the run's window at once for a parallel transform (a sequential one
/// on a thread of its own), its rejects settled and its batches emitted in input order.
pub(crate) struct TransformExec {
    input: Arc<dyn ExecutionPlan>,
    transform: Arc<dyn Transform>,
    parallel: bool,
    node: Arc<Node>,
    run: Arc<Run>,
    input_data: SchemaRef,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl TransformExec {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        transform: Arc<dyn Transform>,
        parallel: bool,
        node: Arc<Node>,
        run: Arc<Run>,
        input_data: SchemaRef,
        output_data: &SchemaRef,
    ) -> Self {
        let schema = origin::schema(output_data);
        TransformExec {
            input,
            transform,
            parallel,
            node,
            run,
            input_data,
            properties: properties(&schema),
            schema,
        }
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
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(TransformExec {
                input,
                transform: self.transform.clone(),
                parallel: self.parallel,
                node: self.node.clone(),
                run: self.run.clone(),
                input_data: self.input_data.clone(),
                schema: self.schema.clone(),
                properties: self.properties.clone(),
            })),
            _ => Err(DataFusionError::Internal(
                "a transform has one input".into(),
            )),
        }
    }

    fn execute(&self, partition: usize, cx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, cx)?;
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
        let each = work.clone();
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
            .map(move |applied| applied.and_then(|(out, rejects)| work.settle(out, rejects)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            applied,
        )))
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
    fn on_one_thread(self, mut input: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn_blocking(move || {
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
            Ok(())
        });
        builder.build()
    }

    /// One batch through the transform, on whichever thread; its rejects are settled in order
    /// afterwards ([`Work::settle`]).
    fn apply(&self, record: &RecordBatch) -> Result<(Batch, Vec<RowError>)> {
        self.apply_on_pool(record).map_err(|e| self.run.fail(e))
    }

    fn apply_on_pool(
        &self,
        record: &RecordBatch,
    ) -> std::result::Result<(Batch, Vec<RowError>), RunError> {
        let applied = || -> std::result::Result<_, RunError> {
            self.run.check()?;
            let batch = origin::strip(record, &self.input_data)
                .map_err(|e| RunError::Internal(format!("a batch lost its origin: {e}")))?;
            self.node.received(batch.rows_counted());
            let mut rejects = Vec::new();
            let started = Instant::now();
            let out = catch_unwind(AssertUnwindSafe(|| {
                self.transform.apply(batch, &mut rejects)
            }))
            .unwrap_or_else(|_| {
                Err(RunError::Internal(format!(
                    "transform `{}` panicked",
                    self.node.name
                )))
            })?;
            self.node.busy(started);
            Ok((out, rejects))
        };
        applied()
    }

    /// A batch's rejects under the node's policy, in input order, then the batch on (even with no
    /// row left: the next node counts it, as on the local engine).
    fn settle(&self, out: Batch, mut rejects: Vec<RowError>) -> Result<RecordBatch> {
        let mut settled = || -> std::result::Result<_, RunError> {
            self.run.take_rejects(&self.node, &mut rejects)?;
            self.node.sent(&out);
            origin::carry(&out, &self.schema)
                .map_err(|e| RunError::Internal(format!("carrying a batch's origin: {e}")))
        };
        settled().map_err(|e| self.run.fail(e))
    }
}

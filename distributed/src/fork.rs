//! One node's outputs read by several consumers: fan-out (every consumer of an output gets each
//! of its batches; the Arrow buffers are shared, not copied) and routes (each named port's
//! batches go to that port's consumers). A [`Fork`] runs its upstream once, on the first
//! [`Branch`] executed, and hands each batch to every branch that wants it through a bounded
//! channel, so a slow consumer slows its producer and memory stays bounded, as between the local
//! engine's node threads. Each consumer sees the producer's order.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::exec::{properties, PortsStream, TransformExec};

/// What a fork reads.
pub(crate) enum Upstream {
    /// An operator with one output (a source, a transform without named ports).
    Plain(Arc<dyn ExecutionPlan>),
    /// A transform with named ports: a batch per output for each batch in.
    Routed(Arc<TransformExec>),
}

impl Upstream {
    fn plan(&self) -> Arc<dyn ExecutionPlan> {
        match self {
            Upstream::Plain(plan) => plan.clone(),
            Upstream::Routed(transform) => transform.clone(),
        }
    }

    fn execute(&self, cx: Arc<TaskContext>) -> Result<PortsStream> {
        match self {
            Upstream::Plain(plan) => Ok(plan.execute(0, cx)?.map(|b| b.map(|b| vec![b])).boxed()),
            Upstream::Routed(transform) => transform.execute_ports(cx),
        }
    }
}

type Channel = (
    mpsc::Sender<Result<RecordBatch>>,
    mpsc::Receiver<Result<RecordBatch>>,
);

/// An upstream and the outputs its branches read, one branch per consumer.
pub(crate) struct Fork {
    upstream: Upstream,
    /// The output each branch reads (0 the default, `k` the `k`-th named port).
    ports: Vec<usize>,
    senders: Mutex<Option<Vec<mpsc::Sender<Result<RecordBatch>>>>>,
    receivers: Vec<Mutex<Option<mpsc::Receiver<Result<RecordBatch>>>>>,
    /// The producing node, for display.
    node: String,
}

impl Fork {
    /// One branch per entry of `branches`: the output it reads and the schema of its batches
    /// (with their origin columns); up to `capacity` batches wait for each
    /// (`Settings.ChannelCapacity`, as on a connection of the local engine).
    pub(crate) fn branches(
        upstream: Upstream,
        node: &str,
        branches: Vec<(usize, SchemaRef)>,
        capacity: usize,
    ) -> Vec<Arc<dyn ExecutionPlan>> {
        let (senders, receivers): (Vec<_>, Vec<_>) = branches
            .iter()
            .map(|_| -> Channel { mpsc::channel(capacity.max(1)) })
            .unzip();
        let fork = Arc::new(Fork {
            upstream,
            ports: branches.iter().map(|(port, _)| *port).collect(),
            senders: Mutex::new(Some(senders)),
            receivers: receivers.into_iter().map(|r| Mutex::new(Some(r))).collect(),
            node: node.to_string(),
        });
        let of = branches.len();
        let child = fork.upstream.plan();
        branches
            .into_iter()
            .enumerate()
            .map(|(k, (_, schema))| -> Arc<dyn ExecutionPlan> {
                Arc::new(Branch {
                    fork: fork.clone(),
                    k,
                    of,
                    // The shared upstream is shown once, under the first branch.
                    child: (k == 0).then(|| child.clone()),
                    properties: properties(&schema),
                    schema,
                })
            })
            .collect()
    }

    /// Runs the upstream, once: every batch to each branch that reads its output (a named
    /// port's empty batch to none, as on the local engine).
    fn start(&self, cx: Arc<TaskContext>) -> Result<()> {
        let Some(senders) = self
            .senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        let mut stream = self.upstream.execute(cx)?;
        let ports = self.ports.clone();
        tokio::spawn(async move {
            let mut open: Vec<Option<_>> = senders.into_iter().map(Some).collect();
            while let Some(next) = stream.next().await {
                let outputs = match next {
                    Ok(outputs) => outputs,
                    Err(e) => {
                        // The run has kept the error itself: this only tells the branches to stop.
                        for tx in open.iter().flatten() {
                            let _ = tx
                                .send(Err(DataFusionError::Execution(e.to_string())))
                                .await;
                        }
                        return;
                    }
                };
                for (k, slot) in open.iter_mut().enumerate() {
                    let port = ports[k];
                    let (Some(tx), Some(batch)) = (slot.as_ref(), outputs.get(port)) else {
                        continue;
                    };
                    if port > 0 && batch.num_rows() == 0 {
                        continue;
                    }
                    if tx.send(Ok(batch.clone())).await.is_err() {
                        *slot = None;
                    }
                }
                if open.iter().all(Option::is_none) {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// One consumer's view of a [`Fork`].
pub(crate) struct Branch {
    fork: Arc<Fork>,
    k: usize,
    of: usize,
    child: Option<Arc<dyn ExecutionPlan>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Branch")
            .field("node", &self.fork.node)
            .field("k", &self.k)
            .finish()
    }
}

impl DisplayAs for Branch {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.fork.ports[self.k];
        write!(
            f,
            "FlowEngineFork: node={} output={port} branch={} of {}",
            self.fork.node,
            self.k + 1,
            self.of
        )?;
        if self.child.is_none() {
            write!(f, " (its input is shown under branch 1)")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for Branch {
    fn name(&self) -> &str {
        "FlowEngineFork"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.child.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true; self.child.iter().count()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The upstream is shared with the other branches: it cannot be swapped for one.
        if children.len() == self.child.iter().count() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a fork's branch keeps its upstream".into(),
            ))
        }
    }

    fn execute(&self, partition: usize, cx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let receiver = self.fork.receivers[self.k]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|_| partition == 0)
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "branch {} of `{}` executed twice",
                    self.k + 1,
                    self.fork.node
                ))
            })?;
        self.fork.start(cx)?;
        let batches = futures::stream::unfold(receiver, |mut rx| async move {
            rx.recv().await.map(|b| (b, rx))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}

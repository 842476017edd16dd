//! [`PipelineExec`]: a whole pipeline as one Ballista task. The executor that runs it plans the
//! pipeline from its [`Spec`] and runs it there on the DataFusion engine (`crate::run`), so the
//! task reads, transforms, checks the accounting and commits exactly as `--engine datafusion`
//! would on that machine. Its one output row is the [`Report`]: the run's summary and, if it
//! failed, why.
//!
//! A pipeline that fails on its data still makes a task that succeeds, with the failure in its
//! report: Ballista retries failed tasks, which is right for a lost executor and wrong for a bad
//! row. A task lost with its executor leaves only staged files, which no one commits.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use flowengine_engine::registry::Registry;
use flowengine_engine::RunSummary;
use serde::{Deserialize, Serialize};

use super::spec::Spec;
use crate::Error;

/// How a pipeline run on an executor ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What the run did; none if it did not start (the pipeline could not be planned or built
    /// there).
    pub summary: Option<RunSummary>,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
}

/// Why a pipeline failed on an executor, as the local engine would have said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Where it stopped.
    pub stage: Stage,
    /// The error, as the local engine words it.
    pub message: String,
}

/// Where a run on an executor stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Planning the pipeline file (on the executor: a file it names is not there).
    Config,
    /// Building its nodes: opening inputs, staging outputs; nothing was written.
    Build,
    /// Moving rows: nothing was committed.
    Run,
}

impl Report {
    fn failed(stage: Stage, message: String) -> Report {
        Report {
            summary: None,
            failure: Some(Failure { stage, message }),
        }
    }
}

/// The name of the report's one column.
const REPORT: &str = "flowengine_report";

/// A pipeline run as one task on one partition; its output is one row, the run's [`Report`] as
/// JSON.
pub struct PipelineExec {
    spec: Arc<Spec>,
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
    properties: Arc<PlanProperties>,
}

impl PipelineExec {
    /// The plan node for `spec`; nothing is opened until a task executes it.
    pub fn new(spec: Spec, registry: Arc<Registry>, interrupt: &'static AtomicBool) -> Self {
        let schema = Arc::new(Schema::new(vec![Field::new(REPORT, DataType::Utf8, false)]));
        PipelineExec {
            spec: Arc::new(spec),
            registry,
            interrupt,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Final,
                Boundedness::Bounded,
            )),
        }
    }

    /// What travels in the plan.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    fn schema_ref(&self) -> SchemaRef {
        self.properties.eq_properties.schema().clone()
    }
}

impl fmt::Debug for PipelineExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineExec")
            .field("path", &self.spec.path)
            .finish()
    }
}

impl DisplayAs for PipelineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowEnginePipeline: {}", self.spec.path.display())
    }
}

impl ExecutionPlan for PipelineExec {
    fn name(&self) -> &str {
        "FlowEnginePipeline"
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
            Err(DataFusionError::Internal("a pipeline has no inputs".into()))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _cx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "a pipeline is one partition, not partition {partition}"
            )));
        }
        let (spec, registry, interrupt) =
            (self.spec.clone(), self.registry.clone(), self.interrupt);
        let (tx, rx) = futures::channel::oneshot::channel();
        // A thread of its own: the run starts an async runtime and a worker pool of its own,
        // which must not be nested in the executor's.
        std::thread::Builder::new()
            .name("flowengine-task".into())
            .spawn(move || {
                let _ = tx.send(run_here(&spec, &registry, interrupt));
            })
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let schema = self.schema_ref();
        let batch_schema = schema.clone();
        let report = futures::stream::once(async move {
            let report = rx.await.map_err(|_| {
                DataFusionError::Internal("the pipeline's thread ended without a report".into())
            })?;
            let json = serde_json::to_string(&report)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            RecordBatch::try_new(batch_schema, vec![Arc::new(StringArray::from(vec![json]))])
                .map_err(DataFusionError::from)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, report)))
    }
}

/// Plans, builds and runs the pipeline on this machine.
fn run_here(spec: &Spec, registry: &Registry, interrupt: &'static AtomicBool) -> Report {
    let started = std::time::Instant::now();
    let plan = match spec.plan(registry) {
        Ok(plan) => plan,
        Err(e) => return Report::failed(Stage::Config, e.to_string()),
    };
    let prepared = match crate::prepare(plan, interrupt) {
        Ok(p) => p,
        Err(Error::Build(e)) => return Report::failed(Stage::Build, e.to_string()),
        Err(e) => return Report::failed(Stage::Config, e.to_string()),
    };
    let setup = started.elapsed();
    let mut outcome = prepared.run();
    outcome.summary.setup_ms = flowengine_engine::metrics::millis(setup);
    Report {
        summary: Some(outcome.summary),
        failure: outcome.result.err().map(|e| Failure {
            stage: Stage::Run,
            message: e.to_string(),
        }),
    }
}

/// The report in a task's output.
pub(crate) fn read_report(batches: &[RecordBatch]) -> std::result::Result<Report, String> {
    let mut reports = batches.iter().flat_map(|b| {
        b.column_by_name(REPORT)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .map(|c| c.iter().flatten().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    });
    match (reports.next(), reports.next()) {
        (Some(json), None) => serde_json::from_str(&json)
            .map_err(|e| format!("the job's report is not one this flowengine reads: {e}")),
        (None, _) => Err("the job ended without a report".into()),
        (Some(_), Some(_)) => Err("the job gave more than one report".into()),
    }
}

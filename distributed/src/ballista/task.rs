//! [`PipelineExec`]: a whole pipeline as one Ballista task, or as one task per range of its
//! source's file (`parts.rs`). The executor that runs a task plans the pipeline from its [`Spec`]
//! and runs it there on the DataFusion engine (`crate::run`), so the task reads, transforms and
//! checks the accounting exactly as `--engine datafusion` would on that machine, and commits its
//! output (a task of a split run: its parts). Its one output row is the [`Report`]: the run's
//! summary and, if it failed, why.
//!
//! A pipeline that fails on its data still makes a task that succeeds, with the failure in its
//! report: Ballista retries failed tasks, which is right for a lost executor and wrong for a bad
//! row. A task lost with its executor leaves only staged files, which no one commits.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use flowengine_engine::error::RowError;
use flowengine_engine::registry::Registry;
use flowengine_engine::RunSummary;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::cancel::Cancel;
use super::parts::Parts;
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
    /// Which task of a split run it was (`None`: the whole pipeline).
    #[serde(default)]
    pub part: Option<usize>,
    /// The first row a task of a split run rejected (`MaxErrors` names it, on the totals).
    #[serde(default)]
    pub first_reject: Option<RowError>,
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
    /// A run that stopped at `stage` before it moved any row.
    pub(crate) fn failed(stage: Stage, message: String) -> Report {
        Report {
            summary: None,
            failure: Some(Failure { stage, message }),
            part: None,
            first_reject: None,
        }
    }
}

/// The name of the report's one column.
const REPORT: &str = "flowengine_report";

/// The name of the column that numbers the tasks of a split run.
const TASK: &str = "flowengine_task";

/// A pipeline run as one task on one partition, or as one task per range of its source's file
/// (see `parts.rs`); each task's output is one row, its run's [`Report`] as JSON.
///
/// A split run numbers its tasks as data: its input is a memory scan with one partition per
/// task, holding the task's number. Ballista packs several partitions of a stage into one task
/// and restricts the plan to them, which it knows how to do for its own scans and not for a leaf
/// of ours; through the scan, each partition of ours runs exactly the parts that reach it.
pub struct PipelineExec {
    spec: Arc<Spec>,
    parts: Option<Arc<Parts>>,
    /// Where the client's Ctrl-C appears, for a job on a remote cluster.
    control: Option<PathBuf>,
    /// The task numbers, for a split run.
    tasks: Option<Arc<dyn ExecutionPlan>>,
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
    properties: Arc<PlanProperties>,
}

impl PipelineExec {
    /// The plan node for `spec`, as one task or, with `parts`, as one task per part; its tasks
    /// stop when the marker of Ctrl-C appears in `control` (a split run's is its parts
    /// directory). Nothing is opened until a task executes it.
    pub fn new(
        spec: Spec,
        (parts, control): (Option<Parts>, Option<PathBuf>),
        registry: Arc<Registry>,
        interrupt: &'static AtomicBool,
    ) -> Result<Self> {
        let tasks = match &parts {
            Some(parts) => Some(numbered(parts.ranges.len())?),
            None => None,
        };
        Ok(Self::over(
            (Arc::new(spec), parts.map(Arc::new), control),
            tasks,
            registry,
            interrupt,
        ))
    }

    /// The plan node read back from the wire, with its input as Ballista gives it.
    pub(crate) fn decoded(
        (spec, parts, control): (Spec, Option<Parts>, Option<PathBuf>),
        tasks: Option<Arc<dyn ExecutionPlan>>,
        registry: Arc<Registry>,
        interrupt: &'static AtomicBool,
    ) -> Self {
        Self::over(
            (Arc::new(spec), parts.map(Arc::new), control),
            tasks,
            registry,
            interrupt,
        )
    }

    fn over(
        (spec, parts, control): (Arc<Spec>, Option<Arc<Parts>>, Option<PathBuf>),
        tasks: Option<Arc<dyn ExecutionPlan>>,
        registry: Arc<Registry>,
        interrupt: &'static AtomicBool,
    ) -> Self {
        let schema = Arc::new(Schema::new(vec![Field::new(REPORT, DataType::Utf8, false)]));
        let partitions = tasks
            .as_ref()
            .map_or(1, |t| t.properties().partitioning.partition_count());
        PipelineExec {
            spec,
            parts,
            control,
            tasks,
            registry,
            interrupt,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(partitions),
                EmissionType::Final,
                Boundedness::Bounded,
            )),
        }
    }

    /// What travels in the plan.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// How the run is split, if it is.
    pub fn parts(&self) -> Option<&Parts> {
        self.parts.as_deref()
    }

    /// Where its tasks look for the client's Ctrl-C, if anywhere.
    pub fn control(&self) -> Option<&Path> {
        self.control.as_deref()
    }

    fn schema_ref(&self) -> SchemaRef {
        self.properties.eq_properties.schema().clone()
    }

    /// Runs `part` (`None`: the whole pipeline) on a thread of its own; its report as a row.
    fn run_task(&self, part: Option<usize>) -> impl Future<Output = Result<RecordBatch>> {
        let (spec, parts, control, registry, interrupt) = (
            self.spec.clone(),
            self.parts.clone(),
            self.control.clone(),
            self.registry.clone(),
            self.interrupt,
        );
        let schema = self.schema_ref();
        let (tx, rx) = futures::channel::oneshot::channel();
        // A thread of its own: the run starts an async runtime and a worker pool of its own,
        // which must not be nested in the executor's.
        let started = std::thread::Builder::new()
            .name("flowengine-task".into())
            .spawn(move || {
                let split = parts.as_deref().zip(part);
                // The executor's own interrupt, or the client's Ctrl-C.
                let watch = control.map(|dir| Cancel::watch(&dir, interrupt));
                let interrupt = watch.as_ref().map_or(interrupt, Cancel::flag);
                let mut report = run_here(&spec, split, &registry, interrupt);
                report.part = part;
                let _ = tx.send(report);
            });
        async move {
            started.map_err(|e| DataFusionError::External(Box::new(e)))?;
            let report = rx.await.map_err(|_| {
                DataFusionError::Internal("the pipeline's thread ended without a report".into())
            })?;
            let json = serde_json::to_string(&report)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![json]))])
                .map_err(DataFusionError::from)
        }
    }
}

/// A memory scan of `n` partitions, partition `k` holding the number `k`.
fn numbered(n: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new(TASK, DataType::UInt64, false)]));
    let partitions = (0..n as u64)
        .map(|k| {
            let column = Arc::new(arrow_array::UInt64Array::from(vec![k]));
            Ok(vec![RecordBatch::try_new(schema.clone(), vec![column])?])
        })
        .collect::<Result<Vec<_>>>()?;
    let scan = MemorySourceConfig::try_new(&partitions, schema, None)?;
    Ok(DataSourceExec::from_data_source(scan))
}

/// The task numbers in a batch of [`numbered`]'s.
fn task_numbers(batch: &RecordBatch) -> Result<Vec<usize>> {
    let numbers = batch
        .column_by_name(TASK)
        .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>())
        .ok_or_else(|| {
            DataFusionError::Internal("a split run's input has no task numbers".into())
        })?;
    Ok(numbers.values().iter().map(|&k| k as usize).collect())
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
        write!(f, "FlowEnginePipeline: {}", self.spec.path.display())?;
        match &self.parts {
            Some(parts) => write!(f, " tasks={}", parts.ranges.len()),
            None => Ok(()),
        }
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
        self.tasks.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.tasks.iter().count()]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (self.tasks.is_some(), children.pop(), children.is_empty()) {
            (false, None, _) => Ok(self),
            (true, Some(tasks), true) => Ok(Arc::new(Self::over(
                (self.spec.clone(), self.parts.clone(), self.control.clone()),
                Some(tasks),
                self.registry.clone(),
                self.interrupt,
            ))),
            _ => Err(DataFusionError::Internal(
                "a pipeline's only input is the numbers of its tasks".into(),
            )),
        }
    }

    fn execute(&self, partition: usize, cx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.schema_ref();
        let Some(tasks) = &self.tasks else {
            if partition != 0 {
                return Err(DataFusionError::Internal(format!(
                    "a pipeline is one partition, not partition {partition}"
                )));
            }
            let report = futures::stream::once(self.run_task(None));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, report)));
        };
        // Every part whose number reaches this partition, one after the other.
        let this = Arc::new(self.clone_node());
        let reports = tasks
            .execute(partition, cx)?
            .map(|batch| batch.and_then(|b| task_numbers(&b)))
            .map_ok(|numbers| futures::stream::iter(numbers.into_iter().map(Ok)))
            .try_flatten()
            .and_then(move |k| this.run_task(Some(k)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, reports)))
    }
}

impl PipelineExec {
    fn clone_node(&self) -> PipelineExec {
        Self::over(
            (self.spec.clone(), self.parts.clone(), self.control.clone()),
            self.tasks.clone(),
            self.registry.clone(),
            self.interrupt,
        )
    }
}

/// Plans, builds and runs the pipeline, or its part `k` of `parts`, on this machine.
fn run_here(
    spec: &Spec,
    part: Option<(&Parts, usize)>,
    registry: &Registry,
    interrupt: &'static AtomicBool,
) -> Report {
    let started = std::time::Instant::now();
    let mut plan = match spec.plan(registry) {
        Ok(plan) => plan,
        Err(e) => return Report::failed(Stage::Config, e.to_string()),
    };
    if let Some((parts, k)) = part {
        if let Err(e) = super::parts::for_part(&mut plan, parts, k) {
            return Report::failed(Stage::Build, e.to_string());
        }
    }
    let prepared = match crate::prepare(plan, interrupt) {
        Ok(p) => p,
        Err(Error::Build(e)) => return Report::failed(Stage::Build, e.to_string()),
        Err(e) => return Report::failed(Stage::Config, e.to_string()),
    };
    let setup = started.elapsed();
    let (mut outcome, first_reject) = prepared.run_keeping_first_reject();
    outcome.summary.setup_ms = flowengine_engine::metrics::millis(setup);
    Report {
        summary: Some(outcome.summary),
        failure: outcome.result.err().map(|e| Failure {
            stage: Stage::Run,
            message: e.to_string(),
        }),
        part: None,
        first_reject,
    }
}

/// The reports in a job's output, one per task.
pub(crate) fn read_reports(batches: &[RecordBatch]) -> std::result::Result<Vec<Report>, String> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(REPORT)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .map(|c| c.iter().flatten().map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| format!("the job's report is not one this flowengine reads: {e}"))
        })
        .collect()
}

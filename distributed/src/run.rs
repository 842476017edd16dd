//! Building the chain's nodes, running them as one DataFusion plan, and the end of a run as the
//! local engine ends it: the accounting check, then the commit of the sink and the dead-letter
//! file, in that order, only if everything succeeded.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use arrow_schema::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{displayable, ExecutionPlan};
use flowengine_engine::component::{BuildCx, BuiltSink, BuiltTransform, SinkCommon};
use flowengine_engine::error::{BuildError, RowError, RunError};
use flowengine_engine::metrics::{millis, NodeSummary, PathSummary, RunSummary, Status};
use flowengine_engine::plan::{NodeKind, Plan};
use flowengine_engine::RunOutcome;
use futures::StreamExt;

use crate::exec::{SourceExec, TransformExec};
use crate::state::{Node, Run};
use crate::{chain, origin, Error};

/// A plan built for DataFusion: its operators, its sink and what they share.
pub struct Prepared {
    name: String,
    plan: Arc<dyn ExecutionPlan>,
    sink: BuiltSink,
    sink_schema: SchemaRef,
    sink_node: Arc<Node>,
    nodes: Vec<Arc<Node>>,
    run: Arc<Run>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.name)
            .finish()
    }
}

/// Checks that this engine can run `plan` and builds it (sources open their inputs, the sink and
/// the dead-letter file stage theirs), as [`Plan::build`] does for the local engine.
pub fn prepare(plan: Plan, interrupt: &'static AtomicBool) -> Result<Prepared, Error> {
    let chain = chain::chain(&plan)?;
    let Setup { run, runtime } = setup(&plan, interrupt)?;
    let cx = |node: &str| build_cx(&plan, node);
    let internal = |message: String| internal(&plan, message);
    let mut nodes = Vec::new();
    let mut exec: Option<Arc<dyn ExecutionPlan>> = None;
    let mut sink = None;
    for &i in &chain {
        let n = &plan.nodes[i];
        let node = Arc::new(Node::new(&n.name, n.type_name, n.kind.role(), n.policy));
        let schema = |s: &Option<SchemaRef>| {
            s.clone()
                .ok_or_else(|| internal(format!("`{}` has no schema", n.name)))
        };
        match &n.kind {
            NodeKind::Source(s) => {
                let built = s.build(&cx(&n.name))?;
                exec = Some(Arc::new(SourceExec::new(
                    built,
                    node.clone(),
                    run.clone(),
                    &schema(&n.output_schema)?,
                )));
            }
            NodeKind::Transform(t) => {
                let input = schema(&n.input_schema)?;
                let BuiltTransform::Batches(built) = t.build(input.clone(), &cx(&n.name))? else {
                    return Err(Error::Unsupported {
                        node: n.name.clone(),
                        plugin: n.type_name,
                        what: "a transform that works across batches".into(),
                    });
                };
                let upstream = exec
                    .take()
                    .ok_or_else(|| internal("a transform before its source".into()))?;
                exec = Some(Arc::new(TransformExec::new(
                    upstream,
                    Arc::from(built),
                    t.parallel(),
                    node.clone(),
                    run.clone(),
                    input,
                    &schema(&n.output_schema)?,
                )));
            }
            NodeKind::Sink(s) => {
                let input = schema(&n.input_schema)?;
                sink = Some((s.build(input.clone(), &cx(&n.name))?, input, node.clone()));
            }
        }
        nodes.push(node);
    }
    let (Some(plan_root), Some((sink, sink_schema, sink_node))) = (exec, sink) else {
        return Err(internal("a chain without a source or a sink".into()).into());
    };
    Ok(Prepared {
        name: plan.name.clone(),
        plan: plan_root,
        sink,
        sink_schema,
        sink_node,
        nodes,
        run,
        runtime,
    })
}

/// What every run on this engine starts with: the dead-letter file staged, the worker pool and
/// the async runtime.
pub(crate) struct Setup {
    pub(crate) run: Arc<Run>,
    pub(crate) runtime: tokio::runtime::Runtime,
}

pub(crate) fn setup(plan: &Plan, interrupt: &'static AtomicBool) -> Result<Setup, Error> {
    let threads = plan
        .settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let dead_letter = match &plan.dead_letter {
        Some(d) => Some((
            (d.builder)(&d.path, &build_cx(plan, "dead-letter"))?,
            d.path.display().to_string(),
        )),
        None => None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("flowengine-worker-{i}"))
        .build()
        .map_err(|e| internal(plan, format!("starting the worker pool: {e}")))?;
    let run = Arc::new(Run::new(
        interrupt,
        plan.settings.timeout,
        plan.settings.max_errors,
        dead_letter,
        plan.budget().window,
        pool,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("flowengine-datafusion")
        .enable_all()
        .build()
        .map_err(|e| internal(plan, format!("starting the async runtime: {e}")))?;
    Ok(Setup { run, runtime })
}

/// What building `node` of `plan` gets to know.
pub(crate) fn build_cx(plan: &Plan, node: &str) -> BuildCx {
    let budget = plan.budget();
    BuildCx {
        node: node.to_string(),
        chunk_size: plan.settings.chunk_size,
        batch_bytes: budget.batch_bytes,
        state_bytes: budget.state_bytes,
        temp_dir: plan
            .settings
            .temp_directory
            .clone()
            .unwrap_or_else(std::env::temp_dir),
    }
}

pub(crate) fn internal(plan: &Plan, message: String) -> BuildError {
    BuildError::Invalid {
        node: plan.name.clone(),
        message: format!("internal error (a bug in FlowEngine): {message}"),
    }
}

impl Prepared {
    /// The DataFusion plan, one operator per line (for `--verbose`).
    pub fn display(&self) -> String {
        displayable(self.plan.as_ref()).indent(true).to_string()
    }

    /// Runs the plan; the summary is always there, partial on failure.
    pub fn run(self) -> RunOutcome {
        self.run_keeping_first_reject().0
    }

    /// [`Prepared::run`], and the first row it rejected (for a task of a split run, whose
    /// rejects `MaxErrors` judges with the other tasks').
    pub(crate) fn run_keeping_first_reject(self) -> (RunOutcome, Option<RowError>) {
        let started = Instant::now();
        let Prepared {
            name,
            plan,
            sink,
            sink_schema,
            sink_node,
            nodes,
            run,
            runtime,
        } = self;
        run.start();
        let result = runtime
            .block_on(drive(plan, sink, &sink_schema, &sink_node, &run))
            .and_then(|(sink, written)| finish(sink, written, &summaries(&nodes), &run));
        let result = result.map_err(|e| run.failure().unwrap_or(e));
        drop(runtime);
        let error = result.as_ref().err().map(ToString::to_string);
        let summary = summarize(
            &name,
            summaries(&nodes),
            &run.dead_letter_path,
            started,
            error,
        );
        (RunOutcome { summary, result }, run.first_reject())
    }
}

/// Pulls the plan's batches into the sink, encoding them on the worker pool a window at a time
/// for an encoding sink; returns the sink and the rows it wrote.
async fn drive(
    plan: Arc<dyn ExecutionPlan>,
    sink: BuiltSink,
    schema: &SchemaRef,
    node: &Node,
    run: &Arc<Run>,
) -> Result<(Box<dyn SinkCommon>, u64), RunError> {
    let stream = plan
        .execute(0, Arc::new(TaskContext::default()))
        .map_err(stopped)?;
    pour(stream, sink, schema, node, run).await
}

/// Only a signal when an operator of ours failed: the run reports the error it kept.
fn stopped(e: datafusion::error::DataFusionError) -> RunError {
    RunError::Internal(format!("DataFusion: {e}"))
}

/// Writes `stream`'s batches (rows with their origin columns) into the sink, encoding them on
/// the worker pool a window at a time for an encoding sink; returns the sink and the rows it
/// wrote.
pub(crate) async fn pour(
    stream: impl futures::Stream<Item = datafusion::error::Result<arrow_array::RecordBatch>>,
    mut sink: BuiltSink,
    schema: &SchemaRef,
    node: &Node,
    run: &Arc<Run>,
) -> Result<(Box<dyn SinkCommon>, u64), RunError> {
    let batches = stream.map(|next| {
        next.map_err(stopped).and_then(|record| {
            origin::strip(&record, schema)
                .map_err(|e| RunError::Internal(format!("a batch lost its origin: {e}")))
        })
    });
    match &mut sink {
        BuiltSink::Rows(s) => {
            let mut batches = std::pin::pin!(batches);
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                run.check()?;
                node.received(batch.rows_counted());
                let started = Instant::now();
                run.pool.install(|| s.write(&batch))?;
                node.busy(started);
                node.sent(&batch);
            }
        }
        BuiltSink::Encoded { sink: s, encoder } => {
            let encoded = batches
                .map(|batch| {
                    let encoder = encoder.clone();
                    async move {
                        let batch = batch?;
                        run.on_pool(move || {
                            let mut bytes = Vec::new();
                            encoder
                                .encode(&batch.data, &mut bytes)
                                .map(|()| (batch, bytes))
                        })
                        .await
                    }
                })
                .buffered(run.window);
            let mut encoded = std::pin::pin!(encoded);
            while let Some(next) = encoded.next().await {
                let (batch, bytes) = next?;
                run.check()?;
                node.received(batch.rows_counted());
                let started = Instant::now();
                s.write_encoded(batch.rows_counted(), &bytes)?;
                node.busy(started);
                node.sent(&batch);
            }
        }
    }
    let mut sink: Box<dyn SinkCommon> = match sink {
        BuiltSink::Rows(s) => s,
        BuiltSink::Encoded { sink, .. } => sink,
    };
    let written = run.pool.install(|| sink.finish())?;
    *node.warnings.lock().unwrap_or_else(|p| p.into_inner()) = sink.warnings();
    Ok((sink, written))
}

/// After the last batch: `MaxErrors` on the totals, the accounting check, then the commit.
pub(crate) fn finish(
    sink: Box<dyn SinkCommon>,
    written: u64,
    summaries: &[NodeSummary],
    run: &Run,
) -> Result<(), RunError> {
    run.check_max_errors()?;
    let dead_letter = {
        let mut dl = run.dead_letter.lock().unwrap_or_else(|p| p.into_inner());
        match dl.take() {
            Some((mut sink, written)) => Some((sink.finish()?, written, sink)),
            None => None,
        }
    };
    check_accounting(
        summaries,
        written,
        dead_letter.as_ref().map(|d| (d.0, d.1)),
        run,
    )?;
    sink.commit()?;
    if let Some((_, _, dl)) = dead_letter {
        dl.commit()?;
    }
    Ok(())
}

/// Rows in = out + filtered + rejected for every node, what one node sends the next receives,
/// the sink wrote what it received, and the dead-letter file holds every reject.
fn check_accounting(
    nodes: &[NodeSummary],
    written: u64,
    dead_letter: Option<(u64, u64)>,
    run: &Run,
) -> Result<(), RunError> {
    let bug = |m: String| Err(RunError::Internal(format!("accounting: {m}")));
    for n in nodes {
        if n.rows_in != n.rows_out + n.rows_filtered + n.rows_rejected {
            return bug(format!(
                "node `{}`: {} rows in but {} out + {} filtered + {} rejected",
                n.name, n.rows_in, n.rows_out, n.rows_filtered, n.rows_rejected
            ));
        }
    }
    for pair in nodes.windows(2) {
        if pair[0].rows_out != pair[1].rows_in {
            return bug(format!(
                "{} -> {} lost rows: {} sent, {} received",
                pair[0].name, pair[1].name, pair[0].rows_out, pair[1].rows_in
            ));
        }
    }
    if let Some(sink) = nodes.last().filter(|s| s.rows_out != written) {
        return bug(format!(
            "sink `{}` received {} rows but wrote {written}",
            sink.name, sink.rows_out
        ));
    }
    let rejected: u64 = nodes.iter().map(|n| n.rows_rejected).sum();
    match dead_letter {
        Some((file, sent)) if file != sent || sent != rejected => bug(format!(
            "{rejected} rows rejected, {sent} sent to the dead-letter file, {file} written"
        )),
        None if rejected > 0 || run.rows_rejected() > 0 => bug(format!(
            "{rejected} rows rejected without a dead-letter file"
        )),
        _ => Ok(()),
    }
}

fn summaries(nodes: &[Arc<Node>]) -> Vec<NodeSummary> {
    nodes.iter().map(|n| n.summary()).collect()
}

/// The summary of a run of `nodes` that started at `started` (and failed with `error`, if it
/// did).
pub(crate) fn summarize(
    name: &str,
    nodes: Vec<NodeSummary>,
    dead_letter: &Option<String>,
    started: Instant,
    error: Option<String>,
) -> RunSummary {
    let processing = started.elapsed();
    let rows_read = nodes.first().map_or(0, |n| n.rows_in);
    let rows_written = nodes.last().map_or(0, |n| n.rows_out);
    let rows_filtered = nodes.iter().map(|n| n.rows_filtered).sum();
    let rows_rejected = nodes.iter().map(|n| n.rows_rejected).sum();
    let path = PathSummary {
        path: nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(" -> "),
        read: rows_read,
        written: rows_written,
        filtered: rows_filtered,
        duplicates: 0,
        rejected: rows_rejected,
        routed: 0,
    };
    RunSummary {
        pipeline: name.to_string(),
        status: if error.is_some() {
            Status::Failed
        } else {
            Status::Succeeded
        },
        setup_ms: 0.0,
        processing_ms: millis(processing),
        rows_read,
        rows_written,
        rows_filtered,
        rows_rejected,
        rows_per_sec: rows_read as f64 / processing.as_secs_f64().max(1e-9),
        dead_letter: dead_letter.clone(),
        nodes,
        paths: vec![path],
        error,
    }
}

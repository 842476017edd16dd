//! Building a plan's nodes as DataFusion operators, running them (every sink pulls its inputs at
//! once, so that branches move together), and the end of a run as the local engine ends it: the
//! accounting check, then the commit of the sinks and the dead-letter file, in that order, only
//! if everything succeeded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_schema::SchemaRef;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{displayable, ExecutionPlan};
use flowengine_engine::component::{BuildCx, BuiltTransform, SinkCommon};
use flowengine_engine::error::{BuildError, RowError, RunError};
use flowengine_engine::exec::accounting;
use flowengine_engine::metrics::{millis, NodeSummary, RunSummary, Status};
use flowengine_engine::plan::{Edge, NodeKind, Plan};
use flowengine_engine::RunOutcome;
use futures::TryStreamExt;

use crate::exec::{Inputs, InputsExec, SourceExec, TransformExec};
use crate::fork::{Fork, Upstream};
use crate::sink::Sink;
use crate::state::{Node, Run};
use crate::stateful::{Ports, StatefulExec};
use crate::{graph, origin, Error};

/// A plan built for DataFusion: its operators, its sinks and what they share.
pub struct Prepared {
    name: String,
    edges: Vec<Edge>,
    /// Rows received on each connection, by its consumer.
    received: Vec<Arc<AtomicU64>>,
    /// Each sink's plan (a `DataSinkExec` over its inputs) and the sink, in declaration order.
    sinks: Vec<(Arc<dyn ExecutionPlan>, Arc<Sink>)>,
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

/// Checks that this engine can run `plan` and builds it (sources open their inputs, the sinks
/// and the dead-letter file stage theirs), as [`Plan::build`] does for the local engine.
pub fn prepare(plan: Plan, interrupt: &'static AtomicBool) -> Result<Prepared, Error> {
    let order = graph::order(&plan)?;
    let Setup { run, runtime } = setup(&plan, interrupt)?;
    let nodes: Vec<Arc<Node>> = plan.nodes.iter().map(|n| Arc::new(Node::of(n))).collect();
    let received: Vec<Arc<AtomicU64>> = plan.edges.iter().map(|_| Arc::default()).collect();
    // What the consumer of each connection reads, once its producer is built.
    let mut feeds: Vec<Option<Arc<dyn ExecutionPlan>>> = vec![None; plan.edges.len()];
    let mut sinks = Vec::new();
    for i in order {
        let n = &plan.nodes[i];
        let node = nodes[i].clone();
        let cx = build_cx(&plan, &n.name);
        let schema = |s: &Option<SchemaRef>| {
            s.clone()
                .ok_or_else(|| internal(&plan, format!("`{}` has no schema", n.name)))
        };
        // The connections into input port `port` (0 the main one).
        let mut inputs = |port: usize| -> Result<Inputs, BuildError> {
            let into = n.inputs.iter().filter(|&&e| plan.edges[e].to_port == port);
            let connections = into.map(|&e| {
                let feed = feeds[e].take().ok_or_else(|| {
                    internal(&plan, format!("`{}` built before its input", n.name))
                })?;
                Ok((feed, received[e].clone()))
            });
            Ok(Inputs::new(connections.collect::<Result<_, BuildError>>()?))
        };
        let upstream = match &n.kind {
            NodeKind::Source(s) => {
                let mut built = s.build(&cx)?;
                // As on the local engine: the rows the node it feeds would leave out are not
                // built (a `Filter`'s condition, the keys a `Distinct` has seen).
                if let Some(condition) = flowengine_engine::exec::source_condition(&plan, i) {
                    built.push_condition(condition);
                }
                let data = schema(&n.output_schema)?;
                Upstream::Plain(Arc::new(SourceExec::new(
                    built,
                    (i, node),
                    run.clone(),
                    &data,
                )))
            }
            NodeKind::Transform(t) => {
                let input = schema(&n.input_schema)?;
                let output = schema(&n.output_schema)?;
                let built = if n.input_ports.is_empty() {
                    t.build(input.clone(), &cx)?
                } else {
                    t.build_with(input.clone(), &n.side_schemas, &cx)?
                };
                match built {
                    BuiltTransform::Batches(built) => {
                        let exec = Arc::new(TransformExec::new(
                            inputs(0)?,
                            Arc::from(built),
                            t.parallel(),
                            node,
                            run.clone(),
                            input,
                            &output,
                        ));
                        if n.ports.is_empty() {
                            Upstream::Plain(exec)
                        } else {
                            Upstream::Routed(exec)
                        }
                    }
                    BuiltTransform::Stateful(built) => {
                        let mut sides = Vec::with_capacity(n.side_schemas.len());
                        for (k, data) in n.side_schemas.iter().enumerate() {
                            sides.push((inputs(k + 1)?, data.clone()));
                        }
                        let ports = Ports {
                            main: inputs(0)?,
                            sides,
                        };
                        Upstream::Plain(Arc::new(StatefulExec::new(
                            ports,
                            built,
                            (i, node),
                            run.clone(),
                            input,
                            &output,
                        )))
                    }
                }
            }
            NodeKind::Sink(s) => {
                let input = schema(&n.input_schema)?;
                let built = s.build(input.clone(), &cx)?;
                let sink = Arc::new(Sink::new(built, input.clone(), node, run.clone()));
                let inputs = Arc::new(InputsExec::new(inputs(0)?, input));
                let plan: Arc<dyn ExecutionPlan> =
                    Arc::new(DataSinkExec::new(inputs, sink.clone(), None));
                sinks.push((i, (plan, sink)));
                continue;
            }
        };
        connect(&plan, i, upstream, &mut feeds)?;
    }
    // Committed in declaration order, as the local engine commits them.
    sinks.sort_by_key(|(i, _)| *i);
    Ok(Prepared {
        name: plan.name.clone(),
        edges: plan.edges.clone(),
        received,
        sinks: sinks.into_iter().map(|(_, s)| s).collect(),
        nodes,
        run,
        runtime,
    })
}

/// Hands node `i`'s output to the consumers of its connections: the operator itself to a lone
/// consumer, a fork's branch to each of several (or to each consumer of a routing transform).
fn connect(
    plan: &Plan,
    i: usize,
    upstream: Upstream,
    feeds: &mut [Option<Arc<dyn ExecutionPlan>>],
) -> Result<(), BuildError> {
    let outputs = &plan.nodes[i].outputs;
    if let (Upstream::Plain(plan), [edge]) = (&upstream, outputs.as_slice()) {
        feeds[*edge] = Some(plan.clone());
        return Ok(());
    }
    let mut branches = Vec::with_capacity(outputs.len());
    for &e in outputs {
        let edge = &plan.edges[e];
        let to = &plan.nodes[edge.to];
        let data = match edge.to_port {
            0 => to.input_schema.clone(),
            k => to.side_schemas.get(k - 1).cloned(),
        };
        let data = data
            .ok_or_else(|| internal(plan, format!("`{}` has no schema for its input", to.name)))?;
        branches.push((edge.port, origin::schema(&data)));
    }
    let capacity = plan.settings.channel_capacity;
    let forked = Fork::branches(upstream, &plan.nodes[i].name, branches, capacity);
    for (&e, branch) in outputs.iter().zip(forked) {
        feeds[e] = Some(branch);
    }
    Ok(())
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
    let run = Arc::new(Run::new(plan, interrupt, dead_letter, pool));
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
    /// The DataFusion plan, one operator per line, a tree per sink (for `--verbose`).
    pub fn display(&self) -> String {
        let trees = self
            .sinks
            .iter()
            .map(|(plan, _)| displayable(plan.as_ref()).indent(true).to_string());
        trees.collect::<Vec<_>>().join("")
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
            edges,
            received,
            sinks,
            nodes,
            run,
            runtime,
        } = self;
        run.start();
        let result = runtime.block_on(drive(sinks)).and_then(|written| {
            let summaries = summaries(&nodes);
            let edge_rows = edges
                .iter()
                .zip(&received)
                .map(|(e, r)| (nodes[e.from].port_rows(e.port), r.load(Ordering::SeqCst)))
                .collect();
            finish(written, &summaries, &edges, edge_rows, &run)
        });
        let result = result.map_err(|e| run.failure().unwrap_or(e));
        drop(runtime);
        let error = result.as_ref().err().map(ToString::to_string);
        let summary = summarize(
            &name,
            summaries(&nodes),
            &edges,
            &run.dead_letter_path,
            started,
            error,
        );
        (RunOutcome { summary, result }, run.first_reject())
    }
}

/// Every sink pulls its inputs into its output at the same time (one waiting on a fork would
/// otherwise hold up its siblings); returns each sink, in declaration order, staged, and the rows
/// it wrote.
async fn drive(
    sinks: Vec<(Arc<dyn ExecutionPlan>, Arc<Sink>)>,
) -> Result<Vec<(Box<dyn SinkCommon>, u64)>, RunError> {
    let cx = Arc::new(TaskContext::default());
    let writes = sinks.iter().map(|(plan, _)| {
        let cx = cx.clone();
        async move {
            let counts = plan.execute(0, cx).map_err(stopped)?;
            counts.try_collect::<Vec<_>>().await.map_err(stopped)
        }
    });
    futures::future::try_join_all(writes).await?;
    let written = sinks.iter().map(|(_, sink)| {
        let ended = || RunError::Internal("a sink ended without writing".into());
        sink.written().ok_or_else(ended)
    });
    written.collect()
}

/// Only a signal when an operator of ours failed: the run reports the error it kept.
pub(crate) fn stopped(e: datafusion::error::DataFusionError) -> RunError {
    RunError::Internal(format!("DataFusion: {e}"))
}

/// After the last batch: `MaxErrors` on the totals, the accounting check (with `edge_rows`,
/// the rows sent and received on each connection), then the commit of the sinks, in
/// declaration order, and of the dead-letter file.
pub(crate) fn finish(
    sinks: Vec<(Box<dyn SinkCommon>, u64)>,
    summaries: &[NodeSummary],
    edges: &[Edge],
    edge_rows: Vec<(u64, u64)>,
    run: &Run,
) -> Result<(), RunError> {
    // A failure or a Ctrl-C that came after the operators' last check still means: change
    // nothing.
    run.check_not_stopped()?;
    run.check_max_errors()?;
    let dead_letter = {
        let mut dl = run.dead_letter.lock().unwrap_or_else(|p| p.into_inner());
        match dl.take() {
            Some((mut sink, sent)) => {
                let written = sink.finish()?;
                if written != sent {
                    return Err(RunError::Internal(format!(
                        "accounting: {sent} rows sent to the dead-letter file, {written} written"
                    )));
                }
                Some((written, sink))
            }
            None => None,
        }
    };
    let totals = accounting::Totals {
        edges: edge_rows,
        written: sinks.iter().map(|(_, w)| *w).sum(),
        rejected: run.rows_rejected(),
        dead_letter_written: dead_letter.as_ref().map_or(0, |d| d.0),
    };
    let paths = accounting::path_summaries(summaries, edges);
    accounting::check(summaries, edges, &totals, &paths)?;
    for (sink, _) in sinks {
        sink.commit()?;
    }
    if let Some((_, dl)) = dead_letter {
        dl.commit()?;
    }
    Ok(())
}

fn summaries(nodes: &[Arc<Node>]) -> Vec<NodeSummary> {
    nodes.iter().map(|n| n.summary()).collect()
}

/// The summary of a run of `nodes` (connected by `edges`) that started at `started` (and failed
/// with `error`, if it did).
pub(crate) fn summarize(
    name: &str,
    nodes: Vec<NodeSummary>,
    edges: &[Edge],
    dead_letter: &Option<String>,
    started: Instant,
    error: Option<String>,
) -> RunSummary {
    let processing = started.elapsed();
    let of_role = |role: &'static str| nodes.iter().filter(move |n| n.role == role);
    let rows_read = of_role("source").map(|n| n.rows_in).sum();
    let rows_written = of_role("sink").map(|n| n.rows_out).sum();
    let rows_filtered = nodes.iter().map(|n| n.rows_filtered).sum();
    let rows_rejected = nodes.iter().map(|n| n.rows_rejected).sum();
    let paths = accounting::path_summaries(&nodes, edges);
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
        paths,
        error,
    }
}

//! Running a built pipeline: one thread per node, bounded channels between them.
//!
//! Shutdown rules, which together rule out hangs:
//! - A node that ends (done or failed) drops its channel ends. Consumers see "disconnected" once
//!   every producer is gone; producers see a failed send once their consumer is gone.
//! - A failing node records its error (the first one wins) *before* dropping its channels, so every
//!   node that then stops early can tell failure from a normal end of input.
//! - Sinks stage their output and only commit after every node has finished without error.
//! - Panics inside a node are caught and reported as internal errors, like any other failure.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::batch::Batch;
use crate::component::{BuildCx, RowCondition, Sink, Source, Transform};
use crate::error::{BuildError, RowError, RunError};
use crate::metrics::{millis, NodeSummary, PathSummary, RunSummary, Status};
use crate::plan::{Edge, NodeKind, Plan};
use crate::reject::{ErrorPolicy, MaxErrors};

mod worker;

enum Runtime {
    Source(Box<dyn Source>),
    Transform(Box<dyn Transform>, bool),
    Sink(Box<dyn Sink>),
}

struct BuiltNode {
    name: String,
    type_name: &'static str,
    runtime: Runtime,
    policy: ErrorPolicy,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Named output ports (routing transforms only).
    ports: Vec<String>,
}

/// One output connection of a running node.
struct Out {
    edge: usize,
    /// 0 for the default output, `k` for the `k`-th named port.
    port: usize,
    tx: Sender<Batch>,
}

/// The dead-letter writer of a run that skips bad rows.
struct DeadLetter {
    sink: Box<dyn Sink>,
    path: String,
}

/// A pipeline whose nodes are built (files open) and ready to run.
pub struct Pipeline {
    name: String,
    channel_capacity: usize,
    threads: Option<usize>,
    /// Batches one node keeps on the pool at once (from [`crate::memory::Budget`]).
    window: usize,
    max_errors: MaxErrors,
    nodes: Vec<BuiltNode>,
    edges: Vec<Edge>,
    dead_letter: Option<DeadLetter>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Plan {
    /// Build every node in topological order. On failure nothing has been written: sinks built so
    /// far are dropped, which discards what they staged.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        let budget = self.budget();
        let mut built: Vec<Option<BuiltNode>> = (0..self.nodes.len()).map(|_| None).collect();
        let mut nodes: Vec<Option<crate::plan::PlanNode>> =
            self.nodes.into_iter().map(Some).collect();
        for &i in &self.order {
            let Some(node) = nodes[i].take() else {
                continue;
            };
            let cx = BuildCx {
                node: node.name.clone(),
                chunk_size: self.settings.chunk_size,
                batch_bytes: budget.batch_bytes,
            };
            let input = || {
                node.input_schema
                    .clone()
                    .ok_or_else(|| BuildError::Invalid {
                        node: node.name.clone(),
                        message: "internal error (a bug in FlowEngine): no input schema".into(),
                    })
            };
            let runtime = match &node.kind {
                NodeKind::Source(s) => {
                    let mut source = s.build(&cx)?;
                    if let Some(condition) = condition_fed_by(&node, &nodes, &self.edges) {
                        source.push_condition(condition);
                    }
                    Runtime::Source(source)
                }
                NodeKind::Transform(t) => Runtime::Transform(t.build(input()?, &cx)?, t.parallel()),
                NodeKind::Sink(s) => Runtime::Sink(s.build(input()?, &cx)?),
            };
            built[i] = Some(BuiltNode {
                name: node.name,
                type_name: node.type_name,
                runtime,
                policy: node.policy,
                inputs: node.inputs,
                outputs: node.outputs,
                ports: node.ports,
            });
        }
        let dead_letter = match self.dead_letter {
            Some(plan) => {
                let cx = BuildCx {
                    node: "dead-letter".into(),
                    chunk_size: self.settings.chunk_size,
                    batch_bytes: budget.batch_bytes,
                };
                Some(DeadLetter {
                    sink: (plan.builder)(&plan.path, &cx)?,
                    path: plan.path.display().to_string(),
                })
            }
            None => None,
        };
        Ok(Pipeline {
            name: self.name,
            channel_capacity: self.settings.channel_capacity,
            threads: self.settings.threads,
            window: budget.window,
            max_errors: self.settings.max_errors,
            nodes: built.into_iter().flatten().collect(),
            edges: self.edges,
            dead_letter,
        })
    }
}

/// The condition of the node `source` feeds, when that node is a transform that reads only from
/// it and is its only consumer: only then is every row it could leave out one that node would
/// filter (`nodes` holds the nodes not built yet).
fn condition_fed_by(
    source: &crate::plan::PlanNode,
    nodes: &[Option<crate::plan::PlanNode>],
    edges: &[Edge],
) -> Option<Arc<dyn RowCondition>> {
    let [edge] = source.outputs.as_slice() else {
        return None;
    };
    let edge = edges.get(*edge)?;
    let next = nodes.get(edge.to)?.as_ref()?;
    match (&next.kind, next.inputs.len(), &next.input_schema) {
        (NodeKind::Transform(t), 1, Some(input)) if edge.port == 0 => t.condition(input),
        _ => None,
    }
}

/// The result of a run: always a summary, and the error if it failed.
#[derive(Debug)]
pub struct RunOutcome {
    /// Counters and timings (partial if the run failed).
    pub summary: RunSummary,
    /// `Ok` if every sink committed.
    pub result: Result<(), RunError>,
}

/// State every node thread can see.
struct Shared<'a> {
    interrupt: &'a AtomicBool,
    failed: AtomicBool,
    first_error: Mutex<Option<RunError>>,
    edge_sent: Vec<AtomicU64>,
    edge_received: Vec<AtomicU64>,
    window: usize,
    pool: Option<rayon::ThreadPool>,
    max_errors: MaxErrors,
    rows_read: AtomicU64,
    rows_rejected: AtomicU64,
    first_reject: Mutex<Option<RowError>>,
    dead_letter: Option<String>,
}

impl Shared<'_> {
    fn fail(&self, error: RunError) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(error);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// True once the run must stop; an interrupt becomes the run's error.
    fn should_stop(&self) -> bool {
        if self.interrupt.load(Ordering::SeqCst) {
            self.fail(RunError::Cancelled);
        }
        self.failed.load(Ordering::SeqCst)
    }

    fn too_many_rejects(&self) -> RunError {
        let first = self
            .first_reject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        RunError::TooManyRejects {
            rejected: self.rows_rejected.load(Ordering::SeqCst),
            read: self.rows_read.load(Ordering::SeqCst),
            dead_letter: self
                .dead_letter
                .clone()
                .unwrap_or_else(|| "the dead-letter file".into()),
            cap: self.max_errors.to_string(),
            first: first.map(Box::new),
        }
    }
}

/// What a node thread hands back: its counters, and a sink ready to commit.
struct NodeResult {
    summary: NodeSummary,
    sink: Option<(Box<dyn Sink>, u64)>,
}

impl Pipeline {
    /// Run to completion. `interrupt` is polled between batches (Ctrl-C).
    pub fn run(self, interrupt: &AtomicBool) -> RunOutcome {
        let started = Instant::now();
        let pool = self.threads.and_then(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("flowengine-worker-{i}"))
                .build()
                .ok()
        });
        let shared = Shared {
            interrupt,
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            edge_sent: self.edges.iter().map(|_| AtomicU64::new(0)).collect(),
            edge_received: self.edges.iter().map(|_| AtomicU64::new(0)).collect(),
            window: self.window,
            pool,
            max_errors: self.max_errors,
            rows_read: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            first_reject: Mutex::new(None),
            dead_letter: self.dead_letter.as_ref().map(|d| d.path.clone()),
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = self
            .edges
            .iter()
            .map(|_| crossbeam_channel::bounded::<Batch>(self.channel_capacity))
            .unzip();
        let mut senders: Vec<Option<Sender<Batch>>> = senders.into_iter().map(Some).collect();
        let mut receivers: Vec<Option<Receiver<Batch>>> = receivers.into_iter().map(Some).collect();
        let (reject_tx, reject_rx) =
            crossbeam_channel::bounded::<Vec<RowError>>(self.channel_capacity);
        let (dead_letter_sink, dead_letter_path) = match self.dead_letter {
            Some(d) => (Some(d.sink), Some(d.path)),
            None => (None, None),
        };

        let (results, dead_letter) = std::thread::scope(|scope| {
            let shared = &shared;
            let handles: Vec<_> = self
                .nodes
                .into_iter()
                .map(|node| {
                    let ins: Vec<(usize, Receiver<Batch>)> = node
                        .inputs
                        .iter()
                        .filter_map(|&e| receivers[e].take().map(|r| (e, r)))
                        .collect();
                    let outs: Vec<Out> = node
                        .outputs
                        .iter()
                        .filter_map(|&e| {
                            senders[e].take().map(|tx| Out {
                                edge: e,
                                port: self.edges[e].port,
                                tx,
                            })
                        })
                        .collect();
                    let rejects = reject_tx.clone();
                    std::thread::Builder::new()
                        .name(format!("node-{}", node.name))
                        .spawn_scoped(scope, move || {
                            worker::run_node(node, ins, outs, rejects, shared)
                        })
                        .expect("spawning a node thread")
                })
                .collect();
            // Node threads hold the only senders now: the dead-letter thread ends when they all do.
            drop(reject_tx);
            let dead_letter = std::thread::Builder::new()
                .name("dead-letter".into())
                .spawn_scoped(scope, move || {
                    worker::drive_dead_letter(dead_letter_sink, reject_rx, shared)
                })
                .expect("spawning the dead-letter thread");
            let results: Vec<NodeResult> = handles
                .into_iter()
                .map(|h| h.join().expect("node threads catch their own panics"))
                .collect();
            (
                results,
                dead_letter
                    .join()
                    .expect("the dead-letter thread catches its own panics"),
            )
        });

        let mut sinks = Vec::new();
        let mut nodes = Vec::with_capacity(results.len());
        for r in results {
            sinks.extend(r.sink);
            nodes.push(r.summary);
        }
        let rows_rejected = shared.rows_rejected.load(Ordering::SeqCst);
        let rows_read = shared.rows_read.load(Ordering::SeqCst);
        let first_error = shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let paths = path_summaries(&nodes, &self.edges);
        let mut result = match first_error {
            Some(e) => Err(e),
            None if shared.max_errors.exceeded(rows_rejected, rows_read, true) => {
                Err(shared.too_many_rejects())
            }
            None => check_accounting(
                &nodes,
                &self.edges,
                &shared,
                &sinks,
                dead_letter.as_ref(),
                &paths,
            ),
        };
        // A Ctrl-C that came after the nodes' last check still means: change nothing.
        if result.is_ok() && interrupt.load(Ordering::SeqCst) {
            result = Err(RunError::Cancelled);
        }
        if result.is_ok() {
            for (sink, _) in sinks.into_iter().chain(dead_letter) {
                if let Err(e) = sink.commit() {
                    result = Err(e);
                    break;
                }
            }
        }
        let processing = started.elapsed();
        let rows_written = nodes
            .iter()
            .filter(|n| n.role == "sink")
            .map(|n| n.rows_out)
            .sum();
        let rows_filtered = nodes.iter().map(|n| n.rows_filtered).sum();
        let summary = RunSummary {
            pipeline: self.name,
            status: if result.is_ok() {
                Status::Succeeded
            } else {
                Status::Failed
            },
            setup_ms: 0.0,
            processing_ms: millis(processing),
            rows_read,
            rows_written,
            rows_filtered,
            rows_rejected,
            rows_per_sec: rows_read as f64 / processing.as_secs_f64().max(1e-9),
            dead_letter: dead_letter_path,
            nodes,
            paths,
            error: result.as_ref().err().map(ToString::to_string),
        };
        RunOutcome { summary, result }
    }
}

/// For each sink fed by a single chain of nodes back to one source, the rows along that chain.
fn path_summaries(nodes: &[NodeSummary], edges: &[Edge]) -> Vec<PathSummary> {
    let mut paths = Vec::new();
    for (sink, n) in nodes.iter().enumerate().filter(|(_, n)| n.role == "sink") {
        let mut names = vec![n.name.clone()];
        let (mut filtered, mut rejected, mut routed) = (0, 0, 0);
        let mut current = sink;
        loop {
            let into: Vec<&Edge> = edges.iter().filter(|e| e.to == current).collect();
            let [edge] = into.as_slice() else { break };
            current = edge.from;
            let up = &nodes[current];
            let port = up.ports.get(edge.port);
            names.push(match port {
                Some(p) if edge.port > 0 => format!("{}.{}", up.name, p.name),
                _ => up.name.clone(),
            });
            filtered += up.rows_filtered;
            rejected += up.rows_rejected;
            // Rows a routing transform sent only to its other outputs left this path.
            routed += port.map_or(0, |p| up.rows_out - p.rows);
            if up.role == "source" {
                names.reverse();
                paths.push(PathSummary {
                    path: names.join(" -> "),
                    read: up.rows_in,
                    written: n.rows_out,
                    filtered,
                    rejected,
                    routed,
                });
                break;
            }
        }
    }
    paths
}

/// Every row that entered a node left it, was filtered, or was rejected; every row sent on a
/// connection arrived; every row handed to a sink was written; every reject was written; along
/// every simple path, read = written + filtered + rejected.
fn check_accounting(
    nodes: &[NodeSummary],
    edges: &[Edge],
    shared: &Shared<'_>,
    sinks: &[(Box<dyn Sink>, u64)],
    dead_letter: Option<&(Box<dyn Sink>, u64)>,
    paths: &[PathSummary],
) -> Result<(), RunError> {
    let bug = |msg: String| Err(RunError::Internal(msg));
    for (i, edge) in edges.iter().enumerate() {
        let sent = shared.edge_sent[i].load(Ordering::SeqCst);
        let received = shared.edge_received[i].load(Ordering::SeqCst);
        if sent != received {
            let (from, to) = (&nodes[edge.from].name, &nodes[edge.to].name);
            return bug(format!(
                "connection {from} -> {to} lost rows: {sent} sent, {received} received"
            ));
        }
    }
    for n in nodes {
        if n.rows_in != n.rows_out + n.rows_filtered + n.rows_rejected {
            return bug(format!(
                "node `{}`: {} rows in but {} out + {} filtered + {} rejected",
                n.name, n.rows_in, n.rows_out, n.rows_filtered, n.rows_rejected
            ));
        }
    }
    let delivered: u64 = nodes
        .iter()
        .filter(|n| n.role == "sink")
        .map(|n| n.rows_in)
        .sum();
    let written: u64 = sinks.iter().map(|(_, w)| *w).sum();
    if delivered != written {
        return bug(format!(
            "sinks received {delivered} rows but report {written} written"
        ));
    }
    let rejected = shared.rows_rejected.load(Ordering::SeqCst);
    let dead_written = dead_letter.map_or(0, |(_, w)| *w);
    if rejected != dead_written {
        return bug(format!(
            "{rejected} rows rejected but {dead_written} written to the dead-letter file"
        ));
    }
    for p in paths {
        if p.read != p.written + p.filtered + p.rejected + p.routed {
            return bug(format!(
                "path {}: read {} but written {} + filtered {} + rejected {} + routed elsewhere {}",
                p.path, p.read, p.written, p.filtered, p.rejected, p.routed
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

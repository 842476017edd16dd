//! Running a built pipeline: one thread per node, bounded channels between them.
//!
//! `Plan::build` builds every node (sources open their input, sinks stage their output), and
//! `Pipeline::run` runs them: the node threads, the worker pool and its window, the dead-letter thread,
//! the accounting check and the commit. `worker.rs` holds what a node thread does: the drivers
//! (`drive_source`, `drive_deferring_source` with `spawn_finish`, `drive_transform`,
//! `drive_parallel`, `drive_sink` with `encode_window`), `Worker::take_rejects`, where the error
//! policy is applied, and `drive_dead_letter`. `tests.rs` tests both with stand-in plugins.
//!
//! # Executor design
//!
//! - **One thread per node**, scoped (`std::thread::scope`) and named `node-<name>`. Connections are
//!   `crossbeam_channel::bounded(Settings.ChannelCapacity)`, so a slow consumer slows its producers and memory
//!   stays bounded.
//! - **Fan-out** sends a clone of the same batch to every consumer. The Arrow buffers are shared, not copied.
//!   Each consumer sees the producer's order.
//! - **Ports.** `Edge::port` is 0 for a producer's default output and `k` for its `k`-th named port
//!   (`From: node.port`, resolved by the planner, which also refuses a port or default output left
//!   unconnected). `send_routed` sends `Routed::main` on the port-0 connections and each port's batch on its
//!   own, and counts rows per output in `NodeSummary::ports`.
//! - **Fan-in** receives with `crossbeam_channel::Select` over the inputs still open, in arrival order. A node
//!   never waits on one particular input while another is full, so diamonds with one-slot channels do not
//!   deadlock (tested). The interleaving is not deterministic, and fan-in outputs are compared as sets in the
//!   golden cases.
//! - **One worker pool** per run, for the plugin work that can run in parallel: parallel transforms, deferred
//!   source work and sink encoding. With `Settings.Threads` it is a dedicated rayon pool of that many threads
//!   (`flowengine-worker-<i>`); unset, it is rayon's global pool (one thread per core by default). The
//!   **window** is `2 × threads` (`Budget::window`, smaller if `MemoryLimit` is tight): how many batches
//!   one node has in the pool at once.
//! - **Memory is bounded by places, not by file size.** Channels, windows and the reject channel are all
//!   fixed counts, so the batches in flight are a fixed number (`Budget::batches`). A batch's size is bounded
//!   too: sources cut at `ChunkSize` rows or `BuildCx::batch_bytes` of input (`Records::with_cap` for the
//!   sequential decoder, the `max_bytes` of `Scan::cut` for ranges), so `MemoryLimit` holds for wide rows.
//! - **Parallel transforms** (`TransformConfig::parallel() == true`, `drive_parallel`) receive one batch
//!   (blocking), then take whatever else is already waiting, up to the window. They apply the transform to the
//!   window on the pool (`install` + `into_par_iter`) and emit the results in arrival order, so output order
//!   matches input order. `Transform::apply` takes `&self` and the trait requires `Sync` for this reason.
//! - **Stateful transforms** (`BuiltTransform::Stateful`: sort, distinct, aggregate, lookup, limit,
//!   sample; `drive_stateful`). Every batch goes to `push` in arrival order, on the pool (so rayon
//!   inside uses the run's threads), then `finish` is called until it says there is no more, a piece
//!   per call. Named input ports (`Edge::to_port`, `To: node.port`) are read to their end first
//!   (`drive_sides`); a transform may then hand back a batch transform for its main input
//!   (`StatefulTransform::batches`), which runs like a parallel one. A node that says it is
//!   `satisfied` (a `Limit` with its rows) drains what still arrives as filtered, and a source stops
//!   reading once every path out of it ends in satisfied nodes (`Shared::downstream_satisfied`).
//! - **Deferring sources** (`BuiltSource::Deferred`, `drive_deferring_source`). The node thread calls
//!   `next_pending` (the sequential part) and hands each `Pending` to the pool with `spawn_finish`, tagged with
//!   a sequence number, keeping at most `window` pieces between handed off and emitted. Finished pieces come
//!   back on a channel into a reorder map (`BTreeMap`), and are accounted for and emitted strictly in
//!   sequence. Order, line numbers and the first reject under fail-fast are therefore those of a one-thread run
//!   (one exception: an `Err` from `next_pending` itself, such as an I/O error, ends the run at once, before
//!   pieces still on the pool are looked at). Each piece goes through `DeferringSource::settle` on the node thread
//!   before it is counted: `Settle::Redo` drops it and every piece handed off after it (finished ones at
//!   once, those still on the pool when they arrive, by sequence number), and `next_pending` continues
//!   from that piece's start. A panic in `finish` is caught on the pool thread and becomes that
//!   piece's `RunError::Internal` (an uncaught panic in a `spawn`ed job would abort the process). A finished
//!   piece with no rows left (every record rejected) is counted but not sent.
//! - **Encoding sinks** (`BuiltSink::Encoded`, `encode_window`). The sink thread takes the first batch
//!   and the batches already waiting, up to the window, encodes them in parallel on the pool, then calls
//!   `write_encoded` with each batch's bytes in arrival order. The output is byte-for-byte that of encoding
//!   one batch at a time. Other sinks, sequential transforms and non-deferring sources run plugin code directly
//!   on their node thread, as does the dead-letter thread (`Sink::write`).
//! - **Timing**: `busy_ms` is time spent inside plugin calls. For a deferring source it is the node thread's
//!   `next_pending` time plus every piece's `finish` time on the workers, so it can exceed the wall time. For
//!   parallel transforms and encoding sinks it is the wall time of the window. Setup time (load, plan, build)
//!   is measured by the CLI and reported separately from processing.
//!
//! # Error policy, rejects and commit
//!
//! In `worker.rs` and this module:
//! - **One place applies the policy.** After every plugin call (for a deferring source, as each piece is emitted
//!   in sequence), the node thread hands the plugin's `rejects` to `Worker::take_rejects`, with the node's
//!   `ErrorPolicy` (settled at plan time). A source first adds its
//!   batch's rows plus its rejects to the shared `rows_read`, so rejected rows count as read.
//!   - `fail-fast`: the first reject becomes the run's error (`RunError::Row`) through `Shared::fail`, and the
//!     rest are dropped. The node's `rows_rejected` stays 0.
//!   - `skip-row`: the node counts the rejects (`rows_rejected`, and `rejected_by_type` by `RowErrorKind`),
//!     remembers the run's first reject, and adds them to the shared total. If `MaxErrors` is exceeded, the run
//!     fails with `RunError::TooManyRejects`. Otherwise the rejects go down the reject channel.
//! - **`MaxErrors`** is pipeline-wide: the shared reject total is compared against the shared `rows_read`. A
//!   count is checked each time a node reports rejects. A percentage is checked then only once `rows_read × N%`
//!   reaches one row, so one early reject does not end a large run. After all threads join, `Pipeline::run`
//!   checks the cap once more on the final totals, before the accounting check.
//! - **The dead-letter thread.** Node threads share one bounded channel of `Vec<RowError>` (capacity
//!   `ChannelCapacity`). A thread named `dead-letter` turns each vector into a batch of `reject_schema`
//!   (`reject::to_batch`) and writes it to the dead-letter sink. It ends when every node thread has dropped its
//!   sender. It calls `finish` only if the run has not failed, and returns the sink and its written count for
//!   the accounting check. Without a skip-row node there is no sink, and the thread only drains the channel,
//!   failing the run as a bug if anything arrives. Panics are caught, as in node threads.
//! - **Commit order.** After all threads (nodes and dead-letter) join, the run fails if an error was recorded,
//!   if `MaxErrors` is exceeded on the totals, or if `accounting::check` finds a mismatch. Otherwise it commits
//!   the sinks in declaration order, then the dead-letter file. It stops at the first failed commit, so the
//!   rejects file is never committed without the outputs that go with it.
//!
//! # Shutdown, and why runs end promptly
//!
//! In this module:
//! - A node that ends, whether done or failed, drops its channel ends. A `recv` returns "disconnected" once
//!   every producer of that connection is gone, and a `send` fails once its consumer is gone. So a blocking
//!   channel operation waits only on a peer that is still running.
//! - A failing node records its error in `Shared::fail` (the first error wins, and a `failed` flag is set)
//!   *before* it drops its ends. A node that then sees a closed channel checks `should_stop()` and can tell a
//!   failure from a normal end of input. In particular, a sink whose inputs closed because of a failure returns
//!   without `finish`, so it never reports success.
//! - The failure spreads in both directions. Upstream, producers get a failed `send` and stop, dropping their
//!   own ends in turn. Downstream, consumers see disconnection. Branches not connected to the failure notice it
//!   too: sources poll `should_stop()` before every batch, and transforms and sinks after every receive. The
//!   graph is acyclic (cycles are refused at plan time), so every thread reaches its end within a batch or so
//!   of its neighbours.
//! - Ctrl-C sets an `AtomicBool` that `should_stop()` turns into `RunError::Cancelled`, which then follows the
//!   same path. A panic in plugin code is caught with `catch_unwind` and becomes `RunError::Internal`, also on
//!   the same path, so it drops its ends like any other failure. A panic inside the pool during a window
//!   (parallel transform, encoding) resurfaces on the node thread and is caught there; a deferred piece's panic
//!   is caught by `spawn_finish` (above).
//! - A deferring source that stops does not wait for the pieces it left on the pool: they finish and their
//!   results are dropped, since nothing reads their channel any more.
//! - The dead-letter thread needs no signal of its own: it ends when the last node thread drops its reject
//!   sender. A failing dead-letter write fails the run like any node, and node threads then see a failed send
//!   on the reject channel.
//! - After all threads join, the run commits only as described under commit order above.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, Sender};

use crate::batch::Batch;
use crate::component::{
    BuildCx, BuiltSink, BuiltSource, BuiltTransform, RowCondition, Sink, SinkCommon,
};
use crate::error::{BuildError, RowError, RunError};
use crate::metrics::{millis, ChannelGauge, NodeSummary, Progress, RunSummary, Status};
use crate::plan::{Edge, NodeKind, Plan};
use crate::reject::{ErrorPolicy, MaxErrors};

pub mod accounting;
mod worker;

enum Runtime {
    Source(BuiltSource),
    Transform(BuiltTransform, bool),
    Sink(BuiltSink),
}

struct BuiltNode {
    /// Its index in the plan, as edges name it.
    index: usize,
    name: String,
    type_name: &'static str,
    runtime: Runtime,
    policy: ErrorPolicy,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Named output ports (routing transforms only).
    ports: Vec<String>,
    /// The schema its input batches are conformed to (none for sources).
    input_schema: Option<SchemaRef>,
    /// The schema of each named input port's batches.
    side_schemas: Vec<SchemaRef>,
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
    progress: Arc<Progress>,
    timeout: Option<Duration>,
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

impl Pipeline {
    /// The run's counters so far, for a progress display or a metrics endpoint while it runs.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// One gauge per edge, in edge order, for a monitor to read.
    fn set_channel_gauges(&self) {
        let name = |i: usize| {
            self.nodes
                .iter()
                .find(|n| n.index == i)
                .map_or(String::new(), |n| n.name.clone())
        };
        let gauges = self
            .edges
            .iter()
            .map(|e| ChannelGauge {
                from: name(e.from),
                to: name(e.to),
                capacity: self.channel_capacity,
                queued: AtomicUsize::new(0),
                full: AtomicU64::new(0),
            })
            .collect();
        let _ = self.progress.channels.set(gauges);
    }

    /// Send the rejects to `sink` instead of a dead-letter file (`flowengine preview`).
    pub(crate) fn capture_rejects(&mut self, sink: Box<dyn Sink>) {
        self.dead_letter = Some(DeadLetter {
            sink,
            path: "(captured)".into(),
        });
    }
}

impl Plan {
    /// Build every node in topological order. On failure nothing has been written: sinks built so
    /// far are dropped, which discards what they staged.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        self.build_reporting(Arc::default())
    }

    /// [`Plan::build`], with the run's counters kept in `progress`, which a monitor may read
    /// from the start, while the sources open their inputs.
    pub fn build_reporting(self, progress: Arc<Progress>) -> Result<Pipeline, BuildError> {
        let budget = self.budget();
        let temp_dir = (self.settings.temp_directory.clone()).unwrap_or_else(std::env::temp_dir);
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
                state_bytes: budget.state_bytes,
                temp_dir: temp_dir.clone(),
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
                NodeKind::Transform(t) if node.input_ports.is_empty() => {
                    Runtime::Transform(t.build(input()?, &cx)?, t.parallel())
                }
                NodeKind::Transform(t) => {
                    let built = t.build_with(input()?, &node.side_schemas, &cx)?;
                    Runtime::Transform(built, false)
                }
                NodeKind::Sink(s) => Runtime::Sink(s.build(input()?, &cx)?),
            };
            built[i] = Some(BuiltNode {
                index: i,
                name: node.name,
                type_name: node.type_name,
                runtime,
                policy: node.policy,
                inputs: node.inputs,
                outputs: node.outputs,
                ports: node.ports,
                input_schema: node.input_schema,
                side_schemas: node.side_schemas,
            });
        }
        let dead_letter = match self.dead_letter {
            Some(plan) => {
                let cx = BuildCx {
                    node: "dead-letter".into(),
                    chunk_size: self.settings.chunk_size,
                    batch_bytes: budget.batch_bytes,
                    state_bytes: 0,
                    temp_dir: temp_dir.clone(),
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
            progress,
            timeout: self.settings.timeout,
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
    condition_of(nodes.get(edge.to)?.as_ref()?, edge)
}

/// [`condition_fed_by`] for an engine that builds `plan`'s nodes itself: the condition node
/// `source` may apply as it reads, if any.
pub fn source_condition(plan: &Plan, source: usize) -> Option<Arc<dyn RowCondition>> {
    let [edge] = plan.nodes.get(source)?.outputs.as_slice() else {
        return None;
    };
    let edge = plan.edges.get(*edge)?;
    condition_of(plan.nodes.get(edge.to)?, edge)
}

/// The condition of `next`, fed by `edge` alone.
fn condition_of(next: &crate::plan::PlanNode, edge: &Edge) -> Option<Arc<dyn RowCondition>> {
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
    /// When the run must have ended (`Settings.Timeout`), and that limit.
    deadline: Option<(Instant, Duration)>,
    /// Rows read and rejected so far, which a monitor may read while the run goes on.
    progress: Arc<Progress>,
    first_reject: Mutex<Option<RowError>>,
    dead_letter: Option<String>,
    /// Per node: it needs no more rows (a `Limit` that has them).
    satisfied: Vec<AtomicBool>,
    /// Per node: the edges out of it, and whether it is a transform.
    outputs: Vec<(Vec<usize>, bool)>,
    edges: Vec<Edge>,
}

impl Shared<'_> {
    /// The gauge of edge `edge`.
    fn channel(&self, edge: usize) -> Option<&ChannelGauge> {
        self.progress.channels.get().and_then(|c| c.get(edge))
    }

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
        if let Some((deadline, limit)) = self.deadline {
            if Instant::now() >= deadline {
                self.fail(RunError::TimedOut(limit));
            }
        }
        self.failed.load(Ordering::SeqCst)
    }

    /// True when every path out of `node` reaches a node that needs no more rows before any
    /// node that would still use them.
    fn downstream_satisfied(&self, node: usize) -> bool {
        let (outs, _) = &self.outputs[node];
        !outs.is_empty()
            && outs.iter().all(|&e| {
                let to = self.edges[e].to;
                self.satisfied[to].load(Ordering::SeqCst)
                    || (self.outputs[to].1 && self.downstream_satisfied(to))
            })
    }

    fn too_many_rejects(&self) -> RunError {
        let first = self
            .first_reject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        RunError::TooManyRejects {
            rejected: self.progress.rows_rejected.load(Ordering::SeqCst),
            read: self.progress.rows_read.load(Ordering::SeqCst),
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
    sink: Option<(Box<dyn SinkCommon>, u64)>,
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
            deadline: self.timeout.map(|limit| (started + limit, limit)),
            progress: self.progress.clone(),
            first_reject: Mutex::new(None),
            dead_letter: self.dead_letter.as_ref().map(|d| d.path.clone()),
            satisfied: self.nodes.iter().map(|_| AtomicBool::new(false)).collect(),
            outputs: self
                .nodes
                .iter()
                .map(|n| {
                    let transform = matches!(n.runtime, Runtime::Transform(..));
                    (n.outputs.clone(), transform)
                })
                .collect(),
            edges: self.edges.clone(),
        };
        self.set_channel_gauges();
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
        let rows_rejected = shared.progress.rows_rejected.load(Ordering::SeqCst);
        let rows_read = shared.progress.rows_read.load(Ordering::SeqCst);
        let first_error = shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let paths = accounting::path_summaries(&nodes, &self.edges);
        let mut result = match first_error {
            Some(e) => Err(e),
            None if shared.max_errors.exceeded(rows_rejected, rows_read, true) => {
                Err(shared.too_many_rejects())
            }
            None => {
                let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
                let totals = accounting::Totals {
                    edges: (shared.edge_sent.iter().map(load))
                        .zip(shared.edge_received.iter().map(load))
                        .collect(),
                    written: sinks.iter().map(|(_, w)| *w).sum(),
                    rejected: rows_rejected,
                    dead_letter_written: dead_letter.as_ref().map_or(0, |(_, w)| *w),
                };
                accounting::check(&nodes, &self.edges, &totals, &paths)
            }
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

#[cfg(test)]
mod tests;

//! Running a built pipeline: one thread per node, bounded channels between them.
//!
//! Shutdown rules, which together rule out hangs:
//! - A node that ends (done or failed) drops its channel ends. Consumers see "disconnected" once
//!   every producer is gone; producers see a failed send once their consumer is gone.
//! - A failing node records its error (the first one wins) *before* dropping its channels, so every
//!   node that then stops early can tell failure from a normal end of input.
//! - Sinks stage their output and only commit after every node has finished without error.
//! - Panics inside a node are caught and reported as internal errors, like any other failure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use rayon::prelude::*;

use crate::batch::Batch;
use crate::component::{BuildCx, Sink, Source, Transform};
use crate::error::{BuildError, RunError};
use crate::metrics::{millis, NodeSummary, RunSummary, Status};
use crate::plan::{Edge, NodeKind, Plan};

enum Runtime {
    Source(Box<dyn Source>),
    Transform(Box<dyn Transform>, bool),
    Sink(Box<dyn Sink>),
}

struct BuiltNode {
    name: String,
    type_name: &'static str,
    runtime: Runtime,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// A pipeline whose nodes are built (files open) and ready to run.
pub struct Pipeline {
    name: String,
    channel_capacity: usize,
    threads: Option<usize>,
    nodes: Vec<BuiltNode>,
    edges: Vec<Edge>,
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
                NodeKind::Source(s) => Runtime::Source(s.build(&cx)?),
                NodeKind::Transform(t) => Runtime::Transform(t.build(input()?, &cx)?, t.parallel()),
                NodeKind::Sink(s) => Runtime::Sink(s.build(input()?, &cx)?),
            };
            built[i] = Some(BuiltNode {
                name: node.name,
                type_name: node.type_name,
                runtime,
                inputs: node.inputs,
                outputs: node.outputs,
            });
        }
        Ok(Pipeline {
            name: self.name,
            channel_capacity: self.settings.channel_capacity,
            threads: self.settings.threads,
            nodes: built.into_iter().flatten().collect(),
            edges: self.edges,
        })
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
}

/// What a node thread hands back.
struct NodeResult {
    summary: NodeSummary,
    sink: Option<(Box<dyn Sink>, u64)>,
}

impl Pipeline {
    /// Run to completion. `interrupt` is polled between batches (Ctrl-C).
    pub fn run(self, interrupt: &AtomicBool) -> RunOutcome {
        let started = Instant::now();
        let threads = self.threads.unwrap_or_else(rayon::current_num_threads);
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
            window: threads.max(1) * 2,
            pool,
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = self
            .edges
            .iter()
            .map(|_| crossbeam_channel::bounded::<Batch>(self.channel_capacity))
            .unzip();
        let mut senders: Vec<Option<Sender<Batch>>> = senders.into_iter().map(Some).collect();
        let mut receivers: Vec<Option<Receiver<Batch>>> = receivers.into_iter().map(Some).collect();

        let results: Vec<NodeResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .into_iter()
                .map(|node| {
                    let ins: Vec<(usize, Receiver<Batch>)> = node
                        .inputs
                        .iter()
                        .filter_map(|&e| receivers[e].take().map(|r| (e, r)))
                        .collect();
                    let outs: Vec<(usize, Sender<Batch>)> = node
                        .outputs
                        .iter()
                        .filter_map(|&e| senders[e].take().map(|s| (e, s)))
                        .collect();
                    let shared = &shared;
                    let name = node.name.clone();
                    std::thread::Builder::new()
                        .name(format!("node-{name}"))
                        .spawn_scoped(scope, move || run_node(node, ins, outs, shared))
                        .expect("spawning a node thread")
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("node threads catch their own panics"))
                .collect()
        });

        let mut sinks = Vec::new();
        let mut nodes = Vec::with_capacity(results.len());
        for r in results {
            sinks.extend(r.sink);
            nodes.push(r.summary);
        }
        let mut result = match shared
            .first_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some(e) => Err(e),
            None => check_accounting(
                &nodes,
                &self.edges,
                &shared.edge_sent,
                &shared.edge_received,
                &sinks,
            ),
        };
        if result.is_ok() {
            for (sink, _) in sinks {
                if let Err(e) = sink.commit() {
                    result = Err(e);
                    break;
                }
            }
        }
        let processing = started.elapsed();
        let rows_read = nodes
            .iter()
            .filter(|n| n.role == "source")
            .map(|n| n.rows_in)
            .sum();
        let rows_written = nodes
            .iter()
            .filter(|n| n.role == "sink")
            .map(|n| n.rows_out)
            .sum();
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
            rows_per_sec: rows_read as f64 / processing.as_secs_f64().max(1e-9),
            nodes,
            error: result.as_ref().err().map(ToString::to_string),
        };
        RunOutcome { summary, result }
    }
}

/// Every row that entered a node left it, was filtered, or was rejected; every row sent on a
/// connection arrived; every row handed to a sink was written.
fn check_accounting(
    nodes: &[NodeSummary],
    edges: &[Edge],
    sent: &[AtomicU64],
    received: &[AtomicU64],
    sinks: &[(Box<dyn Sink>, u64)],
) -> Result<(), RunError> {
    for (i, edge) in edges.iter().enumerate() {
        let (s, r) = (
            sent[i].load(Ordering::SeqCst),
            received[i].load(Ordering::SeqCst),
        );
        if s != r {
            return Err(RunError::Internal(format!(
                "connection {} -> {} lost rows: {s} sent, {r} received",
                nodes[edge.from].name, nodes[edge.to].name
            )));
        }
    }
    for n in nodes {
        let accounted = n.rows_out + n.rows_filtered + n.rows_rejected;
        if n.rows_in != accounted {
            return Err(RunError::Internal(format!(
                "node `{}`: {} rows in but {} out + {} filtered + {} rejected",
                n.name, n.rows_in, n.rows_out, n.rows_filtered, n.rows_rejected
            )));
        }
    }
    let delivered: u64 = nodes
        .iter()
        .filter(|n| n.role == "sink")
        .map(|n| n.rows_in)
        .sum();
    let written: u64 = sinks.iter().map(|(_, w)| *w).sum();
    if delivered != written {
        return Err(RunError::Internal(format!(
            "sinks received {delivered} rows but report {written} written"
        )));
    }
    Ok(())
}

fn run_node(
    node: BuiltNode,
    ins: Vec<(usize, Receiver<Batch>)>,
    outs: Vec<(usize, Sender<Batch>)>,
    shared: &Shared<'_>,
) -> NodeResult {
    let mut summary = NodeSummary {
        name: node.name.clone(),
        type_name: node.type_name,
        ..NodeSummary::default()
    };
    let mut busy = Duration::ZERO;
    let name = node.name;
    let outcome = catch_unwind(AssertUnwindSafe(|| match node.runtime {
        Runtime::Source(source) => {
            summary.role = "source";
            drive_source(source, &outs, shared, &mut summary, &mut busy);
            None
        }
        Runtime::Transform(t, parallel) => {
            summary.role = "transform";
            let mut inputs = Inputs::new(ins, shared);
            if parallel {
                drive_parallel(&*t, &mut inputs, &outs, shared, &mut summary, &mut busy);
            } else {
                drive_transform(&*t, &mut inputs, &outs, shared, &mut summary, &mut busy);
            }
            None
        }
        Runtime::Sink(sink) => {
            summary.role = "sink";
            let mut inputs = Inputs::new(ins, shared);
            drive_sink(sink, &mut inputs, shared, &mut summary, &mut busy)
        }
    }));
    summary.busy_ms = millis(busy);
    let sink = match outcome {
        Ok(sink) => sink,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            shared.fail(RunError::Internal(format!(
                "node `{name}` panicked: {what}"
            )));
            None
        }
    };
    NodeResult { summary, sink }
}

/// Time `f` into `busy`.
fn timed<T>(busy: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    *busy += t.elapsed();
    out
}

/// Send to every consumer (fan-out shares the batch). False if a consumer is gone, which only
/// happens when the run is failing.
fn send_all(
    batch: Batch,
    outs: &[(usize, Sender<Batch>)],
    shared: &Shared<'_>,
    summary: &mut NodeSummary,
) -> bool {
    let rows = batch.num_rows() as u64;
    summary.rows_out += rows;
    summary.batches_out += 1;
    for (edge, tx) in outs {
        shared.edge_sent[*edge].fetch_add(rows, Ordering::SeqCst);
        if tx.send(batch.clone()).is_err() {
            return false;
        }
    }
    true
}

fn drive_source(
    mut source: Box<dyn Source>,
    outs: &[(usize, Sender<Batch>)],
    shared: &Shared<'_>,
    summary: &mut NodeSummary,
    busy: &mut Duration,
) {
    while !shared.should_stop() {
        match timed(busy, || source.next_batch()) {
            Ok(Some(batch)) => {
                summary.rows_in += batch.num_rows() as u64;
                summary.batches_in += 1;
                if !send_all(batch, outs, shared, summary) {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => return shared.fail(e),
        }
    }
}

/// The receiving ends of a node's input connections, read in arrival order.
struct Inputs<'s, 'a> {
    live: Vec<(usize, Receiver<Batch>)>,
    shared: &'s Shared<'a>,
}

impl<'s, 'a> Inputs<'s, 'a> {
    fn new(live: Vec<(usize, Receiver<Batch>)>, shared: &'s Shared<'a>) -> Self {
        Self { live, shared }
    }

    fn note(&self, edge: usize, batch: &Batch) {
        self.shared.edge_received[edge].fetch_add(batch.num_rows() as u64, Ordering::SeqCst);
    }

    /// The next batch from any input; `None` once every input has ended.
    fn recv(&mut self) -> Option<Batch> {
        loop {
            match self.live.len() {
                0 => return None,
                1 => {
                    let got = self.live[0].1.recv();
                    match got {
                        Ok(b) => {
                            self.note(self.live[0].0, &b);
                            return Some(b);
                        }
                        Err(_) => self.live.clear(),
                    }
                }
                _ => {
                    let mut select = Select::new();
                    for (_, rx) in &self.live {
                        select.recv(rx);
                    }
                    let op = select.select();
                    let i = op.index();
                    match op.recv(&self.live[i].1) {
                        Ok(b) => {
                            self.note(self.live[i].0, &b);
                            return Some(b);
                        }
                        Err(_) => {
                            self.live.remove(i);
                        }
                    }
                }
            }
        }
    }

    /// A batch that is already waiting, without blocking.
    fn try_recv(&mut self) -> Option<Batch> {
        let mut i = 0;
        while i < self.live.len() {
            match self.live[i].1.try_recv() {
                Ok(b) => {
                    self.note(self.live[i].0, &b);
                    return Some(b);
                }
                Err(TryRecvError::Empty) => i += 1,
                Err(TryRecvError::Disconnected) => {
                    self.live.remove(i);
                }
            }
        }
        None
    }
}

fn count_in(summary: &mut NodeSummary, batch: &Batch) {
    summary.rows_in += batch.num_rows() as u64;
    summary.batches_in += 1;
}

fn emit_transformed(
    rows_in: usize,
    result: Result<Batch, RunError>,
    outs: &[(usize, Sender<Batch>)],
    shared: &Shared<'_>,
    summary: &mut NodeSummary,
) -> bool {
    match result {
        Ok(out) => {
            summary.rows_filtered += rows_in.saturating_sub(out.num_rows()) as u64;
            send_all(out, outs, shared, summary)
        }
        Err(e) => {
            shared.fail(e);
            false
        }
    }
}

fn drive_transform(
    t: &dyn Transform,
    inputs: &mut Inputs<'_, '_>,
    outs: &[(usize, Sender<Batch>)],
    shared: &Shared<'_>,
    summary: &mut NodeSummary,
    busy: &mut Duration,
) {
    while let Some(batch) = inputs.recv() {
        if shared.should_stop() {
            return;
        }
        count_in(summary, &batch);
        let rows = batch.num_rows();
        let result = timed(busy, || t.apply(batch));
        if !emit_transformed(rows, result, outs, shared, summary) {
            return;
        }
    }
}

/// Up to `window` waiting batches are transformed at once on the worker pool, then emitted in the
/// order they arrived.
fn drive_parallel(
    t: &dyn Transform,
    inputs: &mut Inputs<'_, '_>,
    outs: &[(usize, Sender<Batch>)],
    shared: &Shared<'_>,
    summary: &mut NodeSummary,
    busy: &mut Duration,
) {
    while let Some(first) = inputs.recv() {
        if shared.should_stop() {
            return;
        }
        let mut window = vec![first];
        while window.len() < shared.window {
            match inputs.try_recv() {
                Some(b) => window.push(b),
                None => break,
            }
        }
        let sizes: Vec<usize> = window.iter().map(Batch::num_rows).collect();
        for b in &window {
            count_in(summary, b);
        }
        let work = || -> Vec<Result<Batch, RunError>> {
            window.into_par_iter().map(|b| t.apply(b)).collect()
        };
        let results = timed(busy, || match &shared.pool {
            Some(pool) => pool.install(work),
            None => work(),
        });
        for (rows, result) in sizes.into_iter().zip(results) {
            if !emit_transformed(rows, result, outs, shared, summary) {
                return;
            }
        }
    }
}

fn drive_sink(
    mut sink: Box<dyn Sink>,
    inputs: &mut Inputs<'_, '_>,
    shared: &Shared<'_>,
    summary: &mut NodeSummary,
    busy: &mut Duration,
) -> Option<(Box<dyn Sink>, u64)> {
    while let Some(batch) = inputs.recv() {
        if shared.should_stop() {
            return None;
        }
        count_in(summary, &batch);
        if let Err(e) = timed(busy, || sink.write(&batch)) {
            shared.fail(e);
            return None;
        }
    }
    // Inputs also end when an upstream node fails; never finish a sink on a failing run.
    if shared.should_stop() {
        return None;
    }
    match timed(busy, || sink.finish()) {
        Ok(written) => {
            summary.rows_out = written;
            Some((sink, written))
        }
        Err(e) => {
            shared.fail(e);
            None
        }
    }
}

#[cfg(test)]
mod tests;

//! What each node thread does: pull batches, call its plugin, apply the error policy to the rows
//! the plugin reports, push batches on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow_array::UInt64Array;
use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};
use rayon::prelude::*;

use super::{BuiltNode, NodeResult, Out, Runtime, Shared};
use crate::batch::Batch;
use crate::component::{
    BuiltSink, BuiltSource, BuiltTransform, DeferringSource, Encode, EncodedSink, Output, Routed,
    Settle, Sink, SinkCommon, Source, StatefulTransform, Transform,
};
use crate::error::{RowError, RunError};
use crate::metrics::{millis, NodeSummary, PortRows};
use crate::reject::{self, ErrorPolicy};

/// One node's view of the run while it works.
struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    /// This node's index in the plan.
    index: usize,
    policy: ErrorPolicy,
    rejects_tx: Sender<Vec<RowError>>,
    summary: NodeSummary,
    busy: Duration,
}

impl Worker<'_, '_> {
    /// Time `f` as the plugin's own work.
    fn timed<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.busy += t.elapsed();
        out
    }

    /// True when a source may stop reading: every node its rows would reach needs no more.
    fn downstream_satisfied(&mut self) -> bool {
        if !self.shared.downstream_satisfied(self.index) {
            return false;
        }
        let rows = self.summary.rows_in;
        self.summary.notes.push(format!(
            "stopped reading after {rows} rows: every node downstream had the rows it needs"
        ));
        true
    }

    /// Apply the error policy to the rows the plugin reported. False if the run must stop.
    fn take_rejects(&mut self, rejects: &mut Vec<RowError>) -> bool {
        if rejects.is_empty() {
            return true;
        }
        if self.policy == ErrorPolicy::FailFast {
            let first = rejects.swap_remove(0);
            rejects.clear();
            self.shared.fail(first.into());
            return false;
        }
        let n = rejects.len() as u64;
        self.summary.rows_rejected += n;
        for r in rejects.iter() {
            *self
                .summary
                .rejected_by_type
                .entry(r.kind.as_str().to_string())
                .or_default() += 1;
        }
        {
            let mut first = self
                .shared
                .first_reject
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = rejects.first().cloned();
            }
        }
        let total = self
            .shared
            .progress
            .rows_rejected
            .fetch_add(n, Ordering::SeqCst)
            + n;
        let read = self.shared.progress.rows_read.load(Ordering::SeqCst);
        if self.shared.max_errors.exceeded(total, read, false) {
            self.shared.fail(self.shared.too_many_rejects());
            return false;
        }
        // Only fails if the dead-letter writer stopped, which it does only on a failing run.
        self.rejects_tx.send(std::mem::take(rejects)).is_ok()
    }

    /// Send to every consumer (fan-out shares the batch). False if a consumer is gone, which only
    /// happens when the run is failing.
    fn send_all(&mut self, batch: Batch, outs: &[Out]) -> bool {
        self.summary.rows_out += batch.rows_counted();
        self.summary.batches_out += 1;
        self.summary.bytes_out += batch.data.get_array_memory_size() as u64;
        self.send_port(&batch, 0, outs)
    }

    /// Send to the consumers of one output.
    fn send_port(&mut self, batch: &Batch, port: usize, outs: &[Out]) -> bool {
        let rows = batch.rows_counted();
        if let Some(p) = self.summary.ports.get_mut(port) {
            p.rows += rows;
        }
        for out in outs.iter().filter(|o| o.port == port) {
            self.shared.edge_sent[out.edge].fetch_add(rows, Ordering::SeqCst);
            let gauge = self.shared.channel(out.edge);
            let sent = match out.tx.try_send(batch.clone()) {
                Err(TrySendError::Full(batch)) => {
                    if let Some(g) = gauge {
                        g.full.fetch_add(1, Ordering::Relaxed);
                    }
                    out.tx.send(batch).is_ok()
                }
                other => other.is_ok(),
            };
            if !sent {
                return false;
            }
            if let Some(g) = gauge {
                g.queued.store(out.tx.len(), Ordering::Relaxed);
            }
        }
        true
    }

    /// Pass a transform's output on: the default output, then each port that got rows.
    fn send_routed(&mut self, routed: Routed, outs: &[Out]) -> bool {
        self.summary.rows_out += routed.emitted as u64;
        self.summary.batches_out += 1;
        self.summary.bytes_out += std::iter::once(&routed.main)
            .chain(&routed.ports)
            .map(|b| b.data.get_array_memory_size() as u64)
            .sum::<u64>();
        if !self.send_port(&routed.main, 0, outs) {
            return false;
        }
        for (k, batch) in routed.ports.iter().enumerate() {
            if batch.num_rows() > 0 && !self.send_port(batch, k + 1, outs) {
                return false;
            }
        }
        true
    }

    /// Count a batch in. The rows its source left out for this node's condition are this node's
    /// filtered rows; zeroing them keeps them from being counted again downstream.
    fn count_in(&mut self, batch: &mut Batch) {
        self.summary.rows_in += batch.rows_counted();
        self.summary.rows_filtered += std::mem::take(&mut batch.prefiltered);
        self.summary.batches_in += 1;
    }

    /// `first` and the batches already waiting behind it, up to the window, counted in.
    fn take_window(&mut self, first: Batch, inputs: &mut Inputs<'_, '_>) -> Vec<Batch> {
        let mut window = vec![first];
        while window.len() < self.shared.window {
            match inputs.try_recv() {
                Some(b) => window.push(b),
                None => break,
            }
        }
        for b in &mut window {
            self.count_in(b);
        }
        window
    }

    /// Run `f` on the worker pool, timed as the plugin's own work.
    fn on_pool<T: Send>(&mut self, f: impl FnOnce() -> T + Send) -> T {
        let pool = self.shared.pool.as_ref();
        self.timed(|| match pool {
            Some(pool) => pool.install(f),
            None => f(),
        })
    }

    /// Account for what a stateful transform handed on. False if the run must stop.
    fn emit_stateful(
        &mut self,
        result: Result<(), RunError>,
        mut out: Output,
        outs: &[Out],
    ) -> bool {
        if let Err(e) = result {
            self.shared.fail(e);
            return false;
        }
        self.summary.rows_filtered += out.filtered;
        self.summary.rows_duplicate += out.duplicates;
        self.summary.rows_aggregated += out.aggregated;
        if !self.take_rejects(&mut out.rejects) {
            return false;
        }
        out.batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .all(|b| self.send_all(b, outs))
    }

    /// Account for a transform's result and pass it on. False if the run must stop.
    fn emit_transformed(
        &mut self,
        rows_in: usize,
        result: Result<Routed, RunError>,
        mut rejects: Vec<RowError>,
        outs: &[Out],
    ) -> bool {
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                self.shared.fail(e);
                return false;
            }
        };
        if out.emitted > rows_in {
            self.shared.fail(RunError::Internal(format!(
                "node `{}` emitted {} rows from a batch of {rows_in}",
                self.summary.name, out.emitted
            )));
            return false;
        }
        let removed = rows_in - out.emitted;
        if rejects.len() > removed {
            self.shared.fail(RunError::Internal(format!(
                "node `{}` rejected {} rows but only {removed} left the batch",
                self.summary.name,
                rejects.len()
            )));
            return false;
        }
        self.summary.rows_filtered += (removed - rejects.len()) as u64;
        self.take_rejects(&mut rejects) && self.send_routed(out, outs)
    }
}

pub(super) fn run_node(
    node: BuiltNode,
    ins: Vec<(usize, Receiver<Batch>)>,
    outs: Vec<Out>,
    rejects_tx: Sender<Vec<RowError>>,
    shared: &Shared<'_>,
) -> NodeResult {
    let mut w = Worker {
        shared,
        index: node.index,
        policy: node.policy,
        rejects_tx,
        summary: NodeSummary {
            name: node.name.clone(),
            type_name: node.type_name,
            ..NodeSummary::default()
        },
        busy: Duration::ZERO,
    };
    if !node.ports.is_empty() {
        let names = std::iter::once("default".to_string()).chain(node.ports);
        w.summary.ports = names.map(|name| PortRows { name, rows: 0 }).collect();
    }
    let name = node.name;
    let outcome = catch_unwind(AssertUnwindSafe(|| match node.runtime {
        Runtime::Source(source) => {
            w.summary.role = "source";
            drive_source(source, &outs, &mut w);
            None
        }
        Runtime::Transform(t, parallel) => {
            w.summary.role = "transform";
            let schemas = (node.input_schema.clone(), node.side_schemas.as_slice());
            let (mut inputs, mut sides) = split_inputs(ins, schemas, &name, shared);
            drive_any_transform(t, parallel, &mut inputs, &mut sides, &outs, &mut w);
            None
        }
        Runtime::Sink(sink) => {
            w.summary.role = "sink";
            let mut inputs = Inputs::new(ins, node.input_schema.clone(), &name, shared);
            drive_sink(sink, &mut inputs, &mut w)
        }
    }));
    w.summary.busy_ms = millis(w.busy);
    let sink = outcome.unwrap_or_else(|panic| {
        shared.fail(RunError::Internal(format!(
            "node `{name}` panicked: {}",
            panic_message(&*panic)
        )));
        None
    });
    NodeResult {
        summary: w.summary,
        sink,
    }
}

/// A transform's connections, by input: the main one, then each named input port.
fn split_inputs<'s, 'a>(
    ins: Vec<(usize, Receiver<Batch>)>,
    (input_schema, side_schemas): (Option<SchemaRef>, &[SchemaRef]),
    name: &str,
    shared: &'s Shared<'a>,
) -> (Inputs<'s, 'a>, Vec<Inputs<'s, 'a>>) {
    let mut by_port: Vec<Vec<(usize, Receiver<Batch>)>> =
        (0..=side_schemas.len()).map(|_| Vec::new()).collect();
    for (e, rx) in ins {
        by_port[shared.edges[e].to_port].push((e, rx));
    }
    let mut by_port = by_port.into_iter();
    let main = by_port.next().unwrap_or_default();
    let sides = by_port
        .zip(side_schemas)
        .map(|(live, schema)| Inputs::new(live, Some(schema.clone()), name, shared))
        .collect();
    (Inputs::new(main, input_schema, name, shared), sides)
}

/// Run a transform in its mode: batch by batch (in parallel where it allows), or with state
/// (its input ports first, then, if it hands one back, batch by batch in parallel).
fn drive_any_transform(
    t: BuiltTransform,
    parallel: bool,
    inputs: &mut Inputs<'_, '_>,
    sides: &mut [Inputs<'_, '_>],
    outs: &[Out],
    w: &mut Worker<'_, '_>,
) {
    match t {
        BuiltTransform::Batches(_) if !sides.is_empty() => {
            let msg = format!(
                "node `{}` has input ports but does not keep state",
                w.summary.name
            );
            w.shared.fail(RunError::Internal(msg));
        }
        BuiltTransform::Batches(t) => {
            if parallel {
                drive_parallel(&*t, inputs, outs, w);
            } else {
                drive_transform(&*t, inputs, outs, w);
            }
            w.summary.notes.extend(t.notes());
        }
        BuiltTransform::Stateful(mut t) => {
            w.summary.aggregates = t.aggregates();
            if drive_sides(t.as_mut(), sides, w) {
                match t.batches() {
                    Ok(Some(batches)) => drive_parallel(&*batches, inputs, outs, w),
                    Ok(None) => drive_stateful(t.as_mut(), inputs, outs, w),
                    Err(e) => w.shared.fail(e),
                }
            }
            w.summary.notes.extend(t.notes());
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn drive_source(source: BuiltSource, outs: &[Out], w: &mut Worker<'_, '_>) {
    let notes = match source {
        BuiltSource::Batches(mut source) => {
            drive_batches(source.as_mut(), outs, w);
            source.notes()
        }
        BuiltSource::Deferred(mut source) => {
            drive_deferring_source(source.as_mut(), outs, w);
            source.notes()
        }
    };
    w.summary.notes.splice(0..0, notes);
}

fn drive_batches(source: &mut dyn Source, outs: &[Out], w: &mut Worker<'_, '_>) {
    let mut rejects = Vec::new();
    while !w.shared.should_stop() && !w.downstream_satisfied() {
        let next = w.timed(|| source.next_batch(&mut rejects));
        let read = next
            .as_ref()
            .map_or(0, |b| b.as_ref().map_or(0, Batch::rows_counted))
            + rejects.len() as u64;
        w.summary.rows_in += read;
        w.shared
            .progress
            .rows_read
            .fetch_add(read, Ordering::SeqCst);
        if !w.take_rejects(&mut rejects) {
            return;
        }
        match next {
            Ok(Some(batch)) => {
                w.summary.batches_in += 1;
                if batch.rows_counted() > 0 && !w.send_all(batch, outs) {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => return w.shared.fail(e),
        }
    }
}

/// One finished piece of deferred source work: its sequence number, the batch, its rejects, and
/// the time the worker spent on it.
type Finished = (u64, Result<Batch, RunError>, Vec<RowError>, Duration);

/// The source thread does the sequential part and keeps up to `window` pieces finishing on the
/// workers; finished pieces are emitted strictly in sequence, so order, line numbers and the first
/// reject under fail-fast are exactly those of a one-thread run.
fn drive_deferring_source(source: &mut dyn DeferringSource, outs: &[Out], w: &mut Worker<'_, '_>) {
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Finished>();
    let mut waiting: std::collections::BTreeMap<u64, Finished> = Default::default();
    let (mut next_seq, mut emit_seq, mut exhausted) = (0u64, 0u64, false);
    // A read error comes after every piece already handed off: those are emitted (and their bad
    // rows judged) first, as a one-thread run would.
    let mut read_error = None;
    loop {
        while !exhausted && next_seq - emit_seq < w.shared.window as u64 && !w.shared.should_stop()
        {
            if w.downstream_satisfied() {
                exhausted = true;
                break;
            }
            match w.timed(|| source.next_pending()) {
                Ok(Some(pending)) => {
                    spawn_finish(pending, next_seq, done_tx.clone(), w.shared.pool.as_ref());
                    next_seq += 1;
                }
                Ok(None) => exhausted = true,
                Err(e) => {
                    read_error = Some(e);
                    exhausted = true;
                }
            }
        }
        if emit_seq == next_seq || w.shared.should_stop() {
            if let Some(e) = read_error {
                w.shared.fail(e);
            }
            return;
        }
        let Ok(done) = done_rx.recv() else { return };
        if done.0 < emit_seq {
            continue; // handed off before a redo: dropped
        }
        waiting.insert(done.0, done);
        while let Some((_, result, mut rejects, busy)) = waiting.remove(&emit_seq) {
            w.busy += busy;
            if result.is_ok() && w.timed(|| source.settle(&mut rejects)) == Settle::Redo {
                // Every piece handed off from here on is dropped, whether finished or not.
                waiting.clear();
                emit_seq = next_seq;
                exhausted = read_error.is_some();
                break;
            }
            emit_seq += 1;
            let read = result.as_ref().map_or(0, Batch::rows_counted) + rejects.len() as u64;
            w.summary.rows_in += read;
            w.shared
                .progress
                .rows_read
                .fetch_add(read, Ordering::SeqCst);
            if !w.take_rejects(&mut rejects) {
                return;
            }
            match result {
                Ok(batch) => {
                    w.summary.batches_in += 1;
                    if batch.rows_counted() > 0 && !w.send_all(batch, outs) {
                        return;
                    }
                }
                Err(e) => return w.shared.fail(e),
            }
        }
    }
}

fn spawn_finish(
    pending: Box<dyn crate::component::Pending>,
    seq: u64,
    done: Sender<Finished>,
    pool: Option<&rayon::ThreadPool>,
) {
    let job = move || {
        let started = Instant::now();
        let mut rejects = Vec::new();
        // A panic on a pool thread would abort the process: make it this piece's error instead.
        let result = catch_unwind(AssertUnwindSafe(|| pending.finish(&mut rejects)))
            .unwrap_or_else(|panic| {
                Err(RunError::Internal(format!(
                    "decoding panicked: {}",
                    panic_message(&*panic)
                )))
            });
        // The receiver is gone only when the run already stopped.
        let _ = done.send((seq, result, rejects, started.elapsed()));
    };
    match pool {
        Some(pool) => pool.spawn(job),
        None => rayon::spawn(job),
    }
}

/// The receiving ends of a node's input connections, read in arrival order.
///
/// Every batch comes out conformed to the node's planned input schema ([`Batch::conform`]), so
/// no transform or sink has to reconcile schemas itself.
struct Inputs<'s, 'a> {
    live: Vec<(usize, Receiver<Batch>)>,
    schema: Option<SchemaRef>,
    node: String,
    shared: &'s Shared<'a>,
}

impl<'s, 'a> Inputs<'s, 'a> {
    fn new(
        live: Vec<(usize, Receiver<Batch>)>,
        schema: Option<SchemaRef>,
        node: &str,
        shared: &'s Shared<'a>,
    ) -> Self {
        Self {
            live,
            schema,
            node: node.to_string(),
            shared,
        }
    }

    /// Count the batch as received on input `i` and conform it; `None` (the run failed) if it
    /// does not fit the planned schema, which is a bug in the node that sent it.
    fn accept(&self, i: usize, batch: Batch) -> Option<Batch> {
        let edge = self.live[i].0;
        self.shared.edge_received[edge].fetch_add(batch.rows_counted(), Ordering::SeqCst);
        if let Some(g) = self.shared.channel(edge) {
            g.queued.store(self.live[i].1.len(), Ordering::Relaxed);
        }
        let Some(schema) = &self.schema else {
            return Some(batch);
        };
        match batch.conform(schema) {
            Ok(batch) => Some(batch),
            Err(e) => {
                self.shared.fail(RunError::Internal(format!(
                    "node `{}` received a batch that does not fit its planned input: {e}",
                    self.node
                )));
                None
            }
        }
    }

    /// The next batch from any input; `None` once every input has ended.
    fn recv(&mut self) -> Option<Batch> {
        while !self.live.is_empty() {
            let (i, got) = if self.live.len() == 1 {
                (0, self.live[0].1.recv())
            } else {
                let mut select = Select::new();
                for (_, rx) in &self.live {
                    select.recv(rx);
                }
                let op = select.select();
                let i = op.index();
                (i, op.recv(&self.live[i].1))
            };
            match got {
                Ok(b) => return self.accept(i, b),
                Err(_) => {
                    self.live.remove(i);
                }
            }
        }
        None
    }

    /// A batch that is already waiting, without blocking.
    fn try_recv(&mut self) -> Option<Batch> {
        let mut i = 0;
        while i < self.live.len() {
            match self.live[i].1.try_recv() {
                Ok(b) => return self.accept(i, b),
                Err(TryRecvError::Empty) => i += 1,
                Err(TryRecvError::Disconnected) => {
                    self.live.remove(i);
                }
            }
        }
        None
    }
}

fn drive_transform(
    t: &dyn Transform,
    inputs: &mut Inputs<'_, '_>,
    outs: &[Out],
    w: &mut Worker<'_, '_>,
) {
    while let Some(mut batch) = inputs.recv() {
        if w.shared.should_stop() {
            return;
        }
        w.count_in(&mut batch);
        let rows = batch.num_rows();
        let mut rejects = Vec::new();
        let result = w.timed(|| t.apply_routed(batch, &mut rejects));
        if !w.emit_transformed(rows, result, rejects, outs) {
            return;
        }
    }
}

/// Up to `window` waiting batches are transformed at once on the worker pool, then emitted in the
/// order they arrived.
/// Feed a stateful transform every batch of its input ports, each port to its end, before its
/// main input. False if the run must stop.
fn drive_sides(
    t: &mut dyn StatefulTransform,
    sides: &mut [Inputs<'_, '_>],
    w: &mut Worker<'_, '_>,
) -> bool {
    for (port, side) in sides.iter_mut().enumerate() {
        while let Some(batch) = side.recv() {
            if w.shared.should_stop() {
                return false;
            }
            w.summary.rows_reference += batch.rows_counted();
            if let Err(e) = w.on_pool(|| t.push_side(port, batch)) {
                w.shared.fail(e);
                return false;
            }
        }
    }
    !w.shared.should_stop()
}

/// Feed a stateful transform every batch in arrival order, then finish it. Its calls run on the
/// pool, so a sort's rayon work uses the run's threads.
fn drive_stateful(
    t: &mut dyn StatefulTransform,
    inputs: &mut Inputs<'_, '_>,
    outs: &[Out],
    w: &mut Worker<'_, '_>,
) {
    let mut satisfied = false;
    while let Some(mut batch) = inputs.recv() {
        if w.shared.should_stop() {
            return;
        }
        let prefiltered = batch.prefiltered;
        w.count_in(&mut batch);
        if t.prefiltered_are_duplicates() {
            w.summary.rows_filtered -= prefiltered;
            w.summary.rows_duplicate += prefiltered;
        }
        if satisfied {
            // Rows already on the way when it had enough: drained so that no producer waits.
            w.summary.rows_filtered += batch.num_rows() as u64;
            continue;
        }
        let mut out = Output::default();
        let result = w.on_pool(|| t.push(batch, &mut out));
        if !w.emit_stateful(result, out, outs) {
            return;
        }
        if t.satisfied() {
            satisfied = true;
            w.shared.satisfied[w.index].store(true, Ordering::SeqCst);
        }
    }
    loop {
        if w.shared.should_stop() {
            return;
        }
        let mut out = Output::default();
        let mut more = false;
        let result = w.on_pool(|| t.finish(&mut out).map(|m| more = m));
        if !w.emit_stateful(result, out, outs) || !more {
            return;
        }
    }
}

fn drive_parallel(
    t: &dyn Transform,
    inputs: &mut Inputs<'_, '_>,
    outs: &[Out],
    w: &mut Worker<'_, '_>,
) {
    while let Some(first) = inputs.recv() {
        if w.shared.should_stop() {
            return;
        }
        let window = w.take_window(first, inputs);
        let sizes: Vec<usize> = window.iter().map(Batch::num_rows).collect();
        let results: Vec<(Result<Routed, RunError>, Vec<RowError>)> = w.on_pool(|| {
            window
                .into_par_iter()
                .map(|b| {
                    let mut rejects = Vec::new();
                    let result = t.apply_routed(b, &mut rejects);
                    (result, rejects)
                })
                .collect()
        });
        for (rows, (result, rejects)) in sizes.into_iter().zip(results) {
            if !w.emit_transformed(rows, result, rejects, outs) {
                return;
            }
        }
    }
}

/// The sink's mode is matched once, before its loop, so each loop calls only what its mode has.
fn drive_sink(
    sink: BuiltSink,
    inputs: &mut Inputs<'_, '_>,
    w: &mut Worker<'_, '_>,
) -> Option<(Box<dyn SinkCommon>, u64)> {
    match sink {
        BuiltSink::Rows(mut sink) => {
            while let Some(mut batch) = inputs.recv() {
                if w.shared.should_stop() {
                    return None;
                }
                w.count_in(&mut batch);
                // On the pool, so that a sink's own parallel work shares its threads.
                if let Err(e) = w.on_pool(|| sink.write(&batch)) {
                    w.shared.fail(e);
                    return None;
                }
                let rows = batch.num_rows() as u64;
                w.shared
                    .progress
                    .rows_written
                    .fetch_add(rows, Ordering::Relaxed);
            }
            finish_sink(sink, w)
        }
        BuiltSink::Encoded { mut sink, encoder } => {
            while let Some(first) = inputs.recv() {
                if w.shared.should_stop() {
                    return None;
                }
                if let Err(e) = encode_window(first, encoder.as_ref(), sink.as_mut(), inputs, w) {
                    w.shared.fail(e);
                    return None;
                }
            }
            finish_sink(sink, w)
        }
    }
}

/// Finish a sink whose inputs have all ended, unless the run is failing.
fn finish_sink(
    mut sink: Box<dyn SinkCommon>,
    w: &mut Worker<'_, '_>,
) -> Option<(Box<dyn SinkCommon>, u64)> {
    // Inputs also end when an upstream node fails; never finish a sink on a failing run.
    if w.shared.should_stop() {
        return None;
    }
    match w.on_pool(|| sink.finish()) {
        Ok(written) => {
            w.summary.rows_out = written;
            w.summary.warnings = sink.warnings();
            Some((sink, written))
        }
        Err(e) => {
            w.shared.fail(e);
            None
        }
    }
}

/// Encode the batches already waiting (up to the window) in parallel, then hand the bytes to the
/// sink in arrival order. Encoding is the costliest step per byte of a wide CSV output.
fn encode_window(
    first: Batch,
    encoder: &dyn Encode,
    sink: &mut dyn EncodedSink,
    inputs: &mut Inputs<'_, '_>,
    w: &mut Worker<'_, '_>,
) -> Result<(), RunError> {
    let window = w.take_window(first, inputs);
    let encoded: Vec<Result<(u64, Vec<u8>), RunError>> = w.on_pool(|| {
        window
            .par_iter()
            .map(|b| {
                let mut out = Vec::with_capacity(b.data.get_array_memory_size());
                encoder
                    .encode(&b.data, &mut out)
                    .map(|()| (b.num_rows() as u64, out))
            })
            .collect()
    });
    for e in encoded {
        let (rows, bytes) = e?;
        w.timed(|| sink.write_encoded(rows, &bytes))?;
        w.shared
            .progress
            .rows_written
            .fetch_add(rows, Ordering::Relaxed);
    }
    Ok(())
}

/// Write every reject as it arrives; finish only if the run succeeded.
pub(super) fn drive_dead_letter(
    sink: Option<Box<dyn Sink>>,
    rx: Receiver<Vec<RowError>>,
    shared: &Shared<'_>,
) -> Option<(Box<dyn SinkCommon>, u64)> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Some(mut sink) = sink else {
            // No node skips rows, so nothing can arrive; drain in case of a bug rather than block.
            for batch in rx {
                if !batch.is_empty() {
                    shared.fail(RunError::Internal(
                        "rejects arrived but no dead-letter file is set".into(),
                    ));
                }
            }
            return None;
        };
        for rejects in rx {
            let lines = UInt64Array::from(
                rejects
                    .iter()
                    .map(|r| r.line.unwrap_or(0))
                    .collect::<Vec<_>>(),
            );
            let written = reject::to_batch(&rejects)
                .map_err(|e| RunError::Internal(format!("building the reject batch: {e}")))
                .and_then(|data| sink.write(&Batch::new(data, None, lines)));
            if let Err(e) = written {
                shared.fail(e);
                return None;
            }
        }
        if shared.should_stop() {
            return None;
        }
        match sink.finish() {
            Ok(n) => Some((sink as Box<dyn SinkCommon>, n)),
            Err(e) => {
                shared.fail(e);
                None
            }
        }
    }));
    outcome.unwrap_or_else(|panic| {
        shared.fail(RunError::Internal(format!(
            "the dead-letter writer panicked: {}",
            panic_message(&*panic)
        )));
        None
    })
}

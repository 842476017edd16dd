//! What a run on DataFusion shares between its operators: each node's counters ([`Node`]) and the
//! run's own state ([`Run`]): the error policy, the dead-letter sink, the first failure, Ctrl-C.
//! The same rules as the local engine's executor (`engine/src/exec/`).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use flowengine_engine::component::{Routed, Sink};
use flowengine_engine::error::{RowError, RunError};
use flowengine_engine::metrics::{NodeSummary, PortRows};
use flowengine_engine::plan::{Edge, NodeKind, Plan, PlanNode};
use flowengine_engine::reject::{self, ErrorPolicy, MaxErrors};
use flowengine_engine::Batch;

/// One node's counters, filled by its operator.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) type_name: &'static str,
    pub(crate) role: &'static str,
    pub(crate) policy: ErrorPolicy,
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    rows_rejected: AtomicU64,
    batches_in: AtomicU64,
    batches_out: AtomicU64,
    bytes_out: AtomicU64,
    busy_ns: AtomicU64,
    /// Rows sent on each output, the default first, for a node with named ports.
    ports: Vec<(String, AtomicU64)>,
    rows_filtered: AtomicU64,
    rows_duplicate: AtomicU64,
    rows_aggregated: AtomicU64,
    rows_reference: AtomicU64,
    aggregates: AtomicBool,
    /// What the plugin said about how it ran.
    pub(crate) notes: Mutex<Vec<String>>,
    rejected_by_type: Mutex<BTreeMap<String, u64>>,
    /// What a sink had to write another way, or cleaned up (`SinkCommon::warnings`).
    pub(crate) warnings: Mutex<Vec<String>>,
}

impl Node {
    /// The counters of `node`, all zero.
    pub(crate) fn of(node: &PlanNode) -> Self {
        let ports = if node.ports.is_empty() {
            Vec::new()
        } else {
            let names = std::iter::once("default").chain(node.ports.iter().map(String::as_str));
            names.map(|p| (p.to_string(), AtomicU64::new(0))).collect()
        };
        Node {
            name: node.name.clone(),
            type_name: node.type_name,
            role: node.kind.role(),
            policy: node.policy,
            ports,
            rows_filtered: AtomicU64::new(0),
            rows_duplicate: AtomicU64::new(0),
            rows_aggregated: AtomicU64::new(0),
            rows_reference: AtomicU64::new(0),
            aggregates: AtomicBool::new(false),
            notes: Mutex::new(Vec::new()),
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            rejected_by_type: Mutex::new(BTreeMap::new()),
            warnings: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn received(&self, rows: u64) {
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Rows received on a named input port (a `Lookup`'s reference rows).
    pub(crate) fn received_reference(&self, rows: u64) {
        self.rows_reference.fetch_add(rows, Ordering::Relaxed);
    }

    /// Rows a transform left out on purpose, as duplicates, or folded into groups.
    pub(crate) fn left_out(&self, filtered: u64, duplicates: u64, aggregated: u64) {
        self.rows_filtered.fetch_add(filtered, Ordering::Relaxed);
        self.rows_duplicate.fetch_add(duplicates, Ordering::Relaxed);
        self.rows_aggregated
            .fetch_add(aggregated, Ordering::Relaxed);
    }

    /// Its output rows are groups of its input rows (`Aggregate`).
    pub(crate) fn set_aggregates(&self, aggregates: bool) {
        self.aggregates.store(aggregates, Ordering::Relaxed);
    }

    /// Rows a source read but made no batch of (all rejected at the end of its input).
    pub(crate) fn read_without_batch(&self, rows: u64) {
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, batch: &Batch) {
        self.rows_out
            .fetch_add(batch.rows_counted(), Ordering::Relaxed);
        self.batches_out.fetch_add(1, Ordering::Relaxed);
        let bytes = batch.data.get_array_memory_size() as u64;
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A routing transform's result sent on, counted as the local engine counts it: a row sent
    /// to several outputs once in `rows_out`, and on each output in its port's rows.
    pub(crate) fn sent_routed(&self, routed: &Routed) {
        self.rows_out
            .fetch_add(routed.emitted as u64, Ordering::Relaxed);
        self.batches_out.fetch_add(1, Ordering::Relaxed);
        let outputs = std::iter::once(&routed.main).chain(&routed.ports);
        for (k, batch) in outputs.enumerate() {
            let bytes = batch.data.get_array_memory_size() as u64;
            self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            if let Some((_, rows)) = self.ports.get(k) {
                rows.fetch_add(batch.rows_counted(), Ordering::Relaxed);
            }
        }
    }

    /// Whether it routes rows to named ports.
    pub(crate) fn has_ports(&self) -> bool {
        !self.ports.is_empty()
    }

    /// Rows sent on output `port` (0 the default): what each of its connections must receive.
    pub(crate) fn port_rows(&self, port: usize) -> u64 {
        match self.ports.get(port) {
            Some((_, rows)) => rows.load(Ordering::SeqCst),
            None => self.rows_out.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn busy(&self, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counters as the local engine reports them.
    pub(crate) fn summary(&self) -> NodeSummary {
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        NodeSummary {
            name: self.name.clone(),
            role: self.role,
            type_name: self.type_name,
            rows_in: load(&self.rows_in),
            rows_out: load(&self.rows_out),
            rows_filtered: load(&self.rows_filtered),
            rows_duplicate: load(&self.rows_duplicate),
            rows_aggregated: load(&self.rows_aggregated),
            rows_reference: load(&self.rows_reference),
            aggregates: self.aggregates.load(Ordering::SeqCst),
            rows_rejected: load(&self.rows_rejected),
            rejected_by_type: self
                .rejected_by_type
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            batches_in: load(&self.batches_in),
            batches_out: load(&self.batches_out),
            bytes_out: load(&self.bytes_out),
            busy_ms: load(&self.busy_ns) as f64 / 1e6,
            warnings: self
                .warnings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ports: (self.ports.iter())
                .map(|(name, rows)| PortRows {
                    name: name.clone(),
                    rows: load(rows),
                })
                .collect(),
            notes: self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// The run's shared state.
pub(crate) struct Run {
    interrupt: &'static AtomicBool,
    /// `Settings.Timeout`, and when it runs out (set as rows start to move).
    timeout: Option<Duration>,
    deadline: OnceLock<Instant>,
    failure: Mutex<Option<RunError>>,
    failed: AtomicBool,
    rows_read: AtomicU64,
    rows_rejected: AtomicU64,
    first_reject: Mutex<Option<RowError>>,
    max_errors: MaxErrors,
    /// The dead-letter sink and the rows written to it, when a node skips rows.
    pub(crate) dead_letter: Mutex<Option<(Box<dyn Sink>, u64)>>,
    pub(crate) dead_letter_path: Option<String>,
    /// Pieces or batches one operator keeps on the pool at once.
    pub(crate) window: usize,
    /// The worker pool for source pieces.
    pub(crate) pool: rayon::ThreadPool,
    /// Which nodes need no more rows (a `Limit` that has them), and the graph to tell whether
    /// a source may stop reading.
    satisfied: Vec<AtomicBool>,
    outputs: Vec<(Vec<usize>, bool)>,
    edges: Vec<Edge>,
}

impl Run {
    pub(crate) fn new(
        plan: &Plan,
        interrupt: &'static AtomicBool,
        dead_letter: Option<(Box<dyn Sink>, String)>,
        pool: rayon::ThreadPool,
    ) -> Self {
        let (sink, path) = match dead_letter {
            Some((sink, path)) => (Some((sink, 0)), Some(path)),
            None => (None, None),
        };
        Run {
            interrupt,
            timeout: plan.settings.timeout,
            deadline: OnceLock::new(),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            rows_read: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            first_reject: Mutex::new(None),
            max_errors: plan.settings.max_errors,
            dead_letter: Mutex::new(sink),
            dead_letter_path: path,
            window: plan.budget().window,
            pool,
            satisfied: plan.nodes.iter().map(|_| AtomicBool::new(false)).collect(),
            outputs: (plan.nodes.iter())
                .map(|n| {
                    let transform = matches!(n.kind, NodeKind::Transform(_));
                    (n.outputs.clone(), transform)
                })
                .collect(),
            edges: plan.edges.clone(),
        }
    }

    /// Runs `work` on the run's worker pool and waits for it without holding a runtime thread:
    /// the same fixed threads as the source's pieces (a script's engine lives per thread, so a
    /// pool that came and went would build engines again and again). A panic is an error.
    pub(crate) async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, RunError> + Send + 'static,
    ) -> Result<T, RunError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let done = catch_unwind(AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(RunError::Internal("work on the pool panicked".into())));
            let _ = tx.send(done);
        });
        rx.await
            .unwrap_or_else(|_| Err(RunError::Internal("work on the pool was dropped".into())))
    }

    /// Node `node` needs no more rows.
    pub(crate) fn satisfy(&self, node: usize) {
        if let Some(flag) = self.satisfied.get(node) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// True when every path out of `node` reaches a node that needs no more rows before any
    /// node that would still use them (the local engine's rule).
    pub(crate) fn downstream_satisfied(&self, node: usize) -> bool {
        let Some((outs, _)) = self.outputs.get(node) else {
            return false;
        };
        !outs.is_empty()
            && outs.iter().all(|&e| {
                let to = self.edges[e].to;
                self.satisfied[to].load(Ordering::SeqCst)
                    || (self.outputs[to].1 && self.downstream_satisfied(to))
            })
    }

    /// Starts the clock of `Settings.Timeout`.
    pub(crate) fn start(&self) {
        if let Some(limit) = self.timeout {
            let _ = self.deadline.set(Instant::now() + limit);
        }
    }

    /// Records the run's first failure; what DataFusion carries is only the signal to stop
    /// (the run reports the error it kept).
    pub(crate) fn fail(&self, e: RunError) -> DataFusionError {
        let message = e.to_string();
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            *failure = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
        DataFusionError::Execution(message)
    }

    /// The first failure, if any (taken: call once, at the end).
    pub(crate) fn failure(&self) -> Option<RunError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Runs `work` (a node's whole part of the run, on a thread of its own); a panic in it is
    /// the run's failure, as on the local engine, not a stream that ends early.
    pub(crate) fn guarded(
        &self,
        node: &str,
        work: impl FnOnce() -> Result<(), RunError>,
    ) -> Result<(), DataFusionError> {
        catch_unwind(AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err(RunError::Internal(format!("node `{node}` panicked"))))
            .map_err(|e| self.fail(e))
    }

    /// `Err` if the run failed or was interrupted (the last check before the commit; a run
    /// that ran past its `Timeout` only at its very end still commits, as on the local engine).
    pub(crate) fn check_not_stopped(&self) -> Result<(), RunError> {
        if self.interrupt.load(Ordering::SeqCst) {
            return Err(RunError::Cancelled);
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(RunError::Internal("the run failed".into()));
        }
        Ok(())
    }

    /// `Err` once the run is failing or was interrupted.
    pub(crate) fn check(&self) -> Result<(), RunError> {
        if self.interrupt.load(Ordering::SeqCst) {
            return Err(RunError::Cancelled);
        }
        if let (Some(limit), Some(at)) = (self.timeout, self.deadline.get()) {
            if Instant::now() > *at {
                return Err(RunError::TimedOut(limit));
            }
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(RunError::Internal(
                "stopped: another operator failed".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn read(&self, rows: u64) {
        self.rows_read.fetch_add(rows, Ordering::SeqCst);
    }

    pub(crate) fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::SeqCst)
    }

    pub(crate) fn rows_rejected(&self) -> u64 {
        self.rows_rejected.load(Ordering::SeqCst)
    }

    /// Rows rejected elsewhere (by the tasks of a split run, `first` the first of them), for
    /// `MaxErrors` on the totals.
    pub(crate) fn rejected_elsewhere(&self, rows: u64, first: Option<RowError>) {
        self.rows_rejected.fetch_add(rows, Ordering::SeqCst);
        *self.first_reject.lock().unwrap_or_else(|p| p.into_inner()) = first;
    }

    /// The first row rejected, if any was.
    pub(crate) fn first_reject(&self) -> Option<RowError> {
        self.first_reject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A node's rejects under its policy: under fail-fast the first is the run's error; under
    /// skip-row they are counted, checked against `MaxErrors` and written to the dead-letter
    /// sink.
    pub(crate) fn take_rejects(
        &self,
        node: &Node,
        rejects: &mut Vec<RowError>,
    ) -> Result<(), RunError> {
        if rejects.is_empty() {
            return Ok(());
        }
        if node.policy == ErrorPolicy::FailFast {
            let first = rejects.swap_remove(0);
            return Err(RunError::Row(Box::new(first)));
        }
        let n = rejects.len() as u64;
        node.rows_rejected.fetch_add(n, Ordering::SeqCst);
        {
            let mut by_type = node
                .rejected_by_type
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for r in rejects.iter() {
                *by_type.entry(r.kind.as_str().to_string()).or_default() += 1;
            }
        }
        {
            let mut first = self.first_reject.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = rejects.first().cloned();
            }
        }
        let total = self.rows_rejected.fetch_add(n, Ordering::SeqCst) + n;
        if self.max_errors.exceeded(total, self.rows_read(), false) {
            return Err(self.too_many_rejects());
        }
        let batch = reject::to_batch(rejects)
            .map_err(|e| RunError::Internal(format!("rejects as a batch: {e}")))?;
        let lines = arrow_array::UInt64Array::from(vec![None::<u64>; batch.num_rows()]);
        let mut dead_letter = self.dead_letter.lock().unwrap_or_else(|p| p.into_inner());
        let Some((sink, written)) = dead_letter.as_mut() else {
            return Err(RunError::Internal(
                "a skip-row node without a dead-letter file".into(),
            ));
        };
        sink.write(&Batch::new(batch, None, lines))?;
        *written += n;
        rejects.clear();
        Ok(())
    }

    /// `MaxErrors` on the final totals.
    pub(crate) fn check_max_errors(&self) -> Result<(), RunError> {
        if self
            .max_errors
            .exceeded(self.rows_rejected(), self.rows_read(), true)
        {
            return Err(self.too_many_rejects());
        }
        Ok(())
    }

    fn too_many_rejects(&self) -> RunError {
        let first = self
            .first_reject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        RunError::TooManyRejects {
            rejected: self.rows_rejected(),
            read: self.rows_read(),
            dead_letter: self
                .dead_letter_path
                .clone()
                .unwrap_or_else(|| "the dead-letter file".into()),
            cap: self.max_errors.to_string(),
            first: first.map(Box::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use flowengine_engine::load::file::LoadOptions;
    use flowengine_engine::plan::plan_text;

    use super::*;

    #[test]
    fn a_panic_in_a_node_fails_the_run_and_stops_the_commit() {
        let yaml = "
Pipeline:
  Name: t
  Plugins:
    - { Name: read, Type: DelimitedSource, Config: { FilePath: in.csv, OutputSchema: { Columns: [{ Name: id, Type: int64 }] } } }
    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections: [{ From: read, To: write }]
";
        let registry = flowengine_plugins::builtin_registry();
        let opts = LoadOptions::default();
        let plan = plan_text(yaml, Path::new("/tmp/t.yaml"), &opts, &registry).unwrap();
        static NEVER: AtomicBool = AtomicBool::new(false);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        let run = Run::new(&plan, &NEVER, None, pool.unwrap());
        assert!(run.check_not_stopped().is_ok());
        let guarded = run.guarded("read", || panic!("a deliberate panic"));
        assert!(guarded.is_err());
        assert!(run.check_not_stopped().is_err(), "the run goes on");
        let failure = run.failure().expect("the run's failure").to_string();
        assert!(failure.contains("node `read` panicked"), "{failure}");
    }
}

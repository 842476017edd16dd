//! What a run on DataFusion shares between its operators: each node's counters ([`Node`]) and the
//! run's own state ([`Run`]): the error policy, the dead-letter sink, the first failure, Ctrl-C.
//! The same rules as the local engine's executor (`engine/src/exec/`), kept for one chain.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use flowengine_engine::component::Sink;
use flowengine_engine::error::{RowError, RunError};
use flowengine_engine::metrics::NodeSummary;
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
    rejected_by_type: Mutex<BTreeMap<String, u64>>,
    /// What a sink had to write another way, or cleaned up (`SinkCommon::warnings`).
    pub(crate) warnings: Mutex<Vec<String>>,
}

impl Node {
    pub(crate) fn new(
        name: &str,
        type_name: &'static str,
        role: &'static str,
        policy: ErrorPolicy,
    ) -> Self {
        Node {
            name: name.to_string(),
            type_name,
            role,
            policy,
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

    pub(crate) fn busy(&self, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counters as the local engine reports them; filtered is what is neither out nor
    /// rejected.
    pub(crate) fn summary(&self) -> NodeSummary {
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (rows_in, rows_out, rows_rejected) = (
            load(&self.rows_in),
            load(&self.rows_out),
            load(&self.rows_rejected),
        );
        NodeSummary {
            name: self.name.clone(),
            role: self.role,
            type_name: self.type_name,
            rows_in,
            rows_out,
            rows_filtered: if self.role == "transform" {
                rows_in.saturating_sub(rows_out + rows_rejected)
            } else {
                0
            },
            rows_rejected,
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
            ..NodeSummary::default()
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
}

impl Run {
    pub(crate) fn new(
        interrupt: &'static AtomicBool,
        timeout: Option<Duration>,
        max_errors: MaxErrors,
        dead_letter: Option<(Box<dyn Sink>, String)>,
        window: usize,
        pool: rayon::ThreadPool,
    ) -> Self {
        let (sink, path) = match dead_letter {
            Some((sink, path)) => (Some((sink, 0)), Some(path)),
            None => (None, None),
        };
        Run {
            interrupt,
            timeout,
            deadline: OnceLock::new(),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            rows_read: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            first_reject: Mutex::new(None),
            max_errors,
            dead_letter: Mutex::new(sink),
            dead_letter_path: path,
            window,
            pool,
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

//! The running `JavaScriptTransform`: a batch in; the rows the script kept, routed to the default
//! output and the ports; a reject per row that failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;
use arrow_select::take::take;
use flowengine_engine::component::{Routed, Transform};
use flowengine_engine::error::{ColumnRef, RowError, RowErrorKind, RunError, Stage};
use flowengine_engine::Batch;

use super::compiled;
use super::config::JsConfig;
use super::engine::{self, Engine, Stop};
use super::shape::{BatchOut, RowFault, Shape, Source};
use super::values::Column;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why a batch stopped before its end.
enum BatchStop {
    /// Past `BatchTimeoutMs`, on this row.
    Deadline(usize),
    /// A row ran past `TimeoutPerRow`, or boa panicked on it, and it was rejected; the batch goes
    /// on from `next` with a fresh engine, which gets the batch so far.
    Restart {
        next: usize,
        batch: Box<(Vec<Column>, BatchOut)>,
    },
    /// The engine broke.
    Fatal(String),
}

/// A built `JavaScriptTransform`.
#[derive(Debug)]
pub struct JsTransform {
    id: u64,
    config: JsConfig,
    shape: Arc<Shape>,
    /// The script compiled, or why it is not.
    compiled: Result<compiled::Plan, String>,
    /// Batches run compiled, and on boa.
    batches: [AtomicU64; 2],
    /// Why the first batch that could not run compiled ran on boa.
    fallback: Mutex<Option<String>>,
}

/// `config`'s script compiled for `shape`, or why it runs on boa.
pub(super) fn compiled_or_why(config: &JsConfig, shape: &Shape) -> Result<compiled::Plan, String> {
    if !config.compile {
        return Err("`Compile: false`".into());
    }
    compiled::compile(&config.script, shape).map_err(|r| {
        format!(
            "{} at {}:{}:{}",
            r.what, config.script_name, r.line, r.column
        )
    })
}

impl JsTransform {
    /// Ready to run `config` on batches of `input`.
    pub fn new(config: JsConfig, input: SchemaRef, output: SchemaRef) -> Self {
        let shape = Arc::new(Shape::new(&config, input, output));
        let compiled = compiled_or_why(&config, &shape);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            shape,
            compiled,
            batches: Default::default(),
            fallback: Mutex::new(None),
        }
    }

    fn node_error(&self, message: String) -> RunError {
        RunError::Node {
            node: self.config.node.clone(),
            message,
        }
    }

    /// Run the script over every row of `batch`, on this thread's engine.
    fn run_script(&self, batch: &Batch) -> Result<BatchOut, RunError> {
        let rows = batch.num_rows();
        let columns: Vec<Column> = batch.data.columns().iter().map(Column::new).collect();
        let out = BatchOut::new(&self.shape, batch.origin.lines.clone(), rows);
        let limits = self.config.limits;
        // boa counts loop iterations per call: the driver's own loop over rows must fit.
        let slice = limits.loop_iterations.clamp(1, 1 << 20) as usize;
        let make = || Engine::new(&self.config, Some(Arc::clone(&self.shape)));
        let deadline = Instant::now() + limits.batch_timeout;
        let mut from = 0;
        let mut batch_so_far = (columns, out);
        let ran = loop {
            let ran = engine::with_engine(self.id, make, |engine| {
                let (columns, out) = batch_so_far;
                engine.state().begin_batch(columns, out);
                self.drive_rows(engine, from, rows, slice, deadline)
            });
            match ran {
                Ok(Err(BatchStop::Restart { next, batch })) => {
                    // The engine was stopped mid-instruction: it cannot be used again.
                    engine::discard_engine(self.id);
                    (from, batch_so_far) = (next, *batch);
                }
                ran => break ran,
            }
        };
        match ran {
            Err(e) => Err(self.node_error(e.to_string())),
            Ok(Ok(out)) => Ok(out),
            Ok(Err(BatchStop::Restart { .. })) => {
                Err(self.node_error("internal: a restart left the batch loop".into()))
            }
            Ok(Err(BatchStop::Fatal(message))) => {
                engine::discard_engine(self.id);
                Err(self.node_error(message))
            }
            Ok(Err(BatchStop::Deadline(row))) => {
                // The engine was stopped mid-instruction: it cannot be used again.
                engine::discard_engine(self.id);
                let line = batch.origin.line(row.min(rows.saturating_sub(1)));
                Err(RowError {
                    node: self.config.node.clone(),
                    stage: Stage::Script,
                    kind: RowErrorKind::ScriptLimit,
                    file: batch.origin.file.clone(),
                    line,
                    record: None,
                    byte_offset: None,
                    column: None,
                    value: None,
                    message: format!(
                        "the batch ran past `BatchTimeoutMs` ({} ms); the script was stopped on this row",
                        limits.batch_timeout.as_millis()
                    ),
                    hint: Some("look for a loop that never ends, or raise `BatchTimeoutMs`".into()),
                    raw: None,
                }
                .into())
            }
        }
    }

    /// Run rows `from..rows` of the batch the engine holds, in slices of `slice` rows.
    fn drive_rows(
        &self,
        engine: &mut Engine,
        mut from: usize,
        rows: usize,
        slice: usize,
        deadline: Instant,
    ) -> Result<BatchOut, BatchStop> {
        while from < rows {
            let to = rows.min(from + slice);
            engine.state().row = from;
            match engine.drive(from, to, deadline) {
                Ok(()) => from = to,
                Err(Stop::Row(problem)) => {
                    let mut state = engine.state();
                    let row = state.row.max(from);
                    state.row = row;
                    state.fail_row(problem);
                    from = row + 1;
                }
                Err(stop @ (Stop::RowDeadline | Stop::Panic(_))) => {
                    let mut state = engine.state();
                    let row = state.row.max(from);
                    state.row = row;
                    state.fail_row(self.restart_fault(stop));
                    return Err(BatchStop::Restart {
                        next: row + 1,
                        batch: Box::new(state.take_batch()),
                    });
                }
                Err(Stop::Deadline) => return Err(BatchStop::Deadline(engine.state().row)),
                Err(Stop::Fatal(message)) => return Err(BatchStop::Fatal(message)),
            }
        }
        Ok(std::mem::take(&mut engine.state().out))
    }

    /// Why a row stopped its engine: it ran past `TimeoutPerRow`, or boa panicked on it.
    fn restart_fault(&self, stop: Stop) -> RowFault {
        let fresh = "the next row starts on a fresh engine (script globals are set up again)";
        match stop {
            Stop::Panic(message) => RowFault::new(
                RowErrorKind::ScriptError,
                format!("the JavaScript engine (boa) failed on this row: {message}"),
            )
            .with_hint(format!(
                "a bug in boa, not in the script; {fresh}. The compiled path (see `validate --explain`) does not have it"
            )),
            _ => {
                let timeout = self.config.limits.row_timeout.unwrap_or_default();
                RowFault::new(
                    RowErrorKind::ScriptLimit,
                    format!("the row ran past `TimeoutPerRow` ({timeout:?}); the script was stopped"),
                )
                .with_hint(format!(
                    "look for a loop that never ends on this row's values, or raise `TimeoutPerRow`; {fresh}"
                ))
            }
        }
    }

    /// Run the compiled script over `batch`; `None` when the batch must run on boa.
    fn run_compiled(&self, batch: &Batch) -> Result<Option<BatchOut>, RunError> {
        let Ok(plan) = &self.compiled else {
            return Ok(None);
        };
        if let Some(why) = plan.needs_boa(batch, &self.shape) {
            return Ok(self.to_boa(why));
        }
        match plan.run(batch, &self.shape) {
            Ok(out) => {
                self.batches[0].fetch_add(1, Ordering::Relaxed);
                Ok(Some(out))
            }
            Err(e) => match compiled::eval::NeedsBoa::of(&e) {
                Some(why) => Ok(self.to_boa(why.to_string())),
                None => Err(self.node_error(format!("the compiled script failed: {e}"))),
            },
        }
    }

    /// Count a batch that runs on boa, and why the first did.
    fn to_boa(&self, why: String) -> Option<BatchOut> {
        self.batches[1].fetch_add(1, Ordering::Relaxed);
        let mut first = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(why);
        None
    }

    fn row_error(&self, batch: &Batch, row: usize, problems: Vec<RowFault>) -> RowError {
        let first = problems.first().cloned();
        let message = problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let kind = first.as_ref().map_or(RowErrorKind::ScriptError, |p| p.kind);
        let stage = if kind == RowErrorKind::Validation {
            Stage::Validate
        } else {
            Stage::Script
        };
        let field = problems.iter().find_map(|p| p.field.clone());
        RowError {
            node: self.config.node.clone(),
            stage,
            kind,
            file: batch.origin.file.clone(),
            line: batch.origin.line(row),
            record: None,
            byte_offset: None,
            column: field.map(|(name, index)| ColumnRef { name, index }),
            value: problems.iter().find_map(|p| p.value.clone()),
            message,
            hint: first.and_then(|p| p.hint),
            raw: None,
        }
    }

    /// The kept rows as a batch: inherited columns taken from the input, declared ones built.
    fn assemble(&self, batch: &Batch, out: &mut BatchOut) -> Result<Batch, RunError> {
        let arrow =
            |e: arrow_schema::ArrowError| self.node_error(format!("building the output: {e}"));
        let all = out.kept.len() == batch.num_rows();
        let kept = UInt32Array::from(std::mem::take(&mut out.kept));
        let mut built: Vec<Option<ArrayRef>> = if out.built.is_empty() {
            out.builders
                .iter_mut()
                .map(|b| b.finish().map(Some))
                .collect::<Result<_, _>>()
                .map_err(arrow)?
        } else {
            std::mem::take(&mut out.built)
                .into_iter()
                .map(Some)
                .collect()
        };
        let mut columns = Vec::with_capacity(self.shape.sources.len());
        for source in &self.shape.sources {
            columns.push(match *source {
                Source::Input(c) if all => Arc::clone(batch.data.column(c)),
                Source::Input(c) => take(batch.data.column(c), &kept, None).map_err(arrow)?,
                Source::Field(i) => built[i]
                    .take()
                    .ok_or_else(|| self.node_error("a field is used twice".into()))?,
            });
        }
        let data = RecordBatch::try_new(Arc::clone(&self.shape.output), columns).map_err(arrow)?;
        let lines = if all {
            batch.origin.lines.clone()
        } else {
            let taken = take(&batch.origin.lines, &kept, None).map_err(arrow)?;
            arrow_array::cast::AsArray::as_primitive::<arrow_array::types::UInt64Type>(&taken)
                .clone()
        };
        Ok(Batch::new(data, batch.origin.file.clone(), lines))
    }

    /// Split the kept rows over the outputs their route bits name.
    fn route(&self, emitted: Batch, routes: &[u64]) -> Result<Routed, RunError> {
        let count = emitted.num_rows();
        if routes.iter().all(|&r| r == 1) {
            return Ok(Routed::single(emitted));
        }
        let arrow = |e: arrow_schema::ArrowError| self.node_error(format!("routing rows: {e}"));
        let pick = |bit: u64| -> Result<Batch, RunError> {
            let mask = BooleanArray::from_iter(routes.iter().map(|r| Some(r & bit != 0)));
            emitted.filter(&mask).map_err(arrow)
        };
        let main = pick(1)?;
        let ports = (0..self.shape.ports.len())
            .map(|k| pick(1 << (k + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Routed {
            main,
            ports,
            emitted: count,
        })
    }
}

impl Transform for JsTransform {
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        if !self.shape.ports.is_empty() {
            return Err(RunError::Internal(
                "a routing transform must be driven through apply_routed".into(),
            ));
        }
        self.apply_routed(batch, rejects).map(|r| r.main)
    }

    fn notes(&self) -> Vec<String> {
        self.path_notes()
    }

    fn apply_routed(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Routed, RunError> {
        let mut out = match self.run_compiled(&batch)? {
            Some(out) => out,
            None => self.run_script(&batch)?,
        };
        for (row, problems) in std::mem::take(&mut out.rejects) {
            rejects.push(self.row_error(&batch, row, problems));
        }
        let routes = std::mem::take(&mut out.routes);
        let emitted = self.assemble(&batch, &mut out)?;
        self.route(emitted, &routes)
    }
}

impl JsTransform {
    /// Which path the batches took, for verbose output.
    fn path_notes(&self) -> Vec<String> {
        let compiled = self.batches[0].load(Ordering::Relaxed);
        let boa = self.batches[1].load(Ordering::Relaxed);
        match &self.compiled {
            Err(why) => vec![format!("the script ran on boa, row by row: {why}")],
            Ok(_) => {
                let mut note = format!("{compiled} batches ran compiled, {boa} on boa");
                if let Some(why) = self.fallback.lock().ok().and_then(|f| f.clone()) {
                    note.push_str(&format!(" (the first because of {why})"));
                }
                vec![note]
            }
        }
    }
}

impl Drop for JsTransform {
    fn drop(&mut self) {
        // Engines on pool threads stay until the process ends; the one on this thread (the node's
        // own, under `Parallel: false`) goes now.
        engine::discard_engine(self.id);
        self.shape.log.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::config::{FieldSpec, Limits};
    use crate::js::log::Level;
    use arrow_array::{Array, Int32Array, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use flowengine_engine::schema::ColumnType;

    fn config(script: &str, parallel: bool) -> JsConfig {
        JsConfig {
            node: "js".into(),
            script: script.into(),
            script_name: "js.Script".into(),
            fields: vec![FieldSpec {
                name: "seq".into(),
                ty: ColumnType::Int32,
                required: true,
            }],
            inherit: true,
            ports: Vec::new(),
            parallel,
            limits: Limits::default(),
            log_level: Level::Info,
            compile: true,
        }
    }

    fn batch(first_line: u64, rows: i32) -> Batch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let data = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from((0..rows).collect::<Vec<_>>()))],
        )
        .unwrap();
        let lines = UInt64Array::from((0..rows as u64).map(|i| first_line + i).collect::<Vec<_>>());
        Batch::new(data, Some("in.csv".into()), lines)
    }

    fn seqs(t: &JsTransform, b: Batch) -> Vec<i32> {
        let mut rejects = Vec::new();
        let out = t.apply_routed(b, &mut rejects).unwrap();
        assert!(rejects.is_empty(), "{rejects:?}");
        let col = out.main.data.column_by_name("seq").unwrap();
        let col = col.as_any().downcast_ref::<Int32Array>().unwrap();
        (0..col.len()).map(|i| col.value(i)).collect()
    }

    const COUNTER: &str =
        "var seen = 0; function process(c) { seen++; c.output.setField('seq', seen); return true; }";

    #[test]
    fn top_level_state_is_per_worker_thread() {
        let input = batch(2, 3).data.schema();
        let cfg = config(COUNTER, true);
        let output = cfg.schema_for(&input).unwrap();
        let t = Arc::new(JsTransform::new(cfg, input, output));
        assert_eq!(seqs(&t, batch(2, 3)), vec![1, 2, 3]);
        // Another thread has its own engine, so its own `seen`.
        let other = Arc::clone(&t);
        let on_other = std::thread::spawn(move || seqs(&other, batch(5, 2)))
            .join()
            .unwrap();
        assert_eq!(on_other, vec![1, 2]);
        // This thread's engine kept counting.
        assert_eq!(seqs(&t, batch(7, 2)), vec![4, 5]);
    }

    #[test]
    fn rejects_carry_the_source_line() {
        let script = "function process(c) { if (c.input.current().n == 1) throw new Error('bad'); c.output.setField('seq', 1); return true; }";
        let input = batch(10, 3).data.schema();
        let cfg = config(script, true);
        let output = cfg.schema_for(&input).unwrap();
        let t = JsTransform::new(cfg, input, output);
        let mut rejects = Vec::new();
        let out = t.apply_routed(batch(10, 3), &mut rejects).unwrap();
        assert_eq!(out.main.origin.lines.values().as_ref(), &[10, 12]);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].line, Some(11));
        assert!(
            rejects[0].message.contains("Error: bad"),
            "{}",
            rejects[0].message
        );
        assert!(
            rejects[0].message.contains("js.Script:1:"),
            "{}",
            rejects[0].message
        );
    }
}

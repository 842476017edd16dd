//! A sink as a DataFusion [`DataSink`] under a `DataSinkExec`: it pulls its input (its
//! connections merged, [`InputsExec`](crate::exec::InputsExec)) into the plugin's sink, encoding on the worker
//! pool a window at a time for an encoding sink, and writes in input order. It stages, and does
//! not commit: a run commits its sinks only once every one of them, the accounting check and the
//! dead-letter file have succeeded (`run.rs`), which one `write_all` cannot know.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_schema::SchemaRef;
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use flowengine_engine::component::{BuiltSink, SinkCommon};
use flowengine_engine::error::RunError;
use futures::StreamExt;

use crate::origin;
use crate::run::stopped;
use crate::state::{Node, Run};

/// A built sink, and what it has written once its input ended.
pub(crate) struct Sink {
    sink: Mutex<Option<BuiltSink>>,
    written: Mutex<Option<(Box<dyn SinkCommon>, u64)>>,
    /// Its rows, and the same with their origin columns.
    data: SchemaRef,
    schema: SchemaRef,
    node: Arc<Node>,
    run: Arc<Run>,
}

impl Sink {
    pub(crate) fn new(sink: BuiltSink, data: SchemaRef, node: Arc<Node>, run: Arc<Run>) -> Self {
        Sink {
            sink: Mutex::new(Some(sink)),
            written: Mutex::new(None),
            schema: origin::schema(&data),
            data,
            node,
            run,
        }
    }

    /// The staged sink and the rows it wrote, once `write_all` has succeeded (taken: call once).
    pub(crate) fn written(&self) -> Option<(Box<dyn SinkCommon>, u64)> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("node", &self.node.name)
            .finish()
    }
}

impl DisplayAs for Sink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowEngineSink: node={} type={}",
            self.node.name, self.node.type_name
        )
    }
}

#[async_trait::async_trait]
impl DataSink for Sink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _cx: &Arc<TaskContext>,
    ) -> Result<u64> {
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take();
        let sink = sink.ok_or_else(|| {
            let e = RunError::Internal(format!("sink `{}` written twice", self.node.name));
            self.run.fail(e)
        })?;
        let (sink, written) = pour(data, sink, &self.data, &self.node, &self.run)
            .await
            .map_err(|e| self.run.fail(e))?;
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some((sink, written));
        Ok(written)
    }
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
    // Its input may have ended because the run failed: then it must not report success.
    run.check()?;
    let written = run.pool.install(|| sink.finish())?;
    *node.warnings.lock().unwrap_or_else(|p| p.into_inner()) = sink.warnings();
    Ok((sink, written))
}

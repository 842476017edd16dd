//! What `flowengine preview` runs: the real pipeline on the first rows of its inputs, with every
//! node's output captured in memory and nothing written.
//!
//! [`Plan::preview`] changes the plan, not the executor: each source that feeds a main input is
//! limited to its first rows (a source feeding only a `Lookup`'s reference port is read whole, or
//! its matches would be missing); every node skips bad rows, whose rejects are captured instead of
//! written; every sink is replaced by a capture of what it would have written; and every source and
//! transform output gets a capture of its own. The nodes then build and run as in `run`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::component::{
    BuildCx, BuiltSink, BuiltSource, Settle, Sink, SinkCommon, SinkConfig, Source, SourceCommon,
    SourceConfig,
};
use crate::error::{BuildError, RowError, RunError};
use crate::exec::Pipeline;
use crate::plan::{Edge, NodeKind, Plan, PlanNode};
use crate::reject::ErrorPolicy;
use crate::Batch;

/// Batches captured in memory.
pub type Captured = Arc<Mutex<Vec<RecordBatch>>>;

/// One captured output: a node's rows (at one of its ports), or what a sink would have written.
#[derive(Debug)]
pub struct Tap {
    /// The node.
    pub node: String,
    /// The named output port, if not the default one.
    pub port: Option<String>,
    /// `source`, `transform` or `sink`.
    pub role: &'static str,
    /// The plugin type.
    pub type_name: &'static str,
    /// The schema of the rows.
    pub schema: SchemaRef,
    /// The rows, filled by the run.
    pub batches: Captured,
}

/// Every capture of a preview run, in the plan's run order, and the rejects.
#[derive(Debug)]
pub struct Taps {
    /// Each node's output (a sink's: its input).
    pub outputs: Vec<Tap>,
    /// The rejects, as dead-letter batches (`crate::reject::to_batch`).
    pub rejects: Captured,
}

impl Plan {
    /// Make each source that `test` gives an input read that input instead of its files; inline
    /// text is written to a file in `dir` first.
    pub fn use_test_inputs(
        &mut self,
        test: &crate::load::tests::TestCase,
        dir: &std::path::Path,
    ) -> Result<(), String> {
        use crate::load::tests::TestData;
        for input in &test.inputs {
            let Some(node) = self.nodes.iter_mut().find(|n| n.name == input.node) else {
                return Err(format!("no node `{}`", input.node));
            };
            let file = match &input.data {
                TestData::File(path) => path.clone(),
                TestData::Text(text) => {
                    let path = dir.join(format!("{}.input", node.name));
                    std::fs::write(&path, text)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                    path
                }
            };
            let NodeKind::Source(source) = &node.kind else {
                return Err(format!("`{}` is not a source", node.name));
            };
            let replaced = source.read_instead(&file).ok_or_else(|| {
                format!(
                    "`{}` ({}) cannot read a test's input",
                    node.name, node.type_name
                )
            })?;
            node.kind = NodeKind::Source(replaced);
        }
        Ok(())
    }

    /// This plan as a preview of its first `rows` rows per source, built; see the module docs.
    pub fn preview(mut self, rows: usize) -> Result<(Pipeline, Taps), BuildError> {
        let mut outputs = Vec::new();
        let order = self.order.clone();
        for &i in &order {
            self.nodes[i].policy = ErrorPolicy::SkipRow;
            let only_references = !self.nodes[i].outputs.is_empty()
                && self.nodes[i]
                    .outputs
                    .iter()
                    .all(|&e| self.edges[e].to_port != 0);
            let node = &mut self.nodes[i];
            let kind =
                std::mem::replace(&mut node.kind, NodeKind::Sink(Box::new(Capture::default())));
            node.kind = match kind {
                NodeKind::Source(s) if !only_references => {
                    NodeKind::Source(Box::new(Limited { inner: s, rows }))
                }
                NodeKind::Sink(_) => {
                    let capture = Capture::default();
                    outputs.push(Tap {
                        node: node.name.clone(),
                        port: None,
                        role: "sink",
                        type_name: node.type_name,
                        schema: node.input_schema.clone().unwrap_or_else(empty),
                        batches: capture.batches.clone(),
                    });
                    NodeKind::Sink(Box::new(capture))
                }
                other => other,
            };
            if !matches!(self.nodes[i].kind, NodeKind::Sink(_)) {
                self.tap(i, &mut outputs);
            }
        }
        self.dead_letter = None;
        let mut pipeline = self.build()?;
        let rejects = Capture::default();
        pipeline.capture_rejects(Box::new(CaptureSink {
            batches: rejects.batches.clone(),
            rows: 0,
        }));
        Ok((
            pipeline,
            Taps {
                outputs,
                rejects: rejects.batches,
            },
        ))
    }

    /// Capture each output port of node `i` that is its default one or that is connected.
    fn tap(&mut self, i: usize, outputs: &mut Vec<Tap>) {
        let ports = self.nodes[i].ports.len();
        for port in 0..=ports {
            let connected = self.nodes[i]
                .outputs
                .iter()
                .any(|&e| self.edges[e].port == port);
            if port > 0 && !connected {
                continue;
            }
            let from = &self.nodes[i];
            let schema = from.output_schema.clone().unwrap_or_else(empty);
            let capture = Capture::default();
            outputs.push(Tap {
                node: from.name.clone(),
                port: (port > 0).then(|| from.ports[port - 1].clone()),
                role: from.kind.role(),
                type_name: from.type_name,
                schema: schema.clone(),
                batches: capture.batches.clone(),
            });
            let edge = self.edges.len();
            let tap = self.nodes.len();
            self.edges.push(Edge {
                from: i,
                to: tap,
                port,
                to_port: 0,
            });
            self.nodes[i].outputs.push(edge);
            self.nodes.push(PlanNode {
                name: format!("{}#preview{port}", self.nodes[i].name),
                type_name: "Preview",
                kind: NodeKind::Sink(Box::new(capture)),
                inputs: vec![edge],
                outputs: Vec::new(),
                input_schema: Some(schema),
                output_schema: None,
                policy: ErrorPolicy::SkipRow,
                policy_mark: None,
                ports: Vec::new(),
                input_ports: Vec::new(),
                side_schemas: Vec::new(),
            });
            self.order.push(tap);
        }
    }
}

fn empty() -> SchemaRef {
    Arc::new(arrow_schema::Schema::empty())
}

/// A source that stops after its first `rows` rows (rejects count as rows).
#[derive(Debug)]
struct Limited {
    inner: Box<dyn SourceConfig>,
    rows: usize,
}

impl SourceConfig for Limited {
    fn output_schema(&self) -> SchemaRef {
        self.inner.output_schema()
    }

    fn files_read(&self) -> Vec<PathBuf> {
        self.inner.files_read()
    }

    fn build(&self, cx: &BuildCx) -> Result<BuiltSource, BuildError> {
        let inner = self.inner.build(cx)?;
        Ok(BuiltSource::Batches(Box::new(FirstRows {
            inner,
            left: self.rows,
        })))
    }
}

/// The running [`Limited`]: pieces of a deferring source are finished here, one at a time.
struct FirstRows {
    inner: BuiltSource,
    left: usize,
}

impl FirstRows {
    fn next(&mut self, rejects: &mut Vec<RowError>) -> Result<Option<Batch>, RunError> {
        match &mut self.inner {
            BuiltSource::Batches(s) => s.next_batch(rejects),
            BuiltSource::Deferred(s) => loop {
                let Some(piece) = s.next_pending()? else {
                    return Ok(None);
                };
                let mut found = Vec::new();
                let batch = piece.finish(&mut found)?;
                if matches!(s.settle(&mut found), Settle::Keep) {
                    rejects.append(&mut found);
                    return Ok(Some(batch));
                }
            },
        }
    }
}

impl SourceCommon for FirstRows {}

impl Source for FirstRows {
    fn next_batch(&mut self, rejects: &mut Vec<RowError>) -> Result<Option<Batch>, RunError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut found = Vec::new();
        let Some(batch) = self.next(&mut found)? else {
            rejects.append(&mut found);
            return Ok(None);
        };
        let batch = if batch.num_rows() + found.len() > self.left {
            // The first `left` records, rows and rejects alike, by their place in the input.
            let place = |r: &RowError| r.line.or(r.record);
            let mut places: Vec<u64> = (0..batch.num_rows())
                .filter_map(|i| batch.origin.line(i))
                .chain(found.iter().filter_map(place))
                .collect();
            places.sort_unstable();
            let cutoff = places.get(self.left - 1).copied().unwrap_or(u64::MAX);
            let keep = (0..batch.num_rows())
                .take_while(|&i| batch.origin.line(i).is_none_or(|l| l <= cutoff))
                .count();
            found.retain(|r| place(r).is_none_or(|l| l <= cutoff));
            batch.slice(0, keep)
        } else {
            batch
        };
        self.left = self.left.saturating_sub(batch.num_rows() + found.len());
        rejects.append(&mut found);
        Ok(Some(batch))
    }
}

/// A sink that keeps what it is given.
#[derive(Debug, Default)]
struct Capture {
    batches: Captured,
}

impl SinkConfig for Capture {
    fn build(&self, _input: SchemaRef, _cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        Ok(BuiltSink::Rows(Box::new(CaptureSink {
            batches: self.batches.clone(),
            rows: 0,
        })))
    }
}

struct CaptureSink {
    batches: Captured,
    rows: u64,
}

impl Sink for CaptureSink {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        self.rows += batch.num_rows() as u64;
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch.data.clone());
        Ok(())
    }
}

impl SinkCommon for CaptureSink {
    fn finish(&mut self) -> Result<u64, RunError> {
        Ok(self.rows)
    }

    fn commit(self: Box<Self>) -> Result<(), RunError> {
        Ok(())
    }
}

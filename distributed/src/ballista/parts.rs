//! One pipeline as many tasks: the client cuts the source's file into ranges of whole records
//! ([`split`]), each task runs the pipeline on its range and writes its rows and its rejects as
//! parts ([`for_part`]), and once every task has succeeded the client pours the parts, in order,
//! into the pipeline's own sink and dead-letter file and commits them as one run would
//! ([`commit`]).
//!
//! A part is an Arrow IPC stream of the rows the sink would have been given, with their origin
//! columns, staged under a name of its own and renamed into place only when its task's run has
//! succeeded: a task lost with its executor, or run again, leaves no part, and the parts a
//! retried task writes replace each other whole. So the output is that of one run: the sink
//! gets the same rows in the same order, encodes them itself (header, compression, appending,
//! its atomic commit) and nothing it writes depends on how the rows were split. The counts of
//! the tasks add up to the run's, and `MaxErrors` and the accounting check are applied to the
//! totals.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltSink, Sink, SinkCommon, SinkConfig, SourceRange, Split,
};
use flowengine_engine::error::{BuildError, IoError, RowError, RunError};
use flowengine_engine::metrics::NodeSummary;
use flowengine_engine::plan::{Edge, NodeKind, Plan};
use flowengine_engine::registry::Registry;
use flowengine_engine::reject::{reject_schema, MaxErrors};
use flowengine_engine::{Batch, RunOutcome};
use serde::{Deserialize, Serialize};

use super::cancel::JobDir;
use super::spec::Spec;
use super::task::{Failure, Report, Stage};
use crate::run::{build_cx, finish, internal, setup, summarize, Setup};
use crate::sink::pour;
use crate::state::{Node, Run};
use crate::{graph, origin, Error};

/// How a split run is laid out: one range of the source's file per task, and where the tasks
/// write their parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    /// The directory of the parts (next to the sink's output, so that executors see it too).
    pub dir: PathBuf,
    /// Task `k` reads `ranges[k]`.
    pub ranges: Vec<SourceRange>,
}

impl Parts {
    /// The file whose presence asks the tasks to stop (Ctrl-C on the client).
    /// Where task `k` writes the rows for the sink.
    fn rows(&self, k: usize) -> PathBuf {
        self.dir.join(format!("rows-{k:05}.arrows"))
    }

    /// Where task `k` writes its rejects.
    fn rejects(&self, k: usize) -> PathBuf {
        self.dir.join(format!("rejects-{k:05}.arrows"))
    }
}

/// How a job runs a pipeline.
pub(crate) enum Layout {
    /// As one task: why not more, when more were asked for, and for a remote cluster the
    /// directory its task watches for the client's Ctrl-C.
    Whole {
        why: Option<String>,
        control: Option<JobDir>,
    },
    /// As one task per part.
    Split {
        /// Where the parts go when every task has succeeded.
        staged: Box<Staged>,
        parts: Parts,
        /// Removed, with every part in it, when the run is over.
        dir: JobDir,
        /// How long cutting the file took.
        cut: std::time::Duration,
    },
}

/// The input a task reads when the number of tasks is not given.
const PART_BYTES: u64 = 64 << 20;

/// Tasks at most when the number is not given.
const MAX_TASKS: u64 = 256;

/// How to run `spec` as a job of at most `want` tasks (by default one per [`PART_BYTES`] of
/// input), on a `remote` cluster or not; a report of the failure when the client cannot tell.
pub(crate) fn lay_out(
    spec: &Spec,
    registry: &Registry,
    (want, remote): (Option<usize>, bool),
    interrupt: &'static AtomicBool,
) -> Result<Layout, Box<Report>> {
    if want == Some(1) && !remote {
        return Ok(Layout::Whole {
            why: None,
            control: None,
        });
    }
    let plan = spec
        .plan(registry)
        .map_err(|e| Box::new(Report::failed(Stage::Config, e.to_string())))?;
    let failed = |e: Error| match e {
        Error::Build(e) => Box::new(Report::failed(Stage::Build, e.to_string())),
        e => Box::new(Report::failed(Stage::Config, e.to_string())),
    };
    // A task in this process stops on this process's Ctrl-C; one elsewhere watches a directory.
    let whole = |why: Option<String>| {
        let control = match remote {
            true => Some(JobDir::create(&plan, JobDir::CONTROL).map_err(failed)?),
            false => None,
        };
        Ok(Layout::Whole { why, control })
    };
    if want == Some(1) {
        return whole(None);
    }
    let given = want;
    let want = want.unwrap_or_else(|| {
        let bytes = flowengine_engine::plan::space::input_bytes(&plan);
        bytes.div_ceil(PART_BYTES).clamp(1, MAX_TASKS) as usize
    });
    if given.is_none() && want < 2 {
        return whole(Some(
            "the input is under 64 MiB (`--tasks N` cuts it into N)".into(),
        ));
    }
    let cutting = Instant::now();
    let ranges = match split(&plan, want).map_err(failed)? {
        Split::Ranges(ranges) => ranges,
        Split::Whole(why) => return whole(Some(why)),
    };
    let staged = stage(&plan, interrupt).map_err(failed)?;
    let dir = JobDir::create(&plan, JobDir::PARTS).map_err(failed)?;
    Ok(Layout::Split {
        parts: Parts {
            dir: dir.path().to_path_buf(),
            ranges,
        },
        staged: Box::new(staged),
        dir,
        cut: cutting.elapsed(),
    })
}

/// The end of a split job, on the client, with `reports` from its tasks (in any order): the
/// first failure in task order, or the commit of every part.
pub(crate) fn finish_split(
    staged: Staged,
    parts: &Parts,
    reports: Vec<Report>,
    started: Instant,
    cut: std::time::Duration,
) -> Result<Report, String> {
    let n = parts.ranges.len();
    let mut by_task: Vec<Option<Report>> = vec![None; n];
    for report in reports {
        match report.part {
            Some(k) if k < n && by_task[k].is_none() => by_task[k] = Some(report),
            Some(k) if k < n => return Err(format!("task {k} of {n} sent two reports")),
            _ => return Err(format!("a report that names none of the job's {n} tasks")),
        }
    }
    let reports = by_task
        .into_iter()
        .enumerate()
        .map(|(k, r)| r.ok_or_else(|| format!("task {k} of {n} sent no report")))
        .collect::<Result<Vec<_>, _>>()?;
    let total = add_up(
        reports
            .iter()
            .filter_map(|r| r.summary.as_ref().map(|s| s.nodes.as_slice())),
    );
    if let Some(failure) = reports.iter().find_map(|r| r.failure.clone()) {
        let summary = (failure.stage == Stage::Run).then(|| {
            let message = Some(failure.message.clone());
            let dead_letter = &staged.setup.run.dead_letter_path;
            summarize(
                &staged.name,
                total,
                &staged.edges,
                dead_letter,
                started,
                message,
            )
        });
        return Ok(Report {
            summary,
            failure: Some(failure),
            part: None,
            first_reject: None,
        });
    }
    let first_reject = reports.iter().find_map(|r| r.first_reject.clone());
    let outcome = commit(staged, parts, total, first_reject);
    let mut summary = outcome.summary;
    let processing = started.elapsed();
    summary.processing_ms = flowengine_engine::metrics::millis(processing);
    summary.rows_per_sec = summary.rows_read as f64 / processing.as_secs_f64().max(1e-9);
    if let Some(source) = summary.nodes.iter_mut().find(|n| n.role == "source") {
        source.notes.insert(
            0,
            format!("read by {n} tasks, one range of the file each (cut in {cut:.1?})"),
        );
    }
    Ok(Report {
        summary: Some(summary),
        failure: outcome.result.err().map(|e| Failure {
            stage: Stage::Run,
            message: e.to_string(),
        }),
        part: None,
        first_reject: None,
    })
}

/// `plan`'s source cut into at most `want` ranges, if the pipeline can run as that many tasks;
/// otherwise why not.
pub(crate) fn split(plan: &Plan, want: usize) -> Result<Split, Error> {
    graph::order(plan)?;
    let chain = match graph::chain(plan) {
        Ok(chain) => chain,
        Err(why) => return Ok(Split::Whole(why)),
    };
    if want < 2 {
        return Ok(Split::Whole("one part was asked for".into()));
    }
    let sequential = chain
        .iter()
        .map(|&i| &plan.nodes[i])
        .find(|n| match &n.kind {
            NodeKind::Transform(t) => !t.parallel(),
            _ => false,
        });
    if let Some(node) = sequential {
        return Ok(Split::Whole(format!(
            "`{}` runs its rows in one sequence (`Parallel: false`)",
            node.name
        )));
    }
    let source = &plan.nodes[chain[0]];
    if let NodeKind::Source(s) = &source.kind {
        return match s.split(want, &build_cx(plan, &source.name))? {
            Split::Ranges(ranges) if ranges.len() < 2 => {
                Ok(Split::Whole("the input is too small to cut".into()))
            }
            split => Ok(split),
        };
    }
    Err(internal(plan, "a chain without a source".into()).into())
}

/// `plan` as task `k` of a split run runs it: its source reads range `k`, its sink and its
/// dead-letter file write the task's parts, and `MaxErrors` waits for the totals.
pub(crate) fn for_part(plan: &mut Plan, parts: &Parts, k: usize) -> Result<(), Error> {
    let chain = graph::chain(plan).map_err(|why| internal(plan, format!("a split run: {why}")))?;
    let range = *parts
        .ranges
        .get(k)
        .ok_or_else(|| internal(plan, format!("there is no part {k}")))?;
    for &i in &chain {
        let kind = match &plan.nodes[i].kind {
            NodeKind::Source(s) => match s.read_range(range) {
                Some(read) => NodeKind::Source(read),
                None => {
                    let message = format!("`{}` cannot read a range", plan.nodes[i].name);
                    return Err(internal(plan, message).into());
                }
            },
            NodeKind::Sink(_) => NodeKind::Sink(Box::new(PartSink {
                path: parts.rows(k),
            })),
            NodeKind::Transform(_) => continue,
        };
        plan.nodes[i].kind = kind;
    }
    if let Some(dead_letter) = &mut plan.dead_letter {
        dead_letter.path = parts.rejects(k);
        dead_letter.builder = rejects_part;
    }
    plan.settings.max_errors = MaxErrors::Unlimited;
    Ok(())
}

/// The counts of the tasks' nodes, added up (every task ran the same chain).
pub(crate) fn add_up<'a>(tasks: impl IntoIterator<Item = &'a [NodeSummary]>) -> Vec<NodeSummary> {
    let mut tasks = tasks.into_iter();
    let Some(first) = tasks.next() else {
        return Vec::new();
    };
    let mut total = first.to_vec();
    for task in tasks {
        for (sum, node) in total.iter_mut().zip(task) {
            sum.rows_in += node.rows_in;
            sum.rows_out += node.rows_out;
            sum.rows_filtered += node.rows_filtered;
            sum.rows_rejected += node.rows_rejected;
            for (kind, n) in &node.rejected_by_type {
                *sum.rejected_by_type.entry(kind.clone()).or_default() += n;
            }
            sum.batches_in += node.batches_in;
            sum.batches_out += node.batches_out;
            sum.bytes_out += node.bytes_out;
            sum.busy_ms += node.busy_ms;
            for (sums, lines) in [
                (&mut sum.notes, &node.notes),
                (&mut sum.warnings, &node.warnings),
            ] {
                for line in lines {
                    if !sums.contains(line) {
                        sums.push(line.clone());
                    }
                }
            }
        }
    }
    total
}

/// The pipeline's own sink and dead-letter file, staged by the client before any task runs (as
/// a local run stages them before rows move), for the parts to be poured into.
pub(crate) struct Staged {
    name: String,
    edges: Vec<Edge>,
    setup: Setup,
    sink: BuiltSink,
    /// The sink's node, and its index in the plan.
    node: Node,
    index: usize,
    schema: SchemaRef,
}

/// Stages `plan`'s sink and dead-letter file.
pub(crate) fn stage(plan: &Plan, interrupt: &'static AtomicBool) -> Result<Staged, Error> {
    let chain = graph::chain(plan).map_err(|why| internal(plan, format!("a split run: {why}")))?;
    let index = chain[chain.len() - 1];
    let n = &plan.nodes[index];
    let (NodeKind::Sink(config), Some(schema)) = (&n.kind, &n.input_schema) else {
        return Err(internal(plan, "a chain that does not end in a sink".into()).into());
    };
    let setup = setup(plan, interrupt)?;
    Ok(Staged {
        name: plan.name.clone(),
        edges: plan.edges.clone(),
        sink: config.build(schema.clone(), &build_cx(plan, &n.name))?,
        node: Node::of(n),
        index,
        schema: schema.clone(),
        setup,
    })
}

/// The end of a split run whose tasks all succeeded, with `tasks` their added-up counts: the
/// rows parts poured into the pipeline's sink and the rejects parts into its dead-letter file,
/// in task order; then `MaxErrors` on the totals, the accounting check and the commit, as at
/// the end of any run.
fn commit(
    staged: Staged,
    parts: &Parts,
    mut tasks: Vec<NodeSummary>,
    first_reject: Option<RowError>,
) -> RunOutcome {
    let Staged {
        name,
        edges,
        setup: Setup { run, runtime },
        sink,
        node,
        index,
        schema,
    } = staged;
    let started = Instant::now();
    run.start();
    let sources = tasks.iter().filter(|s| s.role == "source");
    run.read(sources.map(|s| s.rows_in).sum());
    run.rejected_elsewhere(tasks.iter().map(|s| s.rows_rejected).sum(), first_reject);
    let rows = (0..parts.ranges.len()).map(|k| parts.rows(k)).collect();
    let result = runtime
        .block_on(pour(
            read_parts(rows, run.clone(), node.name.clone()),
            sink,
            &schema,
            &node,
            &run,
        ))
        .and_then(|(written_to, written)| {
            pour_rejects(parts, &run)?;
            let reported = tasks.len();
            let Some(sink) = tasks.get_mut(index).filter(|_| edges.len() < reported) else {
                let message = format!("the tasks reported {reported} nodes of a chain");
                return Err(RunError::Internal(message));
            };
            *sink = node.summary();
            // One chain: each connection carried what its producer sent and its consumer got.
            let edge_rows = (edges.iter())
                .map(|e| (tasks[e.from].rows_out, tasks[e.to].rows_in))
                .collect();
            finish(vec![(written_to, written)], &tasks, &edges, edge_rows, &run)
        });
    let result = result.map_err(|e| run.failure().unwrap_or(e));
    drop(runtime);
    let error = result.as_ref().err().map(ToString::to_string);
    let summary = summarize(&name, tasks, &edges, &run.dead_letter_path, started, error);
    RunOutcome { summary, result }
}

/// The batches of the parts at `paths`, in order; a part that cannot be read fails `run` with an
/// I/O error of `node`'s naming it.
fn read_parts(
    paths: Vec<PathBuf>,
    run: Arc<Run>,
    node: String,
) -> impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> {
    let batches = paths.into_iter().flat_map(move |path| {
        let (run, node) = (run.clone(), node.clone());
        let opened = File::open(&path)
            .map_err(ArrowError::from)
            .and_then(|f| StreamReader::try_new(BufReader::new(f), None));
        let unreadable = move |e: ArrowError| {
            let e = std::io::Error::other(e);
            run.fail(IoError::new(&node, "read the part", &path, e).into())
        };
        let batches: Box<dyn Iterator<Item = _> + Send> = match opened {
            Ok(reader) => Box::new(reader.map(move |b| b.map_err(&unreadable))),
            Err(e) => Box::new(std::iter::once(Err(unreadable(e)))),
        };
        batches
    });
    futures::stream::iter(batches)
}

/// The rejects parts, in order, into the run's dead-letter file.
fn pour_rejects(parts: &Parts, run: &Run) -> Result<(), RunError> {
    let schema = reject_schema();
    let mut dead_letter = run.dead_letter.lock().unwrap_or_else(|p| p.into_inner());
    let Some((sink, written)) = dead_letter.as_mut() else {
        return Ok(());
    };
    for k in 0..parts.ranges.len() {
        let path = parts.rejects(k);
        let unreadable =
            |e: String| RunError::Internal(format!("reading the part {}: {e}", path.display()));
        let file = File::open(&path).map_err(|e| unreadable(e.to_string()))?;
        let reader = StreamReader::try_new(BufReader::new(file), None)
            .map_err(|e| unreadable(e.to_string()))?;
        for record in reader {
            let record = record.map_err(|e| unreadable(e.to_string()))?;
            let batch = origin::strip(&record, &schema).map_err(|e| unreadable(e.to_string()))?;
            sink.write(&batch)?;
            *written += batch.num_rows() as u64;
        }
    }
    Ok(())
}

/// The sink of a task of a split run: its rows as a part.
#[derive(Debug)]
struct PartSink {
    path: PathBuf,
}

impl SinkConfig for PartSink {
    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        let part = PartWriter::create(&self.path, &input, &cx.node)?;
        Ok(BuiltSink::Rows(Box::new(part)))
    }
}

/// The dead-letter file of a task of a split run: its rejects as a part.
fn rejects_part(path: &Path, cx: &BuildCx) -> Result<Box<dyn Sink>, BuildError> {
    Ok(Box::new(PartWriter::create(
        path,
        &reject_schema(),
        &cx.node,
    )?))
}

/// Rows into a staged Arrow IPC stream, renamed to its part's name on commit (and removed if
/// dropped before).
struct PartWriter {
    node: String,
    path: PathBuf,
    staged: PathBuf,
    /// The rows' schema with the origin columns.
    schema: SchemaRef,
    writer: StreamWriter<BufWriter<File>>,
    rows: u64,
    committed: bool,
}

impl PartWriter {
    fn create(path: &Path, data: &SchemaRef, node: &str) -> Result<PartWriter, BuildError> {
        let attempt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let staged = path.with_extension(format!("{}-{attempt}.tmp", std::process::id()));
        let io = |e| BuildError::from(IoError::new(node, "create", &staged, e));
        let file = File::create(&staged).map_err(io)?;
        let schema = origin::schema(data);
        let writer = StreamWriter::try_new(BufWriter::new(file), &schema)
            .map_err(|e| io(std::io::Error::other(e)))?;
        Ok(PartWriter {
            node: node.to_string(),
            path: path.to_path_buf(),
            staged,
            schema,
            writer,
            rows: 0,
            committed: false,
        })
    }

    fn failed(
        &self,
        action: &'static str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> RunError {
        IoError::new(&self.node, action, &self.staged, std::io::Error::other(e)).into()
    }
}

impl Sink for PartWriter {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        let record = origin::carry(batch, &self.schema)
            .map_err(|e| RunError::Internal(format!("carrying a batch's origin: {e}")))?;
        self.writer
            .write(&record)
            .map_err(|e| self.failed("write", e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

impl SinkCommon for PartWriter {
    fn finish(&mut self) -> Result<u64, RunError> {
        self.writer.finish().map_err(|e| self.failed("write", e))?;
        let file = self.writer.get_mut();
        let synced = file.flush().and_then(|()| file.get_ref().sync_all());
        synced.map_err(|e| self.failed("write", e))?;
        Ok(self.rows)
    }

    fn commit(mut self: Box<Self>) -> Result<(), RunError> {
        std::fs::rename(&self.staged, &self.path).map_err(|e| self.failed("rename", e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use flowengine_engine::component::{BuiltSource, Settle};
    use flowengine_engine::load::LoadOptions;

    /// Rows (as `name|line`) and rejects (as `line/record/offset: value`) of a source, read to
    /// its end one piece at a time.
    fn drain(source: BuiltSource) -> (Vec<String>, Vec<String>) {
        let BuiltSource::Deferred(mut source) = source else {
            panic!("a delimited source defers its pieces");
        };
        let (mut rows, mut rejects) = (Vec::new(), Vec::new());
        while let Some(piece) = source.next_pending().unwrap() {
            let mut errors = Vec::new();
            let batch = piece.finish(&mut errors).unwrap();
            if source.settle(&mut errors) == Settle::Redo {
                continue;
            }
            let names = batch.data.column(0).as_string::<i32>();
            for (i, name) in names.iter().enumerate() {
                rows.push(format!(
                    "{}|{}",
                    name.unwrap_or("-"),
                    batch.origin.lines.value(i)
                ));
            }
            for e in errors {
                let (line, record, at) = (e.line, e.record, e.byte_offset);
                rejects.push(format!("{line:?}/{record:?}/{at:?}: {:?}", e.value));
            }
        }
        (rows, rejects)
    }

    /// The test pipeline, reading `in.csv` in `dir` into `out.csv`, rejects to `rejects.csv`.
    fn plan_in(dir: &Path) -> Plan {
        let yaml = "Pipeline:\n  Name: p\n  Settings: {ChunkSize: 16, DeadLetter: rejects.csv}\n  Plugins:\n    - Name: read\n      Type: DelimitedSource\n      Config:\n        FilePath: in.csv\n        SkipRowsAfterHeader: 1\n        ErrorHandling: skip-row\n        OutputSchema:\n          Columns:\n            - {Name: name, Type: string}\n            - {Name: n, Type: int64}\n    - Name: write\n      Type: DelimitedSink\n      Config: {FilePath: out.csv}\n  Connections:\n    - {From: read, To: write}\n";
        let registry = flowengine_plugins::builtin_registry();
        flowengine_engine::plan::plan_text(
            yaml,
            &dir.join("p.yaml"),
            &LoadOptions::default(),
            &registry,
        )
        .unwrap()
    }

    static NEVER: AtomicBool = AtomicBool::new(false);

    #[test]
    fn a_part_that_cannot_be_read_fails_the_run_naming_it() {
        let dir = std::env::temp_dir().join(format!("flowengine-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("in.csv"), "name,n\r\nskipped,0\na,1\n").unwrap();
        let plan = plan_in(&dir);
        let staged = stage(&plan, &NEVER).unwrap();
        let range = SourceRange {
            start: 0,
            end: None,
            line: 1,
            record: 0,
        };
        let parts = Parts {
            dir: dir.join("no-parts-here"),
            ranges: vec![range, range],
        };
        let tasks = plan.nodes.iter().map(|n| NodeSummary {
            name: n.name.clone(),
            role: n.kind.role(),
            type_name: n.type_name,
            ..NodeSummary::default()
        });
        let outcome = commit(staged, &parts, tasks.collect(), None);
        let error = outcome.result.unwrap_err().to_string();
        assert!(error.contains("read the part"), "{error}");
        assert!(error.contains("rows-00000.arrows"), "{error}");
        assert!(!dir.join("out.csv").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ranges_of_a_file_read_as_the_whole_file_reads() {
        let dir = std::env::temp_dir().join(format!("flowengine-parts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = String::from("name,n\r\nskipped,0\n");
        for i in 0..300 {
            match i % 7 {
                0 => csv.push_str(&format!("\"multi\nline {i}, quoted\",{i}\n")),
                1 => csv.push_str(&format!("bad {i},x{i}\r\n")),
                2 => csv.push_str(&format!("\"say \"\"{i}\"\"\",{i}\r\n")),
                _ => csv.push_str(&format!("plain {i},{i}\n")),
            }
        }
        std::fs::write(dir.join("in.csv"), csv).unwrap();
        let plan = plan_in(&dir);
        let NodeKind::Source(source) = &plan.nodes[0].kind else {
            panic!("the first node is the source");
        };
        let cx = build_cx(&plan, "read");
        let whole = drain(source.build(&cx).unwrap());
        assert_eq!(whole.0.len() + whole.1.len(), 300);
        for want in [2, 3, 7, 50] {
            let Split::Ranges(ranges) = split(&plan, want).unwrap() else {
                panic!("a plain file is cut");
            };
            assert!(ranges.len() > 1 && ranges.len() <= want, "{ranges:?}");
            let (mut rows, mut rejects) = (Vec::new(), Vec::new());
            for range in ranges {
                let (r, e) = drain(source.read_range(range).unwrap().build(&cx).unwrap());
                rows.extend(r);
                rejects.extend(e);
            }
            assert_eq!((rows, rejects), whole, "in {want} parts");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Executor behaviour with stand-in plugins: order under parallelism, fan-in and fan-out with tiny
//! channels, failure and panic propagation without hangs, interruption, cycles.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow_array::{BooleanArray, Int64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::component::{
    BuildCx, BuiltSink, BuiltSource, BuiltTransform, DeferringSource, NodeCx, Output, Sink,
    SinkCommon, SinkConfig, Source, SourceCommon, SourceConfig, StatefulTransform, Transform,
    TransformConfig,
};
use crate::error::{BuildError, ConfigErrors, PlanError, RowError, RowErrorKind, RunError, Stage};
use crate::load::config::{ConfigCx, MapReader};
use crate::load::yaml::Mark;
use crate::metrics::Status;
use crate::registry::{Parser, Registry};
use crate::{load_plan, Batch, LoadOptions, RunOutcome};

/// Per sink name (unique per test): the values it finished with, and whether it committed.
type Collected = Mutex<HashMap<String, (Vec<i64>, bool)>>;

/// What each test sink received.
fn collected() -> &'static Collected {
    static SINKS: OnceLock<Collected> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
}

#[derive(Debug)]
struct Numbers {
    batches: u64,
    rows: u64,
}

fn parse_numbers(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    Some(Box::new(Numbers {
        batches: m.integer(cx, "Batches", 0, 1 << 20)?,
        rows: m.integer(cx, "Rows", 1, 1 << 20)?,
    }))
}

impl SourceConfig for Numbers {
    fn output_schema(&self) -> SchemaRef {
        schema()
    }
    fn build(&self, _: &BuildCx) -> Result<BuiltSource, BuildError> {
        Ok(BuiltSource::Batches(Box::new(NumbersRun {
            next: 0,
            end: self.batches * self.rows,
            rows: self.rows,
        })))
    }
}

struct NumbersRun {
    next: u64,
    end: u64,
    rows: u64,
}

impl SourceCommon for NumbersRun {}

impl Source for NumbersRun {
    fn next_batch(&mut self, _: &mut Vec<RowError>) -> Result<Option<Batch>, RunError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let values: Vec<i64> = (self.next..self.next + self.rows)
            .map(|v| v as i64)
            .collect();
        let lines = UInt64Array::from(
            (self.next..self.next + self.rows)
                .map(|v| v + 2)
                .collect::<Vec<_>>(),
        );
        self.next += self.rows;
        let data =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        Ok(Some(Batch::new(data, None, lines)))
    }
}

/// Keeps even numbers; optionally fails or panics on the batch starting at a given number, and
/// rejects multiples of `RejectEvery`. `Refuse: n` makes the planner's schema check report `n`
/// problems (1 or 2), to test how plugin errors are shown.
#[derive(Debug)]
struct Evens {
    parallel: bool,
    fail_at: Option<i64>,
    panic_at: Option<i64>,
    reject_every: Option<i64>,
    refuse: Option<(u64, String, Mark)>,
}

fn parse_evens(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    Some(Box::new(Evens {
        parallel: m.bool(cx, "Parallel").unwrap_or(false),
        fail_at: m.integer(cx, "FailAt", 0, u64::MAX).map(|v| v as i64),
        panic_at: m.integer(cx, "PanicAt", 0, u64::MAX).map(|v| v as i64),
        reject_every: m.integer(cx, "RejectEvery", 1, u64::MAX).map(|v| v as i64),
        refuse: m
            .integer(cx, "Refuse", 1, 2)
            .map(|n| (n, m.key_path("Refuse"), m.entry_mark("Refuse"))),
    }))
}

impl TransformConfig for Evens {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        let Some((n, path, mark)) = &self.refuse else {
            return Ok(input.clone());
        };
        let keyed = PlanError::at(path, Some(*mark), "refused").with_hint("remove `Refuse`");
        let whole = PlanError::new("the node refuses too");
        Err([keyed, whole].into_iter().take(*n as usize).collect())
    }
    fn parallel(&self) -> bool {
        self.parallel
    }
    fn build(&self, _: SchemaRef, _: &BuildCx) -> Result<BuiltTransform, BuildError> {
        Ok(BuiltTransform::batches(EvensRun {
            fail_at: self.fail_at,
            panic_at: self.panic_at,
            reject_every: self.reject_every,
        }))
    }
}

struct EvensRun {
    fail_at: Option<i64>,
    panic_at: Option<i64>,
    reject_every: Option<i64>,
}

impl Transform for EvensRun {
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let n = batch
            .data
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let first = n.value(0);
        // Uneven work so that parallel batches finish out of order.
        std::thread::sleep(Duration::from_micros((first as u64 * 7919) % 500));
        if self.fail_at == Some(first) {
            return Err(RunError::Node {
                node: "evens".into(),
                message: format!("refused batch at {first}"),
            });
        }
        assert!(self.panic_at != Some(first), "deliberate panic at {first}");
        let bad = |v: i64| self.reject_every.is_some_and(|k| v % k == 0);
        for v in n.values().iter().copied().filter(|&v| bad(v)) {
            rejects.push(RowError {
                node: "t".into(),
                stage: Stage::Validate,
                kind: RowErrorKind::Validation,
                file: None,
                line: Some(v as u64 + 2),
                record: None,
                byte_offset: None,
                column: None,
                value: Some(v.to_string()),
                message: format!("{v} is refused"),
                hint: None,
                raw: None,
            });
        }
        let mask: BooleanArray = n.iter().map(|v| v.map(|v| v % 2 == 0 && !bad(v))).collect();
        Ok(batch.filter(&mask).unwrap())
    }
}

/// Routes by divisibility: multiples of 7 are filtered; of 3 go only to port `three`; of 5 go to
/// port `five` and stay on the default output; the rest stay on the default output.
#[derive(Debug)]
struct Router;

fn parse_router(
    _: &mut MapReader<'_>,
    _: &mut ConfigCx,
    _: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    Some(Box::new(Router))
}

impl TransformConfig for Router {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        Ok(input.clone())
    }
    fn parallel(&self) -> bool {
        true
    }
    fn ports(&self) -> Vec<String> {
        vec!["three".into(), "five".into()]
    }
    fn build(&self, _: SchemaRef, _: &BuildCx) -> Result<BuiltTransform, BuildError> {
        Ok(BuiltTransform::batches(Router))
    }
}

impl Transform for Router {
    fn apply(&self, _: Batch, _: &mut Vec<RowError>) -> Result<Batch, RunError> {
        Err(RunError::Internal("Router needs apply_routed".into()))
    }
    fn apply_routed(
        &self,
        batch: Batch,
        _: &mut Vec<RowError>,
    ) -> Result<crate::component::Routed, RunError> {
        let n = batch
            .data
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let pick = |f: &dyn Fn(i64) -> bool| {
            let mask: BooleanArray = n.iter().map(|v| v.map(|v| v % 7 != 0 && f(v))).collect();
            batch.filter(&mask).unwrap()
        };
        let main = pick(&|v| v % 3 != 0);
        let three = pick(&|v| v % 3 == 0);
        let five = pick(&|v| v % 5 == 0);
        Ok(crate::component::Routed {
            emitted: main.num_rows() + three.num_rows(),
            main,
            ports: vec![three, five],
        })
    }
}

#[derive(Debug)]
struct Collect;

fn parse_collect(
    _: &mut MapReader<'_>,
    _: &mut ConfigCx,
    _: &NodeCx,
) -> Option<Box<dyn SinkConfig>> {
    Some(Box::new(Collect))
}

impl SinkConfig for Collect {
    fn build(&self, _: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        collected()
            .lock()
            .unwrap()
            .insert(cx.node.clone(), (Vec::new(), false));
        Ok(BuiltSink::Rows(Box::new(CollectRun {
            name: cx.node.clone(),
            values: Vec::new(),
        })))
    }
}

struct CollectRun {
    name: String,
    values: Vec<i64>,
}

impl Sink for CollectRun {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        let n = batch
            .data
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        // Provenance must stay in step with the data through every transform.
        for (v, line) in n.values().iter().zip(batch.origin.lines.values().iter()) {
            assert_eq!(*v as u64 + 2, *line);
        }
        self.values.extend(n.values().iter());
        Ok(())
    }
}

impl SinkCommon for CollectRun {
    fn finish(&mut self) -> Result<u64, RunError> {
        collected().lock().unwrap().get_mut(&self.name).unwrap().0 = self.values.clone();
        Ok(self.values.len() as u64)
    }
    fn commit(self: Box<Self>) -> Result<(), RunError> {
        collected().lock().unwrap().get_mut(&self.name).unwrap().1 = true;
        Ok(())
    }
}

/// The dead-letter stand-in records rejected numbers under the key "<file name>".
fn dead_letter(path: &std::path::Path, _: &BuildCx) -> Result<Box<dyn Sink>, BuildError> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    collected()
        .lock()
        .unwrap()
        .insert(name.clone(), (Vec::new(), false));
    Ok(Box::new(RejectCollect {
        name,
        values: Vec::new(),
    }))
}

struct RejectCollect {
    name: String,
    values: Vec<i64>,
}

impl Sink for RejectCollect {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        assert_eq!(batch.data.schema(), crate::reject::reject_schema());
        for line in batch.origin.lines.values() {
            self.values.push(*line as i64 - 2);
        }
        Ok(())
    }
}

impl SinkCommon for RejectCollect {
    fn finish(&mut self) -> Result<u64, RunError> {
        collected().lock().unwrap().get_mut(&self.name).unwrap().0 = self.values.clone();
        Ok(self.values.len() as u64)
    }
    fn commit(self: Box<Self>) -> Result<(), RunError> {
        collected().lock().unwrap().get_mut(&self.name).unwrap().1 = true;
        Ok(())
    }
}

/// A stand-in stateful transform. Passes the first `Rows` rows on as they come. With `Stop`, it
/// filters the rest and is satisfied once it has `Rows`; without, it holds the rest and `finish`
/// hands back one held batch per call, last first, every other row of it (the others counted as
/// duplicates).
#[derive(Debug)]
struct Take {
    rows: u64,
    stop: bool,
}

fn parse_take(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    Some(Box::new(Take {
        rows: m.integer(cx, "Rows", 0, u64::MAX)?,
        stop: m.bool(cx, "Stop").unwrap_or(false),
    }))
}

impl TransformConfig for Take {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        Ok(input.clone())
    }
    fn stateful(&self) -> bool {
        true
    }
    fn build(&self, _: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        assert!(
            cx.state_bytes > 0,
            "a stateful node gets a share of the limit"
        );
        Ok(BuiltTransform::Stateful(Box::new(TakeRun {
            left: self.rows,
            stop: self.stop,
            held: Vec::new(),
        })))
    }
}

struct TakeRun {
    left: u64,
    stop: bool,
    held: Vec<Batch>,
}

impl StatefulTransform for TakeRun {
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        let rows = batch.num_rows() as u64;
        let take = self.left.min(rows);
        self.left -= take;
        let mask: BooleanArray = (0..rows).map(|i| Some(i < take)).collect();
        out.batches.push(batch.filter(&mask).unwrap());
        if self.stop {
            out.filtered += rows - take;
        } else {
            let rest: BooleanArray = (0..rows).map(|i| Some(i >= take)).collect();
            self.held.push(batch.filter(&rest).unwrap());
        }
        Ok(())
    }
    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        // Half of what is held goes on, the other half counts as duplicates.
        let Some(batch) = self.held.pop() else {
            return Ok(false);
        };
        let rows = batch.num_rows();
        let mask: BooleanArray = (0..rows).map(|i| Some(i % 2 == 0)).collect();
        let kept = batch.filter(&mask).unwrap();
        out.duplicates += (rows - kept.num_rows()) as u64;
        out.batches.push(kept);
        Ok(!self.held.is_empty())
    }
    fn satisfied(&self) -> bool {
        self.stop && self.left == 0
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("Numbers", Parser::Source(parse_numbers))
        .register("Evens", Parser::Transform(parse_evens))
        .register("Router", Parser::Transform(parse_router))
        .register("Collect", Parser::Sink(parse_collect))
        .register("Deferred", Parser::Source(parse_deferred))
        .register("Take", Parser::Transform(parse_take))
        .set_dead_letter(dead_letter);
    r
}

fn plan(name: &str, yaml: &str) -> Result<crate::Plan, ConfigErrors> {
    let path = std::env::temp_dir().join(format!(
        "flowengine-exec-{}-{name}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, yaml).unwrap();
    let plan = load_plan(&path, &LoadOptions::default(), &registry());
    let _ = std::fs::remove_file(&path);
    plan
}

fn run(name: &str, yaml: &str, interrupt: bool) -> RunOutcome {
    let plan = plan(name, yaml).unwrap_or_else(|e| panic!("{e}"));
    let flag = AtomicBool::new(interrupt);
    // A hang must fail the test, not stall the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    let pipeline = plan.build().unwrap();
    std::thread::spawn(move || {
        let _ = tx.send(pipeline.run(&flag));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the run hung")
}

fn sink(name: &str) -> (Vec<i64>, bool) {
    collected()
        .lock()
        .unwrap()
        .get(name)
        .cloned()
        .unwrap_or_default()
}

fn chain(sink: &str, settings: &str, transform: &str) -> String {
    format!(
        "Pipeline:
  Name: t
  Settings: {{ {settings} }}
  Plugins:
    - {{ Name: src, Type: Numbers, Config: {{ Batches: 60, Rows: 10 }} }}
    - {{ Name: t, Type: Evens, Config: {{ {transform} }} }}
    - {{ Name: {sink}, Type: Collect }}
  Connections:
    - {{ From: src, To: t }}
    - {{ From: t, To: {sink} }}
"
    )
}

/// A source that defers: piece `k` holds numbers `k*rows..(k+1)*rows`; pieces finish after uneven
/// delays (so they complete out of order) and may reject a number, or fail to be read at all.
#[derive(Debug)]
struct Deferred {
    pieces: u64,
    rows: u64,
    reject: Option<i64>,
    read_error_at: Option<u64>,
}

fn parse_deferred(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _: &NodeCx,
) -> Option<Box<dyn SourceConfig>> {
    Some(Box::new(Deferred {
        pieces: m.integer(cx, "Pieces", 0, 1 << 20)?,
        rows: m.integer(cx, "Rows", 1, 1 << 20)?,
        reject: m.integer(cx, "Reject", 0, u64::MAX).map(|v| v as i64),
        read_error_at: m.integer(cx, "ReadErrorAt", 0, u64::MAX),
    }))
}

impl SourceConfig for Deferred {
    fn output_schema(&self) -> SchemaRef {
        schema()
    }
    fn build(&self, _: &BuildCx) -> Result<BuiltSource, BuildError> {
        Ok(BuiltSource::Deferred(Box::new(DeferredRun {
            next: 0,
            pieces: self.pieces,
            rows: self.rows,
            reject: self.reject,
            read_error_at: self.read_error_at,
        })))
    }
}

struct DeferredRun {
    next: u64,
    pieces: u64,
    rows: u64,
    reject: Option<i64>,
    read_error_at: Option<u64>,
}

impl SourceCommon for DeferredRun {}

impl DeferringSource for DeferredRun {
    fn next_pending(&mut self) -> Result<Option<Box<dyn crate::component::Pending>>, RunError> {
        if self.read_error_at == Some(self.next) {
            return Err(RunError::Node {
                node: "src".into(),
                message: format!("cannot read piece {}", self.next),
            });
        }
        if self.next == self.pieces {
            return Ok(None);
        }
        let k = self.next;
        self.next += 1;
        Ok(Some(Box::new(Piece {
            first: (k * self.rows) as i64,
            rows: self.rows as i64,
            reject: self.reject,
        })))
    }
}

struct Piece {
    first: i64,
    rows: i64,
    reject: Option<i64>,
}

impl crate::component::Pending for Piece {
    fn finish(self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        // Later pieces often finish first.
        std::thread::sleep(Duration::from_micros(
            ((self.first as u64 * 7919) % 700) + 50,
        ));
        let values: Vec<i64> = (self.first..self.first + self.rows)
            .filter(|&v| {
                let bad = self.reject == Some(v);
                if bad {
                    rejects.push(RowError {
                        node: "src".into(),
                        stage: Stage::Parse,
                        kind: RowErrorKind::TypeConversion,
                        file: None,
                        line: Some(v as u64 + 2),
                        record: None,
                        byte_offset: None,
                        column: None,
                        value: Some(v.to_string()),
                        message: format!("{v} cannot be read"),
                        hint: None,
                        raw: None,
                    });
                }
                !bad
            })
            .collect();
        let lines = UInt64Array::from(values.iter().map(|&v| v as u64 + 2).collect::<Vec<_>>());
        let data =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        Ok(Batch::new(data, None, lines))
    }
}

fn deferred_chain(sink: &str, settings: &str, source: &str) -> String {
    format!(
        "Pipeline:
  Name: d
  Settings: {{ {settings} }}
  Plugins:
    - {{ Name: src, Type: Deferred, Config: {{ Pieces: 80, Rows: 5, {source} }} }}
    - {{ Name: {sink}, Type: Collect }}
  Connections:
    - {{ From: src, To: {sink} }}
"
    )
}

/// One run of a pipeline and what it must end with. A field left at its default checks nothing,
/// so a case states only what it is about.
#[derive(Default)]
struct Run {
    /// The pipeline file.
    yaml: String,
    /// Start with Ctrl-C already pressed.
    interrupt: bool,
    /// `None`: the run succeeds. `Some(text)`: it fails, its error contains `text`, and the summary
    /// says it failed.
    fails_with: Option<&'static str>,
    /// Sinks (dead-letter files by file name) that commit, with the values they wrote, in order.
    commits: Vec<(String, Vec<i64>)>,
    /// Sinks (dead-letter files by file name) that must not commit.
    no_commit: Vec<String>,
    /// A node's index in declaration order, and its rows in, out, filtered and rejected.
    node_rows: Option<(usize, [u64; 4])>,
    /// The run's rows read and written.
    totals: Option<(u64, u64)>,
    /// The checks only this case needs.
    more: Option<fn(&RunOutcome)>,
}

impl Run {
    fn check(self, label: &str) {
        let out = run(label, &self.yaml, self.interrupt);
        match (self.fails_with, &out.result) {
            (None, Ok(())) => {}
            (None, Err(e)) => panic!("{label}: the run failed: {e}"),
            (Some(_), Ok(())) => panic!("{label}: the run succeeded but must fail"),
            (Some(text), Err(e)) => {
                assert!(e.to_string().contains(text), "{label}: {e}");
                assert_eq!(out.summary.status, Status::Failed, "{label}");
            }
        }
        for (name, values) in self.commits {
            assert_eq!(sink(&name), (values, true), "{label}: sink `{name}`");
        }
        for name in self.no_commit {
            assert!(
                !sink(&name).1,
                "{label}: `{name}` committed on a failed run"
            );
        }
        if let Some((i, rows)) = self.node_rows {
            let n = &out.summary.nodes[i];
            let got = [n.rows_in, n.rows_out, n.rows_filtered, n.rows_rejected];
            assert_eq!(
                got, rows,
                "{label}: node `{}` in, out, filtered, rejected",
                n.name
            );
        }
        if let Some(totals) = self.totals {
            let got = (out.summary.rows_read, out.summary.rows_written);
            assert_eq!(got, totals, "{label}: rows read, written");
        }
        if let Some(more) = self.more {
            more(&out);
        }
    }
}

/// A pipeline that must not plan, and what its errors say.
struct Refused {
    /// The pipeline file.
    yaml: String,
    /// How many errors, if that matters.
    errors: Option<usize>,
    /// Texts the rendered errors contain.
    says: Vec<&'static str>,
}

impl Refused {
    fn check(self, label: &str) {
        let err = plan(label, &self.yaml).expect_err(label);
        if let Some(n) = self.errors {
            assert_eq!(err.0.len(), n, "{label}: {err}");
        }
        let text = err.to_string();
        for says in self.says {
            assert!(text.contains(says), "{label}: no {says:?} in\n{text}");
        }
    }
}

/// One `#[test]` per entry, checking its cases in order. A failure names the test and the case's
/// position, e.g. `a_read_error_comes_after_the_pieces_before_it[1]`; the position also keeps
/// the pipeline files of one test apart.
macro_rules! cases {
    ($($(#[$meta:meta])* $name:ident: $cases:expr;)*) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            for (i, case) in $cases.into_iter().enumerate() {
                case.check(&format!("{}[{i}]", stringify!($name)));
            }
        }
    )*};
}

/// The numbers below 600 that `Evens` keeps.
fn evens() -> Vec<i64> {
    (0..600).filter(|v| v % 2 == 0).collect()
}

cases! {
    parallel_transform_keeps_source_order_and_accounts_for_every_row: [Run {
        yaml: chain("par_sink", "ChannelCapacity: 1, Threads: 4", "Parallel: true"),
        commits: vec![("par_sink".into(), evens())],
        node_rows: Some((1, [600, 300, 300, 0])),
        totals: Some((600, 300)),
        ..Run::default()
    }];

    routed_rows_reach_their_ports_and_every_path_accounts_for_them: {
        let kept = |f: fn(i64) -> bool| (0..210).filter(|v| v % 7 != 0 && f(*v)).collect::<Vec<_>>();
        [Run {
            yaml: "Pipeline:
  Name: t
  Settings: { ChannelCapacity: 1, Threads: 2 }
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 30, Rows: 7 } }
    - { Name: r, Type: Router }
    - { Name: route_main, Type: Collect }
    - { Name: route_three, Type: Collect }
    - { Name: route_five, Type: Collect }
  Connections:
    - { From: src, To: r }
    - { From: r, To: route_main }
    - { From: r.three, To: route_three }
    - { From: r.five, To: route_five }
"
            .into(),
            commits: vec![
                ("route_main".into(), kept(|v| v % 3 != 0)),
                ("route_three".into(), kept(|v| v % 3 == 0)),
                ("route_five".into(), kept(|v| v % 5 == 0)),
            ],
            node_rows: Some((1, [210, 180, 30, 0])),
            more: Some(|out| {
                let r = &out.summary.nodes[1];
                let ports: Vec<(&str, u64)> =
                    r.ports.iter().map(|p| (p.name.as_str(), p.rows)).collect();
                assert_eq!(ports, vec![("default", 120), ("three", 60), ("five", 36)]);
                let five = out
                    .summary
                    .paths
                    .iter()
                    .find(|p| p.path.ends_with("route_five"))
                    .unwrap();
                assert_eq!(five.path, "src -> r.five -> route_five");
                assert_eq!(
                    (five.read, five.written, five.filtered, five.routed),
                    (210, 36, 30, 144)
                );
            }),
            ..Run::default()
        }]
    };

    plugin_schema_errors_are_placed_at_the_node_and_name_their_key: [
        // The key path is shown from `Config` on, with where the key was written; a lone
        // problem's hint goes on the error.
        Refused {
            yaml: chain("refuse_sink", "", "Refuse: 1"),
            errors: Some(1),
            says: vec![
                ":6:7: Pipeline.Plugins[t]: `t`: Config.Refuse (",
                ":6:41): refused\n  hint: remove `Refuse`",
            ],
        },
        // One error per node, listing every problem.
        Refused {
            yaml: chain("refuse_sink", "", "Refuse: 2"),
            errors: Some(1),
            says: vec![
                "`t`: 2 problems:\n  Config.Refuse (",
                "): refused\n    hint: remove `Refuse`\n  the node refuses too",
            ],
        },
    ];

    unwired_ports_and_unknown_ports_are_plan_errors: {
        let yaml = "Pipeline:
  Name: t
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 1, Rows: 1 } }
    - { Name: r, Type: Router }
    - { Name: a, Type: Collect }
    - { Name: b, Type: Collect }
  Connections:
    - { From: src, To: r }
    - { From: r.three, To: a }
    - { From: r.seven, To: b }
";
        [
            Refused {
                yaml: yaml.into(),
                errors: None,
                says: vec!["plugin `r` has no output port `seven`; its output ports are: three, five"],
            },
            Refused {
                yaml: yaml.replace("r.seven", "r.five"),
                errors: None,
                says: vec!["the default output of `r` is not connected"],
            },
        ]
    };

    a_failing_transform_ends_the_run_without_committing: [false, true].map(|parallel| {
        let name = format!("fail_sink_{parallel}");
        Run {
            yaml: chain(&name, "ChannelCapacity: 1", &format!("Parallel: {parallel}, FailAt: 250")),
            fails_with: Some("refused batch at 250"),
            no_commit: vec![name],
            ..Run::default()
        }
    });

    a_panicking_transform_is_an_internal_error_not_a_hang: [Run {
        yaml: chain("panic_sink", "ChannelCapacity: 1", "PanicAt: 100"),
        fails_with: Some("deliberate panic at 100"),
        no_commit: vec!["panic_sink".into()],
        more: Some(|out| assert!(matches!(out.result, Err(RunError::Internal(_))))),
        ..Run::default()
    }];

    an_interrupt_stops_the_run_and_commits_nothing: [Run {
        yaml: chain("int_sink", "", ""),
        interrupt: true,
        fails_with: Some("interrupted; no output was changed"),
        no_commit: vec!["int_sink".into()],
        more: Some(|out| assert!(matches!(out.result, Err(RunError::Cancelled)))),
        ..Run::default()
    }];

    a_diamond_with_single_slot_channels_does_not_deadlock: [Run {
        yaml: "Pipeline:
  Name: diamond
  Settings: { ChannelCapacity: 1 }
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 200, Rows: 3 } }
    - { Name: left, Type: Evens }
    - { Name: right, Type: Evens, Config: { Parallel: true } }
    - { Name: diamond_sink, Type: Collect }
    - { Name: diamond_raw, Type: Collect }
  Connections:
    - { From: src, To: left }
    - { From: src, To: right }
    - { From: src, To: diamond_raw }
    - { From: left, To: diamond_sink }
    - { From: right, To: diamond_sink }
"
        .into(),
        // Fan-out keeps order per consumer.
        commits: vec![("diamond_raw".into(), (0..600).collect())],
        more: Some(|_| {
            let (mut values, committed) = sink("diamond_sink");
            assert!(committed);
            values.sort_unstable();
            let both: Vec<i64> = evens().into_iter().flat_map(|v| [v, v]).collect();
            assert_eq!(values, both, "fan-in delivers both copies of every row");
        }),
        ..Run::default()
    }];

    cycles_are_reported_with_their_chain: [Refused {
        yaml: "Pipeline:
  Name: cyc
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 1, Rows: 1 } }
    - { Name: a, Type: Evens }
    - { Name: b, Type: Evens }
    - { Name: c, Type: Evens }
    - { Name: out, Type: Collect }
  Connections:
    - { From: src, To: a }
    - { From: a, To: b }
    - { From: b, To: c }
    - { From: c, To: a }
    - { From: c, To: out }
"
        .into(),
        errors: None,
        says: vec!["the connections form a cycle: a -> b -> c -> a"],
    }];

    transforms_must_be_connected_on_both_sides: [Refused {
        yaml: "Pipeline:
  Name: dangling
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 1, Rows: 1 } }
    - { Name: t, Type: Evens }
    - { Name: out, Type: Collect }
  Connections:
    - { From: src, To: out }
    - { From: src, To: t }
"
        .into(),
        errors: None,
        says: vec!["transform `t` has no output connection; its rows would be lost"],
    }];

    empty_sources_still_commit_sinks: [Run {
        yaml: "Pipeline:
  Name: empty
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 0, Rows: 1 } }
    - { Name: empty_sink, Type: Collect }
  Connections:
    - { From: src, To: empty_sink }
"
        .into(),
        commits: vec![("empty_sink".into(), vec![])],
        totals: Some((0, 0)),
        ..Run::default()
    }];

    skip_row_sends_rejects_to_the_dead_letter_and_accounts_for_them: [Run {
        yaml: chain(
            "skip_sink",
            "ErrorHandling: skip-row, DeadLetter: /nonexistent/skip.rejects",
            "Parallel: true, RejectEvery: 10",
        ),
        commits: vec![
            ("skip_sink".into(), evens().into_iter().filter(|v| v % 10 != 0).collect()),
            // The dead letter commits with the outputs.
            ("skip.rejects".into(), (0..600).filter(|v| v % 10 == 0).collect()),
        ],
        node_rows: Some((1, [600, 240, 300, 60])),
        more: Some(|out| {
            let t = &out.summary.nodes[1];
            assert_eq!(t.rejected_by_type.get("VALIDATION"), Some(&60));
            let path = &out.summary.paths[0];
            assert_eq!(path.read, 600);
            assert_eq!(path.written + path.filtered + path.rejected, 600);
            assert!(out
                .summary
                .render()
                .ends_with("60 rows rejected → /nonexistent/skip.rejects\n"));
        }),
        ..Run::default()
    }];

    fail_fast_turns_the_first_reject_into_the_error: [Run {
        yaml: chain("ff_sink", "", "RejectEvery: 250"),
        fails_with: Some("0 is refused"),
        no_commit: vec!["ff_sink".into()],
        ..Run::default()
    }];

    max_errors_stops_the_run_and_commits_nothing: [("5", "cap_count"), ("\"5%\"", "cap_percent")]
        .map(|(cap, name)| {
            let settings = format!(
                "ErrorHandling: skip-row, MaxErrors: {cap}, DeadLetter: /nonexistent/{name}.rejects"
            );
            Run {
                yaml: chain(&format!("{name}_sink"), &settings, "RejectEvery: 10"),
                fails_with: Some("first reject"),
                // A failed run commits no dead letter either.
                no_commit: vec![format!("{name}_sink"), format!("{name}.rejects")],
                more: Some(|out| {
                    assert!(matches!(out.result, Err(RunError::TooManyRejects { .. })));
                }),
                ..Run::default()
            }
        });

    a_node_can_override_the_pipeline_policy: [Run {
        yaml: chain(
            "override_sink",
            "ErrorHandling: skip-row, DeadLetter: /nonexistent/override.rejects",
            "RejectEvery: 100, ErrorHandling: fail-fast",
        ),
        fails_with: Some("0 is refused"),
        ..Run::default()
    }];

    deferred_pieces_are_emitted_in_order_whatever_order_they_finish_in: [Run {
        yaml: deferred_chain("def_sink", "Threads: 4, ChannelCapacity: 1", ""),
        commits: vec![("def_sink".into(), (0..400).collect())],
        ..Run::default()
    }];

    /// Piece 3 holds 17; later pieces finish first but must not decide the error.
    under_fail_fast_the_first_reject_in_input_order_wins: [Run {
        yaml: deferred_chain("def_ff_sink", "Threads: 4", "Reject: 17"),
        fails_with: Some("17 cannot be read"),
        ..Run::default()
    }];

    /// Piece 2 holds a bad row, reading piece 5 fails: in input order the bad row comes first.
    /// Without the bad row, the read error is the run's.
    a_read_error_comes_after_the_pieces_before_it: [
        Run {
            yaml: deferred_chain("def_read_sink", "Threads: 4", "Reject: 12, ReadErrorAt: 5"),
            fails_with: Some("12 cannot be read"),
            ..Run::default()
        },
        Run {
            yaml: deferred_chain("def_read2_sink", "Threads: 4", "ReadErrorAt: 5"),
            fails_with: Some("cannot read piece 5"),
            ..Run::default()
        },
    ];

    /// `Take` with `Stop` is satisfied after 25 rows: the source stops long before its
    /// 200,000 rows, the rows already on the way count as filtered, and the run adds up.
    a_satisfied_node_stops_the_sources_that_feed_only_it: [Run {
        yaml: take_chain("take_stop_sink", "Batches: 20000, Rows: 10", "Rows: 25, Stop: true"),
        commits: vec![("take_stop_sink".into(), (0..25).collect())],
        more: Some(|out| {
            let src = &out.summary.nodes[0];
            assert!(src.rows_in < 2000, "read {} rows", src.rows_in);
            assert!(src.notes.iter().any(|n| n.contains("stopped reading")));
            let take = &out.summary.nodes[1];
            assert_eq!(take.rows_in, src.rows_in);
            assert_eq!(take.rows_filtered, take.rows_in - 25);
        }),
        ..Run::default()
    }];

    /// With a second consumer that wants every row, the source reads everything.
    a_source_with_another_consumer_reads_on: [Run {
        yaml: "Pipeline:
  Name: t
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 300, Rows: 10 } }
    - { Name: take, Type: Take, Config: { Rows: 5, Stop: true } }
    - { Name: take_few, Type: Collect }
    - { Name: take_all, Type: Collect }
  Connections:
    - { From: src, To: take }
    - { From: take, To: take_few }
    - { From: src, To: take_all }
"
        .into(),
        commits: vec![
            ("take_few".into(), (0..5).collect()),
            ("take_all".into(), (0..3000).collect()),
        ],
        ..Run::default()
    }];

    /// What `finish` hands on, a piece per call, and the duplicates it drops add up.
    a_stateful_node_finishes_in_pieces_and_counts_duplicates: [Run {
        yaml: take_chain("take_finish_sink", "Batches: 3, Rows: 4", "Rows: 2"),
        // 0, 1 at once; then batches 8..12, 4..8 and 2..4 reversed, every other row kept.
        commits: vec![("take_finish_sink".into(), vec![0, 1, 8, 10, 4, 6, 2])],
        more: Some(|out| {
            let take = &out.summary.nodes[1];
            assert_eq!((take.rows_in, take.rows_out, take.rows_duplicate), (12, 7, 5));
            assert_eq!(out.summary.paths[0].duplicates, 5);
        }),
        ..Run::default()
    }];
}

fn take_chain(sink: &str, source: &str, take: &str) -> String {
    format!(
        "Pipeline:
  Name: t
  Plugins:
    - {{ Name: src, Type: Numbers, Config: {{ {source} }} }}
    - {{ Name: take, Type: Take, Config: {{ {take} }} }}
    - {{ Name: {sink}, Type: Collect }}
  Connections:
    - {{ From: src, To: take }}
    - {{ From: take, To: {sink} }}
"
    )
}

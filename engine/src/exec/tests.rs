//! Executor behaviour with stand-in plugins: order under parallelism, fan-in and fan-out with tiny
//! channels, failure and panic propagation without hangs, interruption, cycles.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow_array::{BooleanArray, Int64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::component::{
    BuildCx, NodeCx, Sink, SinkConfig, Source, SourceConfig, Transform, TransformConfig,
};
use crate::error::{BuildError, ConfigErrors, PlanError, RowError, RowErrorKind, RunError, Stage};
use crate::load::config::{ConfigCx, MapReader};
use crate::load::yaml::Mark;
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
    fn build(&self, _: &BuildCx) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(NumbersRun {
            next: 0,
            end: self.batches * self.rows,
            rows: self.rows,
        }))
    }
}

struct NumbersRun {
    next: u64,
    end: u64,
    rows: u64,
}

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
    fn build(&self, _: SchemaRef, _: &BuildCx) -> Result<Box<dyn Transform>, BuildError> {
        Ok(Box::new(EvensRun {
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
    fn build(&self, _: SchemaRef, _: &BuildCx) -> Result<Box<dyn Transform>, BuildError> {
        Ok(Box::new(Router))
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
    fn build(&self, _: SchemaRef, cx: &BuildCx) -> Result<Box<dyn Sink>, BuildError> {
        collected()
            .lock()
            .unwrap()
            .insert(cx.node.clone(), (Vec::new(), false));
        Ok(Box::new(CollectRun {
            name: cx.node.clone(),
            values: Vec::new(),
        }))
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
    fn finish(&mut self) -> Result<u64, RunError> {
        collected().lock().unwrap().get_mut(&self.name).unwrap().0 = self.values.clone();
        Ok(self.values.len() as u64)
    }
    fn commit(self: Box<Self>) -> Result<(), RunError> {
        collected().lock().unwrap().get_mut(&self.name).unwrap().1 = true;
        Ok(())
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("Numbers", Parser::Source(parse_numbers))
        .register("Evens", Parser::Transform(parse_evens))
        .register("Router", Parser::Transform(parse_router))
        .register("Collect", Parser::Sink(parse_collect))
        .register("Deferred", Parser::Source(parse_deferred))
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

#[test]
fn parallel_transform_keeps_source_order_and_accounts_for_every_row() {
    let out = run(
        "par",
        &chain(
            "par_sink",
            "ChannelCapacity: 1, Threads: 4",
            "Parallel: true",
        ),
        false,
    );
    out.result.unwrap();
    let (values, committed) = sink("par_sink");
    assert!(committed);
    assert_eq!(values, (0..600).filter(|v| v % 2 == 0).collect::<Vec<_>>());
    let t = &out.summary.nodes[1];
    assert_eq!((t.rows_in, t.rows_out, t.rows_filtered), (600, 300, 300));
    assert_eq!(out.summary.rows_read, 600);
    assert_eq!(out.summary.rows_written, 300);
}

#[test]
fn routed_rows_reach_their_ports_and_every_path_accounts_for_them() {
    let yaml = "Pipeline:
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
";
    let out = run("route", yaml, false);
    out.result.unwrap();
    let kept = |f: fn(i64) -> bool| (0..210).filter(|v| v % 7 != 0 && f(*v)).collect::<Vec<_>>();
    assert_eq!(sink("route_main").0, kept(|v| v % 3 != 0));
    assert_eq!(sink("route_three").0, kept(|v| v % 3 == 0));
    assert_eq!(sink("route_five").0, kept(|v| v % 5 == 0));
    let r = &out.summary.nodes[1];
    assert_eq!((r.rows_in, r.rows_out, r.rows_filtered), (210, 180, 30));
    let ports: Vec<(&str, u64)> = r.ports.iter().map(|p| (p.name.as_str(), p.rows)).collect();
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
}

#[test]
fn plugin_schema_errors_are_placed_at_the_node_and_name_their_key() {
    let one = plan("refuse1", &chain("refuse_sink", "", "Refuse: 1")).unwrap_err();
    assert_eq!(one.0.len(), 1);
    let text = one.to_string();
    // The key path is shown from `Config` on, with where the key was written; a lone problem's
    // hint goes on the error.
    assert!(
        text.contains(":6:7: Pipeline.Plugins[t]: `t`: Config.Refuse ("),
        "{text}"
    );
    assert!(
        text.contains(":6:41): refused\n  hint: remove `Refuse`"),
        "{text}"
    );
    let two = plan("refuse2", &chain("refuse_sink", "", "Refuse: 2")).unwrap_err();
    assert_eq!(two.0.len(), 1, "one error per node, listing every problem");
    let text = two.to_string();
    assert!(
        text.contains("`t`: 2 problems:\n  Config.Refuse ("),
        "{text}"
    );
    assert!(
        text.contains("): refused\n    hint: remove `Refuse`\n  the node refuses too"),
        "{text}"
    );
}

#[test]
fn unwired_ports_and_unknown_ports_are_plan_errors() {
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
    let err = plan("ports", yaml).unwrap_err().to_string();
    assert!(
        err.contains("plugin `r` has no output port `seven`; its ports are: three, five"),
        "{err}"
    );
    let yaml = yaml.replace("r.seven", "r.five");
    let err = plan("ports2", &yaml).unwrap_err().to_string();
    assert!(
        err.contains("the default output of `r` is not connected"),
        "{err}"
    );
}

#[test]
fn a_failing_transform_ends_the_run_without_committing() {
    for parallel in [false, true] {
        let name = format!("fail_sink_{parallel}");
        let yaml = chain(
            &name,
            "ChannelCapacity: 1",
            &format!("Parallel: {parallel}, FailAt: 250"),
        );
        let out = run(&name, &yaml, false);
        let err = out.result.unwrap_err().to_string();
        assert!(err.contains("refused batch at 250"), "{err}");
        assert!(!sink(&name).1, "a failed run must not commit");
        assert_eq!(out.summary.status, crate::metrics::Status::Failed);
    }
}

#[test]
fn a_panicking_transform_is_an_internal_error_not_a_hang() {
    let out = run(
        "panic",
        &chain("panic_sink", "ChannelCapacity: 1", "PanicAt: 100"),
        false,
    );
    let err = out.result.unwrap_err();
    assert!(matches!(err, RunError::Internal(_)), "{err}");
    assert!(err.to_string().contains("deliberate panic at 100"), "{err}");
    assert!(!sink("panic_sink").1);
}

#[test]
fn an_interrupt_stops_the_run_and_commits_nothing() {
    let out = run("int", &chain("int_sink", "", ""), true);
    assert!(matches!(out.result, Err(RunError::Cancelled)));
    assert!(!sink("int_sink").1);
}

#[test]
fn a_diamond_with_single_slot_channels_does_not_deadlock() {
    let yaml = "Pipeline:
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
";
    let out = run("diamond", yaml, false);
    out.result.unwrap();
    let (mut values, committed) = sink("diamond_sink");
    assert!(committed);
    values.sort_unstable();
    let evens: Vec<i64> = (0..600)
        .filter(|v| v % 2 == 0)
        .flat_map(|v| [v, v])
        .collect();
    assert_eq!(values, evens, "fan-in delivers both copies of every row");
    assert_eq!(
        sink("diamond_raw").0,
        (0..600).collect::<Vec<_>>(),
        "fan-out keeps order per consumer"
    );
}

#[test]
fn cycles_are_reported_with_their_chain() {
    let yaml = "Pipeline:
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
";
    let err = plan("cyc", yaml).unwrap_err().to_string();
    assert!(
        err.contains("the connections form a cycle: a -> b -> c -> a"),
        "{err}"
    );
}

#[test]
fn transforms_must_be_connected_on_both_sides() {
    let yaml = "Pipeline:
  Name: dangling
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 1, Rows: 1 } }
    - { Name: t, Type: Evens }
    - { Name: out, Type: Collect }
  Connections:
    - { From: src, To: out }
    - { From: src, To: t }
";
    let err = plan("dangling", yaml).unwrap_err().to_string();
    assert!(
        err.contains("transform `t` has no output connection; its rows would be lost"),
        "{err}"
    );
}

#[test]
fn empty_sources_still_commit_sinks() {
    let yaml = "Pipeline:
  Name: empty
  Plugins:
    - { Name: src, Type: Numbers, Config: { Batches: 0, Rows: 1 } }
    - { Name: empty_sink, Type: Collect }
  Connections:
    - { From: src, To: empty_sink }
";
    let out = run("empty", yaml, false);
    out.result.unwrap();
    assert_eq!(sink("empty_sink"), (vec![], true));
    assert_eq!(out.summary.rows_read, 0);
}

#[test]
fn skip_row_sends_rejects_to_the_dead_letter_and_accounts_for_them() {
    let yaml = chain(
        "skip_sink",
        "ErrorHandling: skip-row, DeadLetter: /nonexistent/skip.rejects",
        "Parallel: true, RejectEvery: 10",
    );
    let out = run("skip", &yaml, false);
    out.result.unwrap();
    let (values, committed) = sink("skip_sink");
    assert!(committed);
    assert_eq!(
        values,
        (0..600)
            .filter(|v| v % 2 == 0 && v % 10 != 0)
            .collect::<Vec<_>>()
    );
    let (rejected, dl_committed) = sink("skip.rejects");
    assert!(dl_committed, "the dead letter commits with the outputs");
    assert_eq!(
        rejected,
        (0..600).filter(|v| v % 10 == 0).collect::<Vec<_>>()
    );
    let t = &out.summary.nodes[1];
    assert_eq!(
        (t.rows_in, t.rows_out, t.rows_filtered, t.rows_rejected),
        (600, 240, 300, 60)
    );
    assert_eq!(t.rejected_by_type.get("VALIDATION"), Some(&60));
    assert_eq!(out.summary.paths[0].read, 600);
    assert_eq!(
        out.summary.paths[0].written
            + out.summary.paths[0].filtered
            + out.summary.paths[0].rejected,
        600
    );
    assert!(out
        .summary
        .render()
        .ends_with("60 rows rejected → /nonexistent/skip.rejects\n"));
}

#[test]
fn fail_fast_turns_the_first_reject_into_the_error() {
    let out = run("ff", &chain("ff_sink", "", "RejectEvery: 250"), false);
    let err = out.result.unwrap_err().to_string();
    assert!(err.contains("0 is refused"), "{err}");
    assert!(!sink("ff_sink").1);
}

#[test]
fn max_errors_stops_the_run_and_commits_nothing() {
    for (cap, name) in [("5", "cap_count"), ("\"5%\"", "cap_percent")] {
        let settings = format!(
            "ErrorHandling: skip-row, MaxErrors: {cap}, DeadLetter: /nonexistent/{name}.rejects"
        );
        let out = run(
            name,
            &chain(&format!("{name}_sink"), &settings, "RejectEvery: 10"),
            false,
        );
        let err = out.result.unwrap_err();
        assert!(matches!(err, RunError::TooManyRejects { .. }), "{err}");
        assert!(err.to_string().contains("first reject"), "{err}");
        assert!(!sink(&format!("{name}_sink")).1);
        assert!(
            !sink(&format!("{name}.rejects")).1,
            "a failed run commits no dead letter"
        );
    }
}

#[test]
fn a_node_can_override_the_pipeline_policy() {
    let yaml = chain(
        "override_sink",
        "ErrorHandling: skip-row, DeadLetter: /nonexistent/override.rejects",
        "RejectEvery: 100, ErrorHandling: fail-fast",
    );
    let out = run("override", &yaml, false);
    assert!(out.result.unwrap_err().to_string().contains("0 is refused"));
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
    fn build(&self, _: &BuildCx) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(DeferredRun {
            next: 0,
            pieces: self.pieces,
            rows: self.rows,
            reject: self.reject,
            read_error_at: self.read_error_at,
        }))
    }
}

struct DeferredRun {
    next: u64,
    pieces: u64,
    rows: u64,
    reject: Option<i64>,
    read_error_at: Option<u64>,
}

impl Source for DeferredRun {
    fn next_batch(&mut self, rejects: &mut Vec<RowError>) -> Result<Option<Batch>, RunError> {
        self.next_pending()?.map(|p| p.finish(rejects)).transpose()
    }
    fn defers(&self) -> bool {
        true
    }
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

#[test]
fn deferred_pieces_are_emitted_in_order_whatever_order_they_finish_in() {
    let out = run(
        "def_order",
        &deferred_chain("def_sink", "Threads: 4, ChannelCapacity: 1", ""),
        false,
    );
    out.result.unwrap();
    assert_eq!(sink("def_sink").0, (0..400).collect::<Vec<_>>());
}

#[test]
fn under_fail_fast_the_first_reject_in_input_order_wins() {
    // Piece 3 holds 17; later pieces finish first but must not decide the error.
    let out = run(
        "def_ff",
        &deferred_chain("def_ff_sink", "Threads: 4", "Reject: 17"),
        false,
    );
    let err = out.result.unwrap_err().to_string();
    assert!(err.contains("17 cannot be read"), "{err}");
}

#[test]
fn a_read_error_comes_after_the_pieces_before_it() {
    // Piece 2 holds a bad row, reading piece 5 fails: in input order the bad row comes first.
    let yaml = deferred_chain("def_read_sink", "Threads: 4", "Reject: 12, ReadErrorAt: 5");
    let err = run("def_read", &yaml, false)
        .result
        .unwrap_err()
        .to_string();
    assert!(err.contains("12 cannot be read"), "{err}");
    let yaml = deferred_chain("def_read2_sink", "Threads: 4", "ReadErrorAt: 5");
    let err = run("def_read2", &yaml, false)
        .result
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read piece 5"), "{err}");
}

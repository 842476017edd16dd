//! `flowengine`: run, preview, validate and draw pipeline files.
//!
//! This is the only place that knows about the command line and exit codes:
//! 0 success, 1 configuration or validation error (no data moved), 2 runtime failure.

mod engines;
mod graph;
mod monitor;
mod preview;
mod schema;
mod test;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use flowengine_engine::metrics::Progress;
use flowengine_engine::plan::NodeKind;
use flowengine_engine::{
    load_plan, BuildError, ConfigErrors, LoadOptions, Plan, RunError, RunSummary,
};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Set by Ctrl-C; the executor polls it between batches.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Run YAML-declared pipelines over delimited files, on Apache Arrow.
#[derive(Debug, Parser)]
#[command(name = "flowengine", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline: read, transform, write; print a summary to stderr.
    ///
    /// Example: `flowengine run p.yaml --var Input=big.csv --monitor 10s --metrics run.prom`
    Run(RunArgs),
    /// Check a pipeline without opening any data file; report every error at once.
    ///
    /// Example: `flowengine validate p.yaml --var Input=big.csv --explain`
    Validate(ValidateArgs),
    /// Draw a pipeline's graph: nodes, roles, types and the columns on each connection.
    ///
    /// Example: `flowengine graph p.yaml --format dot | dot -Tsvg > p.svg`
    Graph(GraphArgs),
    /// Guess a delimited file's dialect and column types; print a `DelimitedSource` to paste.
    ///
    /// Example: `flowengine infer data.csv --pipeline > p.yaml && flowengine run p.yaml`
    Infer(InferArgs),
    /// Run a pipeline on the first rows of each source and print every node's output; write
    /// nothing.
    ///
    /// Example: `flowengine preview p.yaml --rows 5 --node clean`
    Preview(PreviewArgs),
    /// Run the `Tests:` of a pipeline file in memory; exit 1 if any fails.
    ///
    /// Example: `flowengine test p.yaml`
    Test(CommonArgs),
    /// List the plugin types this build knows.
    ///
    /// Example: `flowengine plugins | grep -i sink`
    Plugins,
    /// Print the JSON Schema (draft 2020-12) of the pipeline file, for editors and UIs.
    ///
    /// Example: `flowengine schema > pipeline.schema.json`, then in a pipeline file
    /// `# yaml-language-server: $schema=pipeline.schema.json`
    Schema,
    /// Serve a Ballista scheduler or executor with FlowEngine's plugins, for `run --engine
    /// ballista --scheduler HOST:PORT` (a build with the `distributed` feature).
    ///
    /// Example: `flowengine cluster scheduler --bind 0.0.0.0:50050`, then on each machine
    /// `flowengine cluster executor --scheduler sched:50050 --bind 0.0.0.0`
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `flowengine cluster`.
#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// A scheduler: takes jobs from `run --engine ballista` and hands their tasks to executors.
    Scheduler {
        /// Where it listens.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
        /// An executor not heard from for this long is taken as lost, and its tasks run again
        /// elsewhere.
        #[arg(long, value_name = "SECONDS", default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..))]
        executor_timeout: u64,
    },
    /// An executor: registers with the scheduler and runs the tasks it is given. It reads and
    /// writes the pipelines' files at the paths the client sees, so run it where they are.
    Executor {
        /// The scheduler to register with.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// The address it listens on.
        #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
        bind: String,
        /// The address the scheduler and clients reach it at (default: the address the scheduler
        /// sees it connect from).
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,
        /// Its Arrow Flight port, from which clients read task results.
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Its gRPC port.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks it runs at once (default: one per core).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        slots: Option<u64>,
        /// Where task results wait to be read (default: a temporary directory).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// How often it tells the scheduler it is alive (keep it under the scheduler's
        /// `--executor-timeout`).
        #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        heartbeat: u64,
    },
}

#[derive(Debug, Args)]
struct InferArgs {
    /// The files (CSV, TSV, ...; gzip and zstd too).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The delimiter, when the first records do not show it (`,` `;` `\t` `|` are tried).
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// Records sampled from the start of each file (more are taken from across a larger file).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    sample_rows: Option<u64>,
    /// Print a whole runnable pipeline (the source and a `DelimitedSink`), not only the source.
    #[arg(long)]
    pipeline: bool,
    /// Read fractional numbers as exact `decimal(p,s)` (wide enough for the sample), not `double`.
    #[arg(long)]
    decimals: bool,
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" => Ok(b'\t'),
        _ if s.len() == 1 => Ok(s.as_bytes()[0]),
        _ => Err(format!("expected one character (or `\\t`), found {s:?}")),
    }
}

#[derive(Debug, Args)]
struct PreviewArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Rows to read from each source (a source feeding only a `Lookup`'s reference is read whole).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rows: u64,
    /// Print only this node's output (repeatable); by default every node's.
    #[arg(long = "node", value_name = "NAME")]
    nodes: Vec<String>,
    /// `table` (default), `csv` (as DelimitedSink writes it) or `json` (JSON Lines).
    #[arg(long, value_enum, default_value = "table")]
    format: preview::Format,
}

#[derive(Debug, Args)]
struct GraphArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// `text` (default), `dot` (Graphviz) or `mermaid` (renders in GitHub markdown).
    #[arg(long, value_enum, default_value = "text")]
    format: graph::Format,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// The pipeline file (YAML).
    pipeline: PathBuf,
    /// Set a variable, overriding `Variables:` and built-ins (repeatable).
    #[arg(long = "var", visible_alias = "variable", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Say how each transform will run (e.g. whether a script is compiled to columnar code, and if
    /// not, the construct that keeps it on boa, with its line and column).
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the plan (nodes, connections, schemas) before running, and how each source read its
    /// input after.
    #[arg(short, long)]
    verbose: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// A progress bar on stderr after the first second (input bytes read of the total, rate,
    /// ETA, rows read, written and rejected): `auto` (on a terminal), `always` or `never`.
    #[arg(long, value_enum, default_value = "auto")]
    progress: monitor::ProgressMode,
    /// Print the status as a line on stderr every INTERVAL (e.g. `5s`, `500ms`), for logs.
    #[arg(long, value_name = "INTERVAL", value_parser = monitor::parse_interval)]
    monitor: Option<std::time::Duration>,
    /// Write Prometheus metrics (text format) to FILE at the end, and at each `--monitor` interval.
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` over HTTP on HOST:PORT while the run lasts (port 0: any).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Do not check, before rows move, that the outputs' file systems have room for them.
    #[arg(long)]
    no_space_check: bool,
    /// What runs the pipeline: `local` (FlowEngine's own executor), `datafusion` (the same
    /// plugins as an Apache DataFusion plan) or `ballista` (that plan as a Ballista job); the
    /// last two in a build with the `distributed` feature, see docs/distributed.md.
    #[arg(long, value_enum, default_value = "local")]
    engine: Engine,
    /// With `--engine ballista`: the scheduler to submit the job to. Without it, a scheduler and
    /// an executor start inside this process for the run.
    #[arg(long, value_name = "HOST:PORT")]
    scheduler: Option<String>,
    /// With `--engine ballista`: run the pipeline as up to N tasks, each reading one range of the
    /// source's file (default: one per 64 MiB of input). A source that cannot be cut (standard
    /// input, compressed, several files, ...) is read by one task; `--verbose` says why.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    tasks: Option<u32>,
}

/// `run --engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    Local,
    Datafusion,
    Ballista,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Local => "local",
            Engine::Datafusion => "datafusion",
            Engine::Ballista => "ballista",
        }
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, found {s:?}"))?;
    if !flowengine_engine::load::vars::is_valid_name(name) {
        return Err(format!(
            "{name:?} is not a variable name (letters, digits and `_`)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Why a command failed, and so its exit code.
enum Failure {
    /// A command-line value the pipeline contradicts (a `--node` it does not have).
    Usage(String),
    /// `flowengine test`: this many of the tests failed (each already reported).
    TestsFailed(usize, usize),
    Config(ConfigErrors),
    Build(BuildError),
    Run(RunError),
    /// A Ballista job that failed, or a cluster process that stopped: the run's error as the
    /// executor worded it, or the cluster's.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    Job(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_)
            | Failure::TestsFailed(..)
            | Failure::Config(_)
            | Failure::Build(_) => 1,
            Failure::Run(_) | Failure::Job(_) => 2,
        }
    }

    fn report(&self) {
        let mut err = std::io::stderr().lock();
        let _ = match self {
            Failure::Config(errors) => {
                for e in &errors.0 {
                    let _ = writeln!(err, "error: {e}");
                }
                let n = errors.0.len();
                writeln!(
                    err,
                    "{n} configuration error{}",
                    if n == 1 { "" } else { "s" }
                )
            }
            Failure::Usage(message) => writeln!(err, "error: {message}"),
            Failure::TestsFailed(failed, all) => writeln!(err, "{failed} of {all} tests failed"),
            Failure::Build(e) => writeln!(err, "error: {e}"),
            Failure::Run(e) => writeln!(err, "error: {e}"),
            Failure::Job(message) => writeln!(err, "error: {message}"),
        };
    }
}

fn main() -> ExitCode {
    // Test builds only: faults named in FAILPOINTS (cli/tests/faults.rs).
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let cli = match Cli::try_parse_from(legacy_args(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Validate(args) => validate(args),
        Command::Preview(args) => run_preview(args),
        Command::Infer(args) => run_infer(&args),
        Command::Test(args) => run_tests(&args),
        Command::Graph(args) => plan(&args.common).map(|plan| {
            let _ = std::io::stdout()
                .lock()
                .write_all(graph::render(&plan, args.format).as_bytes());
        }),
        Command::Schema => {
            let registry = flowengine_plugins::builtin_registry();
            schema::pipeline_schema(&registry)
                .map_err(|e| Failure::Run(RunError::Internal(e)))
                .map(|schema| {
                    let text = serde_json::to_string_pretty(&schema).expect("a JSON value");
                    let _ = writeln!(std::io::stdout().lock(), "{text}");
                })
        }
        Command::Cluster(command) => engines::cluster(command),
        Command::Plugins => {
            let registry = flowengine_plugins::builtin_registry();
            let mut out = std::io::stdout().lock();
            for name in registry.names() {
                let _ = writeln!(out, "{name}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The original tool ran `flowengine pipeline.yaml [-v]`; keep that working as `run`.
fn legacy_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let looks_like_pipeline = args.get(1).is_some_and(|a| {
        let a = a.to_string_lossy();
        a.ends_with(".yaml") || a.ends_with(".yml")
    });
    if looks_like_pipeline {
        args.insert(1, "run".into());
    }
    args
}

fn plan(common: &CommonArgs) -> Result<Plan, Failure> {
    plan_at(common, chrono::Local::now())
}

/// The plan of a run that starts at `now` (`RunDate`).
fn plan_at(common: &CommonArgs, now: chrono::DateTime<chrono::Local>) -> Result<Plan, Failure> {
    let opts = LoadOptions {
        vars: common.vars.clone(),
        now,
    };
    let registry = flowengine_plugins::builtin_registry();
    load_plan(&common.pipeline, &opts, &registry).map_err(Failure::Config)
}

fn validate(args: ValidateArgs) -> Result<(), Failure> {
    let plan = plan(&args.common)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "pipeline `{}` is valid: {}",
        plan.name,
        describe(&plan)
    );
    if args.explain {
        for (node, line) in explanations(&plan) {
            let _ = writeln!(out, "  {node}: {line}");
        }
    }
    Ok(())
}

/// What each transform says about how it will run, in plan order.
fn explanations(plan: &Plan) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for &i in &plan.order {
        let n = &plan.nodes[i];
        if let (NodeKind::Transform(t), Some(input)) = (&n.kind, &n.input_schema) {
            lines.extend(t.explain(input).into_iter().map(|l| (n.name.clone(), l)));
        }
    }
    lines
}

/// `read -> write, read -> audit` style description of the graph.
fn describe(plan: &Plan) -> String {
    let edges: Vec<String> = plan
        .edges
        .iter()
        .map(|e| {
            let end = |node: usize, port: usize, ports: &[String]| match port {
                0 => plan.nodes[node].name.clone(),
                k => format!("{}.{}", plan.nodes[node].name, ports[k - 1]),
            };
            let from = end(e.from, e.port, &plan.nodes[e.from].ports);
            let to = end(e.to, e.to_port, &plan.nodes[e.to].input_ports);
            format!("{from} -> {to}")
        })
        .collect();
    format!("{} plugins; {}", plan.nodes.len(), edges.join(", "))
}

fn run(args: RunArgs) -> Result<(), Failure> {
    let started = Instant::now();
    if args.engine != Engine::Ballista {
        let only = [
            ("--scheduler", args.scheduler.is_some()),
            ("--tasks", args.tasks.is_some()),
        ];
        if let Some((option, _)) = only.iter().find(|(_, given)| *given) {
            return Err(Failure::Usage(format!(
                "{option} is for `--engine ballista`"
            )));
        }
    }
    let now = chrono::Local::now();
    let plan = plan_at(&args.common, now)?;
    if args.verbose {
        print_plan(&plan);
    }
    if !args.no_space_check {
        check_space(&plan)?;
    }
    if args.engine != Engine::Local {
        return engines::run(&args, plan, now, started);
    }
    let server = match &args.metrics_addr {
        Some(addr) => Some(monitor::bind(addr).map_err(Failure::Usage)?),
        None => None,
    };
    let watch = monitor::Watch {
        progress: args.progress,
        monitor: args.monitor,
        metrics: args.metrics.clone(),
        pipeline: plan.name.clone(),
        input_bytes: flowengine_engine::plan::space::input_bytes(&plan),
    };
    // Without a handler the default Ctrl-C kills the process: staged temp files would be left
    // behind. With it, the run stops between batches and every sink removes what it staged.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let progress = Arc::new(Progress::default());
    let done = AtomicBool::new(false);
    let guard = guard(&plan);
    // The watchers start before the build: opening the sources can take a while (a header
    // on standard input), and `/healthz` should answer meanwhile.
    let outcome = std::thread::scope(|scope| {
        let mut watchers = vec![scope.spawn(|| monitor::guard(&guard, &done))];
        if watch.wanted() {
            watchers.push(scope.spawn(|| monitor::watch(&watch, &progress, &done)));
        }
        if let Some((listener, local)) = &server {
            eprintln!("metrics: serving http://{local}/metrics and /healthz");
            watchers.push(scope.spawn(|| monitor::serve(listener, &watch, &progress, &done)));
        }
        let outcome = plan.build_reporting(progress.clone()).map(|pipeline| {
            let setup = started.elapsed();
            let mut outcome = pipeline.run(&INTERRUPTED);
            outcome.summary.setup_ms = flowengine_engine::metrics::millis(setup);
            outcome
        });
        done.store(true, Ordering::SeqCst);
        for w in &watchers {
            w.thread().unpark();
        }
        outcome
    });
    let outcome = outcome.map_err(Failure::Build)?;
    report_summary(&outcome.summary, args.json, args.verbose);
    if let Some(path) = &args.metrics {
        let text = monitor::summary(&outcome.summary, &progress);
        if let Err(e) = monitor::write_atomically(path, &text) {
            eprintln!(
                "warning: cannot write the metrics to {}: {e}",
                path.display()
            );
        }
    }
    outcome.result.map_err(Failure::Run)
}

/// What stops a run that passes its limits even if it does not stop by itself (a script holding
/// on to memory, a source waiting for input).
fn guard(plan: &Plan) -> monitor::Guard {
    monitor::Guard {
        memory: plan.settings.memory_limit.saturating_mul(4) + (512 << 20),
        timeout: plan.settings.timeout.map(|t| (Instant::now(), t)),
        outputs: output_files(plan),
    }
}

/// Refuse a run whose outputs surely do not fit where they go; warn when they may not.
fn check_space(plan: &Plan) -> Result<(), Failure> {
    let free = |dir: &std::path::Path| {
        let fs = rustix::fs::statvfs(dir).ok()?;
        Some((fs.f_bavail.saturating_mul(fs.f_frsize), fs.f_fsid))
    };
    for shortage in flowengine_engine::plan::space::check(plan, &free) {
        if shortage.certain() {
            return Err(Failure::Usage(format!(
                "not enough disk space: {shortage}; free some, or write elsewhere \
                 (--no-space-check skips this check)"
            )));
        }
        eprintln!("warning: the outputs may not fit: {shortage}");
    }
    Ok(())
}

/// Every file the run writes: the sinks' and the dead letter.
fn output_files(plan: &Plan) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Sink(sink) => Some(sink.files_written()),
            _ => None,
        })
        .flatten()
        .collect();
    files.extend(plan.dead_letter.as_ref().map(|d| d.path.clone()));
    files
}

fn run_infer(args: &InferArgs) -> Result<(), Failure> {
    use flowengine_plugins::delimited::infer;
    let options = infer::Options {
        delimiter: args.delimiter,
        sample_rows: args.sample_rows.map(|n| n as usize),
        decimals: args.decimals,
    };
    let mut out = String::new();
    let mut err = std::io::stderr().lock();
    for (i, file) in args.files.iter().enumerate() {
        let found = infer::infer(file, &options).map_err(Failure::Usage)?;
        let shown = file.display().to_string();
        let _ = writeln!(
            err,
            "{shown}: delimiter {:?}, {}, {} line endings{}{}; {} records sampled ({} places past the first)",
            found.delimiter as char,
            if found.has_headers { "a header" } else { "no header" },
            if found.crlf { "CRLF" } else { "LF" },
            if found.bom { ", a UTF-8 byte-order mark" } else { "" },
            match found.compression {
                "plain" => String::new(),
                c => format!(", {c}-compressed"),
            },
            found.sampled,
            found.blocks,
        );
        for c in &found.columns {
            for note in [&c.renamed, &c.note].into_iter().flatten() {
                let _ = writeln!(err, "  column `{}`: {note}", c.name);
            }
        }
        let stem = file
            .file_stem()
            .map_or("pipeline".into(), |s| s.to_string_lossy().into_owned());
        if args.pipeline {
            out.push_str(&found.pipeline_yaml(&stem, &shown, &format!("{stem}.out.csv")));
        } else {
            let node = if i == 0 {
                "read".to_string()
            } else {
                format!("read{}", i + 1)
            };
            out.push_str(&found.source_yaml(&node, &shown));
        }
    }
    drop(err);
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

fn run_tests(args: &CommonArgs) -> Result<(), Failure> {
    let tests = plan(args)?.tests;
    if tests.is_empty() {
        return Err(Failure::Usage(format!(
            "{} has no `Tests:` section",
            args.pipeline.display()
        )));
    }
    let work = std::env::temp_dir().join(format!("flowengine-test-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", work.display())))?;
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for test in &tests {
        // Each test runs a fresh plan: a run consumes it.
        let mut plan = plan(args)?;
        let problems = plan
            .use_test_inputs(test, &work)
            .map_err(|e| vec![e])
            .and_then(|()| {
                let (pipeline, taps) = plan.preview(usize::MAX).map_err(|e| vec![e.to_string()])?;
                let outcome = pipeline.run(&INTERRUPTED);
                outcome
                    .result
                    .map_err(|e| vec![format!("the run failed: {e}")])?;
                Ok(test::check(test, &taps))
            })
            .unwrap_or_else(|e| e);
        if problems.is_empty() {
            let _ = writeln!(out, "ok      {}", test.name);
        } else {
            failed += 1;
            let _ = writeln!(out, "FAILED  {}", test.name);
            for p in problems {
                let _ = writeln!(out, "  {p}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = writeln!(out, "\n{} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        return Err(Failure::TestsFailed(failed, tests.len()));
    }
    Ok(())
}

fn run_preview(args: PreviewArgs) -> Result<(), Failure> {
    let plan = plan(&args.common)?;
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    if let Some(unknown) = args.nodes.iter().find(|n| !names.contains(&n.as_str())) {
        return Err(Failure::Usage(format!(
            "`--node {unknown}`: the pipeline has no such node; its nodes are {}",
            names.join(", ")
        )));
    }
    let rows = usize::try_from(args.rows).unwrap_or(usize::MAX);
    let (pipeline, taps) = plan.preview(rows).map_err(Failure::Build)?;
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let outcome = pipeline.run(&INTERRUPTED);
    outcome.result.map_err(Failure::Run)?;
    let rejects = taps.rejects.lock().unwrap_or_else(|p| p.into_inner());
    let text = preview::render(&taps.outputs, &rejects, &args.nodes, args.format)
        .map_err(|e| Failure::Run(RunError::Internal(format!("printing the preview: {e}"))))?;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn print_plan(plan: &Plan) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "plan `{}`: {}", plan.name, describe(plan));
    for &i in &plan.order {
        let n = &plan.nodes[i];
        let _ = writeln!(err, "  {} ({} {})", n.name, n.kind.role(), n.type_name);
        if let Some(schema) = n.output_schema.as_ref().or(n.input_schema.as_ref()) {
            for f in schema.fields() {
                let null = if f.is_nullable() { ", nullable" } else { "" };
                let _ = writeln!(err, "    {}: {}{null}", f.name(), f.data_type());
            }
        }
    }
    for (node, line) in explanations(plan) {
        let _ = writeln!(err, "  {node}: {line}");
    }
}

fn report_summary(summary: &RunSummary, json: bool, verbose: bool) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(summary.render().as_bytes());
    if verbose {
        for node in &summary.nodes {
            for note in &node.notes {
                let _ = writeln!(err, "{}: {note}", node.name);
            }
        }
    }
    drop(err);
    if json {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not a failure of the run.
        let _ = serde_json::to_writer(&mut out, summary).map(|()| writeln!(out));
    }
}

//! Ballista's processes with FlowEngine's plugins in them, and a client that submits a pipeline:
//! [`scheduler`] and [`executor`] serve until stopped (`flowengine cluster ...`); [`submit`] runs
//! a [`Spec`] on a cluster, or on one started inside this process for the run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use flowengine_engine::registry::Registry;
use futures::TryStreamExt;

use super::cancel::Cancel;
use super::codec::codec;
use super::parts::{self, Layout};
use super::spec::Spec;
use super::task::{read_reports, PipelineExec, Report};

/// Why a cluster could not run a pipeline (its own failures are in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Starting a process or its runtime.
    #[error("cannot start {what}: {message}")]
    Start {
        /// What was starting.
        what: &'static str,
        /// Why it could not.
        message: String,
    },
    /// Nothing answers at the scheduler's address.
    #[error(
        "cannot reach the Ballista scheduler at {addr} ({message}); is `flowengine cluster \
         scheduler` running there? Nothing was run"
    )]
    Unreachable {
        /// The address given.
        addr: String,
        /// Why the connection failed.
        message: String,
    },
    /// The job could not be submitted, or the cluster failed it.
    #[error("the Ballista job failed: {0}; no output was committed by it")]
    Job(String),
}

/// Where a pipeline runs on Ballista.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// A scheduler and one executor started in this process for the run.
    InProcess,
    /// A running scheduler at `host:port`.
    Remote(String),
}

/// How a cluster process is started.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// The address this executor listens on.
    pub bind_host: String,
    /// The address the scheduler and clients reach it at; if none, the one the scheduler sees it
    /// connect from.
    pub external_host: Option<String>,
    /// Its Arrow Flight port (results and shuffles are read from it).
    pub port: u16,
    /// Its gRPC port.
    pub grpc_port: u16,
    /// Tasks it runs at once.
    pub slots: usize,
    /// Where task outputs wait to be read; a temporary directory if none.
    pub work_dir: Option<String>,
    /// How often it tells the scheduler it is alive.
    pub heartbeat_seconds: u64,
}

/// Session settings with our codec in them, as every Ballista process of ours needs.
fn session_config(registry: Arc<Registry>, interrupt: &'static AtomicBool) -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_ballista_physical_extension_codec(codec(registry, interrupt))
}

fn runtime(what: &'static str) -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flowengine-ballista")
        .build()
        .map_err(|e| ClusterError::Start {
            what,
            message: e.to_string(),
        })
}

/// Serves a Ballista scheduler on `addr` until the process ends; an executor not heard from for
/// `executor_timeout` seconds is taken as lost, and its tasks are run again elsewhere.
pub fn scheduler(
    addr: SocketAddr,
    executor_timeout: u64,
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
) -> Result<(), ClusterError> {
    let started = |e: ballista_core::error::BallistaError| ClusterError::Start {
        what: "the scheduler",
        message: e.to_string(),
    };
    let config = SchedulerConfig {
        bind_host: addr.ip().to_string(),
        bind_port: addr.port(),
        executor_timeout_seconds: executor_timeout,
        // Looked for at least every 15 s (Ballista's default), and often enough for a short
        // timeout.
        expire_dead_executor_interval_seconds: (executor_timeout / 2).clamp(1, 15),
        no_executors_grace_period_seconds: executor_timeout,
        override_physical_codec: Some(codec(registry, interrupt)),
        ..SchedulerConfig::default()
    };
    runtime("the scheduler")?.block_on(async {
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(started)?;
        ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(config))
            .await
            .map_err(started)
    })
}

/// Serves a Ballista executor that registers with the scheduler, until the process ends.
pub fn executor(
    options: ExecutorOptions,
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
) -> Result<(), ClusterError> {
    let config = ExecutorProcessConfig {
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        bind_host: options.bind_host,
        external_host: options.external_host,
        port: options.port,
        grpc_port: options.grpc_port,
        vcores: options.slots,
        work_dir: options.work_dir,
        executor_heartbeat_interval_seconds: options.heartbeat_seconds,
        override_physical_codec: Some(codec(registry, interrupt)),
        ..ExecutorProcessConfig::default()
    };
    runtime("the executor")?.block_on(async {
        start_executor_process(Arc::new(config))
            .await
            .map_err(|e| ClusterError::Start {
                what: "the executor",
                message: e.to_string(),
            })
    })
}

/// Runs `spec` on `cluster` as one task, or, when its source can be cut, as up to `tasks` tasks
/// (by default one per 64 MiB of input) that each read a range of the file, whose parts the
/// client commits once every task has succeeded (`parts.rs`). The report is the run's, as one
/// run would give it.
pub fn submit(
    spec: Spec,
    cluster: &Cluster,
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
    tasks: Option<usize>,
) -> Result<Report, ClusterError> {
    let started = Instant::now();
    let remote = matches!(cluster, Cluster::Remote(_));
    let layout = match parts::lay_out(&spec, &registry, (tasks, remote), interrupt) {
        Ok(layout) => layout,
        Err(report) => return Ok(*report),
    };
    let (split, control) = match &layout {
        Layout::Split { parts, dir, .. } => (Some(parts.clone()), Some(dir.path())),
        Layout::Whole { control, .. } => (None, control.as_ref().map(|c| c.path())),
    };
    let control = control.map(Path::to_path_buf);
    let pipeline = PipelineExec::new(spec, (split, control.clone()), registry.clone(), interrupt)
        .map_err(|e| ClusterError::Job(format!("planning the job: {e}")))?;
    let pipeline = Arc::new(pipeline);
    let plan: Arc<dyn ExecutionPlan> = match &layout {
        // One stage of tasks, then one that gathers their reports.
        Layout::Split { .. } => Arc::new(CoalescePartitionsExec::new(pipeline)),
        Layout::Whole { .. } => pipeline,
    };
    let reports = match &control {
        // Ctrl-C reaches tasks elsewhere through the directory they watch.
        Some(dir) => {
            let done = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| Cancel::ask(dir, interrupt, &done));
                let reports = execute(plan, cluster, registry, interrupt);
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                reports
            })?
        }
        None => execute(plan, cluster, registry, interrupt)?,
    };
    match layout {
        Layout::Whole { why, control } => {
            drop(control);
            let mut report = match <[Report; 1]>::try_from(reports) {
                Ok([report]) => report,
                Err(reports) => {
                    let n = reports.len();
                    return Err(ClusterError::Job(format!(
                        "the job gave {n} reports, not one"
                    )));
                }
            };
            let source = (report.summary.as_mut())
                .and_then(|s| s.nodes.iter_mut().find(|n| n.role == "source"));
            if let (Some(why), Some(source)) = (why, source) {
                source.notes.insert(0, format!("read by one task: {why}"));
            }
            Ok(report)
        }
        Layout::Split {
            staged,
            parts,
            dir,
            cut,
        } => {
            let report = parts::finish_split(*staged, &parts, reports, started, cut)
                .map_err(ClusterError::Job);
            drop(dir);
            report
        }
    }
}

/// Runs `plan` as a job on `cluster`; the reports its tasks sent.
fn execute(
    plan: Arc<dyn ExecutionPlan>,
    cluster: &Cluster,
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
) -> Result<Vec<Report>, ClusterError> {
    let config = session_config(registry, interrupt);
    runtime("the Ballista client")?.block_on(async {
        let url = match cluster {
            Cluster::Remote(addr) => {
                let url = format!("http://{addr}");
                SchedulerGrpcClient::connect(url.clone())
                    .await
                    .map_err(|e| ClusterError::Unreachable {
                        addr: addr.clone(),
                        message: innermost(&e),
                    })?;
                url
            }
            Cluster::InProcess => start_in_process(&config).await?,
        };
        let job = |e: datafusion::error::DataFusionError| ClusterError::Job(e.to_string());
        let stream = ballista_core::execution_plans::execute_physical_plan::<PhysicalPlanNode>(
            url,
            &config.ballista_config(),
            plan,
            config.ballista_physical_extension_codec().as_ref(),
            format!("flowengine-{}", std::process::id()),
            config.clone(),
        )
        .await
        .map_err(job)?;
        let batches: Vec<_> = stream.try_collect().await.map_err(job)?;
        read_reports(&batches).map_err(ClusterError::Job)
    })
}

/// A scheduler and one executor in this process; returns the scheduler's URL.
async fn start_in_process(config: &SessionConfig) -> Result<String, ClusterError> {
    let start = |what| {
        move |e: ballista_core::error::BallistaError| ClusterError::Start {
            what,
            message: e.to_string(),
        }
    };
    let state = SessionStateBuilder::new()
        .with_config(config.clone())
        .with_default_features()
        .build();
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
        .await
        .map_err(start("an in-process scheduler"))?;
    let url = format!("http://localhost:{}", addr.port());
    let scheduler = connect(&url).await?;
    let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
    ballista_executor::new_standalone_executor_from_state(scheduler, slots, &state)
        .await
        .map_err(start("an in-process executor"))?;
    Ok(url)
}

/// The most specific cause of `e` ("Connection refused (os error 111)", not "transport error").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The scheduler just started may not listen yet: try for a few seconds.
async fn connect(
    url: &str,
) -> Result<SchedulerGrpcClient<tonic::transport::Channel>, ClusterError> {
    let mut last = String::new();
    for _ in 0..50 {
        match SchedulerGrpcClient::connect(url.to_string()).await {
            Ok(client) => return Ok(client),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(ClusterError::Start {
        what: "an in-process scheduler",
        message: format!("{url} does not answer: {last}"),
    })
}

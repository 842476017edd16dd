//! The engines past the local one: `run --engine datafusion`, `run --engine ballista` and
//! `flowengine cluster`, in a build with the `distributed` feature (`distributed/`). A build
//! without it says how to get one.

use std::time::Instant;

use chrono::{DateTime, Local};
use flowengine_engine::Plan;

use crate::{ClusterCommand, Engine, Failure, RunArgs};

/// `run --engine datafusion|ballista`.
pub(crate) fn run(
    args: &RunArgs,
    plan: Plan,
    now: DateTime<Local>,
    started: Instant,
) -> Result<(), Failure> {
    match args.engine {
        Engine::Local => unreachable!("the local engine runs in main.rs"),
        Engine::Datafusion => on::datafusion(args, plan, started),
        Engine::Ballista => on::ballista(args, plan, now),
    }
}

/// `flowengine cluster ...`.
pub(crate) fn cluster(command: ClusterCommand) -> Result<(), Failure> {
    on::cluster(command)
}

#[cfg(feature = "distributed")]
mod on {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use chrono::{DateTime, Local};
    use flowengine_distributed::ballista::{self, Cluster, Report, Spec, Stage};
    use flowengine_engine::Plan;

    use crate::{guard, monitor, report_summary, ClusterCommand, Failure, RunArgs, INTERRUPTED};

    /// The live counters are the local executor's; the other engines report at the end only.
    fn refuse_monitoring(args: &RunArgs) -> Result<(), Failure> {
        let asked = [
            (
                args.progress == monitor::ProgressMode::Always,
                "--progress always",
            ),
            (args.monitor.is_some(), "--monitor"),
            (args.metrics.is_some(), "--metrics"),
            (args.metrics_addr.is_some(), "--metrics-addr"),
        ];
        match asked.iter().find(|(on, _)| *on) {
            Some((_, option)) => Err(Failure::Usage(format!(
                "{option} is not supported with `--engine {}` (it reports at the end only)",
                args.engine.name()
            ))),
            None => Ok(()),
        }
    }

    /// The plan as a DataFusion plan, under the same guard as a local run.
    pub(super) fn datafusion(args: &RunArgs, plan: Plan, started: Instant) -> Result<(), Failure> {
        refuse_monitoring(args)?;
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
        let guard = guard(&plan);
        let done = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| monitor::guard(&guard, &done));
            let outcome = flowengine_distributed::prepare(plan, &INTERRUPTED).map(|prepared| {
                if args.verbose {
                    eprintln!("DataFusion plan:\n{}", prepared.display().trim_end());
                }
                let setup = started.elapsed();
                let mut outcome = prepared.run();
                outcome.summary.setup_ms = flowengine_engine::metrics::millis(setup);
                outcome
            });
            done.store(true, Ordering::SeqCst);
            watcher.thread().unpark();
            outcome
        });
        let outcome = outcome.map_err(|e| match e {
            flowengine_distributed::Error::Build(e) => Failure::Build(e),
            e => Failure::Usage(e.to_string()),
        })?;
        report_summary(&outcome.summary, args.json, args.verbose);
        outcome.result.map_err(Failure::Run)
    }

    /// The pipeline as a Ballista job: on `--scheduler`'s cluster, or on a scheduler and an
    /// executor started in this process (then under the same guard as a local run).
    pub(super) fn ballista(
        args: &RunArgs,
        plan: Plan,
        now: DateTime<Local>,
    ) -> Result<(), Failure> {
        refuse_monitoring(args)?;
        // Refused here, before anything is submitted, as `--engine datafusion` refuses it.
        flowengine_distributed::check(&plan).map_err(|e| Failure::Usage(e.to_string()))?;
        let spec =
            Spec::read(&args.common.pipeline, args.common.vars.clone(), now).map_err(|e| {
                Failure::Usage(format!(
                    "cannot read pipeline file {}: {e}",
                    args.common.pipeline.display()
                ))
            })?;
        let cluster = match &args.scheduler {
            Some(addr) => Cluster::Remote(addr.clone()),
            None => Cluster::InProcess,
        };
        let registry = Arc::new(flowengine_plugins::builtin_registry());
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
        let guard = guard(&plan);
        let done = AtomicBool::new(false);
        let report = std::thread::scope(|scope| {
            // A remote job's limits are kept by the executor that runs it.
            let watcher = (cluster == Cluster::InProcess)
                .then(|| scope.spawn(|| monitor::guard(&guard, &done)));
            let tasks = args.tasks.map(|n| n as usize);
            let report = ballista::submit(spec, &cluster, registry, &INTERRUPTED, tasks);
            done.store(true, Ordering::SeqCst);
            if let Some(w) = watcher {
                w.thread().unpark();
            }
            report
        });
        let Report {
            summary, failure, ..
        } = report.map_err(|e| Failure::Job(e.to_string()))?;
        if let Some(summary) = &summary {
            report_summary(summary, args.json, args.verbose);
        }
        match failure {
            None => Ok(()),
            Some(f) if f.stage == Stage::Run => Err(Failure::Job(f.message)),
            Some(f) => Err(Failure::Usage(f.message)),
        }
    }

    pub(super) fn cluster(command: ClusterCommand) -> Result<(), Failure> {
        let registry = Arc::new(flowengine_plugins::builtin_registry());
        let served = match command {
            ClusterCommand::Scheduler {
                bind,
                executor_timeout,
            } => {
                eprintln!("flowengine cluster scheduler: listening on {bind}");
                ballista::scheduler(bind, executor_timeout, registry, &INTERRUPTED)
            }
            ClusterCommand::Executor {
                scheduler,
                bind,
                external_host,
                port,
                grpc_port,
                slots,
                work_dir,
                heartbeat,
            } => {
                let (host, scheduler_port) = split_host_port(&scheduler)?;
                eprintln!(
                    "flowengine cluster executor: serving on {bind}:{port}, scheduler {scheduler}"
                );
                let options = ballista::ExecutorOptions {
                    scheduler_host: host,
                    scheduler_port,
                    bind_host: bind,
                    external_host,
                    port,
                    grpc_port,
                    slots: slots
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or_else(|| {
                            std::thread::available_parallelism().map_or(1, |n| n.get())
                        }),
                    work_dir: work_dir.map(|d| d.display().to_string()),
                    heartbeat_seconds: heartbeat,
                };
                ballista::executor(options, registry, &INTERRUPTED)
            }
        };
        served.map_err(|e| Failure::Job(e.to_string()))
    }

    fn split_host_port(addr: &str) -> Result<(String, u16), Failure> {
        addr.rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
            .ok_or_else(|| Failure::Usage(format!("expected HOST:PORT, found {addr:?}")))
    }
}

#[cfg(not(feature = "distributed"))]
mod on {
    use std::time::Instant;

    use chrono::{DateTime, Local};
    use flowengine_engine::Plan;

    use crate::{ClusterCommand, Failure, RunArgs};

    fn not_built(what: &str) -> Failure {
        Failure::Usage(format!(
            "this flowengine was built without DataFusion and Ballista; build it with \
             `cargo build --release -p flowengine-cli --features distributed` for {what}"
        ))
    }

    pub(super) fn datafusion(args: &RunArgs, _: Plan, _: Instant) -> Result<(), Failure> {
        Err(not_built(&format!("`--engine {}`", args.engine.name())))
    }

    pub(super) fn ballista(args: &RunArgs, _: Plan, _: DateTime<Local>) -> Result<(), Failure> {
        Err(not_built(&format!("`--engine {}`", args.engine.name())))
    }

    pub(super) fn cluster(_: ClusterCommand) -> Result<(), Failure> {
        Err(not_built("`flowengine cluster`"))
    }
}

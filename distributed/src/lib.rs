//! `--engine datafusion`: a FlowEngine pipeline run as an Apache DataFusion physical plan; and
//! `--engine ballista` ([`ballista`]): that run as a job on a Ballista cluster.
//!
//! The plan's nodes become DataFusion operators that run FlowEngine's own plugin code
//! (`exec.rs`): a source is a leaf operator whose pieces are decoded on the worker pool and
//! settled in order, exactly as on the local engine, and a batch transform (`Filter`, `Compute`,
//! `Select`, `Cast`, `JavaScriptTransform`, ...) is an operator that applies the transform to each
//! batch on the run's worker pool, in parallel up to the run's window, in input order. A node read
//! by several consumers (fan-out), or a transform that routes rows to named ports, is read through
//! a fork (`fork.rs`); a node with several inputs (fan-in) merges them in arrival order, as the
//! local engine does. Our kernels run rather than
//! DataFusion's expressions because the semantics differ where users feel it: every bad value is a
//! reject naming its file, line, column and value, a JavaScript row keeps its lines, and types,
//! formats and rounding are FlowEngine's. Rows carry their origin (file and line) across operators
//! as two trailing columns (`origin.rs`). Every sink is a DataFusion `DataSink` (`sink.rs`);
//! they all pull their inputs at the same time, encode on the worker pool a window at a time,
//! and write in order; then the run ends as the local
//! engine's does (`run.rs`): `MaxErrors` on the totals, the accounting check (rows in = out +
//! filtered + rejected per node, nothing lost between nodes, the dead-letter file holds every
//! reject), and the commit of the sinks and then the dead-letter file.
//!
//! So the output files, the rejects and the accounting equal the local engine's, byte for byte
//! (every golden case that is a run runs on both: `cli/tests/golden.rs`). A plan this engine
//! cannot run (one the planner would have refused) is refused before any file is opened, naming
//! the node ([`Error::Unsupported`]).

pub mod ballista;
mod exec;
mod fork;
mod graph;
mod origin;
mod run;
mod sink;
mod state;
mod stateful;

pub use run::{prepare, Prepared};

use flowengine_engine::error::BuildError;

/// Why a pipeline cannot start on this engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something in the pipeline this engine does not run.
    #[error(
        "node `{node}` ({plugin}): {what} is not supported on `--engine datafusion` or `ballista`; \
         run this pipeline on the local engine (the default)"
    )]
    Unsupported {
        /// The node (or the pipeline, for its shape).
        node: String,
        /// Its plugin type.
        plugin: &'static str,
        /// What it needs.
        what: String,
    },
    /// A node could not be built (an input that cannot be opened, ...).
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Whether this engine can run `plan` (what [`prepare`] checks first, without opening a file).
pub fn check(plan: &flowengine_engine::plan::Plan) -> Result<(), Error> {
    graph::order(plan).map(|_| ())
}

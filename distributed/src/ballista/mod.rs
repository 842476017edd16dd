//! `--engine ballista` and `flowengine cluster`: a pipeline run as a job on an Apache Ballista
//! cluster whose processes carry FlowEngine's plugins.
//!
//! The plan that travels is the pipeline file itself ([`Spec`]), in one plan node of ours
//! ([`PipelineExec`], written and read by [`Codec`]). An executor plans it again with the same
//! plugins and runs it on the DataFusion engine (`crate::run`), so output, rejects and
//! accounting are those of `--engine datafusion`, and the task sends back the run's [`Report`].
//!
//! A pipeline whose source is one plain file runs as several tasks (`parts.rs`): the client cuts
//! the file into ranges of whole records, each task runs the pipeline on one range and writes its
//! rows and rejects as parts, and the client pours the parts into the pipeline's own sink and
//! dead-letter file, in order, and commits them once every task has succeeded. Ctrl-C on the client
//! reaches the tasks on a remote cluster through a directory they share (`cancel.rs`). Executors must see
//! the pipeline file, its inputs and its outputs at the same paths as the client (one machine, or
//! a shared file system).

mod cancel;
mod cluster;
mod codec;
mod parts;
mod spec;
mod task;

pub use cluster::{executor, scheduler, submit, Cluster, ClusterError, ExecutorOptions};
pub use codec::{codec, Codec};
pub use parts::Parts;
pub use spec::Spec;
pub use task::{Failure, PipelineExec, Report, Stage};

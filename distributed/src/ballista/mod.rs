//! `--engine ballista` and `flowengine cluster`: a pipeline run as a job on an Apache Ballista
//! cluster whose processes carry FlowEngine's plugins.
//!
//! The plan that travels is the pipeline file itself ([`Spec`]), in one plan node of ours
//! ([`PipelineExec`], written and read by [`Codec`]). An executor plans it again with the same
//! plugins and runs it on the DataFusion engine (`crate::run`), so output, rejects and
//! accounting are those of `--engine datafusion`, and the task sends back the run's [`Report`].
//!
//! Today a pipeline is one task: its source is not yet split into byte ranges, so a cluster runs
//! many pipelines at once, not one pipeline faster. Executors must see the pipeline file, its
//! inputs and its outputs at the same paths as the client (one machine, or a shared file system).

mod cluster;
mod codec;
mod spec;
mod task;

pub use cluster::{executor, scheduler, submit, Cluster, ClusterError, ExecutorOptions};
pub use codec::{codec, Codec};
pub use spec::Spec;
pub use task::{Failure, PipelineExec, Report, Stage};

//! FlowEngine's core: from a pipeline file to rows moving between plugins.
//!
//! The stages, each a type and each testable alone:
//!
//! 1. [`load::load`] reads the YAML into a [`load::PipelineConfig`], with variables defined (the
//!    `load` folder: YAML, map reader, variables, the file's sections).
//! 2. [`plan::Plan::new`] (or [`plan::load_plan`] for both steps) resolves plugin types through a
//!    [`registry::Registry`], parses every plugin's `Config`, checks the graph and propagates Arrow
//!    schemas. It opens no file and collects every error: this is `flowengine validate`.
//! 3. [`plan::Plan::build`] opens inputs and stages outputs, giving an [`exec::Pipeline`].
//! 4. [`exec::Pipeline::run`] moves [`batch::Batch`]es between node threads over bounded channels
//!    and returns a [`metrics::RunSummary`] that accounts for every row.
//!
//! The engine knows no plugin and no command line: plugins implement the traits in [`component`]
//! and register themselves in a [`registry::Registry`].

pub mod batch;
pub mod component;
pub mod datefmt;
pub mod error;
pub mod exec;
pub mod load;
pub mod memory;
pub mod metrics;
pub mod paths;
pub mod plan;
pub mod registry;
pub mod reject;
pub mod schema;

pub use batch::Batch;
pub use error::{BuildError, ConfigError, ConfigErrors, IoError, RowError, RunError};
pub use exec::{Pipeline, RunOutcome};
pub use load::LoadOptions;
pub use metrics::RunSummary;
pub use plan::{load_plan, plan_text, Plan};
pub use registry::Registry;

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
//!
//! The whole path through the library, with the built-in plugins of `flowengine-plugins`:
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use flowengine_engine::{plan_text, LoadOptions};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("in.csv"), "id,name\n1,ann\n2,bob\n3,cy\n")?;
//! let yaml = r#"
//! Pipeline:
//!   Name: demo
//!   Plugins:
//!     - Name: read
//!       Type: DelimitedSource
//!       Config:
//!         FilePath: in.csv
//!         OutputSchema:
//!           Columns: [ { Name: id, Type: int64 }, { Name: name, Type: string } ]
//!     - { Name: keep, Type: Filter, Config: { Condition: "id >= 2" } }
//!     - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
//!   Connections:
//!     - { From: read, To: keep }
//!     - { From: keep, To: write }
//! "#;
//! let registry = flowengine_plugins::builtin_registry();
//! let path = dir.path().join("pipeline.yaml");
//! let plan = plan_text(yaml, &path, &LoadOptions::default(), &registry)?; // validate stops here
//! let outcome = plan.build()?.run(&AtomicBool::new(false));
//! outcome.result?;
//! assert_eq!(outcome.summary.rows_read, 3);
//! assert_eq!(outcome.summary.rows_filtered, 1);
//! let written = std::fs::read_to_string(dir.path().join("out.csv"))?;
//! assert_eq!(written, "id,name\n2,bob\n3,cy\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
pub mod preview;
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

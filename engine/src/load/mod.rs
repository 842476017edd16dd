//! The load stage: from the pipeline file's text to a [`PipelineConfig`], with variables defined
//! and every key read through a [`config::MapReader`] that reports positions and unknown keys.
//!
//! - `yaml`: the YAML reader, keeping a line and column for every node;
//! - `config`: the map reader and `ConfigCx`, which collects every configuration error;
//! - `vars`: `Variables` and `{Name:format}` substitution;
//! - `file`: the pipeline file's own sections (`Settings`, `Plugins`, `Connections`) and [`load`];
//! - `tests`: the `Tests:` section, which `flowengine test` runs.
//!
//! Plugins' `Config` maps stay YAML nodes here; the plan stage hands them to the plugins' parsers.

pub mod config;
pub mod file;
pub mod tests;
pub mod vars;
pub mod yaml;

pub use file::{load, load_text, LoadOptions, PipelineConfig};

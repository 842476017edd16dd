//! What travels to an executor: the pipeline file itself, not a translation of it. An executor
//! plans it again with the same plugins, so schemas, scripts and options mean there exactly what
//! they mean on the client.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};
use flowengine_engine::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use flowengine_engine::load::LoadOptions;
use flowengine_engine::plan::{plan_text, Plan};
use flowengine_engine::registry::Registry;
use serde::{Deserialize, Serialize};

/// A pipeline as the client was asked to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The pipeline file's text, as the client read it.
    pub text: String,
    /// Where the file is (absolute). Relative paths in it are relative to its directory, so
    /// executors must see that directory, and the inputs and outputs, at the same paths.
    pub path: PathBuf,
    /// `--var NAME=VALUE` overrides.
    pub vars: Vec<(String, String)>,
    /// When the client started (RFC 3339), so `RunDate` names the same files everywhere.
    pub now: String,
}

impl Spec {
    /// Reads the pipeline file at `path` for a run that starts at `now`.
    pub fn read(
        path: &Path,
        vars: Vec<(String, String)>,
        now: DateTime<Local>,
    ) -> std::io::Result<Spec> {
        Ok(Spec {
            text: std::fs::read_to_string(path)?,
            path: std::path::absolute(path)?,
            vars,
            now: now.to_rfc3339(),
        })
    }

    /// Plans the pipeline as the client did (at the client's time, so that `RunDate` names the
    /// same files: a time that does not read is an error, not this process's clock).
    pub fn plan(&self, registry: &Registry) -> Result<Plan, ConfigErrors> {
        let now = DateTime::parse_from_rfc3339(&self.now)
            .map(|t| t.with_timezone(&Local))
            .map_err(|e| {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: format!("the client's start time (RFC 3339): {e}"),
                    found: format!("`{}`", self.now),
                };
                ConfigErrors(vec![ConfigError::new(kind, "the job's spec", None)])
            })?;
        let opts = LoadOptions {
            vars: self.vars.clone(),
            now,
        };
        plan_text(&self.text, &self.path, &opts, registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_back_as_written() {
        let spec = Spec {
            text: "Pipeline:\n  Name: p\n".into(),
            path: "/data/p.yaml".into(),
            vars: vec![("Input".into(), "in.csv".into())],
            now: "2026-12-06T19:30:00+01:00".into(),
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);
    }

    #[test]
    fn a_start_time_that_does_not_read_is_an_error() {
        let spec = Spec {
            text: "Pipeline:\n  Name: p\n".into(),
            path: "/data/p.yaml".into(),
            vars: Vec::new(),
            now: "yesterday".into(),
        };
        let message = spec.plan(&Registry::new()).unwrap_err().to_string();
        assert!(message.contains("found `yesterday`"), "{message}");
    }
}

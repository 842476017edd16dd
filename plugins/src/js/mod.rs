//! `JavaScriptTransform`: a user's `process(context)` function, run on boa_engine, once per row.
//!
//! The script is compiled once per worker thread (a boa `Context` is not `Send`); batches run in
//! parallel on the executor's workers unless `Parallel: false`. Only the script sees rows: input
//! columns the script does not replace pass through as the same Arrow arrays, and declared fields
//! are appended straight into Arrow builders.
//!
//! This file holds the plugin's two entry points: [`parse`] reads the `Config` map and compiles
//! the script once at plan time, so a syntax error or a missing `process` is reported by
//! `flowengine validate`, with its line and column, before any data moves; the
//! `TransformConfig` impl declares the output schema and builds the running transform.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the `Config` keys and their readers, the output schema |
//! | [`engine`] | one compiled script on one thread, and the per-batch driver |
//! | [`api`] | the `context` object and its native functions, and the state they work on |
//! | [`shape`] | the output shape, per-row problems, the rows of a batch as they are finished |
//! | [`log`] | `context.utils.log`: levels and the rate-limited log |
//! | [`format`] | `context.utils.format` |
//! | [`values`] | Arrow values to JavaScript and back, with the conversion rules |
//! | [`transform`] | the running transform: batches in, routed batches and rejects out |
//!
//! Imports go one way: `transform` → `engine` → `api` → `shape` → `config` → `log`, with
//! `values` and `format` below `api` and `shape`; this file uses `config`, `engine`, `log` and
//! `transform`, and nothing uses it.

pub mod api;
pub mod compiled;
pub mod config;
pub mod engine;
pub mod format;
pub mod log;
pub mod shape;
pub mod transform;
pub mod values;

use arrow_schema::SchemaRef;
use flowengine_engine::component::{BuildCx, BuiltTransform, NodeCx, TransformConfig};
use flowengine_engine::error::{BuildError, ConfigErrorKind, PlanError};
use flowengine_engine::load::config::{ConfigCx, MapReader};

use config::{read_limits, read_output_schema, read_ports, read_script, JsConfig};
use log::Level;
use transform::JsTransform;

/// Parse a `JavaScriptTransform` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let (script, script_name) = read_script(m, cx, &node.node)?;
    let (inherit, fields) = read_output_schema(m, cx)?;
    let parallel = m.bool(cx, "Parallel").unwrap_or(true);
    let limits = read_limits(m, cx);
    let log_level = m
        .choice(cx, "LogLevel", &Level::CHOICES)
        .unwrap_or(Level::Info);
    let ports = read_ports(m, cx, &script)?;
    // `FLOWENGINE_JS_COMPILE=0` runs every script on boa: the golden harness runs each case both
    // ways and requires the same results.
    let compile = m.bool(cx, "Compile").unwrap_or(true)
        && std::env::var_os("FLOWENGINE_JS_COMPILE").is_none_or(|v| v != "0");
    for (key, replacement) in [
        (
            "Engine",
            "limits are `MaxLoopIterations`, `MaxRecursion`, `BatchTimeoutMs` and `TimeoutPerRow`",
        ),
        (
            "Performance",
            "every run reports rows/s per node; there is nothing to configure",
        ),
    ] {
        m.legacy(cx, key, replacement);
    }
    // Errors about the script point at the key that holds it.
    let key = if m.has("Script") {
        "Script"
    } else {
        "ScriptFile"
    };
    let (key_path, key_mark) = (m.key_path(key), m.entry_mark(key));
    if script.contains("businessRule") {
        let msg = "`context.validate.businessRule` is not supported (it was a stub that always passed in the original)";
        let hint = "write the rule as JavaScript: `context.validate.check(row.total > 0, 'total must be positive')`";
        cx.error_with_hint(
            ConfigErrorKind::Invalid(msg.into()),
            &key_path,
            key_mark,
            hint,
        );
        return None;
    }
    let config = JsConfig {
        node: node.node.clone(),
        script: script.into(),
        script_name,
        fields,
        inherit,
        ports,
        parallel,
        limits,
        log_level,
        compile,
    };
    if let Err(e) = engine::check_script(&config) {
        let hint = e.hint();
        cx.error_with_hint(
            ConfigErrorKind::Invalid(e.to_string()),
            &key_path,
            key_mark,
            hint,
        );
        return None;
    }
    Some(Box::new(config))
}

impl TransformConfig for JsConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        self.schema_for(input).map_err(|e| vec![e])
    }

    fn parallel(&self) -> bool {
        self.parallel
    }

    fn ports(&self) -> Vec<String> {
        self.ports.clone()
    }

    fn explain(&self, input: &SchemaRef) -> Vec<String> {
        let Ok(output) = self.schema_for(input) else {
            return Vec::new();
        };
        let shape = shape::Shape::new(self, input.clone(), output);
        vec![match transform::compiled_or_why(self, &shape) {
            Ok(_) => "the script is compiled to columnar code; a batch runs on boa only when it \
                      has a null in a column the script reads as a value, or an int64 beyond ±2^53"
                .to_string(),
            Err(why) => format!("the script runs on boa, row by row: {why}"),
        }]
    }

    fn build(&self, input: SchemaRef, _: &BuildCx) -> Result<BuiltTransform, BuildError> {
        let output = self.schema_for(&input).map_err(|e| BuildError::Invalid {
            node: self.node.clone(),
            message: e.to_string(),
        })?;
        Ok(BuiltTransform::batches(JsTransform::new(
            self.clone(),
            input,
            output,
        )))
    }
}

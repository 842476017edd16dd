//! The structural part of a pipeline file: `Variables`, `Pipeline`, `Settings`, `Plugins`,
//! `Connections`. Plugin `Config` maps stay as YAML nodes here; the plan hands them to plugins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Local};

use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use crate::load::config::{ConfigCx, MapReader};
use crate::load::vars::Variables;
use crate::load::yaml::{self, Mark, Node, Value};
use crate::paths::absolute;
use crate::reject::{ErrorPolicy, MaxErrors};

/// Inputs to loading besides the file itself.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--var NAME=VALUE` overrides, highest precedence.
    pub vars: Vec<(String, String)>,
    /// The run's start time (`RunDate`).
    pub now: DateTime<Local>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            vars: Vec::new(),
            now: Local::now(),
        }
    }
}

/// Pipeline-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Rows per batch (sources may override).
    pub chunk_size: usize,
    /// Batches buffered on each connection before the producer waits.
    pub channel_capacity: usize,
    /// Threads of the worker pool (source conversion, sink encoding, parallel transforms); `None`
    /// means one per core.
    pub threads: Option<usize>,
    /// Bytes the run's batches may hold at once (see [`crate::memory`]).
    pub memory_limit: u64,
    /// What bad rows do, unless a plugin overrides it.
    pub error_handling: ErrorPolicy,
    /// How many rejects end the run.
    pub max_errors: MaxErrors,
    /// Where rejects go (`.csv`, or `.jsonl`/`.ndjson`).
    pub dead_letter: Option<PathBuf>,
    /// Where sorts and other stateful transforms spill; `None` is the system's temporary
    /// directory.
    pub temp_directory: Option<PathBuf>,
    /// How long the run may take, from when its nodes start; `None` is no limit.
    pub timeout: Option<std::time::Duration>,
    /// Where the error-policy keys were written, for plan-time messages.
    pub marks: SettingMarks,
}

/// Positions of the `Settings` keys the plan judges after reading every plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingMarks {
    /// `MaxErrors`.
    pub max_errors: Mark,
    /// `DeadLetter`.
    pub dead_letter: Mark,
    /// `MemoryLimit`.
    pub memory_limit: Mark,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            chunk_size: 8192,
            channel_capacity: 4,
            threads: None,
            memory_limit: crate::memory::DEFAULT_LIMIT,
            error_handling: ErrorPolicy::FailFast,
            max_errors: MaxErrors::Unlimited,
            dead_letter: None,
            temp_directory: None,
            timeout: None,
            marks: SettingMarks::default(),
        }
    }
}

/// One `Plugins:` entry.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// `Name`.
    pub name: String,
    /// `Type`, as written.
    pub type_name: String,
    /// Where `Type` was written.
    pub type_mark: Mark,
    /// The `Config` map (or `Null`).
    pub config: Node,
    /// YAML path of the entry, e.g. `Pipeline.Plugins[read]`.
    pub path: String,
    /// Where the entry starts.
    pub mark: Mark,
}

/// One `Connections:` entry.
#[derive(Debug, Clone)]
pub struct ConnectionEntry {
    /// `From`: a node name, optionally `node.port`.
    pub from: String,
    /// `To`: a node name.
    pub to: String,
    /// YAML path of the entry.
    pub path: String,
    /// Where the entry starts.
    pub mark: Mark,
}

/// A pipeline file, structurally checked.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// `Pipeline.Name`, substituted.
    pub name: String,
    /// `Pipeline.Settings`.
    pub settings: Settings,
    /// `Pipeline.Plugins`.
    pub plugins: Vec<PluginEntry>,
    /// `Pipeline.Connections`.
    pub connections: Vec<ConnectionEntry>,
    /// `Tests:` (beside `Pipeline:`), which only `flowengine test` runs.
    pub tests: Vec<crate::load::tests::TestCase>,
}

/// Read and parse `path`, define its variables, and read its structure. Errors so far are in the
/// returned context; the config is `None` only when the file could not be read as a pipeline at all.
pub fn load(
    path: &Path,
    opts: &LoadOptions,
) -> Result<(Option<PipelineConfig>, ConfigCx), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = format!("cannot read pipeline file {}: {e}", path.display());
        syntax_error(path, message, None)
    })?;
    load_text(&text, path, opts)
}

/// Like [`load`], for pipeline text already in memory; `path` places it (relative paths, messages).
pub fn load_text(
    text: &str,
    path: &Path,
    opts: &LoadOptions,
) -> Result<(Option<PipelineConfig>, ConfigCx), ConfigErrors> {
    let root = yaml::parse(text)
        .map_err(|e| syntax_error(path, format!("invalid YAML: {}", e.message), Some(e.mark)))?;
    let absolute = absolute(path);
    let base_dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let vars = Variables::with_builtins(&absolute, opts.now);
    let mut cx = ConfigCx::new(path.to_path_buf(), base_dir, vars);
    let config = read_root(&root, &mut cx, &opts.vars);
    Ok((config, cx))
}

fn syntax_error(path: &Path, message: String, mark: Option<Mark>) -> ConfigErrors {
    let location = mark.map(|m| crate::error::Location {
        file: std::sync::Arc::new(path.to_path_buf()),
        line: m.line,
        column: m.column,
    });
    ConfigErrors(vec![ConfigError::new(
        ConfigErrorKind::Syntax(message),
        "",
        location,
    )])
}

fn read_root(
    root: &Node,
    cx: &mut ConfigCx,
    overrides: &[(String, String)],
) -> Option<PipelineConfig> {
    let mut top = MapReader::new(root, "", cx)?;
    if let Some(mut vars) = top.map(cx, "Variables") {
        read_variables(&mut vars, cx);
    }
    for (name, value) in overrides {
        cx.vars_mut().define(name, value);
    }
    let pipeline = top.map(cx, "Pipeline");
    if pipeline.is_none() && !top.has("Pipeline") {
        top.missing(cx, "Pipeline");
    }
    let tests = crate::load::tests::read(&mut top, cx);
    top.finish(cx);
    let mut config = read_pipeline(pipeline?, cx)?;
    config.tests = tests;
    Some(config)
}

fn read_variables(map: &mut MapReader<'_>, cx: &mut ConfigCx) {
    for (name, mark, value) in map.take_all() {
        let path = map.key_path(name);
        if !crate::load::vars::is_valid_name(name) {
            let kind = ConfigErrorKind::InvalidValue {
                expected: "a variable name of letters, digits and `_`".into(),
                found: format!("{name:?}"),
            };
            cx.error(kind, &path, mark);
            continue;
        }
        match &value.value {
            Value::Scalar(s) => cx.vars_mut().define(name, s),
            Value::Null => cx.vars_mut().define(name, ""),
            _ => {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "a scalar value".into(),
                    found: value.kind_name().into(),
                };
                cx.error(kind, &path, value.mark);
            }
        }
    }
}

fn read_pipeline(mut p: MapReader<'_>, cx: &mut ConfigCx) -> Option<PipelineConfig> {
    let name = p.required_string(cx, "Name");
    p.take("Version");
    p.take("Description");
    p.take("Metadata");
    let settings = match p.map(cx, "Settings") {
        Some(mut s) => {
            let settings = read_settings(&mut s, cx);
            s.finish(cx);
            settings
        }
        None => Settings::default(),
    };
    let plugins = read_plugins(&mut p, cx);
    let connections = read_connections(&mut p, cx);
    let pipeline_mark = p.mark();
    let path = p.path().to_string();
    if plugins.as_ref().is_some_and(Vec::is_empty) {
        let kind = ConfigErrorKind::InvalidValue {
            expected: "at least one plugin".into(),
            found: "an empty list".into(),
        };
        cx.error(kind, &format!("{path}.Plugins"), pipeline_mark);
    }
    p.finish(cx);
    Some(PipelineConfig {
        name: name?,
        settings,
        plugins: plugins?,
        connections: connections.unwrap_or_default(),
        tests: Vec::new(),
    })
}

fn read_settings(s: &mut MapReader<'_>, cx: &mut ConfigCx) -> Settings {
    let defaults = Settings::default();
    let chunk_size = s
        .integer(cx, "ChunkSize", 1, 1 << 20)
        .map_or(defaults.chunk_size, |n| n as usize);
    let channel_capacity = s
        .integer(cx, "ChannelCapacity", 1, 1024)
        .map_or(defaults.channel_capacity, |n| n as usize);
    let threads = s.integer(cx, "Threads", 1, 1024).map(|n| n as usize);
    let memory_limit = s
        .byte_size(cx, "MemoryLimit", 1 << 20, 1 << 50)
        .unwrap_or(defaults.memory_limit);
    let error_handling = s
        .choice(cx, "ErrorHandling", &ErrorPolicy::CHOICES)
        .unwrap_or_default();
    let max_errors = read_max_errors(s, cx);
    let dead_letter = s.path_value(cx, "DeadLetter");
    let temp_directory = s.path_value(cx, "TempDirectory");
    let (least, most) = (Duration::from_millis(1), Duration::from_secs(366 * 86_400));
    let timeout = s.duration(cx, "Timeout", least, most);
    let marks = SettingMarks {
        max_errors: s.entry_mark("MaxErrors"),
        dead_letter: s.entry_mark("DeadLetter"),
        memory_limit: s.entry_mark("MemoryLimit"),
    };
    s.legacy(cx, "SkipMalformedRows", "use `ErrorHandling: skip-row`");
    s.legacy(cx, "MaxDegreeOfParallelism", "use `Settings.Threads`");
    s.legacy(
        cx,
        "ExecutionMode",
        "nodes always run concurrently; remove it (use `Settings.Threads` to limit workers)",
    );
    s.legacy(
        cx,
        "DefaultChannel",
        "connections are bounded channels; use `Settings.ChannelCapacity`",
    );
    s.legacy(
        cx,
        "TimeoutMs",
        "use `Settings.Timeout` with a unit, e.g. `Timeout: 30m`",
    );
    for key in ["Retry", "Monitoring", "Custom"] {
        s.legacy(
            cx,
            key,
            "this setting of the original system had no effect; remove it",
        );
    }
    Settings {
        chunk_size,
        channel_capacity,
        threads,
        memory_limit,
        error_handling,
        max_errors,
        dead_letter,
        temp_directory,
        timeout,
        marks,
    }
}

/// `MaxErrors: 100` or `MaxErrors: "2%"`.
pub fn read_max_errors(s: &mut MapReader<'_>, cx: &mut ConfigCx) -> MaxErrors {
    let Some(written) = s.string(cx, "MaxErrors") else {
        return MaxErrors::Unlimited;
    };
    MaxErrors::parse(&written).unwrap_or_else(|| {
        let expected = "a row count such as 100, or a percentage such as \"2%\"";
        s.invalid(cx, "MaxErrors", expected, &format!("{written:?}"));
        MaxErrors::Unlimited
    })
}

fn read_plugins(p: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Vec<PluginEntry>> {
    let present = p.has("Plugins");
    let items = p.list(cx, "Plugins");
    if !present {
        p.missing(cx, "Plugins");
    }
    let mut plugins = Vec::new();
    for (path, node) in items? {
        let Some(mut m) = MapReader::new(node, path.clone(), cx) else {
            continue;
        };
        let name = m.required_string(cx, "Name");
        // Name the entry by its plugin name in later messages: `Plugins[read]` beats `Plugins[3]`.
        let path = match &name {
            Some(n) => format!("{}[{n}]", path.rsplit_once('[').map_or(&*path, |(a, _)| a)),
            None => path,
        };
        let type_mark = m.entry_mark("Type");
        let type_name = m.required_string(cx, "Type");
        let config = m.take("Config").map_or(
            Node {
                value: Value::Null,
                mark: m.mark(),
            },
            |f| f.node.clone(),
        );
        m.take("Description");
        m.take("Metadata");
        m.legacy(
            cx,
            "Assembly",
            "plugins are compiled into flowengine; remove `Assembly`",
        );
        let mark = m.mark();
        m.finish(cx);
        if let (Some(name), Some(type_name)) = (name, type_name) {
            plugins.push(PluginEntry {
                name,
                type_name,
                type_mark,
                config,
                path,
                mark,
            });
        }
    }
    Some(plugins)
}

fn read_connections(p: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Vec<ConnectionEntry>> {
    let items = p.list(cx, "Connections")?;
    let mut connections = Vec::new();
    for (path, node) in items {
        let Some(mut m) = MapReader::new(node, path.clone(), cx) else {
            continue;
        };
        let from = m.required_string(cx, "From");
        let to = m.required_string(cx, "To");
        m.legacy(
            cx,
            "Channel",
            "connections are bounded channels; use `Settings.ChannelCapacity`",
        );
        m.legacy(
            cx,
            "FromPort",
            "name the port in `From`, e.g. `From: enrich.no_email`",
        );
        m.legacy(
            cx,
            "ToPort",
            "a connection goes to a plugin, not a port: `To: write`",
        );
        let mark = m.mark();
        m.finish(cx);
        if let (Some(from), Some(to)) = (from, to) {
            connections.push(ConnectionEntry {
                from,
                to,
                path,
                mark,
            });
        }
    }
    Some(connections)
}

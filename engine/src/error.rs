//! Error types, grouped by when they can happen.
//!
//! - [`ConfigError`]: found while loading and planning, before any file is opened. Always collected,
//!   never returned one at a time, so `validate` can print every problem at once.
//! - [`BuildError`]: found while opening files and preparing nodes, before any row moves.
//! - [`RunError`]: the run itself failed. A bad row is a [`RowError`] value carrying its exact
//!   position; under a fail-fast policy it ends the run, later it can become a reject record.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::load::yaml::Mark;

/// A position in the pipeline file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The pipeline file.
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// What is wrong with a piece of configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file is not valid YAML, or cannot be read.
    #[error("{0}")]
    Syntax(String),
    /// A key that nothing reads.
    #[error("unknown key `{key}`{}", suggest(suggestion.as_deref()))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// A key of the original C# system that has a replacement here.
    #[error("`{key}` is not supported: {replacement}")]
    LegacyKey {
        /// The key as written.
        key: String,
        /// What to write instead.
        replacement: String,
    },
    /// A required key is absent.
    #[error("missing required key `{0}`")]
    MissingKey(String),
    /// The same key twice in one map (keys match case-insensitively).
    #[error("duplicate key `{key}` (keys match case-insensitively; first written as `{first}`)")]
    DuplicateKey {
        /// The second spelling.
        key: String,
        /// The first spelling.
        first: String,
    },
    /// A value of the wrong shape or out of range.
    #[error("expected {expected}, found {found}")]
    InvalidValue {
        /// What is allowed.
        expected: String,
        /// What was written (quoted, truncated).
        found: String,
    },
    /// A `{Name}` placeholder that could not be substituted.
    #[error("{0}")]
    Variable(String),
    /// A plugin type no registered plugin has.
    #[error("unknown plugin type `{name}`{}; known types: {known}", suggest(suggestion.as_deref()))]
    UnknownType {
        /// The type as written.
        name: String,
        /// The closest known type.
        suggestion: Option<String>,
        /// Every registered type, comma-separated.
        known: String,
    },
    /// A problem with the graph of nodes and connections, or with the schemas flowing through it.
    #[error("{0}")]
    Graph(String),
    /// A value that is well-formed but unusable, such as a script that does not compile.
    #[error("{0}")]
    Invalid(String),
}

fn suggest(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// One configuration problem: what, where (YAML path and file position) and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong.
    pub kind: ConfigErrorKind,
    /// Dotted YAML path, e.g. `Pipeline.Plugins[read].Config.FilePath`.
    pub path: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// A one-line suggestion.
    pub hint: Option<String>,
}

impl ConfigError {
    /// A new error without a hint.
    pub fn new(kind: ConfigErrorKind, path: impl Into<String>, location: Option<Location>) -> Self {
        Self {
            kind,
            path: path.into(),
            location,
            hint: None,
        }
    }

    /// Attach a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every configuration problem found in one pass; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A problem a plugin finds in its config once it sees its input schema, at plan time
/// ([`crate::component::TransformConfig::output_schema`], [`crate::component::SinkConfig::check_input`]).
///
/// Plugins return these as data and the planner turns them into [`ConfigError`]s, so they are
/// collected with every other configuration problem and positioned the same way; a plugin never
/// formats a position itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct PlanError {
    /// The YAML key path at fault as the config reader gave it (e.g.
    /// `Pipeline.Plugins[cast].Config.Columns.age`; the planner shows it from `Config` on), or
    /// empty when the problem is the node as a whole.
    pub path: String,
    /// Where the key or value at fault was written, when the plugin knows it; the planner shows
    /// it next to the path. The error itself is always placed at the node.
    pub mark: Option<Mark>,
    /// What is wrong.
    pub message: String,
    /// A one-line suggestion.
    pub hint: Option<String>,
}

impl PlanError {
    /// A problem with the node as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            mark: None,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem with the key at `path`, written at `mark` when known.
    pub fn at(path: impl Into<String>, mark: Option<Mark>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            mark,
            message: message.into(),
            hint: None,
        }
    }

    /// Attach a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Several problems as one message, for a [`BuildError`] (where no file position is known):
    /// one per line after a count, like the planner shows them.
    pub fn join(errors: &[PlanError]) -> String {
        match errors {
            [one] => one.to_string(),
            _ => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("{} problems:\n  {}", errors.len(), lines.join("\n  "))
            }
        }
    }
}

/// An I/O failure of a node on a named path, at build or at run time: the one shape every such
/// message has (`node `write`: cannot create /out/x.csv: Permission denied`).
#[derive(Debug, thiserror::Error)]
#[error("node `{node}`: cannot {action} {}: {source}", path.display())]
pub struct IoError {
    /// The node.
    pub node: String,
    /// What was attempted ("open", "create directory", "write", ...).
    pub action: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

impl IoError {
    /// The failure of `action` on `path` by `node`.
    pub fn new(
        node: impl Into<String>,
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self {
            node: node.into(),
            action,
            path: path.into(),
            source,
        }
    }
}

/// A node could not be prepared (file missing, directory not writable, ...). No row has moved yet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An I/O failure on a named path.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Anything else, with a message that names the problem.
    #[error("node `{node}`: {message}")]
    Invalid {
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
}

impl BuildError {
    /// A failure of node `node` while it was being built, reported by code that also runs during
    /// the run: an I/O error stays one (so it is not named twice), anything else is `Invalid`.
    pub fn from_run(node: &str, e: RunError) -> BuildError {
        match e {
            RunError::Io(io) => BuildError::Io(io),
            RunError::Node { node, message } => BuildError::Invalid { node, message },
            other => BuildError::Invalid {
                node: node.to_string(),
                message: other.to_string(),
            },
        }
    }
}

/// Where in the processing of a row a problem arose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Stage {
    /// Splitting bytes into records and fields.
    Parse,
    /// Converting a field to its declared type.
    Convert,
    /// A validation rule.
    Validate,
    /// A user script.
    Script,
    /// Writing to an output.
    Sink,
}

impl Stage {
    /// The stable lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Convert => "convert",
            Stage::Validate => "validate",
            Stage::Script => "script",
            Stage::Sink => "sink",
        }
    }
}

/// The fixed, documented classification of row problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum RowErrorKind {
    /// A quoted field that never closes before the end of the input.
    UnterminatedQuote,
    /// More fields than the header or schema.
    TooManyFields,
    /// Fewer fields than the header or schema.
    TooFewFields,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A value that does not parse as the declared type.
    TypeConversion,
    /// An empty value in a non-nullable column.
    NullInRequired,
    /// A quote inside an unquoted field, or text after a closing quote.
    StrayQuote,
    /// A record larger than the configured limit.
    RecordTooLarge,
    /// A user script threw, or returned something other than true/false.
    ScriptError,
    /// A user script exceeded a loop, recursion or time limit.
    ScriptLimit,
    /// A validation rule failed.
    Validation,
    /// A `Lookup` with `NoMatch: reject` found no reference row for the row's key.
    LookupNoMatch,
    /// A JSON Lines line that is not one JSON object.
    InvalidJson,
    /// A key the schema does not declare, under `UnknownKeys: reject`.
    UnknownKey,
}

impl RowErrorKind {
    /// Every kind, in documentation order.
    pub const ALL: &'static [RowErrorKind] = &[
        RowErrorKind::UnterminatedQuote,
        RowErrorKind::TooManyFields,
        RowErrorKind::TooFewFields,
        RowErrorKind::InvalidUtf8,
        RowErrorKind::TypeConversion,
        RowErrorKind::NullInRequired,
        RowErrorKind::StrayQuote,
        RowErrorKind::RecordTooLarge,
        RowErrorKind::ScriptError,
        RowErrorKind::ScriptLimit,
        RowErrorKind::Validation,
        RowErrorKind::LookupNoMatch,
        RowErrorKind::InvalidJson,
        RowErrorKind::UnknownKey,
    ];

    /// The stable upper-case name used in reports and reject files.
    pub fn as_str(self) -> &'static str {
        match self {
            RowErrorKind::UnterminatedQuote => "UNTERMINATED_QUOTE",
            RowErrorKind::TooManyFields => "TOO_MANY_FIELDS",
            RowErrorKind::TooFewFields => "TOO_FEW_FIELDS",
            RowErrorKind::InvalidUtf8 => "INVALID_UTF8",
            RowErrorKind::TypeConversion => "TYPE_CONVERSION",
            RowErrorKind::NullInRequired => "NULL_IN_REQUIRED",
            RowErrorKind::StrayQuote => "STRAY_QUOTE",
            RowErrorKind::RecordTooLarge => "RECORD_TOO_LARGE",
            RowErrorKind::ScriptError => "SCRIPT_ERROR",
            RowErrorKind::ScriptLimit => "SCRIPT_LIMIT",
            RowErrorKind::Validation => "VALIDATION",
            RowErrorKind::LookupNoMatch => "LOOKUP_NO_MATCH",
            RowErrorKind::InvalidJson => "INVALID_JSON",
            RowErrorKind::UnknownKey => "UNKNOWN_KEY",
        }
    }
}

/// A column named in a row error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnRef {
    /// Column name.
    pub name: String,
    /// 0-based position in the record.
    pub index: usize,
}

/// One bad row, with everything needed to find and fix it: the run's error under `fail-fast`, a
/// reject record under `skip-row`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    /// The node that found it.
    pub node: String,
    /// Where in processing.
    pub stage: Stage,
    /// The classification.
    pub kind: RowErrorKind,
    /// The input file, when the row came from one.
    pub file: Option<Arc<str>>,
    /// Absolute 1-based physical line of the first byte of the record.
    pub line: Option<u64>,
    /// 1-based record ordinal in the file (the header counts); in a Parquet or Arrow file, the row.
    pub record: Option<u64>,
    /// Byte offset of the problem (or of the record start) in the file.
    pub byte_offset: Option<u64>,
    /// The column, when the problem is in one field.
    pub column: Option<ColumnRef>,
    /// The offending value, when there is one.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// The record's bytes exactly as read, for reject files. Only a record longer than the source's
    /// `MaxRecordBytes` is cut, at that limit, so memory stays bounded.
    pub raw: Option<Vec<u8>>,
}

/// Values longer than this are cut in messages (never in reject files).
const SHOWN_VALUE_CHARS: usize = 80;

/// Quote and truncate a value for a one-line message.
pub fn quote_value(value: &str) -> String {
    let mut shown: String = value.chars().take(SHOWN_VALUE_CHARS).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node `{}`: ", self.node)?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => match self.record {
                // A row of a typed file has a number, not a line.
                Some(row) => write!(f, "{file}: row {row}: ")?,
                None => write!(f, "{file}: ")?,
            },
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(col) = &self.column {
            write!(f, "column `{}` (#{}): ", col.name, col.index + 1)?;
        }
        write!(f, "{}: {}", self.kind.as_str(), self.message)?;
        if let Some(value) = &self.value {
            write!(f, "\n  value: {}", quote_value(value))?;
        }
        if let Some(offset) = self.byte_offset {
            write!(f, "\n  byte offset: {offset}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The run failed after it started moving rows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A bad row under the fail-fast policy.
    #[error("{0}")]
    Row(Box<RowError>),
    /// An I/O failure while reading or writing.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A node failed for a reason of its own.
    #[error("node `{node}`: {message}")]
    Node {
        /// The node.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// The run was interrupted (Ctrl-C); outputs were left untouched.
    #[error("interrupted; no output was changed")]
    Cancelled,
    /// The run took longer than `Settings.Timeout`.
    #[error("the run took longer than `Settings.Timeout` ({0:?}) and was stopped; no output was changed")]
    TimedOut(std::time::Duration),
    /// More rows were rejected than `MaxErrors` allows.
    #[error("{rejected} of {read} rows read were rejected, more than `MaxErrors: {cap}` allows; the run stopped and changed no output (the rejects would have gone to {dead_letter}, which was not written either){}", first.as_ref().map(|f| format!("\n  first reject: {f}")).unwrap_or_default())]
    TooManyRejects {
        /// The dead-letter file the rejects would have been committed to.
        dead_letter: String,
        /// Rows rejected when the cap was hit.
        rejected: u64,
        /// Rows read when the cap was hit.
        read: u64,
        /// The cap as written.
        cap: String,
        /// The first reject, to start fixing from.
        first: Option<Box<RowError>>,
    },
    /// An invariant broke: this is a bug in FlowEngine.
    #[error("internal error (a bug in FlowEngine; please report it): {0}")]
    Internal(String),
}

impl From<RowError> for RunError {
    fn from(e: RowError) -> Self {
        RunError::Row(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_error_names_file_line_column_value_and_hint() {
        let e = RowError {
            node: "read".into(),
            stage: Stage::Convert,
            kind: RowErrorKind::TypeConversion,
            file: Some("in.csv".into()),
            line: Some(14),
            record: Some(13),
            byte_offset: None,
            column: Some(ColumnRef {
                name: "balance".into(),
                index: 2,
            }),
            value: Some("12,50".into()),
            message: "cannot parse as decimal(12,2)".into(),
            hint: Some("use `.` as the decimal separator".into()),
            raw: None,
        };
        assert_eq!(
            e.to_string(),
            "node `read`: in.csv:14: column `balance` (#3): TYPE_CONVERSION: cannot parse as decimal(12,2)\n  value: \"12,50\"\n  hint: use `.` as the decimal separator"
        );
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = "x".repeat(200);
        let shown = quote_value(&long);
        assert!(shown.chars().count() < 90, "{shown}");
        assert!(shown.ends_with("…\""));
    }

    #[test]
    fn config_error_renders_location_path_and_hint() {
        let loc = Location {
            file: Arc::new(PathBuf::from("p.yaml")),
            line: 3,
            column: 5,
        };
        let e = ConfigError::new(
            ConfigErrorKind::UnknownKey {
                key: "FilPath".into(),
                suggestion: Some("FilePath".into()),
            },
            "Pipeline.Plugins[read].Config",
            Some(loc),
        );
        assert_eq!(
            e.to_string(),
            "p.yaml:3:5: Pipeline.Plugins[read].Config: unknown key `FilPath` (did you mean `FilePath`?)"
        );
    }
}

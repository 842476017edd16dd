//! Sources of typed files: `ParquetSource` and `ArrowSource` (Arrow IPC file and stream).
//!
//! Both read only the declared columns, check the file's schema against the declared one (names,
//! types, nullability; a widening that keeps every value is allowed and said in `--verbose`,
//! anything else is a clear error) and hand pieces of the file to the workers, which conform
//! them ([`conform`]). Rows are numbered from 1 in each file; that number stands where a text
//! file's line would, in rejects and in every later node's errors.

pub mod conform;
pub mod ipc;
pub mod parquet;

use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use flowengine_engine::error::{BuildError, ConfigErrorKind};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::schema::{self, ColumnSpec};

use crate::files::{self, InputFile};
use conform::Conform;

/// What both typed sources read from their `Config`.
#[derive(Debug, Clone)]
pub struct TypedSourceConfig {
    /// `FilePath` (one file, a glob or a list) and `FileNameColumn`.
    pub files: files::Inputs,
    columns: Vec<ColumnSpec>,
    /// The declared columns.
    schema: SchemaRef,
    /// What the source emits: the declared columns, then the file-name column if any.
    output: SchemaRef,
}

impl TypedSourceConfig {
    /// Read `FilePath` and `OutputSchema`; `format` names the file format (`a Parquet`) in
    /// messages. A column's `Format` or `Index` is an error: a typed file's values are found by
    /// name and are typed already.
    pub fn read(m: &mut MapReader<'_>, cx: &mut ConfigCx, format: &str) -> Option<Self> {
        let files = files::Inputs::read(m, cx);
        let columns = schema::read_output_schema(m, cx, "column to read")?;
        for c in &columns {
            let message = match (&c.format, c.index) {
                (Some(_), _) => format!(
                    "column `{}` has a `Format`, but the values of {format} file are typed \
                     already, not text; remove it",
                    c.name
                ),
                (_, Some(_)) => format!(
                    "column `{}` has an `Index`, but the columns of {format} file are found by \
                     name; remove it",
                    c.name
                ),
                _ => continue,
            };
            cx.error(ConfigErrorKind::Graph(message), m.path(), m.mark());
            return None;
        }
        let schema = schema::to_schema(&columns);
        let files = files?;
        let output = files.schema(schema.clone(), m, cx)?;
        Some(TypedSourceConfig {
            files,
            schema,
            output,
            columns,
        })
    }

    /// What the source emits.
    pub fn output(&self) -> SchemaRef {
        self.output.clone()
    }

    /// The files on disk, for the plan's overwrite check.
    pub fn files_read(&self) -> Vec<PathBuf> {
        self.files.paths()
    }

    /// How `file`, whose schema is `found`, is read into the declared columns; an error names
    /// the file and every column that does not fit.
    pub fn conform(
        &self,
        file: &InputFile,
        found: &Schema,
        node: &str,
    ) -> Result<Arc<Conform>, BuildError> {
        Conform::plan(found, &self.columns, self.schema.clone())
            .map(Arc::new)
            .map_err(|problems| BuildError::Invalid {
                node: node.to_string(),
                message: format!(
                    "{} does not fit the declared `OutputSchema`:\n  - {problems}",
                    file.label
                ),
            })
    }
}

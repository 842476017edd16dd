//! `JsonLinesSink`: one JSON object per row, keys in column order, staged and committed atomically
//! like every file sink.
//!
//! `arrow-json` writes the values: integers with every digit, doubles as the shortest text that
//! reads back to them, decimals with their exact digits, dates and datetimes as the delimited sink
//! writes them (ISO 8601 and RFC 3339 with the offset, or the mapping's `Format`). What JSON has
//! no word for is written another way, and said: a NaN or an infinity is `null`, counted in a
//! warning. Batches are encoded on the workers, in order ([`Encode`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_json::writer::{LineDelimited, WriterBuilder};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use flowengine_engine::component::{
    BuildCx, BuiltSink, Encode, EncodedSink, NodeCx, SinkCommon, SinkConfig, SpaceNeed,
};
use flowengine_engine::error::{BuildError, IoError, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};

use crate::compress::{self, Compression};
use crate::delimited::encode::OutputColumn;
use crate::mapping::{self, Mapping};
use crate::staging::{OutputMode, Staging, Target};

/// How values JSON numbers cannot carry for every consumer are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// As JSON numbers, every digit.
    Number,
    /// As JSON strings (JavaScript reads numbers past 2^53 wrong).
    String,
}

/// Parsed `JsonLinesSink` config.
#[derive(Debug, Clone)]
pub struct JsonLinesSinkConfig {
    target: Target,
    mappings: Option<Vec<Mapping>>,
    large_integers: Numbers,
    decimals: Numbers,
    /// `Nulls: write` (a key with `null`) or `omit` (no key).
    write_nulls: bool,
    /// `Compression` (by default from the file name: `.gz`, `.zst`).
    compression: Compression,
}

/// Parse a `JsonLinesSink` `Config` map.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn SinkConfig>> {
    let target = Target::read(m, cx, true);
    let mappings = mapping::read(m, cx);
    let numbers = [("number", Numbers::Number), ("string", Numbers::String)];
    let large_integers = m
        .choice(cx, "LargeIntegers", &numbers)
        .unwrap_or(Numbers::Number);
    let decimals = m
        .choice(cx, "Decimals", &numbers)
        .unwrap_or(Numbers::Number);
    let write_nulls = m
        .choice(cx, "Nulls", &[("write", true), ("omit", false)])
        .unwrap_or(true);
    crate::encoding::check_sink(m, cx, "JSON text is UTF-8, RFC 8259");
    let compression = compress::read_sink(m, cx, target.as_ref().map(|t| t.path.as_path()));
    if let Some(t) = &target {
        compress::refuse_compressed_append(m, cx, t, compression);
    }
    Some(Box::new(JsonLinesSinkConfig {
        target: target?,
        mappings: mappings?,
        large_integers,
        decimals,
        write_nulls,
        compression,
    }))
}

impl JsonLinesSinkConfig {
    /// The mapped columns, whose names must differ: they become the keys of one object.
    fn columns(&self, input: &SchemaRef) -> Result<Vec<OutputColumn>, Vec<PlanError>> {
        let columns = mapping::output_columns(self.mappings.as_deref(), input)?;
        let mut problems = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|o| o.name == c.name) {
                problems.push(PlanError::at(
                    format!("Config.ColumnMappings[{i}]"),
                    None,
                    format!(
                        "two columns are written as `{}`; JSON keys of one object must differ (rename one with `OutputColumn`)",
                        c.name
                    ),
                ));
            }
        }
        match problems.is_empty() {
            true => Ok(columns),
            false => Err(problems),
        }
    }
}

impl SinkConfig for JsonLinesSinkConfig {
    fn check_input(&self, input: &SchemaRef) -> Result<(), Vec<PlanError>> {
        self.columns(input).map(|_| ())
    }

    fn files_written(&self) -> Vec<PathBuf> {
        self.target.files()
    }

    fn space_needed(&self, input_bytes: u64) -> SpaceNeed {
        // Every value is written with its column's name: about twice delimited text.
        let estimated = match self.compression {
            Compression::None => input_bytes.saturating_mul(2),
            _ => input_bytes / 2,
        };
        self.target.space(estimated)
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError> {
        let columns = self.columns(&input).map_err(|e| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&e),
        })?;
        let non_finite = Arc::new(AtomicU64::new(0));
        let encoder = JsonEncoder {
            columns,
            large_integers: self.large_integers,
            decimals: self.decimals,
            write_nulls: self.write_nulls,
            non_finite: non_finite.clone(),
        };
        let sink = JsonLinesSink {
            staging: self.open(cx)?,
            rows: 0,
            non_finite,
        };
        Ok(BuiltSink::Encoded {
            sink: Box::new(sink),
            encoder: compress::encoder(Arc::new(encoder), self.compression),
        })
    }
}

impl JsonLinesSinkConfig {
    /// Stage the output; when appending, with the existing lines first.
    fn open(&self, cx: &BuildCx) -> Result<Staging, BuildError> {
        let appending = self.target.mode == OutputMode::Append && self.target.path.exists();
        let mut staging = self.target.stage(&cx.node)?;
        if self.compression != Compression::None {
            // An empty member first, so an output without rows is still a valid file.
            let mut empty = Vec::new();
            compress::compress(self.compression, b"", &mut empty)
                .and_then(|()| {
                    staging
                        .write_all(&empty)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })
                .map_err(|e| {
                    BuildError::from(IoError::new(&cx.node, "write", &self.target.path, e))
                })?;
        }
        if appending {
            let io =
                |e| BuildError::from(IoError::new(&cx.node, "append to", &self.target.path, e));
            let mut existing = std::fs::File::open(&self.target.path).map_err(io)?;
            let temp = staging.file_mut().map_err(|e| BuildError::Invalid {
                node: cx.node.clone(),
                message: e.to_string(),
            })?;
            if !crate::staging::copy_existing(&mut existing, temp).map_err(io)? {
                staging.write_all(b"\n").map_err(|e| BuildError::Invalid {
                    node: cx.node.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        Ok(staging)
    }
}

/// Batches to JSON Lines bytes, on the workers.
#[derive(Debug)]
struct JsonEncoder {
    columns: Vec<OutputColumn>,
    large_integers: Numbers,
    decimals: Numbers,
    write_nulls: bool,
    /// Doubles that were NaN or infinite, written as `null`.
    non_finite: Arc<AtomicU64>,
}

impl Encode for JsonEncoder {
    fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), RunError> {
        let failed = |e: ArrowError| RunError::Internal(format!("cannot write JSON: {e}"));
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let array = self.prepare(batch.column(c.input), c.format.as_deref());
            let array = array.map_err(failed)?;
            fields.push(Field::new(&c.name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let batch =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
                .map_err(failed)?;
        out.reserve(encoded_size(&batch));
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(self.write_nulls)
            .build::<_, LineDelimited>(out);
        writer.write(&batch).map_err(failed)?;
        writer.finish().map_err(failed)
    }
}

impl JsonEncoder {
    /// A column as `arrow-json` should see it: the values it would write otherwise than asked for
    /// made into strings first, and non-finite doubles counted.
    fn prepare(&self, array: &ArrayRef, format: Option<&str>) -> Result<ArrayRef, ArrowError> {
        let text = |a: &ArrayRef| arrow_cast::cast(a, &DataType::Utf8);
        match array.data_type() {
            DataType::Float64 => {
                self.count_non_finite(array.as_primitive::<Float64Type>().iter().flatten());
                Ok(array.clone())
            }
            DataType::Float32 => {
                self.count_non_finite(
                    array
                        .as_primitive::<Float32Type>()
                        .iter()
                        .flatten()
                        .map(f64::from),
                );
                Ok(array.clone())
            }
            DataType::Int64 if self.large_integers == Numbers::String => text(array),
            DataType::Decimal128(..) if self.decimals == Numbers::String => text(array),
            DataType::Date32 | DataType::Timestamp(..) if format.is_some() => {
                formatted(array, format)
            }
            _ => Ok(array.clone()),
        }
    }

    fn count_non_finite(&self, values: impl Iterator<Item = f64>) {
        let n = values.filter(|v| !v.is_finite()).count() as u64;
        if n > 0 {
            self.non_finite.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// About the bytes `batch` takes as JSON Lines, reserved at once: growing the buffer as it fills
/// copied it over and over.
fn encoded_size(batch: &RecordBatch) -> usize {
    let rows = batch.num_rows();
    let per_row: usize = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().len() + 4)
        .sum::<usize>()
        + 2;
    let values: usize = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8 => c.as_string::<i32>().values().len() + rows * 2,
            _ => rows * 24,
        })
        .sum();
    rows * per_row + values + values / 16
}

/// A date or datetime column as text in `format`, as `DelimitedSink` writes it.
fn formatted(array: &ArrayRef, format: Option<&str>) -> Result<ArrayRef, ArrowError> {
    let options = FormatOptions::new()
        .with_display_error(false)
        .with_date_format(format)
        .with_datetime_format(format)
        .with_timestamp_format(format)
        .with_timestamp_tz_format(format);
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 20);
    for row in 0..array.len() {
        if array.is_null(row) {
            out.append_null();
        } else {
            out.append_value(formatter.value(row).try_to_string()?);
        }
    }
    Ok(Arc::new(out.finish()))
}

/// A running `JsonLinesSink`.
struct JsonLinesSink {
    staging: Staging,
    rows: u64,
    non_finite: Arc<AtomicU64>,
}

impl EncodedSink for JsonLinesSink {
    fn write_encoded(&mut self, rows: u64, bytes: &[u8]) -> Result<(), RunError> {
        self.staging.write_all(bytes)?;
        self.rows += rows;
        Ok(())
    }
}

impl SinkCommon for JsonLinesSink {
    fn finish(&mut self) -> Result<u64, RunError> {
        self.staging.sync()?;
        Ok(self.rows)
    }

    fn commit(self: Box<Self>) -> Result<(), RunError> {
        self.staging.commit()
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = self.staging.warnings();
        if let n @ 1.. = self.non_finite.load(Ordering::Relaxed) {
            warnings.push(format!(
                "{n} NaN or infinite doubles were written as null: JSON has no such numbers"
            ));
        }
        warnings
    }
}

//! `flowengine preview`: the pipeline run on the first rows of each source, every node's output
//! printed, nothing written ([`flowengine_engine::preview`] does the run).

use std::fmt::Write as _;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use flowengine_engine::preview::Tap;
use flowengine_engine::schema::type_name;
use flowengine_plugins::delimited::encode::{Encoder, JsonLinesEncoder, OutputColumn};

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// CSV, as `DelimitedSink` writes it.
    Csv,
    /// JSON Lines, as `JsonLinesSink` writes it.
    Json,
}

/// The columns of a reject shown in a table (the raw record and the hint make it too wide).
const REJECT_COLUMNS: &[&str] = &["node", "file", "line", "column", "error_type", "message"];

/// Everything captured, as text: each tap whose node is in `only` (all when empty), then the
/// rejects.
pub fn render(
    taps: &[Tap],
    rejects: &[RecordBatch],
    only: &[String],
    format: Format,
) -> Result<String, String> {
    let mut out = String::new();
    for tap in taps {
        if !only.is_empty() && !only.contains(&tap.node) {
            continue;
        }
        let batches = tap.batches.lock().unwrap_or_else(|p| p.into_inner());
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let name = match &tap.port {
            Some(port) => format!("{}.{port}", tap.node),
            None => tap.node.clone(),
        };
        let what = if tap.role == "sink" {
            "receives"
        } else {
            "emits"
        };
        let _ = writeln!(
            out,
            "== {name} ({} {}) {what} {rows} row{}",
            tap.role,
            tap.type_name,
            if rows == 1 { "" } else { "s" }
        );
        let _ = writeln!(out, "   {}", columns(&tap.schema));
        out.push_str(&rows_text(&tap.schema, &batches, format)?);
        out.push('\n');
    }
    let count: usize = rejects.iter().map(RecordBatch::num_rows).sum();
    let _ = writeln!(out, "== rejects: {count}");
    if count > 0 {
        let shown = match format {
            Format::Table => project(rejects, REJECT_COLUMNS)?,
            _ => rejects.to_vec(),
        };
        let schema = shown[0].schema();
        out.push_str(&rows_text(&schema, &shown, format)?);
    }
    Ok(out)
}

/// `id int64, email string?, ...`
fn columns(schema: &SchemaRef) -> String {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "?" } else { "" };
            format!("{} {}{null}", f.name(), type_name(f.data_type()))
        })
        .collect();
    names.join(", ")
}

fn project(batches: &[RecordBatch], names: &[&str]) -> Result<Vec<RecordBatch>, String> {
    batches
        .iter()
        .map(|b| {
            let indices: Vec<usize> = names
                .iter()
                .filter_map(|n| b.schema().index_of(n).ok())
                .collect();
            b.project(&indices).map_err(|e| e.to_string())
        })
        .collect()
}

fn rows_text(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<String, String> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok("   (no rows)\n".into());
    }
    let output: Vec<OutputColumn> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(input, f)| OutputColumn {
            input,
            name: f.name().clone(),
            format: None,
        })
        .collect();
    let mut bytes = Vec::new();
    match format {
        Format::Table => {
            let options = arrow_cast::display::FormatOptions::default().with_null("null");
            let table = arrow_cast::pretty::pretty_format_batches_with_options(batches, &options)
                .map_err(|e| e.to_string())?;
            return Ok(format!("{table}\n"));
        }
        Format::Csv => {
            let encoder = Encoder::new(b',', b'"', false, output);
            encoder.header(&mut bytes);
            for b in batches {
                encoder.encode(b, &mut bytes).map_err(|e| e.to_string())?;
            }
        }
        Format::Json => {
            let encoder = JsonLinesEncoder::new(output);
            for b in batches {
                encoder.encode(b, &mut bytes).map_err(|e| e.to_string())?;
            }
        }
    }
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

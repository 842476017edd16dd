//! What a golden case's Parquet and Arrow IPC outputs hold, as reviewable text: read back with the
//! `parquet` and `arrow-ipc` crates (not the writers' code), so a case's `expected/readback/` shows
//! the declared types, the layout (row groups, codecs, dictionary pages, IPC batches) and the values.

use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};

/// Rows shown per output; the rest are counted. Enough for every case's data to be reviewed.
const MAX_ROWS: usize = 40;

/// The description of the output at `path`, or `None` for a file that is not Parquet or Arrow.
pub fn describe(path: &Path) -> Option<Result<String, String>> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "parquet" => Some(parquet(path)),
        "arrow" | "feather" => Some(ipc(path, false)),
        "arrows" => Some(ipc(path, true)),
        _ => None,
    }
}

fn parquet(path: &Path) -> Result<String, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let meta = builder.metadata().clone();
    let mut out = format!("parquet: {} row group(s)\n", meta.num_row_groups());
    for (i, group) in meta.row_groups().iter().enumerate() {
        out += &format!("row group {i}: {} rows\n", group.num_rows());
        for column in group.columns() {
            let descr = column.column_descr();
            let logical = descr
                .logical_type_ref()
                .map(|l| format!(" {l:?}"))
                .unwrap_or_default();
            let dictionary = if column.dictionary_page_offset().is_some() {
                "dictionary"
            } else {
                "plain"
            };
            out += &format!(
                "  {}: {}{logical}, {}, {dictionary}\n",
                descr.name(),
                descr.physical_type(),
                column.compression()
            );
        }
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Ok(out + &contents(&batches))
}

/// Every batch of an Arrow IPC file, or stream when `stream`.
pub fn ipc_batches(path: &Path, stream: bool) -> Result<Vec<RecordBatch>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    if stream {
        let reader =
            arrow_ipc::reader::StreamReader::try_new(file, None).map_err(|e| e.to_string())?;
        reader.collect::<Result<_, _>>()
    } else {
        let reader =
            arrow_ipc::reader::FileReader::try_new(file, None).map_err(|e| e.to_string())?;
        reader.collect::<Result<_, _>>()
    }
    .map_err(|e| e.to_string())
}

fn ipc(path: &Path, stream: bool) -> Result<String, String> {
    let batches = ipc_batches(path, stream)?;
    let layout = if stream { "stream" } else { "file" };
    Ok(format!("arrow ipc {layout}: {} batch(es)\n", batches.len()) + &contents(&batches))
}

/// The Arrow schema (with metadata, so none slips in unseen) and the rows.
fn contents(batches: &[RecordBatch]) -> String {
    let Some(first) = batches.first() else {
        return "no batches\n".into();
    };
    let schema = first.schema();
    let mut out = String::from("schema:\n");
    for field in schema.fields() {
        let null = if field.is_nullable() { "" } else { " not null" };
        out += &format!("  {}: {}{null}", field.name(), field.data_type());
        if !field.metadata().is_empty() {
            out += &format!(" metadata {:?}", field.metadata());
        }
        out += "\n";
    }
    let own: Vec<_> = schema
        .metadata()
        .keys()
        .filter(|k| !k.starts_with("ARROW:"))
        .collect();
    if !own.is_empty() {
        out += &format!("schema metadata: {own:?}\n");
    }
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    out += &format!("rows: {total}\n");
    let options = FormatOptions::default().with_null("null");
    let mut shown = 0;
    for batch in batches {
        let formatters: Vec<_> = match batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
        {
            Ok(f) => f,
            Err(e) => return out + &format!("cannot format the values: {e}\n"),
        };
        for row in 0..batch.num_rows() {
            if shown == MAX_ROWS {
                return out + &format!("  ... {} more rows\n", total - MAX_ROWS);
            }
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out += &format!("  {}\n", values.join(" | "));
            shown += 1;
        }
    }
    out
}

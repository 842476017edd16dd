//! A [`Batch`]'s origin (its input file and each row's line) carried through DataFusion as two
//! trailing columns, so that a row keeps its line across operators: a reject of a transform names
//! the same line as on the local engine.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt64Type};
use arrow_array::{DictionaryArray, Int32Array, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Schema, SchemaRef};
use flowengine_engine::Batch;

/// Each row's line.
const LINE: &str = "__flowengine_line";
/// The batch's input file, one dictionary value for all its rows.
const FILE: &str = "__flowengine_file";
/// Rows the source left out for the node it feeds ([`Batch::prefiltered`]), in the batch's
/// schema metadata: a count of the batch, not of its rows.
const PREFILTERED: &str = "flowengine.prefiltered";

/// `data` with the two origin columns after its own.
pub(crate) fn schema(data: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<FieldRef> = data.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(LINE, DataType::UInt64, true)));
    fields.push(Arc::new(Field::new(
        FILE,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        true,
    )));
    Arc::new(Schema::new_with_metadata(fields, data.metadata().clone()))
}

/// `batch` as a record batch of [`schema`]`(batch's schema)`.
pub(crate) fn carry(batch: &Batch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let rows = batch.num_rows();
    let mut columns = batch.data.columns().to_vec();
    columns.push(Arc::new(batch.origin.lines.clone()));
    let key = batch.origin.file.is_some().then_some(0);
    let keys = Int32Array::from(vec![key; rows]);
    let values = StringArray::from_iter_values(batch.origin.file.iter().map(|f| f.as_ref()));
    columns.push(Arc::new(DictionaryArray::try_new(keys, Arc::new(values))?));
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let schema = match batch.prefiltered {
        0 => schema.clone(),
        n => {
            let mut metadata = schema.metadata().clone();
            metadata.insert(PREFILTERED.into(), n.to_string());
            Arc::new(schema.as_ref().clone().with_metadata(metadata))
        }
    };
    RecordBatch::try_new_with_options(schema, columns, &options)
}

/// The rows [`carry`] said `record`'s source left out.
pub(crate) fn prefiltered(record: &RecordBatch) -> u64 {
    let metadata = record.schema_ref().metadata();
    metadata
        .get(PREFILTERED)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The batch [`carry`] made, with its rows as `data` (the schema without the origin columns).
pub(crate) fn strip(record: &RecordBatch, data: &SchemaRef) -> Result<Batch, ArrowError> {
    let n = record.num_columns();
    if n < 2 || record.schema().field(n - 2).name() != LINE {
        return Err(ArrowError::SchemaError(
            "a batch without its origin columns".into(),
        ));
    }
    let lines = record.column(n - 2).as_primitive::<UInt64Type>().clone();
    let files = record
        .column(n - 1)
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(|| ArrowError::SchemaError("the file column is not a dictionary".into()))?;
    let file = files
        .values()
        .as_string_opt::<i32>()
        .and_then(|v| v.iter().flatten().next())
        .map(Arc::from);
    let options = RecordBatchOptions::new().with_row_count(Some(record.num_rows()));
    let rows = RecordBatch::try_new_with_options(
        data.clone(),
        record.columns()[..n - 2].to_vec(),
        &options,
    )?;
    let mut batch = Batch::new(rows, file, lines);
    batch.prefiltered = prefiltered(record);
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, UInt64Array};

    #[test]
    fn a_batch_keeps_its_file_and_lines_through_a_round_trip() {
        let data = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let rows = RecordBatch::try_new(data.clone(), vec![Arc::new(Int64Array::from(vec![7, 8]))])
            .unwrap();
        for file in [Some(Arc::from("in.csv")), None] {
            let mut batch = Batch::new(rows.clone(), file.clone(), UInt64Array::from(vec![2, 5]));
            batch.prefiltered = 3;
            let carried = carry(&batch, &schema(&data)).unwrap();
            let back = strip(&carried, &data).unwrap();
            assert_eq!(back.prefiltered, 3);
            assert_eq!(back.data, rows);
            assert_eq!(back.origin.file, file);
            assert_eq!(back.origin.lines.values(), &[2, 5]);
            assert_eq!(back.origin.lines.null_count(), 0);
        }
    }
}

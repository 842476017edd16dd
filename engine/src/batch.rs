//! [`Batch`]: the unit of data that flows between nodes.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch, RecordBatchOptions, UInt64Array};
use arrow_schema::{ArrowError, Schema, SchemaRef};

/// An Arrow `RecordBatch` plus where each of its rows came from.
///
/// Cloning is cheap (Arrow buffers are reference-counted), which is how fan-out shares one batch
/// between consumers without copying it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The rows.
    pub data: RecordBatch,
    /// The provenance of each row, kept in step with `data` by every transform.
    pub origin: Origin,
    /// Rows of this piece of input that the source left out because the condition of the node it
    /// feeds rules them out ([`crate::component::RowCondition`]). The executor counts them as
    /// sent by the source and filtered by that node, and zeroes this on arrival.
    pub prefiltered: u64,
}

/// Where rows came from: one input file and the absolute line of each row in it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The input file, as shown in messages.
    pub file: Option<Arc<str>>,
    /// Absolute 1-based physical line of the first byte of each row's record; same length as the
    /// batch. Null for a row that stands for many input rows (a group of `Aggregate`).
    pub lines: UInt64Array,
}

impl Origin {
    /// The line of row `i`, if it has one.
    pub fn line(&self, i: usize) -> Option<u64> {
        use arrow_array::Array;
        self.lines.is_valid(i).then(|| self.lines.value(i))
    }
}

impl Batch {
    /// A batch whose rows came from `file` at `lines`.
    ///
    /// # Panics
    /// If `lines` and `data` differ in length: that is a bug in the caller, not bad input.
    pub fn new(data: RecordBatch, file: Option<Arc<str>>, lines: UInt64Array) -> Self {
        assert_eq!(
            data.num_rows(),
            lines.len(),
            "a batch needs one line number per row"
        );
        Self {
            data,
            origin: Origin { file, lines },
            prefiltered: 0,
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }

    /// Rows this batch stands for: its own and those its source left out for the next node.
    pub fn rows_counted(&self) -> u64 {
        self.num_rows() as u64 + self.prefiltered
    }

    /// Rows `offset..offset + len`, with their provenance (no copy).
    pub fn slice(&self, offset: usize, len: usize) -> Batch {
        Batch {
            data: self.data.slice(offset, len),
            origin: Origin {
                file: self.origin.file.clone(),
                lines: self.origin.lines.slice(offset, len),
            },
            prefiltered: self.prefiltered,
        }
    }

    /// The rows where `mask` is true, with their provenance.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Batch, ArrowError> {
        let data = arrow_select::filter::filter_record_batch(&self.data, mask)?;
        let lines = arrow_select::filter::filter(&self.origin.lines, mask)?;
        let lines = lines
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned()
            .ok_or_else(|| ArrowError::ComputeError("line numbers lost their type".into()))?;
        Ok(Batch {
            data,
            origin: Origin {
                file: self.origin.file.clone(),
                lines,
            },
            prefiltered: self.prefiltered,
        })
    }

    /// The same rows with different columns (a transform's output for the same rows).
    pub fn with_data(&self, data: RecordBatch) -> Result<Batch, ArrowError> {
        if data.num_rows() != self.num_rows() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "replacement data has {} rows, the batch has {}",
                data.num_rows(),
                self.num_rows()
            )));
        }
        Ok(Batch {
            data,
            origin: self.origin.clone(),
            prefiltered: self.prefiltered,
        })
    }

    /// The same batch under `schema`, the schema its consumer was planned and built with. The
    /// executor hands every node its input through here, so a sink can give its writer the schema
    /// it was built with and trust every batch to match it. Differences it absorbs: metadata, and
    /// a column that holds no nulls where `schema` allows them (fan-in of a nullable and a
    /// non-nullable input). A different name, type or column count is an error.
    pub fn conform(mut self, schema: &SchemaRef) -> Result<Batch, ArrowError> {
        if self.data.schema_ref() == schema {
            return Ok(self);
        }
        let have = self.data.schema();
        let names = have.fields().iter().map(|f| f.name());
        if have.fields().len() != schema.fields().len()
            || !names.eq(schema.fields().iter().map(|f| f.name()))
        {
            return Err(ArrowError::SchemaError(format!(
                "the batch's columns {:?} are not the planned {:?}",
                field_names(&have),
                field_names(schema)
            )));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(self.num_rows()));
        self.data = RecordBatch::try_new_with_options(
            schema.clone(),
            self.data.columns().to_vec(),
            &options,
        )?;
        Ok(self)
    }
}

fn field_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array};

    #[test]
    fn filter_keeps_line_numbers_in_step() {
        let col: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let data = RecordBatch::try_from_iter([("a", col)]).unwrap();
        let batch = Batch::new(data, Some("f.csv".into()), UInt64Array::from(vec![2, 3, 5]));
        let kept = batch
            .filter(&BooleanArray::from(vec![true, false, true]))
            .unwrap();
        assert_eq!(kept.num_rows(), 2);
        assert_eq!(kept.origin.lines.values().as_ref(), &[2, 5]);
    }

    #[test]
    fn conform_drops_metadata_and_widens_nullability_only() {
        use arrow_schema::{DataType, Field};
        use std::collections::HashMap;
        let col: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        let have = Schema::new(vec![
            Field::new("a", DataType::Int32, false).with_metadata(meta)
        ]);
        let data = RecordBatch::try_new(Arc::new(have), vec![col]).unwrap();
        let batch = Batch::new(data, None, UInt64Array::from(vec![1, 2]));

        let planned = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        let conformed = batch.clone().conform(&planned).unwrap();
        assert_eq!(conformed.data.schema(), planned);

        let renamed = Arc::new(Schema::new(vec![Field::new("b", DataType::Int32, true)]));
        assert!(batch.clone().conform(&renamed).is_err());
        let retyped = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        assert!(batch.conform(&retyped).is_err());
    }
}

//! Convert: a chunk's records, split by the decoder or the fast path, into a typed batch and its
//! rejects. Runs on a worker; pure apart from its inputs.
//!
//! Invariant: one reject per bad record, in record order (its structural problem, else its first
//! bad value); every other record is a row, and the batch's lines stay in step with its rows. A
//! reject's `record` counts within the chunk: the reader's `settle` adds the records before it.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use flowengine_engine::component::RowCondition;
use flowengine_engine::error::{ColumnRef, RowError, RowErrorKind, RunError, Stage};
use flowengine_engine::Batch;

use crate::delimited::convert::{self, ColumnReader, Take};
use crate::delimited::decode::{self, Dialect, Problem, RecordSet};

/// What every batch of a source shares: names for messages, and how to convert columns.
pub(super) struct SourceSpec {
    pub(super) node: String,
    pub(super) label: Arc<str>,
    pub(super) dialect: Dialect,
    pub(super) columns: Vec<ColumnReader>,
    pub(super) schema: SchemaRef,
    /// The next node's condition: its columns are converted first, the rest only for the rows
    /// it may keep.
    pub(super) condition: Option<Arc<dyn RowCondition>>,
}

/// One piece's records, converted into a typed batch and its rejects.
pub(super) struct Typed<R> {
    pub(super) shape: Arc<SourceSpec>,
    pub(super) records: R,
}

impl<R: RecordSet> Typed<R> {
    fn reject(
        &self,
        r: usize,
        kind: RowErrorKind,
        stage: Stage,
        message: String,
        hint: String,
    ) -> RowError {
        RowError {
            node: self.shape.node.clone(),
            stage,
            kind,
            file: Some(self.shape.label.clone()),
            line: Some(self.records.line(r)),
            // Counted within the piece; `settle` adds the records before it.
            record: Some(r as u64 + 1),
            byte_offset: Some(self.records.offset(r)),
            column: None,
            value: None,
            message,
            hint: Some(hint),
            raw: Some(self.records.raw(r).to_vec()),
        }
    }

    fn convert_reject(&self, e: convert::ConvertError) -> RowError {
        let col = &self.shape.columns[e.column];
        let stage = match e.kind {
            RowErrorKind::TypeConversion | RowErrorKind::NullInRequired => Stage::Convert,
            _ => Stage::Parse,
        };
        let mut reject = RowError {
            column: Some(ColumnRef {
                name: col.name.clone(),
                index: col.field,
            }),
            value: (e.kind != RowErrorKind::NullInRequired).then_some(e.value),
            ..self.reject(e.record, e.kind, stage, e.message, e.hint)
        };
        if e.kind == RowErrorKind::InvalidUtf8 {
            // Point at the first bad byte of this column's field, not just at the record.
            let raw = self.records.raw(e.record);
            let span = decode::field_span(raw, col.field, self.shape.dialect);
            let in_field = std::str::from_utf8(&raw[span.clone()])
                .err()
                .map_or(0, |u| u.valid_up_to());
            let bad = span.start + in_field;
            reject.byte_offset = Some(self.records.offset(e.record) + bad as u64);
            reject.line = Some(self.records.line(e.record) + decode::line_breaks(&raw[..bad]));
        }
        reject
    }

    fn structural_reject(&self, r: usize, p: &Problem) -> RowError {
        let raw = String::from_utf8_lossy(self.records.raw(r));
        RowError {
            value: Some(raw.trim_end_matches(['\r', '\n']).to_string()),
            ..self.reject(r, p.kind, Stage::Parse, p.message.clone(), p.hint.clone())
        }
    }

    pub(super) fn into_batch(mut self, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let n = self.records.len();
        let refused: Vec<bool> = (0..n).map(|r| self.records.problem(r).is_some()).collect();
        let (arrays, errors, take) = self.convert(&refused)?;

        // One reject per bad record, in record order: its structural problem, else its first bad value.
        let mut errors = errors.into_iter().peekable();
        let mut keep = Vec::with_capacity(n);
        let mut prefiltered = 0;
        for (r, t) in take.iter().enumerate() {
            let mut reject = self
                .records
                .problem(r)
                .map(|p| self.structural_reject(r, p));
            while let Some(e) = errors.next_if(|e| e.record == r) {
                if reject.is_none() {
                    reject = Some(self.convert_reject(e));
                }
            }
            let rejected = reject.is_some();
            rejects.extend(reject);
            match t {
                Take::Value | Take::Placeholder => keep.push(!rejected),
                Take::Check | Take::Skip => prefiltered += u64::from(!rejected),
            }
        }
        let lines = self.records.take_lines();
        let lines: Vec<u64> = lines
            .into_iter()
            .zip(&take)
            .filter(|(_, t)| t.in_column())
            .map(|(l, _)| l)
            .collect();
        let (arrays, lines) = (arrays, UInt64Array::from(lines));
        let (arrays, lines) = if keep.iter().all(|&k| k) {
            (arrays, lines)
        } else {
            let mask = BooleanArray::from(keep);
            let arrays = arrays
                .iter()
                .map(|a| filter(a.as_ref(), &mask))
                .collect::<Result<Vec<_>, _>>()?;
            let lines = UInt64Array::from(filter(&lines, &mask)?.to_data());
            (arrays, lines)
        };
        let data = RecordBatch::try_new(self.shape.schema.clone(), arrays).map_err(|e| {
            RunError::Internal(format!("decoded columns do not match the schema: {e}"))
        })?;
        let mut batch = Batch::new(data, Some(self.shape.label.clone()), lines);
        batch.prefiltered = prefiltered;
        Ok(batch)
    }

    /// Convert every column: with a condition, its columns first for every record, then the others
    /// only for the records it may keep (the rest are only checked). Returns the arrays, every bad
    /// value (by record, then column) and what was done with each record.
    #[allow(clippy::type_complexity)]
    fn convert(
        &self,
        refused: &[bool],
    ) -> Result<(Vec<ArrayRef>, Vec<convert::ConvertError>, Vec<Take>), RunError> {
        let columns = &self.shape.columns;
        let Some(condition) = &self.shape.condition else {
            let take: Vec<Take> = refused
                .iter()
                .map(|&r| if r { Take::Skip } else { Take::Value })
                .collect();
            let (arrays, errors) = convert::convert(&self.records, columns, &take);
            return Ok((arrays, errors, take));
        };
        let n = refused.len();
        let first: Vec<Take> = refused
            .iter()
            .map(|&r| if r { Take::Placeholder } else { Take::Value })
            .collect();
        let mut errors = Vec::new();
        let read = condition.columns();
        let inputs: Vec<ArrayRef> = read
            .iter()
            .map(|&c| convert::convert_one(&self.records, columns, c, &first, &mut errors))
            .collect();
        let may_keep = condition.may_keep(&inputs, n)?;
        let take: Vec<Take> = (0..n)
            .map(|r| match (refused[r], may_keep.value(r)) {
                (true, _) => Take::Skip,
                (false, true) => Take::Value,
                (false, false) => Take::Check,
            })
            .collect();
        let built = BooleanArray::from(take.iter().map(|t| t.in_column()).collect::<Vec<_>>());
        let mut arrays = Vec::with_capacity(columns.len());
        for c in 0..columns.len() {
            arrays.push(match read.binary_search(&c) {
                Ok(k) => filter(inputs[k].as_ref(), &built)?,
                Err(_) => convert::convert_one(&self.records, columns, c, &take, &mut errors),
            });
        }
        errors.sort_by_key(|e| (e.record, e.column));
        Ok((arrays, errors, take))
    }
}

fn filter(a: &dyn Array, mask: &BooleanArray) -> Result<ArrayRef, RunError> {
    arrow_select::filter::filter(a, mask)
        .map_err(|e| RunError::Internal(format!("filtering decoded rows: {e}")))
}

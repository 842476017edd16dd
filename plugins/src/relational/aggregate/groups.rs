//! The groups of an `Aggregate` in memory: their keys in a [`KeySet`], each group's key as its
//! first row wrote it and that row's input position, and one [`State`] per output column.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_row::Rows;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowengine_engine::error::RunError;

use super::super::keys::{KeySet, Keys};
use super::super::node_error;
use super::super::partition::SEQ;
use super::state::State;
use super::{in_column, Order, Planned};

/// Groups and their states.
pub(super) struct Groups {
    node: String,
    grouped: bool,
    keys: Keys,
    table: KeySet,
    /// Per group, its key as its first row wrote it: what the output shows.
    firsts: Vec<Box<[u8]>>,
    /// Per group, the input position of its first row.
    first_seq: Vec<u64>,
    /// Per state: its input column, and its output column's name.
    inputs: Vec<Option<usize>>,
    names: Vec<String>,
    states: Vec<State>,
}

impl Groups {
    /// No groups yet, keyed by `keys` (none: one group for every row), with a state per `planned`.
    pub(super) fn new(
        node: &str,
        keys: Keys,
        grouped: bool,
        planned: &[Planned],
        input: &Schema,
    ) -> Result<Groups, String> {
        let states = planned
            .iter()
            .map(|p| State::new(p, p.column.map(|i| input.field(i).data_type())))
            .collect::<Result<_, _>>()?;
        Ok(Groups {
            node: node.to_string(),
            grouped,
            keys,
            table: KeySet::default(),
            firsts: Vec::new(),
            first_seq: Vec::new(),
            inputs: planned.iter().map(|p| p.column).collect(),
            names: planned.iter().map(|p| p.field.name().clone()).collect(),
            states,
        })
    }

    /// The key rows of `columns`, compared as groups are.
    pub(super) fn rows(&self, columns: &[ArrayRef]) -> Result<Rows, RunError> {
        self.keys.rows(&self.node, columns)
    }

    /// Whether a key row is one of the groups.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        !self.grouped || self.table.contains(key)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Fold rows in: `masks[s]` (a `FILTER`) says which rows state `s` takes; row `r` is the
    /// `seq(r)`-th of the input.
    pub(super) fn fold(
        &mut self,
        columns: &[ArrayRef],
        masks: &[Option<BooleanArray>],
        seq: impl Fn(usize) -> u64,
    ) -> Result<(), RunError> {
        let n = columns.first().map_or(0, |c| c.len());
        let group = self.assign(columns, n, seq)?;
        let groups = self.table.len();
        for (s, state) in self.states.iter_mut().enumerate() {
            let values = self.inputs[s].map(|c| &columns[c]);
            let named = |e| in_column(e, &self.names[s]);
            match &masks[s] {
                None => state.update(&self.node, values, &group, groups),
                Some(mask) => {
                    let values = values
                        .map(|v| arrow_select::filter::filter(v, mask))
                        .transpose()
                        .map_err(|e| node_error(&self.node, e))?;
                    let group: Vec<usize> = group
                        .iter()
                        .zip(mask.values())
                        .filter_map(|(&g, keep)| keep.then_some(g))
                        .collect();
                    state.update(&self.node, values.as_ref(), &group, groups)
                }
            }
            .map_err(named)?;
        }
        Ok(())
    }

    /// Each row's group, adding the groups first seen.
    fn assign(
        &mut self,
        columns: &[ArrayRef],
        n: usize,
        seq: impl Fn(usize) -> u64,
    ) -> Result<Vec<usize>, RunError> {
        if !self.grouped {
            if self.table.insert(&[]).1 {
                self.first_seq.push(seq(0));
            }
            return Ok(vec![0; n]);
        }
        let rows = self.keys.rows(&self.node, columns)?;
        let mut raw = None;
        let mut group = Vec::with_capacity(n);
        for r in 0..n {
            let (g, new) = self.table.insert(rows.row(r).as_ref());
            if new {
                // The group's key as its first row wrote it (`-0.0` stays `-0.0`).
                if raw.is_none() {
                    raw = Some(self.keys.raw_rows(&self.node, columns)?);
                }
                let raw = raw.as_ref().expect("set above");
                self.firsts.push(raw.row(r).as_ref().into());
                self.first_seq.push(seq(r));
            }
            group.push(g);
        }
        Ok(group)
    }

    /// Bytes the groups take.
    pub(super) fn bytes(&self) -> usize {
        let firsts =
            self.firsts.capacity() * 16 + self.firsts.iter().map(|k| k.len()).sum::<usize>();
        self.table.bytes()
            + firsts
            + self.first_seq.capacity() * 8
            + self.states.iter().map(State::bytes).sum::<usize>()
    }

    /// One row per group in `order`, as `schema` (the output's, and the first position of each
    /// group after it when `with_seq`). Without `GroupBy` and rows, SQL's one row all the same.
    pub(super) fn finish(
        &mut self,
        order: Order,
        schema: &SchemaRef,
        with_seq: bool,
    ) -> Result<RecordBatch, RunError> {
        if !self.grouped && self.table.is_empty() {
            self.table.insert(&[]);
            self.first_seq.push(0);
        }
        let groups = self.table.len();
        let mut picked: Vec<usize> = (0..groups).collect();
        let keys = self.table.keys();
        if order == Order::Keys && self.grouped {
            picked.sort_by(|&a, &b| keys[a].cmp(keys[b]));
        }
        let mut columns: Vec<ArrayRef> = if self.grouped {
            let firsts: Vec<&[u8]> = picked.iter().map(|&g| &self.firsts[g][..]).collect();
            self.keys.decode(&self.node, &firsts)?
        } else {
            Vec::new()
        };
        for (s, state) in self.states.iter_mut().enumerate() {
            let column = state.finish(&self.node, &picked, groups);
            columns.push(column.map_err(|e| in_column(e, &self.names[s]))?);
        }
        if with_seq {
            let seq = picked.iter().map(|&g| self.first_seq[g]);
            columns.push(Arc::new(UInt64Array::from_iter_values(seq)));
        }
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| node_error(&self.node, e))
    }
}

/// The output schema with each group's first input position after it.
pub(super) fn with_seq(output: &SchemaRef) -> SchemaRef {
    let mut fields = output.fields().to_vec();
    fields.push(Arc::new(Field::new(SEQ, DataType::UInt64, false)));
    Arc::new(Schema::new(fields))
}

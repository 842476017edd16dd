//! `Lookup`: enrich each row with columns of the reference row whose key matches (a hash join
//! against a small table: country code → name, product id → price).
//!
//! The reference rows arrive on the input port `lookup` (`To: enrich.lookup`) and are read to
//! their end first: their keys go into a [`KeySet`] and the columns asked for into one batch. Then
//! the main input streams through in order: each batch's keys are probed and the reference
//! columns taken by index (`arrow-select`'s `take`), so unmatched rows cost a null, not a copy.
//! Keys match as SQL's `=` does: a null key matches nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema, SchemaRef};
use arrow_select::concat::concat_batches;
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, Output, StatefulTransform, Transform, TransformConfig,
};
use flowengine_engine::error::{
    BuildError, ColumnRef, ConfigErrorKind, PlanError, RowError, RowErrorKind, RunError, Stage,
};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::memory::human_bytes;
use flowengine_engine::schema::type_name;
use flowengine_engine::Batch;

use super::keys::{KeyItem, KeySet, Keys};
use super::node_error;
use crate::native::select;

/// What happens to a main row without a reference row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoMatch {
    /// Kept, with nulls (a left join).
    Null,
    /// Filtered (an inner join).
    Drop,
    /// A reject, `LOOKUP_NO_MATCH`.
    Reject,
}

/// What several reference rows with one key do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duplicates {
    Error,
    First,
    Last,
}

/// Parsed `Lookup` config.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// (main column, reference column, YAML path).
    on: Vec<(String, String, String)>,
    /// (reference column, output name).
    columns: Vec<(String, String)>,
    columns_path: String,
    no_match: NoMatch,
    duplicates: Duplicates,
}

/// The input port the reference rows arrive on.
const PORT: &str = "lookup";

/// Parse a `Lookup` `Config` map: `On`, `Columns` (required), `Mode`, `NoMatch`, `DuplicateKeys`.
pub fn parse(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let on = match m.map(cx, "On") {
        Some(mut on) => {
            let mut pairs = Vec::new();
            for (main, _, value) in on.take_all() {
                let path = format!("{}.{main}", on.path());
                let reference = select::name(value, &path, cx)?;
                pairs.push((main.to_string(), reference, path));
            }
            Some(pairs)
        }
        None => {
            m.missing(cx, "On");
            None
        }
    };
    let columns_path = m.key_path("Columns");
    let columns = match m.list(cx, "Columns") {
        Some(items) => items
            .into_iter()
            .map(|(path, node)| {
                let (name, alias) = select::keep_item(node, path, cx)?;
                Some((name.clone(), alias.unwrap_or(name)))
            })
            .collect::<Option<Vec<_>>>(),
        None => {
            m.missing(cx, "Columns");
            None
        }
    };
    let inner = m
        .choice(cx, "Mode", &[("left", false), ("inner", true)])
        .unwrap_or(false);
    let no_match = m.choice(
        cx,
        "NoMatch",
        &[
            ("null", NoMatch::Null),
            ("drop", NoMatch::Drop),
            ("reject", NoMatch::Reject),
        ],
    );
    let no_match = match (inner, no_match) {
        (false, n) => n.unwrap_or(NoMatch::Null),
        (true, None | Some(NoMatch::Drop)) => NoMatch::Drop,
        (true, Some(_)) => {
            let kind = ConfigErrorKind::InvalidValue {
                expected:
                    "`NoMatch: drop` or none with `Mode: inner`, which drops rows without a match"
                        .into(),
                found: "another `NoMatch`".into(),
            };
            cx.error(kind, &m.key_path("NoMatch"), m.entry_mark("NoMatch"));
            return None;
        }
    };
    let duplicates = m
        .choice(
            cx,
            "DuplicateKeys",
            &[
                ("error", Duplicates::Error),
                ("first", Duplicates::First),
                ("last", Duplicates::Last),
            ],
        )
        .unwrap_or(Duplicates::Error);
    let on = on?;
    if on.is_empty() {
        let kind = ConfigErrorKind::InvalidValue {
            expected: "at least one `main_column: reference_column` pair".into(),
            found: "an empty map".into(),
        };
        cx.error(kind, &m.key_path("On"), m.entry_mark("On"));
        return None;
    }
    Some(Box::new(LookupConfig {
        on,
        columns: columns?,
        columns_path,
        no_match,
        duplicates,
    }))
}

fn unconnected() -> PlanError {
    PlanError::new(format!(
        "the reference rows arrive on input port `{PORT}`: connect one (`To: <node>.{PORT}`)"
    ))
}

/// The config checked against both schemas.
struct Planned {
    main_keys: Keys,
    reference_keys: Keys,
    /// Reference columns to take, by index.
    picked: Vec<usize>,
    output: SchemaRef,
}

impl LookupConfig {
    fn plan(&self, input: &Schema, sides: &[SchemaRef]) -> Result<Planned, Vec<PlanError>> {
        let Some(reference) = sides.first() else {
            return Err(vec![unconnected()]);
        };
        let mut errors = Vec::new();
        let item = |column: &str, path: &str| KeyItem {
            column: column.to_string(),
            descending: false,
            nulls_first: false,
            path: path.to_string(),
        };
        let main_items: Vec<KeyItem> = self.on.iter().map(|(m, _, p)| item(m, p)).collect();
        let ref_items: Vec<KeyItem> = self.on.iter().map(|(_, r, p)| item(r, p)).collect();
        let main_keys = Keys::resolve(&main_items, input).map_err(|e| errors.extend(e));
        let reference_keys = Keys::resolve(&ref_items, reference).map_err(|e| errors.extend(e));
        if let (Ok(m), Ok(r)) = (&main_keys, &reference_keys) {
            for ((&mi, &ri), (main, refc, path)) in m.columns.iter().zip(&r.columns).zip(&self.on) {
                let (mt, rt) = (input.field(mi).data_type(), reference.field(ri).data_type());
                if mt != rt {
                    errors.push(
                        PlanError::at(
                            path,
                            None,
                            format!(
                                "`{main}` is {} but the reference column `{refc}` is {}; keys must have one type",
                                type_name(mt),
                                type_name(rt)
                            ),
                        )
                        .with_hint(format!("add a `Cast` of `{main}` or `{refc}` before the lookup")),
                    );
                }
            }
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut picked = Vec::new();
        for (column, name) in &self.columns {
            let Some(i) = crate::native::find_column(reference, column) else {
                let message = crate::native::unknown_column(reference, column);
                errors.push(PlanError::at(
                    &self.columns_path,
                    None,
                    format!("reference {message}"),
                ));
                continue;
            };
            if fields.iter().any(|f| f.name() == name) {
                errors.push(PlanError::at(
                    &self.columns_path,
                    None,
                    format!("`{name}` is already a column of the input; rename it with `As`"),
                ));
                continue;
            }
            let nullable = self.no_match == NoMatch::Null || reference.field(i).is_nullable();
            let ty = reference.field(i).data_type().clone();
            fields.push(Field::new(name, ty, nullable));
            picked.push(i);
        }
        match (main_keys, reference_keys) {
            (Ok(main_keys), Ok(reference_keys)) if errors.is_empty() => Ok(Planned {
                main_keys,
                reference_keys,
                picked,
                output: Arc::new(Schema::new(fields)),
            }),
            _ => Err(errors),
        }
    }
}

impl TransformConfig for LookupConfig {
    fn output_schema(&self, _input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        Err(vec![unconnected()])
    }

    fn output_schema_with(
        &self,
        input: &SchemaRef,
        sides: &[SchemaRef],
    ) -> Result<SchemaRef, Vec<PlanError>> {
        self.plan(input, sides).map(|p| p.output)
    }

    fn input_ports(&self) -> Vec<String> {
        vec![PORT.to_string()]
    }

    fn stateful(&self) -> bool {
        true
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        self.build_with(input, &[], cx)
    }

    fn build_with(
        &self,
        input: SchemaRef,
        sides: &[SchemaRef],
        cx: &BuildCx,
    ) -> Result<BuiltTransform, BuildError> {
        let planned = self.plan(&input, sides).map_err(|e| BuildError::Invalid {
            node: cx.node.clone(),
            message: PlanError::join(&e),
        })?;
        let picked_schema = Arc::new(Schema::new(
            planned.output.fields()[input.fields().len()..].to_vec(),
        ));
        Ok(BuiltTransform::Stateful(Box::new(Lookup {
            node: cx.node.clone(),
            no_match: self.no_match,
            duplicates: self.duplicates,
            main_names: self.on.iter().map(|(m, _, _)| m.clone()).collect(),
            planned: Arc::new(planned),
            picked_schema,
            keys: KeySet::default(),
            rows_of_key: Vec::new(),
            lines_of_key: Vec::new(),
            pieces: Vec::new(),
            reference_rows: 0,
            reference_file: None,
            limit: usize::try_from(cx.state_bytes).unwrap_or(usize::MAX),
            bytes: 0,
            key_count: 0,
            held: 0,
            probe: None,
            matched: Arc::default(),
        })))
    }
}

struct Lookup {
    node: String,
    no_match: NoMatch,
    duplicates: Duplicates,
    /// The main key columns as written, for messages.
    main_names: Vec<String>,
    planned: Arc<Planned>,
    picked_schema: SchemaRef,
    keys: KeySet,
    /// Per key (its index in `keys`), the reference row it takes its columns from.
    rows_of_key: Vec<u32>,
    /// Per key, the line of that reference row (for the duplicate-key error).
    lines_of_key: Vec<Option<u64>>,
    /// The picked columns of the reference batches, until the main input starts.
    pieces: Vec<RecordBatch>,
    reference_rows: u32,
    reference_file: Option<Arc<str>>,
    limit: usize,
    bytes: usize,
    /// Once the reference is loaded: how many keys, and the bytes held.
    key_count: usize,
    held: usize,
    /// The probe, when the executor runs the main input through `push`.
    probe: Option<Probe>,
    matched: Arc<AtomicU64>,
}

impl StatefulTransform for Lookup {
    fn push_side(&mut self, _port: usize, batch: Batch) -> Result<(), RunError> {
        let n = batch.num_rows();
        let columns = batch.data.columns();
        let rows = self.planned.reference_keys.rows(&self.node, columns)?;
        let has_null = null_mask(&self.planned.reference_keys.columns, columns, n);
        self.reference_file = batch.origin.file.clone();
        for (r, &null) in has_null.iter().enumerate() {
            // A null key matches nothing: such a reference row can never be used.
            if null {
                continue;
            }
            let at = self.reference_rows + r as u32;
            let line = batch.origin.line(r);
            let (key, new) = self.keys.insert(rows.row(r).as_ref());
            if new {
                self.rows_of_key.push(at);
                self.lines_of_key.push(line);
                continue;
            }
            match self.duplicates {
                Duplicates::First => {}
                Duplicates::Last => {
                    self.rows_of_key[key] = at;
                    self.lines_of_key[key] = line;
                }
                Duplicates::Error => return Err(self.duplicate(&batch, r, key, line)),
            }
        }
        let picked = batch
            .data
            .project(&self.planned.picked)
            .map_err(|e| node_error(&self.node, e))?;
        self.bytes += picked.get_array_memory_size() + rows.size();
        self.pieces.push(picked);
        self.reference_rows =
            u32::try_from(self.reference_rows as usize + n).map_err(|_| RunError::Node {
                node: self.node.clone(),
                message: "the reference input has more than 2^32 rows".into(),
            })?;
        if self.bytes + self.keys.bytes() > self.limit {
            return Err(RunError::Node {
                node: self.node.clone(),
                message: format!(
                    "the reference input takes {} after {} rows, more than its share of \
                     `MemoryLimit` ({}); raise `Settings.MemoryLimit` (the nodes that hold rows \
                     share half of it), or pick fewer `Columns`",
                    human_bytes((self.bytes + self.keys.bytes()) as u64),
                    self.reference_rows,
                    human_bytes(self.limit as u64)
                ),
            });
        }
        Ok(())
    }

    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        // Only when the executor did not take the probe to run it in parallel.
        if self.probe.is_none() {
            self.probe = Some(self.probe()?);
        }
        let probe = self.probe.as_ref().expect("set above");
        let joined = probe.join(batch, &mut out.rejects, &mut out.filtered)?;
        out.batches.push(joined);
        Ok(())
    }

    fn batches(&mut self) -> Result<Option<Box<dyn Transform>>, RunError> {
        Ok(Some(Box::new(self.probe()?)))
    }

    fn finish(&mut self, _out: &mut Output) -> Result<bool, RunError> {
        Ok(false)
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "{} reference keys ({} held); {} rows matched",
            self.key_count,
            human_bytes(self.held as u64),
            self.matched.load(Ordering::Relaxed)
        )]
    }
}

/// The main-input half of a `Lookup`, once the reference is loaded: pure per batch, so the
/// executor runs it on the pool like `Filter`.
struct Probe {
    node: String,
    no_match: NoMatch,
    main_names: Vec<String>,
    planned: Arc<Planned>,
    keys: KeySet,
    rows_of_key: Vec<u32>,
    /// The picked columns of every reference row.
    reference: RecordBatch,
    matched: Arc<AtomicU64>,
}

impl Transform for Probe {
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        // Rows dropped without a reject count as filtered: the executor sees them missing.
        self.join(batch, rejects, &mut 0)
    }
}

impl Probe {
    /// `batch` with the reference columns of each row's key added; rows without a match as
    /// `NoMatch` says.
    fn join(
        &self,
        batch: Batch,
        rejects: &mut Vec<RowError>,
        filtered: &mut u64,
    ) -> Result<Batch, RunError> {
        let n = batch.num_rows();
        let columns = batch.data.columns();
        let rows = self.planned.main_keys.rows(&self.node, columns)?;
        let has_null = null_mask(&self.planned.main_keys.columns, columns, n);
        let indices: UInt32Array = (0..n)
            .map(|r| {
                let key = (!has_null[r]).then(|| self.keys.find(rows.row(r).as_ref()));
                key.flatten().map(|k| self.rows_of_key[k])
            })
            .collect();
        let matched = n - indices.null_count();
        self.matched.fetch_add(matched as u64, Ordering::Relaxed);
        let (batch, indices) = if matched == n || self.no_match == NoMatch::Null {
            (batch, indices)
        } else {
            let keep = BooleanArray::from_iter((0..n).map(|r| Some(indices.is_valid(r))));
            if self.no_match == NoMatch::Reject {
                for r in (0..n).filter(|&r| indices.is_null(r)) {
                    rejects.push(self.no_match_error(&batch, r));
                }
            } else {
                *filtered += (n - matched) as u64;
            }
            let err = |e| node_error(&self.node, e);
            let kept = arrow_select::filter::filter(&indices, &keep).map_err(err)?;
            let kept = kept.as_any().downcast_ref::<UInt32Array>().cloned();
            let kept =
                kept.ok_or_else(|| RunError::Internal("lookup indices lost their type".into()))?;
            (batch.filter(&keep).map_err(err)?, kept)
        };
        let mut out_columns = batch.data.columns().to_vec();
        for column in self.reference.columns() {
            let taken = arrow_select::take::take(column.as_ref(), &indices, None)
                .map_err(|e| node_error(&self.node, e))?;
            out_columns.push(taken);
        }
        let data = RecordBatch::try_new(self.planned.output.clone(), out_columns)
            .map_err(|e| node_error(&self.node, e))?;
        Ok(Batch::new(
            data,
            batch.origin.file.clone(),
            batch.origin.lines.clone(),
        ))
    }

    fn no_match_error(&self, batch: &Batch, r: usize) -> RowError {
        let columns = &self.planned.main_keys.columns;
        let value = key_text(batch, columns, r);
        RowError {
            node: self.node.clone(),
            stage: Stage::Validate,
            kind: RowErrorKind::LookupNoMatch,
            file: batch.origin.file.clone(),
            line: batch.origin.line(r),
            record: None,
            byte_offset: None,
            column: Some(ColumnRef {
                name: self.main_names.join(", "),
                index: columns[0],
            }),
            message: format!("no reference row has the key ({value})"),
            value: Some(value),
            hint: Some(
                "add the key to the reference input, or set `NoMatch: null` to keep the row with nulls"
                    .into(),
            ),
            raw: None,
        }
    }
}

impl Lookup {
    /// The main-input half, with the reference rows loaded so far (all of them: the executor
    /// asks once every input port has ended).
    fn probe(&mut self) -> Result<Probe, RunError> {
        let pieces = std::mem::take(&mut self.pieces);
        let reference = concat_batches(&self.picked_schema_for_pieces(), &pieces)
            .map_err(|e| node_error(&self.node, e))?;
        self.key_count = self.keys.len();
        self.held = self.bytes + self.keys.bytes();
        Ok(Probe {
            node: self.node.clone(),
            no_match: self.no_match,
            main_names: self.main_names.clone(),
            planned: self.planned.clone(),
            keys: std::mem::take(&mut self.keys),
            rows_of_key: std::mem::take(&mut self.rows_of_key),
            reference,
            matched: self.matched.clone(),
        })
    }

    fn picked_schema_for_pieces(&self) -> SchemaRef {
        match self.pieces.first() {
            Some(p) => p.schema(),
            None => Arc::new(Schema::new(
                self.picked_schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            )),
        }
    }

    fn duplicate(&self, batch: &Batch, r: usize, key: usize, line: Option<u64>) -> RunError {
        let value = key_text(batch, &self.planned.reference_keys.columns, r);
        let at = |l: Option<u64>| l.map_or("a row".to_string(), |l| format!("line {l}"));
        let file = batch
            .origin
            .file
            .as_deref()
            .or(self.reference_file.as_deref())
            .unwrap_or("the reference input");
        RunError::Node {
            node: self.node.clone(),
            message: format!(
                "the reference key ({value}) appears twice in {file}: {} and {}; set \
                 `DuplicateKeys: first` or `last` to pick one, or remove the duplicate",
                at(self.lines_of_key[key]),
                at(line)
            ),
        }
    }
}

/// The key values of row `r` of `batch` (main or reference), as text.
fn key_text(batch: &Batch, columns: &[usize], r: usize) -> String {
    let options = arrow_cast::display::FormatOptions::default().with_null("null");
    columns
        .iter()
        .map(|&c| {
            arrow_cast::display::ArrayFormatter::try_new(batch.data.column(c).as_ref(), &options)
                .map(|f| f.value(r).to_string())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per row: whether any of `keys` is null in it.
fn null_mask(keys: &[usize], columns: &[ArrayRef], rows: usize) -> Vec<bool> {
    let mut mask = vec![false; rows];
    for &k in keys {
        let column = &columns[k];
        if column.null_count() == 0 {
            continue;
        }
        for (r, m) in mask.iter_mut().enumerate() {
            *m |= column.is_null(r);
        }
    }
    mask
}

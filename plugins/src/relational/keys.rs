//! Sort and grouping keys: `By` items as SQL writes them, and rows of key columns as byte strings
//! (`arrow-row`) that compare and hash as the SQL order and equality say.

use std::hash::BuildHasher;

use arrow_array::ArrayRef;
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{Schema, SortOptions};
use flowengine_engine::error::{PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use hashbrown::HashTable;

/// One `By` item: a column and its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyItem {
    /// The column, as written.
    pub column: String,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST`; the default is `NULLS LAST` either way (as DuckDB).
    pub nulls_first: bool,
    /// The item's YAML path, for messages.
    pub path: String,
}

/// Read a list of column names (`On: [a, b]`) or `ORDER BY` items (`By: ["a DESC", b]`) under
/// `key`; `ordered` allows `ASC`/`DESC`/`NULLS FIRST|LAST`.
pub fn read_items(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    key: &'static str,
    ordered: bool,
) -> Option<Vec<KeyItem>> {
    let items = m.list(cx, key)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (path, node) in items {
        let Some(text) = node.as_scalar() else {
            cx.error(
                flowengine_engine::error::ConfigErrorKind::InvalidValue {
                    expected: "a column name".into(),
                    found: node.kind_name().into(),
                },
                &path,
                node.mark,
            );
            ok = false;
            continue;
        };
        let Some(text) = cx.substitute(text, &path, node.mark) else {
            ok = false;
            continue;
        };
        match parse_item(&text, ordered) {
            Ok((column, descending, nulls_first)) => out.push(KeyItem {
                column,
                descending,
                nulls_first,
                path,
            }),
            Err(expected) => {
                let kind = flowengine_engine::error::ConfigErrorKind::InvalidValue {
                    expected,
                    found: format!("`{text}`"),
                };
                cx.error(kind, &path, node.mark);
                ok = false;
            }
        }
    }
    if out.is_empty() && ok {
        let kind = flowengine_engine::error::ConfigErrorKind::InvalidValue {
            expected: "at least one column".into(),
            found: "an empty list".into(),
        };
        cx.error(kind, &m.key_path(key), m.entry_mark(key));
        return None;
    }
    ok.then_some(out)
}

/// `name`, `"a name"`, then for an ordered item `ASC|DESC` and `NULLS FIRST|LAST`, any case.
pub(super) fn parse_item(text: &str, ordered: bool) -> Result<(String, bool, bool), String> {
    let expected = || {
        if ordered {
            "a column, then optionally ASC or DESC and NULLS FIRST or NULLS LAST (`amount DESC NULLS FIRST`)".to_string()
        } else {
            "a column name".to_string()
        }
    };
    let text = text.trim();
    let (column, rest) = match text.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find('"').ok_or_else(expected)?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        }
        None => match text.split_once(char::is_whitespace) {
            Some((c, rest)) => (c.to_string(), rest),
            None => (text.to_string(), ""),
        },
    };
    let words: Vec<String> = rest
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    if column.is_empty() || (!ordered && !words.is_empty()) {
        return Err(expected());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (descending, nulls) = match words.as_slice() {
        [] => (false, &[][..]),
        ["ASC", rest @ ..] => (false, rest),
        ["DESC", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let nulls_first = match nulls {
        [] | ["NULLS", "LAST"] => false,
        ["NULLS", "FIRST"] => true,
        _ => return Err(expected()),
    };
    Ok((column, descending, nulls_first))
}

/// Key columns resolved against a schema, and how to turn them into comparable rows.
#[derive(Debug)]
pub struct Keys {
    /// Input column indexes.
    pub columns: Vec<usize>,
    converter: RowConverter,
}

impl Keys {
    /// Resolve `items` against `schema`; every unknown or unsortable column is a problem.
    pub fn resolve(items: &[KeyItem], schema: &Schema) -> Result<Keys, Vec<PlanError>> {
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        let mut errors = Vec::new();
        for item in items {
            let Some(i) = crate::native::find_column(schema, &item.column) else {
                let message = crate::native::unknown_column(schema, &item.column);
                errors.push(PlanError::at(&item.path, None, message));
                continue;
            };
            let ty = schema.field(i).data_type().clone();
            if !RowConverter::supports_fields(&[SortField::new(ty.clone())]) {
                errors.push(PlanError::at(
                    &item.path,
                    None,
                    format!("column `{}` ({ty}) cannot be a key", item.column),
                ));
                continue;
            }
            let options = SortOptions {
                descending: item.descending,
                nulls_first: item.nulls_first,
            };
            columns.push(i);
            fields.push(SortField::new_with_options(ty, options));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let converter =
            RowConverter::new(fields).map_err(|e| vec![PlanError::new(e.to_string())])?;
        Ok(Keys { columns, converter })
    }

    /// Every column of `schema`, ascending: the key of a whole row.
    pub fn all(schema: &Schema) -> Result<Keys, Vec<PlanError>> {
        let items: Vec<KeyItem> = schema
            .fields()
            .iter()
            .map(|f| KeyItem {
                column: f.name().clone(),
                descending: false,
                nulls_first: false,
                path: String::new(),
            })
            .collect();
        Keys::resolve(&items, schema)
    }

    /// The key columns back from keys made by [`Keys::rows`] (floats as compared: `-0` as `0`,
    /// every NaN as one) or [`Keys::raw_rows`] (as written).
    pub fn decode(&self, node: &str, keys: &[&[u8]]) -> Result<Vec<ArrayRef>, RunError> {
        let parser = self.converter.parser();
        let rows = keys.iter().map(|k| parser.parse(k));
        self.converter
            .convert_rows(rows)
            .map_err(|e| RunError::Node {
                node: node.to_string(),
                message: e.to_string(),
            })
    }

    /// The key columns of every row as they are (no float made canonical): only for showing a
    /// key again with [`Keys::decode`], never for comparing.
    pub fn raw_rows(&self, node: &str, columns: &[ArrayRef]) -> Result<Rows, RunError> {
        let keys: Vec<ArrayRef> = self.columns.iter().map(|&i| columns[i].clone()).collect();
        self.converter
            .convert_columns(&keys)
            .map_err(|e| RunError::Node {
                node: node.to_string(),
                message: e.to_string(),
            })
    }

    /// The key of every row of `columns` (a batch's columns).
    pub fn rows(&self, node: &str, columns: &[ArrayRef]) -> Result<Rows, RunError> {
        let keys: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| normalize(&columns[i]))
            .collect();
        self.converter
            .convert_columns(&keys)
            .map_err(|e| RunError::Node {
                node: node.to_string(),
                message: e.to_string(),
            })
    }
}

/// A set of byte strings: one arena of key bytes and a table of (hash, offset, length, index).
#[derive(Default)]
pub struct KeySet {
    arena: Vec<u8>,
    table: HashTable<Entry>,
    hasher: hashbrown::DefaultHashBuilder,
}

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    start: usize,
    len: u32,
    /// The order the key was first inserted in.
    index: u32,
}

impl KeySet {
    /// Insert `key`: its index, and whether it is new.
    pub fn insert(&mut self, key: &[u8]) -> (usize, bool) {
        let hash = self.hasher.hash_one(key);
        let arena = &self.arena;
        let found = self.table.find(hash, |e| {
            e.hash == hash && &arena[e.start..e.start + e.len as usize] == key
        });
        if let Some(e) = found {
            return (e.index as usize, false);
        }
        let index = self.table.len();
        let entry = Entry {
            hash,
            start: self.arena.len(),
            len: key.len() as u32,
            index: index as u32,
        };
        self.arena.extend_from_slice(key);
        self.table.insert_unique(hash, entry, |e| e.hash);
        (index, true)
    }

    /// The index of `key`, if it is in the set.
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let arena = &self.arena;
        self.table
            .find(hash, |e| {
                e.hash == hash && &arena[e.start..e.start + e.len as usize] == key
            })
            .map(|e| e.index as usize)
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every key, in the order first inserted.
    pub fn keys(&self) -> Vec<&[u8]> {
        let mut entries: Vec<&Entry> = self.table.iter().collect();
        entries.sort_unstable_by_key(|e| e.index);
        entries
            .iter()
            .map(|e| &self.arena[e.start..e.start + e.len as usize])
            .collect()
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.arena.capacity() + self.table.capacity() * std::mem::size_of::<Entry>()
    }
}

pub(super) use crate::native::eval::canonical_floats as normalize;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Float64Array;
    use arrow_schema::DataType;

    use super::*;

    #[test]
    fn items_read_as_sql_writes_them() {
        assert_eq!(parse_item("id", true), Ok(("id".into(), false, false)));
        assert_eq!(parse_item("v desc", true), Ok(("v".into(), true, false)));
        assert_eq!(
            parse_item("\"first name\" ASC NULLS FIRST", true),
            Ok(("first name".into(), false, true))
        );
        assert_eq!(
            parse_item("v Nulls Last", true),
            Ok(("v".into(), false, false))
        );
        assert!(parse_item("v sideways", true).is_err());
        assert!(parse_item("v DESC", false).is_err());
        assert!(parse_item("\"open", true).is_err());
    }

    #[test]
    fn a_key_set_knows_each_key_once_and_its_index() {
        let mut set = KeySet::default();
        assert_eq!(set.insert(b"ab"), (0, true));
        assert_eq!(set.insert(b""), (1, true));
        assert_eq!(set.insert(b"a"), (2, true));
        assert_eq!(set.insert(b"ab"), (0, false));
        assert_eq!(set.insert(b""), (1, false));
        assert_eq!(set.insert(b"a"), (2, false));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn negative_zero_equals_zero_and_every_nan_sorts_last() {
        let schema = Schema::new(vec![arrow_schema::Field::new("v", DataType::Float64, true)]);
        let item = |d| KeyItem {
            column: "v".into(),
            descending: d,
            nulls_first: false,
            path: String::new(),
        };
        let keys = Keys::resolve(&[item(false)], &schema).unwrap();
        let neg_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let v: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-0.0),
            Some(0.0),
            Some(neg_nan),
            Some(f64::INFINITY),
            None,
            Some(f64::NAN),
        ]));
        let rows = keys.rows("sort", &[v]).unwrap();
        assert_eq!(rows.row(0), rows.row(1));
        assert_eq!(rows.row(2), rows.row(5));
        assert!(rows.row(3) < rows.row(2));
        assert!(rows.row(2) < rows.row(4), "nulls last");
    }
}

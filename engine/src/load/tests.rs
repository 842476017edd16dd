//! A pipeline file's `Tests:` section, which `flowengine test` runs and `run` ignores.
//!
//! ```yaml
//! Tests:
//!   - Name: adults are kept
//!     Inputs:
//!       read: { Csv: "id,name,age\n1,Ann,34\n2,Bo,x\n" }   # or { File: sample.csv }
//!     Expect:
//!       adults: { Rows: [ { id: 1, name: Ann } ], Rejects: [ TYPE_CONVERSION ] }
//!       write: { RowCount: 1 }                               # or { Csv: "id,name\n1,Ann\n" }
//! ```

use std::path::PathBuf;

use crate::error::ConfigErrorKind;
use crate::load::config::{ConfigCx, MapReader};
use crate::load::yaml::{Mark, Node, Value};

/// One test: inputs for named sources, expectations at named nodes.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// `Name`.
    pub name: String,
    /// Where it was written.
    pub mark: Mark,
    /// What each named source reads instead of its files.
    pub inputs: Vec<TestInput>,
    /// What each named node must put out (a sink: receive).
    pub expects: Vec<TestExpect>,
}

/// A source's input in a test.
#[derive(Debug, Clone)]
pub struct TestInput {
    /// The source node.
    pub node: String,
    /// Where its name was written.
    pub mark: Mark,
    /// The data.
    pub data: TestData,
}

/// Input data, in the source's own format (dialect, header, encoding).
#[derive(Debug, Clone)]
pub enum TestData {
    /// `Csv:` the file's text, inline.
    Text(String),
    /// `File:` a file, relative to the pipeline file.
    File(PathBuf),
}

/// What a node must put out.
#[derive(Debug, Clone, Default)]
pub struct TestExpect {
    /// The node.
    pub node: String,
    /// Where its name was written.
    pub mark: Mark,
    /// `Rows:` each row as column → value text (a missing column is null), or `Csv:` a header
    /// and rows, in order.
    pub rows: Option<ExpectedRows>,
    /// `RowCount:`.
    pub row_count: Option<u64>,
    /// `Rejects:` the reason codes of the rows this node rejects, in any order.
    pub rejects: Option<Vec<String>>,
}

/// A row as (column, value text) pairs; `None` is null.
pub type RowValues = Vec<(String, Option<String>)>;

/// Expected rows.
#[derive(Debug, Clone)]
pub enum ExpectedRows {
    /// Each row as (column, value text) pairs.
    Rows(Vec<RowValues>),
    /// CSV text with a header.
    Csv(String),
}

/// Read `Tests:` (a list), if present.
pub fn read(top: &mut MapReader<'_>, cx: &mut ConfigCx) -> Vec<TestCase> {
    let Some(items) = top.has("Tests").then(|| top.list(cx, "Tests")).flatten() else {
        return Vec::new();
    };
    let mut tests = Vec::new();
    for (path, node) in items {
        let Some(mut m) = MapReader::new(node, path.clone(), cx) else {
            continue;
        };
        let name = m.required_string(cx, "Name").unwrap_or_default();
        let inputs = read_nodes(&mut m, cx, "Inputs", read_input);
        let expects = read_nodes(&mut m, cx, "Expect", read_expect);
        m.finish(cx);
        if expects.is_empty() {
            let kind = ConfigErrorKind::MissingKey("Expect".into());
            cx.error_with_hint(
                kind,
                &path,
                node.mark,
                "a test needs at least one expectation, e.g. `Expect: { write: { RowCount: 2 } }`",
            );
        }
        tests.push(TestCase {
            name,
            mark: node.mark,
            inputs,
            expects,
        });
    }
    tests
}

/// A map of node name → entry, each read by `entry`.
fn read_nodes<T>(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    key: &'static str,
    entry: fn(&str, Mark, &mut MapReader<'_>, &mut ConfigCx) -> Option<T>,
) -> Vec<T> {
    let Some(mut map) = m.map(cx, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, mark, node) in map.take_all() {
        let path = format!("{}.{name}", map.path());
        if let Some(mut inner) = MapReader::new(node, path, cx) {
            if let Some(item) = entry(name, mark, &mut inner, cx) {
                out.push(item);
            }
            inner.finish(cx);
        }
    }
    out
}

fn read_input(
    node: &str,
    mark: Mark,
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
) -> Option<TestInput> {
    let data = if m.has("Csv") {
        TestData::Text(m.raw_string(cx, "Csv")?)
    } else if m.has("File") {
        TestData::File(m.path_value(cx, "File")?)
    } else {
        let kind = ConfigErrorKind::MissingKey("Csv".into());
        cx.error_with_hint(
            kind,
            m.path(),
            m.mark(),
            "give the source's input as `Csv: |` text in its own format, or `File: path`",
        );
        return None;
    };
    Some(TestInput {
        node: node.to_string(),
        mark,
        data,
    })
}

fn read_expect(
    node: &str,
    mark: Mark,
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
) -> Option<TestExpect> {
    let rows = if m.has("Rows") {
        Some(ExpectedRows::Rows(read_rows(m, cx)?))
    } else if m.has("Csv") {
        Some(ExpectedRows::Csv(m.raw_string(cx, "Csv")?))
    } else {
        None
    };
    let row_count = m.integer(cx, "RowCount", 0, u64::MAX >> 1);
    let rejects = match m.has("Rejects") {
        true => Some(
            m.list(cx, "Rejects")?
                .into_iter()
                .filter_map(|(_, n)| n.as_scalar().map(str::to_string))
                .collect(),
        ),
        false => None,
    };
    Some(TestExpect {
        node: node.to_string(),
        mark,
        rows,
        row_count,
        rejects,
    })
}

fn read_rows(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Vec<RowValues>> {
    let mut rows = Vec::new();
    for (path, node) in m.list(cx, "Rows")? {
        let Value::Map(entries) = &node.value else {
            let kind = ConfigErrorKind::InvalidValue {
                expected: "a row as a map, e.g. { id: 1, name: Ann }".into(),
                found: node.kind_name().into(),
            };
            cx.error(kind, &path, node.mark);
            continue;
        };
        let row = entries
            .iter()
            .map(|(k, v): &(Node, Node)| {
                let key = k.as_scalar().unwrap_or_default().to_string();
                (key, v.as_scalar().map(str::to_string))
            })
            .collect();
        rows.push(row);
    }
    Some(rows)
}

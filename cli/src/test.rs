//! `flowengine test`: the `Tests:` of a pipeline file, each run on the real path in memory
//! ([`flowengine_engine::preview`] captures every node's output), its expectations compared.

use std::fmt::Write as _;

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use flowengine_engine::load::tests::{ExpectedRows, RowValues, TestCase, TestExpect};
use flowengine_engine::preview::Taps;
use flowengine_plugins::delimited::decode::{Checks, Decoder, Dialect, Records};

/// A row as text, column by column; `None` is null.
type Row = Vec<Option<String>>;

/// What failed in one test, one problem per entry (empty: it passed).
pub fn check(test: &TestCase, taps: &Taps) -> Vec<String> {
    let mut problems = Vec::new();
    for expect in &test.expects {
        check_node(expect, taps, &mut problems);
    }
    problems
}

fn check_node(expect: &TestExpect, taps: &Taps, problems: &mut Vec<String>) {
    let node = &expect.node;
    let Some(tap) = taps
        .outputs
        .iter()
        .find(|t| &t.node == node && t.port.is_none())
    else {
        problems.push(format!("`{node}`: the run captured nothing there"));
        return;
    };
    let batches = tap.batches.lock().unwrap_or_else(|p| p.into_inner());
    let names: Vec<String> = tap
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let actual = rows(&batches);
    if let Some(count) = expect.row_count {
        if actual.len() as u64 != count {
            problems.push(format!("`{node}`: {} rows, expected {count}", actual.len()));
        }
    }
    if let Some(want) = &expect.rows {
        let (want, csv) = match want {
            ExpectedRows::Rows(rows) => match from_maps(rows, &names) {
                Ok(rows) => (rows, false),
                Err(e) => {
                    problems.push(format!("`{node}`: {e}"));
                    return;
                }
            },
            ExpectedRows::Csv(text) => match from_csv(text, &names) {
                Ok(rows) => (rows, true),
                Err(e) => {
                    problems.push(format!("`{node}`: {e}"));
                    return;
                }
            },
        };
        // In CSV an empty field is how a null is written.
        let same = |a: &Row, b: &Row| {
            a.iter().zip(b).all(|(x, y)| {
                x == y || (csv && x.as_deref().unwrap_or("") == y.as_deref().unwrap_or(""))
            })
        };
        if want.len() != actual.len() || !want.iter().zip(&actual).all(|(w, a)| same(w, a)) {
            problems.push(format!(
                "`{node}`: the rows differ\n{}",
                diff(&names, &want, &actual)
            ));
        }
    }
    if let Some(want) = &expect.rejects {
        let mut want = want.clone();
        let mut got = reject_codes(&taps.rejects, node);
        want.sort();
        got.sort();
        if want != got {
            problems.push(format!("`{node}`: rejects {got:?}, expected {want:?}"));
        }
    }
}

/// Every row of `batches` as the text `DelimitedSink` writes.
fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<Option<ArrayFormatter<'_>>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| match f {
                        Some(f) if c.is_valid(r) => Some(f.value(r).to_string()),
                        _ => None,
                    })
                    .collect(),
            );
        }
    }
    out
}

fn from_maps(maps: &[RowValues], names: &[String]) -> Result<Vec<Row>, String> {
    maps.iter()
        .map(|map| {
            if let Some((key, _)) = map.iter().find(|(k, _)| !names.contains(k)) {
                return Err(format!(
                    "an expected row names `{key}`, which is not a column here ({})",
                    names.join(", ")
                ));
            }
            Ok(names
                .iter()
                .map(|n| {
                    map.iter()
                        .find(|(k, _)| k == n)
                        .and_then(|(_, v)| v.clone())
                })
                .collect())
        })
        .collect()
}

/// The rows of CSV `text`, whose header must be `names`; split by the reader `DelimitedSource`
/// runs.
fn from_csv(text: &str, names: &[String]) -> Result<Vec<Row>, String> {
    let mut decoder = Decoder::new(Dialect::default(), Checks::default(), 1, 0);
    let mut records = Records::with_cap(usize::MAX);
    decoder.decode(text.as_bytes(), true, &mut records, usize::MAX);
    let field = |r: usize, k: usize| {
        String::from_utf8_lossy(records.field(r, k).unwrap_or_default()).into_owned()
    };
    if records.is_empty() {
        return Err("the expected CSV has no header".into());
    }
    let header: Vec<String> = (0..records.field_count(0)).map(|k| field(0, k)).collect();
    if header != names {
        return Err(format!(
            "the expected CSV's header is {}, the columns are {}",
            header.join(","),
            names.join(",")
        ));
    }
    Ok((1..records.len())
        .map(|r| (0..names.len()).map(|k| Some(field(r, k))).collect())
        .collect())
}

/// The reason codes of the rejects `node` made.
fn reject_codes(rejects: &flowengine_engine::preview::Captured, node: &str) -> Vec<String> {
    let batches = rejects.lock().unwrap_or_else(|p| p.into_inner());
    let mut codes = Vec::new();
    for b in batches.iter() {
        let column = |name| {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (Some(nodes), Some(kinds)) = (column("node"), column("error_type")) else {
            continue;
        };
        for r in 0..b.num_rows() {
            if nodes.value(r) == node {
                codes.push(kinds.value(r).to_string());
            }
        }
    }
    codes
}

/// Expected and actual rows, one per line, marked where they differ.
fn diff(names: &[String], want: &[Row], got: &[Row]) -> String {
    let line = |row: &Row| {
        row.iter()
            .map(|v| v.as_deref().unwrap_or("null"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = format!("      {}\n", names.join(","));
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if line(w) == line(g) => {
                let _ = writeln!(out, "      {}", line(w));
            }
            (w, g) => {
                if let Some(w) = w {
                    let _ = writeln!(out, "    - {}", line(w));
                }
                if let Some(g) = g {
                    let _ = writeln!(out, "    + {}", line(g));
                }
            }
        }
    }
    out.push_str("    (- expected, + actual)");
    out
}

//! Tests of evaluation: expressions parsed, checked against a schema and evaluated on a batch.
//! They live here rather than in `eval.rs` because they go through every stage, and `eval.rs`
//! depends on neither the parser nor the checker.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};

use super::check::check;
use super::eval::{evaluate, CastFailures};
use super::parse::parse;

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("age", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("signup", DataType::Date32, true),
        Field::new("value", DataType::Float64, true),
        Field::new("code", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![Some(30), Some(17), None, Some(45)])),
            Arc::new(StringArray::from(vec![
                Some(" Ann "),
                Some("bob"),
                Some("Zoë"),
                None,
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
            Arc::new(Date32Array::from(vec![
                Some(19_753),
                Some(0),
                None,
                Some(365),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(50_000.0),
                Some(1.5),
                None,
                Some(0.0),
            ])),
            Arc::new(StringArray::from(vec![
                Some("12"),
                Some("x"),
                None,
                Some("7.5"),
            ])),
        ],
    )
    .unwrap()
}

fn run(text: &str) -> (ArrayRef, Vec<CastFailures>) {
    let b = batch();
    let e = check(&parse(text).unwrap(), &b.schema()).unwrap();
    let mut failures = Vec::new();
    let out = evaluate(&e, b.columns(), b.num_rows(), &mut failures).unwrap();
    assert_eq!(out.data_type(), &e.ty, "{text}");
    (out, failures)
}

fn shown(text: &str) -> Vec<String> {
    let (out, _) = run(text);
    let f = arrow_cast::display::ArrayFormatter::try_new(
        out.as_ref(),
        &arrow_cast::display::FormatOptions::default().with_null("∅"),
    )
    .unwrap();
    (0..out.len()).map(|i| f.value(i).to_string()).collect()
}

#[test]
fn three_valued_logic() {
    assert_eq!(
        shown("active AND age >= 30"),
        ["true", "false", "∅", "true"]
    );
    assert_eq!(shown("active OR age >= 30"), ["true", "false", "∅", "true"]);
    assert_eq!(shown("NOT active"), ["false", "true", "∅", "false"]);
    assert_eq!(shown("age IS NULL"), ["false", "false", "true", "false"]);
    assert_eq!(shown("age IN (17, NULL)"), ["∅", "true", "∅", "∅"]);
    assert_eq!(
        shown("age NOT IN (17, 45)"),
        ["true", "false", "∅", "false"]
    );
    assert_eq!(
        shown("age BETWEEN 20 AND 40"),
        ["true", "false", "∅", "false"]
    );
}

#[test]
fn arithmetic_and_division_by_zero() {
    assert_eq!(shown("age * 2"), ["60", "34", "∅", "90"]);
    assert_eq!(shown("value / 0"), ["∅", "∅", "∅", "∅"]);
    assert_eq!(
        shown("age / value"),
        ["0.0006", "11.333333333333334", "∅", "∅"]
    );
    assert_eq!(shown("-age % 7"), ["-2", "-3", "∅", "-3"]);
}

#[test]
fn strings() {
    assert_eq!(
        shown("name || '!' || age"),
        [" Ann !30", "bob!17", "∅", "∅"]
    );
    assert_eq!(shown("upper(trim(name))"), ["ANN", "BOB", "ZOË", "∅"]);
    assert_eq!(shown("length(name)"), ["5", "3", "3", "∅"]);
    assert_eq!(shown("substr(name, 2, 2)"), ["An", "ob", "oë", "∅"]);
    assert_eq!(
        shown("replace(name, 'b', 'B')"),
        [" Ann ", "BoB", "Zoë", "∅"]
    );
    assert_eq!(shown("name LIKE '%n%'"), ["true", "false", "false", "∅"]);
    assert_eq!(shown("name ILIKE 'Z%'"), ["false", "false", "true", "∅"]);
}

#[test]
fn case_coalesce_dates() {
    assert_eq!(
        shown("CASE WHEN value >= 50000 THEN 'high' WHEN value > 1 THEN 'mid' ELSE 'low' END"),
        ["high", "mid", "low", "low"]
    );
    assert_eq!(shown("COALESCE(age, -1)"), ["30", "17", "-1", "45"]);
    assert_eq!(shown("year(signup)"), ["2024", "1970", "∅", "1971"]);
    assert_eq!(shown("EXTRACT(MONTH FROM signup)"), ["1", "1", "∅", "1"]);
}

#[test]
fn cast_failures_are_reported_not_hidden() {
    let (out, failures) = run("CAST(code AS int)");
    assert_eq!(out.null_count(), 3);
    assert_eq!(failures.len(), 1);
    let rows: Vec<bool> = failures[0]
        .rows
        .iter()
        .map(|b| b.unwrap_or(false))
        .collect();
    assert_eq!(rows, [false, true, false, true]);
    let (_, failures) = run("TRY_CAST(code AS int)");
    assert!(failures.is_empty());
    let (_, failures) = run("CAST(value AS int)");
    assert_eq!(failures.len(), 1, "1.5 is not a whole number");
}

#[test]
fn a_cast_fails_only_the_rows_of_its_case_branch() {
    // code: "12", "x", null, "7.5"; age: 30, 17, null, 45.
    let (out, failures) =
        run("CASE WHEN age >= 30 THEN CAST(code AS double) ELSE CAST(code AS int) END");
    let rows: Vec<bool> = failures
        .iter()
        .flat_map(|f| f.rows.iter().enumerate().filter(|(_, b)| *b == Some(true)))
        .map(|(i, _)| i == 1)
        .collect();
    assert_eq!(
        rows,
        [true],
        "only row 1 (\"x\" as int) fails; \"7.5\" takes the double branch"
    );
    assert_eq!(out.data_type(), &DataType::Float64);
}

/// Floats compare as SQL (and DuckDB) compare them, not by their bits: every NaN is one value
/// above every number, `-0 = 0`, and dividing by `-0` is dividing by zero.
#[test]
fn floats_compare_as_sql() {
    let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Float64, true)]));
    let values = [f64::NAN, -f64::NAN, -0.0, 0.0, 1.0, f64::INFINITY];
    let b =
        RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(values.to_vec()))]).unwrap();
    let eval = |text: &str| {
        let e = check(&parse(text).unwrap(), &b.schema()).unwrap();
        let out = evaluate(&e, b.columns(), b.num_rows(), &mut Vec::new()).unwrap();
        let f = arrow_cast::display::ArrayFormatter::try_new(
            out.as_ref(),
            &arrow_cast::display::FormatOptions::default().with_null("∅"),
        )
        .unwrap();
        (0..out.len())
            .map(|i| f.value(i).to_string())
            .collect::<Vec<_>>()
    };
    let t = "true";
    let f = "false";
    assert_eq!(eval("d > 1"), [t, t, f, f, f, t]);
    assert_eq!(eval("d = 0"), [f, f, t, t, f, f]);
    assert_eq!(eval("d = CAST('NaN' AS double)"), [t, t, f, f, f, f]);
    assert_eq!(eval("d IN (0, 1)"), [f, f, t, t, t, f]);
    assert_eq!(eval("1 / d"), ["NaN", "NaN", "∅", "∅", "1.0", "0.0"]);
}

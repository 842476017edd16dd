//! The type × option × path × sink matrix.
//!
//! One input file declares every type with every column option that changes its Arrow field
//! (none, `Nullable`, `Format`, `TimeZone`, and their combinations), plus rows with a bad value in
//! each rejectable column. Each trial runs that file through one path (straight to the sink, a
//! `JavaScriptTransform` with `Inherit` (on boa, and compiled), `Compute`, `Cast`, `Select`, `Sort` and `Distinct` on every
//! column as a key, `Aggregate` grouping by every column, a `Lookup` on every column, `Limit`, a
//! reservoir `Sample`) into one sink (CSV: plain, gzip or UTF-16; Parquet; Arrow; JSON Lines: plain
//! or zstd; none), under `skip-row`, then reads back what it wrote with a reader that is not the
//! writer (arrow-ipc, the parquet crate, pyarrow, arrow-json's reader, our own `DelimitedSource`,
//! `JsonLinesSource`, `ParquetSource` and `ArrowSource`) and compares type by type and value by value with values that arrow-cast
//! parses from their canonical text. Every trial also checks the dead-letter
//! file (one reject per bad row, naming line, column and record) and the run's row accounting.
//!
//! A sink joins the matrix by one line in [`SINKS`], a path by one line in [`PATHS`]. In a build
//! with the `distributed` feature, every trial whose pipeline `--engine datafusion` runs also runs
//! there and as a Ballista job in three tasks (`NAME (datafusion)`, `NAME (ballista)`), against the
//! same checks.
//!
//! Run one trial with `cargo test --test matrix -- 'matrix/js-inherit/parquet'`.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use libtest_mimic::{Arguments, Failed, Trial};

#[allow(dead_code)] // the matrix uses only its IPC reader
#[path = "support/readback.rs"]
mod readback;

/// One declared column: how the pipeline declares it, what Arrow field it must be, its text in
/// the good rows, the canonical text of the values it must read back as (`None`: null), and a bad
/// value for the reject rows (`None`: the type has no bad text).
struct Column {
    name: &'static str,
    /// `Type` and options, as YAML flow-map entries.
    decl: &'static str,
    ty: DataType,
    nullable: bool,
    /// The `Format`, when it has one (a `DelimitedSink` mapping can write it back).
    format: Option<&'static str>,
    input: [&'static str; ROWS],
    canonical: [Option<&'static str>; ROWS],
    bad: Option<&'static str>,
}

const ROWS: usize = 3;

fn ts(tz: Option<&str>) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, tz.map(Into::into))
}

#[rustfmt::skip]
fn columns() -> Vec<Column> {
    let c = |name, decl, ty, nullable, format, input, canonical, bad| Column {
        name, decl, ty, nullable, format, input, canonical, bad,
    };
    vec![
        c("string_plain", "Type: string", DataType::Utf8, false, None,
          ["hello", "comma, \"quote\"\nnewline", ""],
          [Some("hello"), Some("comma, \"quote\"\nnewline"), Some("")], None),
        c("string_null", "Type: string, Nullable: true", DataType::Utf8, true, None,
          ["ünïcödé 😀", "", "x"], [Some("ünïcödé 😀"), None, Some("x")], None),
        c("int32_plain", "Type: int32", DataType::Int32, false, None,
          ["0", "-2147483648", "2147483647"],
          [Some("0"), Some("-2147483648"), Some("2147483647")], Some("2147483648")),
        c("int32_null", "Type: int32, Nullable: true", DataType::Int32, true, None,
          ["", "+42", "-7"], [None, Some("42"), Some("-7")], Some("x1")),
        c("int64_plain", "Type: int64", DataType::Int64, false, None,
          ["9223372036854775807", "-9223372036854775808", "9007199254740993"],
          [Some("9223372036854775807"), Some("-9223372036854775808"), Some("9007199254740993")],
          Some("9223372036854775808")),
        c("int64_null", "Type: int64, Nullable: true", DataType::Int64, true, None,
          ["-1", "", "0"], [Some("-1"), None, Some("0")], Some("1.5")),
        c("float32_plain", "Type: float32", DataType::Float32, false, None,
          ["1.5", "-0.0", "3.4028235e38"], [Some("1.5"), Some("-0.0"), Some("3.4028235e38")],
          Some("abc")),
        c("float32_null", "Type: float32, Nullable: true", DataType::Float32, true, None,
          ["", "0.1", "-1e-45"], [None, Some("0.1"), Some("-1e-45")], Some("1,5")),
        c("double_plain", "Type: double", DataType::Float64, false, None,
          ["0.1", "-1e-300", "1.7976931348623157e308"],
          [Some("0.1"), Some("-1e-300"), Some("1.7976931348623157e308")], Some("1e")),
        c("double_null", "Type: double, Nullable: true", DataType::Float64, true, None,
          ["5e-324", "", "-0"], [Some("5e-324"), None, Some("-0.0")], Some("--1")),
        c("decimal_plain", "Type: \"decimal(38,10)\"", DataType::Decimal128(38, 10), false, None,
          ["1234567890123456789012345678.0123456789", "-0.0000000001", "0"],
          [Some("1234567890123456789012345678.0123456789"), Some("-0.0000000001"), Some("0")],
          Some("1.00000000001")),
        c("decimal_null", "Type: \"decimal(5,2)\", Nullable: true", DataType::Decimal128(5, 2),
          true, None, ["", "-999.99", "1.5"], [None, Some("-999.99"), Some("1.50")],
          Some("1000.00")),
        c("bool_plain", "Type: bool", DataType::Boolean, false, None,
          ["true", "F", "yes"], [Some("true"), Some("false"), Some("true")], Some("maybe")),
        c("bool_null", "Type: bool, Nullable: true", DataType::Boolean, true, None,
          ["", "0", "Y"], [None, Some("false"), Some("true")], Some("2")),
        c("date_plain", "Type: date", DataType::Date32, false, None,
          ["2024-02-29", "1969-12-31", "1970-01-01"],
          [Some("2024-02-29"), Some("1969-12-31"), Some("1970-01-01")], Some("2024-02-30")),
        c("date_null", "Type: date, Nullable: true", DataType::Date32, true, None,
          ["", "2024-01-31", "9999-12-31"], [None, Some("2024-01-31"), Some("9999-12-31")],
          Some("31/01/2024")),
        c("date_fmt", "Type: date, Format: dd/MM/yyyy", DataType::Date32, false,
          Some("dd/MM/yyyy"), ["31/01/2024", "29/02/2024", "01/01/1970"],
          [Some("2024-01-31"), Some("2024-02-29"), Some("1970-01-01")], Some("2024-01-31")),
        c("date_fmt_null", "Type: date, Format: \"%d/%m/%Y\", Nullable: true", DataType::Date32,
          true, Some("%d/%m/%Y"), ["", "15/08/1990", "31/12/1969"],
          [None, Some("1990-08-15"), Some("1969-12-31")], Some("32/01/2024")),
        c("datetime_plain", "Type: datetime", ts(None), false, None,
          ["2024-01-31T13:45:00", "2024-01-31 13:45:00.5", "1969-12-31T23:59:59.999999"],
          [Some("2024-01-31T13:45:00"), Some("2024-01-31T13:45:00.5"),
           Some("1969-12-31T23:59:59.999999")], Some("2024-01-31T25:00:00")),
        c("datetime_null", "Type: datetime, Nullable: true", ts(None), true, None,
          ["", "2024-07-01T12:00:00+02:00", "2024-01-31"],
          [None, Some("2024-07-01T10:00:00"), Some("2024-01-31T00:00:00")], Some("yesterday")),
        c("datetime_fmt", "Type: datetime, Format: \"dd/MM/yyyy HH:mm:ss\"", ts(None), false,
          Some("dd/MM/yyyy HH:mm:ss"),
          ["31/01/2024 13:45:00", "29/02/2024 00:00:00", "01/01/1970 00:00:01"],
          [Some("2024-01-31T13:45:00"), Some("2024-02-29T00:00:00"),
           Some("1970-01-01T00:00:01")], Some("2024-01-31T13:45:00")),
        c("datetime_tz", "Type: datetime, TimeZone: Europe/Paris", ts(Some("Europe/Paris")), false,
          None, ["2024-07-01T12:00:00", "2024-01-31T13:45:00+05:30", "2024-10-27T03:30:00"],
          [Some("2024-07-01T10:00:00Z"), Some("2024-01-31T08:15:00Z"),
           Some("2024-10-27T02:30:00Z")], Some("2024-03-31T02:30:00")),
        c("datetime_fmt_tz", "Type: datetime, Format: \"dd/MM/yyyy HH:mm\", TimeZone: \"+02:00\"",
          ts(Some("+02:00")), false, Some("dd/MM/yyyy HH:mm"),
          ["31/01/2024 13:45", "01/01/1970 02:00", "29/02/2024 23:59"],
          [Some("2024-01-31T11:45:00Z"), Some("1970-01-01T00:00:00Z"),
           Some("2024-02-29T21:59:00Z")], Some("31/01/2024")),
        c("datetime_fmt_tz_null",
          "Type: datetime, Format: \"dd/MM/yyyy HH:mm:ss\", TimeZone: UTC, Nullable: true",
          ts(Some("UTC")), true, Some("dd/MM/yyyy HH:mm:ss"),
          ["", "31/01/2024 13:45:00", "01/01/2000 00:00:00"],
          [None, Some("2024-01-31T13:45:00Z"), Some("2000-01-01T00:00:00Z")],
          Some("31/01/2024 24:00:00")),
    ]
}

/// A way from the source to the sink. Each keeps the input's columns, names and types, so one
/// expectation serves every path.
struct PathKind {
    name: &'static str,
    /// The transforms between source and sink, as plugin entries (one per line, chained in
    /// order); `None`: connect them directly.
    transform: fn(&[Column]) -> Option<String>,
}

#[rustfmt::skip]
const PATHS: &[PathKind] = &[
    PathKind { name: "direct", transform: |_| None },
    PathKind { name: "js-inherit", transform: js_inherit },
    PathKind { name: "js-compiled", transform: js_compiled },
    PathKind { name: "compute", transform: compute },
    PathKind { name: "cast", transform: cast },
    PathKind { name: "select", transform: select },
    PathKind { name: "sort", transform: sort },
    PathKind { name: "distinct", transform: |_| Some(step("Distinct", "{}")) },
    PathKind { name: "limit", transform: |_| Some(step("Limit", "{ Rows: 1000 }")) },
    PathKind { name: "sample-rows", transform: |_| Some(step("Sample", "{ Rows: 1000 }")) },
    PathKind { name: "aggregate", transform: aggregate },
    PathKind { name: "lookup", transform: lookup },
];

/// Every column a lookup key, one `Lookup` each, against `reference` (the good rows again, each
/// column named `r_<name>`): each adds `string_plain`'s match, a `Filter` then requires a match for
/// every key that is not null (a null key matches nothing), and a `Select` drops the matches.
fn lookup(cols: &[Column]) -> Option<String> {
    let mut entries = Vec::new();
    let mut conditions = Vec::new();
    for (k, c) in cols.iter().enumerate() {
        entries.push(format!(
            "{{ Name: lookup{k}, Type: Lookup, Config: {{ On: {{ {0}: r_{0} }}, \
             Columns: [{{ Name: r_{1}, As: m{k} }}], DuplicateKeys: first }} }}",
            c.name, cols[0].name
        ));
        conditions.push(format!("({} IS NULL OR m{k} IS NOT NULL)", c.name));
    }
    entries.push(format!(
        "{{ Name: matched, Type: Filter, Config: {{ Condition: \"{}\" }} }}",
        conditions.join(" AND ")
    ));
    let matches: Vec<String> = (0..cols.len()).map(|k| format!("m{k}")).collect();
    entries.push(format!(
        "{{ Name: drop_m, Type: Select, Config: {{ Drop: [{}] }} }}",
        matches.join(", ")
    ));
    Some(entries.join("\n    - "))
}

/// Every column a group key (every type through the key encoding and back); `Order: input`
/// keeps the rows as written, and the count it adds is dropped again.
fn aggregate(cols: &[Column]) -> Option<String> {
    let keys: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let group = format!(
        "{{ Name: step, Type: Aggregate, Config: {{ GroupBy: [{}], Columns: {{ n: \"count(*)\" }}, Order: input }} }}",
        keys.join(", ")
    );
    Some(format!(
        "{group}\n    - {{ Name: drop_n, Type: Select, Config: {{ Drop: [n] }} }}"
    ))
}

fn step(ty: &str, config: &str) -> String {
    format!("{{ Name: step, Type: {ty}, Config: {config} }}")
}

/// Every column a sort key (so every type goes through the key encoding); `string_plain DESC`
/// first, which orders the rows as they were written, so the output compares as it is.
fn sort(cols: &[Column]) -> Option<String> {
    let keys: Vec<String> = std::iter::once("\"string_plain DESC\"".to_string())
        .chain(
            cols.iter()
                .skip(1)
                .map(|c| format!("\"{} DESC NULLS FIRST\"", c.name)),
        )
        .collect();
    Some(step("Sort", &format!("{{ By: [{}] }}", keys.join(", "))))
}

/// Reads every field into JavaScript (so each column's conversion runs) and keeps the row.
fn js_inherit(_: &[Column]) -> Option<String> {
    Some(
        "{ Name: step, Type: JavaScriptTransform, Config: { OutputSchema: { Inherit: true }, \
         Script: \"function process(context) { var r = context.input.current(); \
         for (var k in r) { var v = r[k]; } return true; }\" } }"
            .into(),
    )
}

/// A script compiled to columnar code (a null test and a keep decision per row), which keeps every
/// row: every type passes through the compiled path's output assembly.
fn js_compiled(_: &[Column]) -> Option<String> {
    Some(
        "{ Name: step, Type: JavaScriptTransform, Config: { OutputSchema: { Inherit: true }, \
         Script: \"function process(context) { var r = context.input.current(); \
         if (r.string_plain == null) { return true; } return !false; }\" } }"
            .into(),
    )
}

/// Every column recomputed from itself, in place.
fn compute(cols: &[Column]) -> Option<String> {
    let items: Vec<String> = cols.iter().map(|c| format!("{0}: {0}", c.name)).collect();
    Some(format!(
        "{{ Name: step, Type: Compute, Config: {{ Columns: {{ {} }} }} }}",
        items.join(", ")
    ))
}

/// Every column cast to its own type (a `TimeZone` cannot be written as a `Cast` type, so
/// zoned timestamps pass through).
fn cast(cols: &[Column]) -> Option<String> {
    let items: Vec<String> = cols
        .iter()
        .filter_map(|c| {
            if matches!(c.ty, DataType::Timestamp(_, Some(_))) {
                return None;
            }
            // The engine's own vocabulary, quoted because `decimal(p,s)` holds a comma.
            let ty = format!("\"{}\"", flowengine_engine::schema::type_name(&c.ty));
            Some(format!("{}: {ty}", c.name))
        })
        .collect();
    Some(format!(
        "{{ Name: step, Type: Cast, Config: {{ Columns: {{ {} }} }} }}",
        items.join(", ")
    ))
}

/// Every column selected by name, each renamed to itself.
fn select(cols: &[Column]) -> Option<String> {
    let items: Vec<String> = cols
        .iter()
        .map(|c| format!("{{ Name: {0}, As: {0} }}", c.name))
        .collect();
    Some(format!(
        "{{ Name: step, Type: Select, Config: {{ Columns: [{}] }} }}",
        items.join(", ")
    ))
}

/// A sink under test: its plugin entry (named `write`, writing under `out/`) and how to read back
/// what it wrote (`None`: it writes nothing to read).
struct SinkKind {
    name: &'static str,
    plugin: fn(&[Column]) -> String,
    read_back: fn(&Path, &[Column]) -> Result<Option<RecordBatch>, String>,
    /// The read-back runs pyarrow (`scripts/install-test-deps` installs it; without it the trial
    /// is reported as ignored).
    pyarrow: bool,
}

#[rustfmt::skip]
const SINKS: &[SinkKind] = &[
    SinkKind { name: "csv", plugin: csv_plain, read_back: |dir, cols| read_csv(dir, cols, false), pyarrow: false },
    SinkKind { name: "csv-format", plugin: csv_format, read_back: |dir, cols| read_csv(dir, cols, true), pyarrow: false },
    SinkKind { name: "parquet", plugin: |_| sink("ParquetSink", "out/out.parquet"), read_back: read_parquet, pyarrow: false },
    SinkKind { name: "parquet-pyarrow", plugin: |_| sink("ParquetSink", "out/out.parquet"), read_back: |d, _| via_pyarrow(d, "parquet"), pyarrow: true },
    SinkKind { name: "arrow-file", plugin: |_| sink("ArrowSink", "out/out.arrow"), read_back: |d, _| read_ipc(&d.join("out/out.arrow"), false), pyarrow: false },
    SinkKind { name: "arrow-file-pyarrow", plugin: |_| sink("ArrowSink", "out/out.arrow"), read_back: |d, _| via_pyarrow(d, "arrow"), pyarrow: true },
    SinkKind { name: "arrow-stream", plugin: |_| sink("ArrowSink", "out/out.arrows"), read_back: |d, _| read_ipc(&d.join("out/out.arrows"), true), pyarrow: false },
    SinkKind { name: "json-lines", plugin: |_| sink("JsonLinesSink", "out/out.jsonl"), read_back: read_json_lines, pyarrow: false },
    SinkKind { name: "json-lines-strings", plugin: |_| json_strings(), read_back: read_json_lines, pyarrow: false },
    SinkKind { name: "json-lines-ours", plugin: |_| sink("JsonLinesSink", "out/out.jsonl"), read_back: read_json_lines_ours, pyarrow: false },
    SinkKind { name: "json-lines-strings-ours", plugin: |_| json_strings(), read_back: read_json_lines_ours, pyarrow: false },
    SinkKind { name: "csv-gzip", plugin: |_| sink("DelimitedSink", "out/out.csv.gz"), read_back: |dir, cols| read_ours(dir, cols, false, "DelimitedSource", "out/out.csv.gz", ""), pyarrow: false },
    SinkKind { name: "csv-utf16", plugin: |_| "{ Name: write, Type: DelimitedSink, Config: { FilePath: out/out.csv, Encoding: UTF-16BE } }".into(), read_back: |dir, cols| read_ours(dir, cols, false, "DelimitedSource", "out/out.csv", "Encoding: UTF-16BE"), pyarrow: false },
    SinkKind { name: "json-lines-zstd", plugin: |_| sink("JsonLinesSink", "out/out.jsonl.zst"), read_back: |dir, cols| read_ours(dir, cols, false, "JsonLinesSource", "out/out.jsonl.zst", ""), pyarrow: false },
    SinkKind { name: "parquet-ours", plugin: |_| sink("ParquetSink", "out/out.parquet"), read_back: |dir, cols| read_ours(dir, cols, false, "ParquetSource", "out/out.parquet", ""), pyarrow: false },
    SinkKind { name: "arrow-file-ours", plugin: |_| sink("ArrowSink", "out/out.arrow"), read_back: |dir, cols| read_ours(dir, cols, false, "ArrowSource", "out/out.arrow", ""), pyarrow: false },
    SinkKind { name: "arrow-stream-ours", plugin: |_| sink("ArrowSink", "out/out.arrows"), read_back: |dir, cols| read_ours(dir, cols, false, "ArrowSource", "out/out.arrows", ""), pyarrow: false },
    SinkKind { name: "null", plugin: |_| "{ Name: write, Type: NullSink }".into(), read_back: |_, _| Ok(None), pyarrow: false },
];

fn sink(ty: &str, path: &str) -> String {
    format!("{{ Name: write, Type: {ty}, Config: {{ FilePath: {path} }} }}")
}

/// A `JsonLinesSink` that quotes int64 and decimal values and leaves null keys out.
fn json_strings() -> String {
    "{ Name: write, Type: JsonLinesSink, Config: { FilePath: out/out.jsonl, \
     LargeIntegers: string, Decimals: string, Nulls: omit } }"
        .into()
}

fn csv_plain(_: &[Column]) -> String {
    sink("DelimitedSink", "out/out.csv")
}

/// A `DelimitedSink` that writes each formatted column back in its own `Format`.
fn csv_format(cols: &[Column]) -> String {
    let mappings: Vec<String> = cols
        .iter()
        .map(|c| match c.format {
            Some(f) => format!("{{ SourceColumn: {}, Format: \"{f}\" }}", c.name),
            None => format!("{{ SourceColumn: {} }}", c.name),
        })
        .collect();
    format!(
        "{{ Name: write, Type: DelimitedSink, Config: {{ FilePath: out/out.csv, \
         ColumnMappings: [{}] }} }}",
        mappings.join(", ")
    )
}

fn main() {
    let args = Arguments::from_args();
    let pyarrow = Command::new("python3")
        .args(["-c", "import pyarrow"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut trials = Vec::new();
    for path in PATHS {
        for sink in SINKS {
            for &engine in engines(path, sink) {
                let name = match engine {
                    "local" => format!("matrix/{}/{}", path.name, sink.name),
                    _ => format!("matrix/{}/{} ({engine})", path.name, sink.name),
                };
                let trial = Trial::test(name, move || run_trial(path, sink, engine));
                trials.push(trial.with_ignored_flag(sink.pyarrow && !pyarrow));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The engines a trial runs on: the local one, and in a `distributed` build the others where they
/// run its pipeline.
fn engines(path: &PathKind, sink: &SinkKind) -> &'static [&'static str] {
    #[cfg(feature = "distributed")]
    {
        let cols = columns();
        let yaml = pipeline(&cols, (path.transform)(&cols), &(sink.plugin)(&cols));
        let registry = flowengine_plugins::builtin_registry();
        let opts = flowengine_engine::LoadOptions::default();
        let plan =
            flowengine_engine::plan_text(&yaml, Path::new("pipeline.yaml"), &opts, &registry);
        if plan.is_ok_and(|p| flowengine_distributed::check(&p).is_ok()) {
            return &["local", "datafusion", "ballista"];
        }
    }
    let _ = (path, sink);
    &["local"]
}

fn run_trial(path: &PathKind, sink: &SinkKind, engine: &str) -> Result<(), Failed> {
    let cols = columns();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bad_rows = write_input(dir.path(), &cols)?;
    let yaml = pipeline(&cols, (path.transform)(&cols), &(sink.plugin)(&cols));
    std::fs::write(dir.path().join("pipeline.yaml"), &yaml).map_err(|e| e.to_string())?;

    let summary = run(dir.path(), "pipeline.yaml", engine)?;
    let mut problems = Vec::new();
    // The `lookup` path's reference source reads the good rows once more.
    let reference = if yaml.contains(".lookup }") { ROWS } else { 0 };
    check_accounting(&summary, bad_rows.len(), reference, &mut problems);
    check_rejects(dir.path(), &bad_rows, &mut problems);
    match (sink.read_back)(dir.path(), &cols) {
        Ok(Some(got)) => compare(&expected(&cols), &got, &mut problems),
        Ok(None) => {}
        Err(e) => problems.push(format!("reading back: {e}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n--- pipeline.yaml\n{yaml}", problems.join("\n")).into())
    }
}

/// A bad row: its line in the input, the column holding the bad value, and the record's text.
struct BadRow {
    line: u64,
    column: &'static str,
    record: String,
}

/// Writes `in.csv`: a header, the good rows, then one row per bad value (the first good row with
/// that one value replaced), and an empty value in a non-nullable column.
fn write_input(dir: &Path, cols: &[Column]) -> Result<Vec<BadRow>, String> {
    let header: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let mut text = record(&header);
    for row in 0..ROWS {
        text += &record(&cols.iter().map(|c| c.input[row]).collect::<Vec<_>>());
    }
    // The reference of the `lookup` path: the good rows, every column named `r_<name>`.
    let renamed: Vec<String> = header.iter().map(|h| format!("r_{h}")).collect();
    let renamed: Vec<&str> = renamed.iter().map(String::as_str).collect();
    let reference = record(&renamed) + &text[text.find('\n').map_or(0, |i| i + 1)..];
    std::fs::write(dir.join("ref.csv"), reference).map_err(|e| e.to_string())?;
    let mut bad = Vec::new();
    let empty_in_required = cols
        .iter()
        .find(|c| c.name == "date_plain")
        .map(|c| (c, ""));
    let bad_values = cols.iter().filter_map(|c| c.bad.map(|b| (c, b)));
    for (col, value) in bad_values.chain(empty_in_required) {
        let values: Vec<&str> = cols
            .iter()
            .map(|c| {
                if c.name == col.name {
                    value
                } else {
                    c.input[0]
                }
            })
            .collect();
        let line = record(&values);
        bad.push(BadRow {
            // Physical lines: a good row holds a line break inside quotes.
            line: 1 + text.matches('\n').count() as u64,
            column: col.name,
            record: line.trim_end().to_string(),
        });
        text += &line;
    }
    std::fs::write(dir.join("in.csv"), text).map_err(|e| e.to_string())?;
    Ok(bad)
}

/// One CSV record, quoted where RFC 4180 needs it. The good rows' first values need no quoting,
/// so a bad row's record is a single line.
fn record(values: &[&str]) -> String {
    let fields: Vec<String> = values
        .iter()
        .map(|v| {
            if v.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v.to_string()
            }
        })
        .collect();
    fields.join(",") + "\n"
}

fn source(cols: &[Column], file: &str, decls: impl Fn(&Column) -> String) -> String {
    let mut out = format!(
        "    - Name: read\n      Type: DelimitedSource\n      Config:\n        FilePath: {file}\n        \
         OutputSchema:\n          Columns:\n"
    );
    for c in cols {
        let _ = writeln!(out, "            - {{ Name: {}, {} }}", c.name, decls(c));
    }
    out
}

fn pipeline(cols: &[Column], transform: Option<String>, sink: &str) -> String {
    let mut out = String::from(
        "Pipeline:\n  Name: matrix\n  Settings: { ErrorHandling: skip-row, DeadLetter: out/rejects.csv, \
         ChunkSize: 2 }\n  Plugins:\n",
    );
    out += &source(cols, "in.csv", |c| c.decl.to_string());
    let mut connections = Vec::new();
    let mut last = "read".to_string();
    for entry in transform.iter().flat_map(|t| t.split("\n    - ")) {
        let _ = writeln!(out, "    - {entry}");
        let name = entry
            .split("Name: ")
            .nth(1)
            .and_then(|n| n.split(',').next())
            .unwrap_or("step");
        connections.push(format!("    - {{ From: {last}, To: {name} }}"));
        if entry.contains("Type: Lookup") {
            connections.push(format!("    - {{ From: reference, To: {name}.lookup }}"));
        }
        last = name.to_string();
    }
    if connections.iter().any(|c| c.contains(".lookup")) {
        let reference = source(cols, "ref.csv", |c| c.decl.to_string());
        out += &reference
            .replacen("Name: read", "Name: reference", 1)
            .replace("- { Name: ", "- { Name: r_");
    }
    let _ = writeln!(out, "    - {sink}");
    connections.push(format!("    - {{ From: {last}, To: write }}"));
    out + "  Connections:\n" + &connections.join("\n") + "\n"
}

/// Runs a pipeline with `--json` on `engine` and returns its summary.
fn run(dir: &Path, file: &str, engine: &str) -> Result<serde_json::Value, String> {
    // A Ballista job in three tasks, each reading a range of the input, where it can be cut.
    let tasks: &[&str] = match engine {
        "ballista" => &["--tasks", "3"],
        _ => &[],
    };
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", file, "--json", "--engine", engine])
        .args(tasks)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start flowengine: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "`flowengine run {file}` failed ({}):\n{stderr}",
            out.status
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the --json summary does not parse: {e}\n{stderr}"))
}

fn check_accounting(
    summary: &serde_json::Value,
    bad: usize,
    reference: usize,
    problems: &mut Vec<String>,
) {
    let count = |key: &str| summary[key].as_u64().unwrap_or(u64::MAX);
    let want = [
        ("rows_read", (ROWS + bad + reference) as u64),
        ("rows_written", ROWS as u64),
        ("rows_rejected", bad as u64),
        ("rows_filtered", 0),
    ];
    for (key, value) in want {
        if count(key) != value {
            problems.push(format!(
                "summary {key} is {}, expected {value}",
                summary[key]
            ));
        }
    }
}

/// The dead-letter file holds one reject per bad row, from the source, naming its line, column and
/// record.
fn check_rejects(dir: &Path, bad: &[BadRow], problems: &mut Vec<String>) {
    let mut reader = match csv::Reader::from_path(dir.join("out/rejects.csv")) {
        Ok(r) => r,
        Err(e) => return problems.push(format!("dead-letter file: {e}")),
    };
    let headers = reader.headers().cloned().unwrap_or_default();
    let at = |name: &str| headers.iter().position(|h| h == name);
    let (Some(node), Some(line), Some(column), Some(raw)) =
        (at("node"), at("line"), at("column"), at("raw"))
    else {
        return problems.push(format!("dead-letter header lacks columns: {headers:?}"));
    };
    let mut got = Vec::new();
    for rec in reader.records() {
        match rec {
            Ok(r) => got.push((
                r[node].to_string(),
                r[line].parse::<u64>().unwrap_or(0),
                r[column].to_string(),
                r[raw].trim_end_matches(['\r', '\n']).to_string(),
            )),
            Err(e) => return problems.push(format!("dead-letter file: {e}")),
        }
    }
    let want: Vec<_> = bad
        .iter()
        .map(|b| {
            (
                "read".to_string(),
                b.line,
                b.column.to_string(),
                b.record.clone(),
            )
        })
        .collect();
    if got != want {
        problems.push(format!(
            "dead letters differ:\n  got  {got:?}\n  want {want:?}"
        ));
    }
}

/// The good rows as they must read back: each canonical text parsed by arrow-cast.
fn expected(cols: &[Column]) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|c| Field::new(c.name, c.ty.clone(), c.nullable))
        .collect();
    let arrays: Vec<ArrayRef> = cols
        .iter()
        .map(|c| {
            let text: ArrayRef = Arc::new(StringArray::from(c.canonical.to_vec()));
            arrow_cast::cast(&text, &c.ty).unwrap_or_else(|e| panic!("{}: {e}", c.name))
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("the expected batch")
}

/// Type by type and value by value; and no field or schema metadata of ours.
fn compare(want: &RecordBatch, got: &RecordBatch, problems: &mut Vec<String>) {
    let (ws, gs) = (want.schema(), got.schema());
    if gs.fields().len() != ws.fields().len() || got.num_rows() != want.num_rows() {
        return problems.push(format!(
            "read back {} columns × {} rows, expected {} × {}\n  got schema {gs:?}",
            gs.fields().len(),
            got.num_rows(),
            ws.fields().len(),
            want.num_rows()
        ));
    }
    if gs.metadata().keys().any(|k| k.starts_with("flowengine")) {
        problems.push(format!("schema metadata of ours: {:?}", gs.metadata()));
    }
    for (i, (w, g)) in ws.fields().iter().zip(gs.fields()).enumerate() {
        let name = w.name();
        if g.name() != name || g.data_type() != w.data_type() {
            problems.push(format!(
                "column {i}: {} {} read back as {} {}",
                name,
                w.data_type(),
                g.name(),
                g.data_type()
            ));
            continue;
        }
        if g.is_nullable() != w.is_nullable() {
            problems.push(format!(
                "`{name}`: nullable {} read back as {}",
                w.is_nullable(),
                g.is_nullable()
            ));
        }
        if !g.metadata().is_empty() {
            problems.push(format!("`{name}` carries metadata {:?}", g.metadata()));
        }
        let (wa, ga) = (want.column(i), got.column(i));
        for row in 0..want.num_rows() {
            if wa.slice(row, 1).as_ref() != ga.slice(row, 1).as_ref() {
                problems.push(format!(
                    "`{name}` row {row}: {} read back as {}",
                    show(wa, row),
                    show(ga, row)
                ));
            }
        }
    }
}

/// One value as text; Debug, because Display drops the sign of a zero.
fn show(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return "null".into();
    }
    let options = FormatOptions::default();
    let text = ArrayFormatter::try_new(array.as_ref(), &options)
        .map(|f| f.value(row).to_string())
        .unwrap_or_else(|e| format!("<{e}>"));
    let debug = format!("{:?}", array.slice(row, 1));
    format!(
        "{text:?} ({})",
        debug.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// `out/out.jsonl` through arrow-json's reader with the declared schema: every value must read
/// back as the type it was written from.
fn read_json_lines(dir: &Path, cols: &[Column]) -> Result<Option<RecordBatch>, String> {
    let schema = expected(cols).schema();
    let file = File::open(dir.join("out/out.jsonl")).map_err(|e| e.to_string())?;
    let reader = arrow_json::ReaderBuilder::new(schema)
        .build(std::io::BufReader::new(file))
        .map_err(|e| e.to_string())?;
    concat(
        reader
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    )
}

fn read_ipc(path: &Path, stream: bool) -> Result<Option<RecordBatch>, String> {
    concat(readback::ipc_batches(path, stream)?)
}

fn read_parquet(dir: &Path, _: &[Column]) -> Result<Option<RecordBatch>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(dir.join("out/out.parquet")).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    if let Some(ours) = kv.iter().find(|kv| kv.key.starts_with("flowengine")) {
        return Err(format!("the file carries metadata of ours: {ours:?}"));
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    concat(
        reader
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    )
}

/// Reads `out/out.parquet` or `out/out.arrow` with pyarrow and has pyarrow write what it read as
/// an Arrow IPC file, which arrow-ipc reads: what pyarrow makes of the file is compared.
fn via_pyarrow(dir: &Path, format: &str) -> Result<Option<RecordBatch>, String> {
    const SCRIPT: &str = "import sys, pyarrow as pa, pyarrow.parquet as pq, pyarrow.ipc as ipc\n\
        src, fmt, dst = sys.argv[1:]\n\
        t = pq.read_table(src) if fmt == 'parquet' else ipc.open_file(src).read_all()\n\
        with ipc.new_file(dst, t.schema) as w: w.write_table(t)\n";
    let src = dir.join(if format == "parquet" {
        "out/out.parquet"
    } else {
        "out/out.arrow"
    });
    let dst = dir.join("pyarrow.arrow");
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args([src.as_os_str(), format.as_ref(), dst.as_os_str()])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pyarrow refused the file:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    read_ipc(&dst, false)
}

/// Reads the CSV back with our own `DelimitedSource` (into Arrow IPC), declared as the source was
/// but without `Format` unless the sink wrote the formats back.
fn read_csv(dir: &Path, cols: &[Column], formatted: bool) -> Result<Option<RecordBatch>, String> {
    read_ours(dir, cols, formatted, "DelimitedSource", "out/out.csv", "")
}

/// `out/out.jsonl` through our own `JsonLinesSource`, declared as the input was (without
/// `Format`: the sink wrote ISO dates).
fn read_json_lines_ours(dir: &Path, cols: &[Column]) -> Result<Option<RecordBatch>, String> {
    read_ours(dir, cols, false, "JsonLinesSource", "out/out.jsonl", "")
}

/// What one of our sources makes of `file`, declared as the input was (with or without the
/// `Format`s, with `extra` config such as an `Encoding`), through an Arrow IPC file.
fn read_ours(
    dir: &Path,
    cols: &[Column],
    formatted: bool,
    source_type: &str,
    file: &str,
    extra: &str,
) -> Result<Option<RecordBatch>, String> {
    let decls = |c: &Column| {
        if formatted {
            return c.decl.to_string();
        }
        let kept: Vec<&str> = split_decl(c.decl)
            .into_iter()
            .filter(|e| !e.starts_with("Format:"))
            .collect();
        kept.join(", ")
    };
    let yaml = format!(
        "Pipeline:\n  Name: readback\n  Plugins:\n{}    - {{ Name: write, Type: ArrowSink, Config: \
         {{ FilePath: back/back.arrow }} }}\n  Connections:\n    - {{ From: read, To: write }}\n",
        source(cols, file, decls)
            .replacen("DelimitedSource", source_type, 1)
            .replacen(
                &format!("FilePath: {file}\n"),
                &format!("FilePath: {file}\n        {extra}\n"),
                1,
            )
    );
    std::fs::write(dir.join("readback.yaml"), yaml).map_err(|e| e.to_string())?;
    run(dir, "readback.yaml", "local")
        .map_err(|e| format!("our {source_type} refused {file}: {e}"))?;
    read_ipc(&dir.join("back/back.arrow"), false)
}

/// The entries of a declaration such as `Type: "decimal(5,2)", Nullable: true` (no entry holds
/// a comma outside quotes except inside `decimal(p,s)`).
fn split_decl(decl: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, ch) in decl.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(decl[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(decl[start..].trim());
    parts
}

fn concat(batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>, String> {
    let first = batches.first().ok_or("no batches were written")?;
    let schema: SchemaRef = first.schema();
    arrow_select::concat::concat_batches(&schema, &batches)
        .map(Some)
        .map_err(|e| e.to_string())
}

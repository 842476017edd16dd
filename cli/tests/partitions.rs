//! `ParquetSink` with `PartitionBy`, where a golden case cannot reach:
//! - a column of every type as the partition key, read back by DuckDB
//!   (`read_parquet('out/**/*.parquet', hive_partitioning = true)`) and Polars (`scan_parquet`)
//!   with the declared types, value for value (skipped with a message where they are not
//!   installed; `scripts/install-test-deps` installs them, and under CI their absence fails);
//! - hundreds of partitions under `MaxOpenFiles: 8`: files are closed and reopened as `part-N`,
//!   and every partition keeps its rows, in order;
//! - a run that fails after writing partitions leaves the old output directory as it was, and no
//!   staging directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn run(dir: &Path, yaml: &str) -> Output {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A pipeline reading `in.csv` with `columns` into one partitioned sink per entry of `sinks`
/// (`(path, partition column)`), with `extra` keys on each sink.
fn pipeline(columns: &str, sinks: &[(&str, &str)], settings: &str, extra: &str) -> String {
    let mut yaml = format!(
        "Pipeline:\n  Name: partitions\n  Settings: {{ {settings} }}\n  Plugins:\n    - Name: read\n      \
         Type: DelimitedSource\n      Config:\n        FilePath: in.csv\n        OutputSchema:\n          \
         Columns: [ {columns} ]\n"
    );
    for (i, (path, by)) in sinks.iter().enumerate() {
        yaml += &format!(
            "    - {{ Name: write{i}, Type: ParquetSink, Config: {{ FilePath: {path}, PartitionBy: [{by}]{extra} }} }}\n"
        );
    }
    yaml += "  Connections:\n";
    for i in 0..sinks.len() {
        yaml += &format!("    - {{ From: read, To: write{i} }}\n");
    }
    yaml
}

/// Whether `import duckdb, polars` works; otherwise says why the test is skipped (or fails
/// under CI, where the project's script installs them).
fn readers_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb, polars"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "DuckDB or Polars is missing under CI: scripts/install-test-deps should install them"
        );
        eprintln!("skipped: DuckDB or Polars is not installed (scripts/install-test-deps)");
    }
    ok
}

/// Reads `dir` (hive-partitioned by `column`, declared there as DuckDB's `duck` and Polars's
/// `polar` type) with both, and prints each reader's rows as `[id, value as text]`.
const READ_BACK: &str = r#"
import json, sys
import duckdb, polars as pl
path, column, duck, polar = sys.argv[1:5]
rel = duckdb.sql(
    f"select id, cast({column} as varchar) from read_parquet('{path}/**/*.parquet', "
    f"hive_partitioning = true, hive_types = {{'{column}': '{duck}'}}) order by id")
ducks = [[i, v] for i, v in rel.fetchall()]
frame = (pl.scan_parquet(f"{path}/**/*.parquet", hive_partitioning=True,
                         hive_schema={column: eval(polar)})
         .select("id", pl.col(column).cast(pl.String)).sort("id").collect())
polars = [[i, v] for i, v in frame.iter_rows()]
print(json.dumps({"duckdb": ducks, "polars": polars}))
"#;

/// A key column: name, declared type, DuckDB's and Polars's type, CSV values, values read back.
type Key = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    [&'static str; 4],
    [Option<&'static str>; 4],
);

#[test]
fn every_type_as_a_partition_reads_back_in_duckdb_and_polars() {
    if !readers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Each key column: its declaration, DuckDB's and Polars's type, its CSV values for ids 1..=4,
    // and the text both readers must give back (None: null).
    #[rustfmt::skip]
    let keys: [Key; 8] = [
        ("k_int32", "int32", "INTEGER", "pl.Int32", ["-7", "7", "-7", "2147483647"],
         [Some("-7"), Some("7"), Some("-7"), Some("2147483647")]),
        ("k_int64", "int64", "BIGINT", "pl.Int64", ["9007199254740993", "0", "", "-1"],
         [Some("9007199254740993"), Some("0"), None, Some("-1")]),
        ("k_string", "string", "VARCHAR", "pl.String", ["a/b=c:d%", "ünï code", "", "x#y?z"],
         [Some("a/b=c:d%"), Some("ünï code"), None, Some("x#y?z")]),
        ("k_bool", "bool", "BOOLEAN", "pl.Boolean", ["true", "false", "", "true"],
         [Some("true"), Some("false"), None, Some("true")]),
        ("k_date", "date", "DATE", "pl.Date", ["2024-01-31", "1970-01-01", "2024-01-31", ""],
         [Some("2024-01-31"), Some("1970-01-01"), Some("2024-01-31"), None]),
        ("k_datetime", "datetime", "TIMESTAMP", "pl.Datetime('us')",
         ["2024-01-31 13:45:00", "1999-12-31 23:59:59.5", "", "2024-01-31 13:45:00"],
         [Some("2024-01-31 13:45:00"), Some("1999-12-31 23:59:59.5"), None, Some("2024-01-31 13:45:00")]),
        ("k_decimal", "\"decimal(8,2)\"", "DECIMAL(8,2)", "pl.Decimal(8, 2)", ["12.30", "-0.05", "12.3", ""],
         [Some("12.30"), Some("-0.05"), Some("12.30"), None]),
        ("k_double", "double", "DOUBLE", "pl.Float64", ["1.5", "-2.25", "", "1e300"],
         [Some("1.5"), Some("-2.25"), None, Some("1e+300")]),
    ];
    let mut columns = vec!["{ Name: id, Type: int64 }".to_string()];
    for (name, ty, ..) in &keys {
        columns.push(format!("{{ Name: {name}, Type: {ty}, Nullable: true }}"));
    }
    let mut csv = String::from("id");
    for (name, ..) in &keys {
        csv += &format!(",{name}");
    }
    for row in 0..4 {
        csv += &format!("\n{}", row + 1);
        for (.., values, _) in &keys {
            csv += &format!(",\"{}\"", values[row]);
        }
    }
    std::fs::write(dir.path().join("in.csv"), csv + "\n").unwrap();
    let sinks: Vec<(String, &str)> = keys
        .iter()
        .map(|(name, ..)| (format!("out/{name}"), *name))
        .collect();
    let sinks: Vec<(&str, &str)> = sinks.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    let out = run(dir.path(), &pipeline(&columns.join(", "), &sinks, "", ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut problems = Vec::new();
    for (name, _, duck, polar, _, want) in &keys {
        let read = Command::new("python3")
            .args(["-c", READ_BACK, &format!("out/{name}"), name, duck, polar])
            .current_dir(dir.path())
            .output()
            .unwrap();
        if !read.status.success() {
            problems.push(format!("{name}: {}", String::from_utf8_lossy(&read.stderr)));
            continue;
        }
        let got: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
        let want: Vec<serde_json::Value> = want
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!([i + 1, v]))
            .collect();
        for reader in ["duckdb", "polars"] {
            let rows = got[reader].as_array().unwrap();
            // Readers print a double, a decimal or a timestamp in their own way.
            let same = rows.len() == want.len()
                && rows
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g[0] == w[0] && same_text(g[1].as_str(), w[1].as_str()));
            if !same {
                problems.push(format!("{name} in {reader}: got {rows:?}, want {want:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Two texts of one value: equal, or equal as numbers, or equal as timestamps written with a
/// space or a `T` and with or without a fraction's trailing zeros.
fn same_text(got: Option<&str>, want: Option<&str>) -> bool {
    match (got, want) {
        (None, None) => true,
        (Some(g), Some(w)) => {
            let norm = |s: &str| {
                let s = s.replace('T', " ");
                match s.split_once('.') {
                    Some((whole, frac)) if s.contains(':') => {
                        let frac = frac.trim_end_matches('0');
                        if frac.is_empty() {
                            whole.to_string()
                        } else {
                            format!("{whole}.{frac}")
                        }
                    }
                    _ => s,
                }
            };
            g == w
                || norm(g) == norm(w)
                || matches!((g.parse::<f64>(), w.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
        }
        _ => false,
    }
}

/// Every `part-N.parquet` under `root`, by partition directory, in N order.
fn parts(root: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let number = |p: &PathBuf| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            name.trim_start_matches("part-").parse::<usize>().unwrap()
        };
        files.sort_by_key(number);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        found.insert(name, files);
    }
    found
}

fn ids(path: &Path) -> Vec<i64> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        ids.extend(batch.column(0).as_primitive::<Int64Type>().values().iter());
    }
    ids
}

#[test]
fn many_partitions_stay_within_max_open_files_and_keep_their_rows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let keys = 300;
    let mut csv = String::from("id,key\n");
    for id in 0..3000 {
        csv += &format!("{id},k{}\n", id % keys);
    }
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let columns = "{ Name: id, Type: int64 }, { Name: key, Type: string }";
    let yaml = pipeline(
        columns,
        &[("out/by_key", "key")],
        "ChunkSize: 500",
        ", MaxOpenFiles: 8",
    );
    let out = run(dir.path(), &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = parts(&dir.path().join("out/by_key"));
    assert_eq!(found.len(), keys as usize);
    let mut reopened = 0;
    for (name, files) in &found {
        let key: i64 = name.trim_start_matches("key=k").parse().unwrap();
        let got: Vec<i64> = files.iter().flat_map(|f| ids(f)).collect();
        let want: Vec<i64> = (0..3000).filter(|id| id % keys == key).collect();
        assert_eq!(got, want, "{name}");
        reopened += usize::from(files.len() > 1);
    }
    assert!(
        reopened > 0,
        "with 8 files open, some partitions had to be reopened"
    );
}

#[test]
fn a_failed_run_leaves_the_old_output_directory_whole() {
    let dir = tempfile::tempdir().unwrap();
    let columns = "{ Name: id, Type: int64 }, { Name: key, Type: string }";
    let yaml = pipeline(
        columns,
        &[("out/by_key", "key")],
        "ChunkSize: 2",
        ", OutputMode: replace, CreateDirectories: true",
    );
    std::fs::write(dir.path().join("in.csv"), "id,key\n1,a\n2,b\n").unwrap();
    assert!(run(dir.path(), &yaml).status.success());
    let before = parts(&dir.path().join("out/by_key"));
    // The third batch holds a bad id: the run fails after writing the first two.
    std::fs::write(
        dir.path().join("in.csv"),
        "id,key\n1,c\n2,d\n3,e\n4,f\nx,g\n",
    )
    .unwrap();
    let out = run(dir.path(), &yaml);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(parts(&dir.path().join("out/by_key")), before);
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["by_key"], "no staging directory is left");
}

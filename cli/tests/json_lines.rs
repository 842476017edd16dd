//! JSON Lines as a user converts files with it:
//! - `examples/json-lines` writes exactly the files it reads;
//! - CSV → JSON Lines → CSV gives the same bytes as CSV → CSV, on every golden case that reads one
//!   plain CSV file into one CSV file, succeeds, and holds only values JSON carries exactly (no
//!   NaN or infinity, which JSON Lines writes as null);
//! - the JSON Lines we write, read by DuckDB's `read_json` with the declared types, gives the same
//!   values as DuckDB reading the CSV we write (skipped with a message where DuckDB is not
//!   installed; under CI the project's script installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "support/duckdb.rs"]
mod duckdb;

fn flowengine(dir: &Path, pipeline: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", pipeline])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Keys a plain CSV source or sink may not have for its case to be converted by swapping types.
const DELIMITED_ONLY: &[&str] = &[
    "SkipRows",
    "Trim",
    "Delimiter",
    "HasHeaders",
    "Quote",
    "RaggedRows",
    "Quoting",
    "Escape",
    "Index",
    "ErrorHandling",
    "ColumnMappings",
    "Parallel",
    "MaxRecordBytes",
    "MaxRows",
    "IncludeHeaders",
    "LineEnding",
    "Bom",
    "OutputMode",
    "Settings",
    "cmd",
];

/// The golden cases that read `in.csv` with one `DelimitedSource` straight into `out/out.csv`
/// with one `DelimitedSink`, with no key that only delimited text has.
fn plain_cases() -> Vec<(PathBuf, String)> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(root().join("testdata/cases")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(yaml) = std::fs::read_to_string(dir.join("pipeline.yaml")) else {
            continue;
        };
        let plugins = yaml
            .lines()
            .filter(|l| l.starts_with("    - Name:"))
            .count();
        let plain = plugins == 2
            && yaml.matches("Type: DelimitedSource").count() == 1
            && yaml.matches("Type: DelimitedSink").count() == 1
            && yaml.contains("FilePath: in.csv\n")
            && yaml.contains("FilePath: out/out.csv\n")
            && dir.join("in.csv").is_file()
            && !dir.join("cmd").exists()
            && !DELIMITED_ONLY
                .iter()
                .any(|k| yaml.contains(&format!("{k}:")));
        if plain {
            cases.push((dir, yaml));
        }
    }
    cases.sort();
    cases
}

/// `yaml` reading `out/out.jsonl` with a `JsonLinesSource` (dates as the sink wrote them: ISO)
/// into `back/out.csv`.
fn from_json_lines(yaml: &str) -> String {
    let mut out = String::new();
    for line in yaml.lines() {
        let mut line = line
            .replace("Type: DelimitedSource", "Type: JsonLinesSource")
            .replace("FilePath: in.csv", "FilePath: out/out.jsonl")
            .replace("FilePath: out/out.csv", "FilePath: back/out.csv");
        if let Some(at) = line.find(", Format:") {
            // `{ Name: day, Type: date, Format: dd/MM/yyyy }` -> drop the Format entry, keeping
            // any that follow (a TimeZone).
            let rest = &line[at + 2..];
            let end = rest.find(", ").map_or(rest.len() - 2, |e| e);
            let rest = rest[end..].to_string();
            line = format!("{}{}", &line[..at], rest);
            if !line.trim_end().ends_with('}') {
                line.push_str(" }");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn csv_to_json_lines_and_back_is_byte_identical() {
    let mut checked = Vec::new();
    for (case, yaml) in plain_cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(case.join("in.csv"), dir.path().join("in.csv")).unwrap();
        std::fs::write(dir.path().join("csv.yaml"), &yaml).unwrap();
        if !flowengine(dir.path(), "csv.yaml") {
            continue; // an error case: nothing to convert
        }
        let csv = std::fs::read(dir.path().join("out/out.csv")).unwrap();
        let text = String::from_utf8_lossy(&csv);
        if ["NaN", "inf"].iter().any(|s| text.contains(s)) {
            continue; // JSON has no such numbers
        }
        let to_json = yaml
            .replace("Type: DelimitedSink", "Type: JsonLinesSink")
            .replace("FilePath: out/out.csv", "FilePath: out/out.jsonl");
        std::fs::write(dir.path().join("to.yaml"), &to_json).unwrap();
        assert!(
            flowengine(dir.path(), "to.yaml"),
            "{}: to JSON",
            case.display()
        );
        let back = from_json_lines(&yaml);
        std::fs::write(dir.path().join("back.yaml"), &back).unwrap();
        assert!(
            flowengine(dir.path(), "back.yaml"),
            "{}: back from JSON:\n{back}",
            case.display()
        );
        let again = std::fs::read(dir.path().join("back/out.csv")).unwrap();
        assert!(
            again == csv,
            "{}: CSV -> JSON Lines -> CSV differs:\n{}\n---\n{}",
            case.display(),
            text,
            String::from_utf8_lossy(&again)
        );
        checked.push(case.file_name().unwrap().to_string_lossy().to_string());
    }
    assert!(
        checked.iter().any(|c| c == "all_types"),
        "all_types was not checked: {checked:?}"
    );
    eprintln!("{} cases round-trip: {}", checked.len(), checked.join(", "));
}

/// `examples/json-lines` converts its CSV to JSON Lines and its JSON Lines back to CSV in one run;
/// its JSON input is what its first flow writes, so both outputs equal the other flow's input.
#[test]
fn the_json_lines_example_converts_both_ways_exactly() {
    let example = root().join("examples/json-lines");
    let out = example.join("expected/out/out");
    for name in ["customers.jsonl", "customers.csv"] {
        let written = std::fs::read(out.join(name)).unwrap();
        let input = std::fs::read(example.join("data").join(name)).unwrap();
        assert!(
            written == input,
            "{name}: the example's output is not its other input"
        );
    }
}

#[test]
fn duckdb_reads_our_json_lines_as_our_csv() {
    if !duckdb::available() {
        return;
    }
    let case = root().join("testdata/cases/all_types");
    let yaml = std::fs::read_to_string(case.join("pipeline.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(case.join("in.csv"), dir.path().join("in.csv")).unwrap();
    let both = yaml.replace(
        "  Connections:\n",
        "    - { Name: json, Type: JsonLinesSink, Config: { FilePath: out/out.jsonl } }\n  Connections:\n    - { From: read, To: json }\n",
    );
    std::fs::write(dir.path().join("both.yaml"), both).unwrap();
    assert!(flowengine(dir.path(), "both.yaml"));
    // The same declared types for both readers; DuckDB parses the JSON values, not our text.
    const SCRIPT: &str = r#"
import sys, duckdb, math
d = sys.argv[1]
cols = {"i32": "INTEGER", "i64": "BIGINT", "f64": "DOUBLE", "f32": "FLOAT", "dec": "DECIMAL(12,2)",
        "flag": "BOOLEAN", "day": "DATE", "iso_day": "DATE", "at": "TIMESTAMP",
        "at_utc": "TIMESTAMPTZ", "at_paris": "TIMESTAMPTZ", "text": "VARCHAR"}
spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in cols.items()) + "}"
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
csv = con.execute(f"SELECT * FROM read_csv('{d}/out/out.csv', header=true, columns={spec})").fetchall()
js = con.execute(f"SELECT * FROM read_json('{d}/out/out.jsonl', format='newline_delimited', columns={spec})").fetchall()
def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b
bad = [(r, c) for r, c in zip(csv, js) if len(r) != len(c) or not all(same(x, y) for x, y in zip(r, c))]
if len(csv) != len(js) or bad:
    print(f"csv: {csv}\njson: {js}\ndiffer: {bad}")
    sys.exit(1)
print(f"{len(js)} rows agree")
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

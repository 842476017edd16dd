//! Broken pipeline files: each one `run` refuses with exit code 1 before any data file is opened,
//! naming the line and column in the file, the key path, and what to write instead.
//!
//! Every case is one edit of `BASE`, a pipeline that plans cleanly and whose input does not
//! exist: a run that got as far as opening it would fail naming that file instead.

use std::process::Command;

const BASE: &str = r#"Variables:
  Dir: .
Pipeline:
  Name: broken
  Settings:
    ChunkSize: 100
    ErrorHandling: skip-row
    MaxErrors: 10
    DeadLetter: rejects.csv
  Plugins:
    - Name: read
      Type: DelimitedSource
      Config:
        FilePath: "{Dir}/missing-input.csv"
        Delimiter: ","
        HasHeaders: true
        OutputSchema:
          Columns:
            - { Name: id, Type: int64 }
            - { Name: name, Type: string, Nullable: true }
            - { Name: day, Type: date, Format: "dd/MM/yyyy" }
            - { Name: amount, Type: "decimal(10,2)" }
    - Name: script
      Type: JavaScriptTransform
      Config:
        Script: |
          function process(context) { return true; }
    - Name: adults
      Type: Filter
      Config:
        Condition: "id > 0"
    - Name: sorted
      Type: Sort
      Config:
        By: [id]
    - Name: write
      Type: DelimitedSink
      Config:
        FilePath: out.csv
        OutputMode: replace
  Connections:
    - { From: read, To: script }
    - { From: script, To: adults }
    - { From: adults, To: sorted }
    - { From: sorted, To: write }
"#;

/// `(written in BASE, written instead, the key path the error names, what it says)`.
const CASES: &[(&str, &str, &str, &str)] = &[
    // The file's structure.
    (
        "Pipeline:\n  Name",
        "Pipelin:\n  Name",
        "",
        "unknown key `Pipelin`",
    ),
    (
        "  Name: broken\n",
        "  Nam: broken\n",
        "Pipeline",
        "did you mean `Name`?",
    ),
    (
        "  Name: broken\n",
        "  Name: [a, b]\n",
        "Pipeline.Name",
        "expected a string",
    ),
    (
        "  Plugins:\n",
        "  Plugin:\n",
        "Pipeline",
        "unknown key `Plugin`",
    ),
    (
        "  Connections:\n",
        "  Connection:\n",
        "Pipeline",
        "unknown key `Connection`",
    ),
    (
        "  Name: broken\n",
        "  Name: broken\n  name: again\n",
        "Pipeline",
        "duplicate key `name`",
    ),
    (
        "Variables:\n  Dir: .\n",
        "Variables: [a]\n",
        "Variables",
        "expected a map",
    ),
    ("{Dir}/missing", "{Dri}/missing", "FilePath", "Dri"),
    ("  Dir: .\n", "  Dir: \"{Dir}/x\"\n", "Variables", "Dir"),
    // Settings.
    (
        "    ChunkSize: 100",
        "    ChunkSize: 0",
        "Settings.ChunkSize",
        "a whole number from 1",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: lots",
        "Settings.ChunkSize",
        "a whole number",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    ChannelCapacity: 5000",
        "Settings.ChannelCapacity",
        "1 to 1024",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    Threads: 0",
        "Settings.Threads",
        "a whole number",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    MemoryLimit: 12 parsecs",
        "Settings.MemoryLimit",
        "a size",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    MemoryLimit: 1 KiB",
        "Settings.MemoryLimit",
        "a size from",
    ),
    (
        "    ErrorHandling: skip-row",
        "    ErrorHandling: skip",
        "Settings.ErrorHandling",
        "one of fail-fast, skip-row",
    ),
    (
        "    MaxErrors: 10",
        "    MaxErrors: lots",
        "Settings.MaxErrors",
        "expected",
    ),
    (
        "    MaxErrors: 10",
        "    MaxErrors: 150%",
        "Settings.MaxErrors",
        "expected",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    Timeout: soon",
        "Settings.Timeout",
        "a duration",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    TimeoutMs: 100",
        "Settings",
        "use `Settings.Timeout`",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    SkipMalformedRows: true",
        "Settings",
        "use `ErrorHandling: skip-row`",
    ),
    (
        "    ChunkSize: 100",
        "    ChunkSize: 100\n    Colour: blue",
        "Settings",
        "unknown key `Colour`",
    ),
    (
        "    DeadLetter: rejects.csv",
        "    DeadLetter: \"\"",
        "Settings.DeadLetter",
        "a non-empty path",
    ),
    // Plugin entries.
    (
        "    - Name: read\n",
        "    - Nme: read\n",
        "Pipeline.Plugins",
        "Name",
    ),
    (
        "      Type: DelimitedSource",
        "      Type: DelimitedSorce",
        "Type",
        "did you mean `DelimitedSource`?",
    ),
    (
        "      Type: DelimitedSource",
        "      Type: ExcelSource",
        "Type",
        "known types",
    ),
    (
        "    - Name: script\n",
        "    - Name: read\n",
        "Pipeline.Plugins",
        "read",
    ),
    (
        "      Type: Sort\n",
        "      Type: Sort\n      Assembly: Sorting.dll\n",
        "Pipeline.Plugins[3]",
        "`Assembly` is not supported",
    ),
    (
        "      Type: Sort\n",
        "      Type: Sort\n      Colour: red\n",
        "Pipeline.Plugins[3]",
        "unknown key `Colour`",
    ),
    // DelimitedSource.
    (
        "        FilePath: \"{Dir}/missing-input.csv\"\n",
        "",
        "Pipeline.Plugins[read].Config",
        "missing required key `FilePath`",
    ),
    (
        "        Delimiter: \",\"",
        "        Delimiter: \"::\"",
        "Config.Delimiter",
        "a single-byte",
    ),
    (
        "        Delimiter: \",\"",
        "        Delimiter: \"\\n\"",
        "Config.Delimiter",
        "a single-byte",
    ),
    (
        "        Delimiter: \",\"",
        "        Delimitr: \",\"",
        "Pipeline.Plugins[read].Config",
        "did you mean `Delimiter`?",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: sometimes",
        "Config.HasHeaders",
        "true or false",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: true\n        RaggedRows: maybe",
        "Config.RaggedRows",
        "one of error, pad-null, truncate",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: true\n        Quoting: loose",
        "Config.Quoting",
        "one of strict, lenient",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: true\n        Compression: rar",
        "Config.Compression",
        "one of auto",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: true\n        Encoding: klingon",
        "Config.Encoding",
        "klingon",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: true\n        MaxRecordBytes: 10",
        "Config.MaxRecordBytes",
        "a size from",
    ),
    (
        "        HasHeaders: true",
        "        HasHeaders: true\n        InferSchema: true",
        "Pipeline.Plugins[read].Config",
        "`InferSchema` is not supported",
    ),
    (
        "        OutputSchema:\n",
        "        Schema:\n",
        "Pipeline.Plugins[read].Config",
        "Schema",
    ),
    (
        "{ Name: id, Type: int64 }",
        "{ Name: id, Type: int65 }",
        "Columns",
        "int65",
    ),
    (
        "{ Name: id, Type: int64 }",
        "{ Name: id }",
        "Columns",
        "Type",
    ),
    (
        "{ Name: id, Type: int64 }",
        "{ Name: name, Type: int64 }",
        "Columns",
        "name",
    ),
    (
        "{ Name: id, Type: int64 }",
        "{ Name: id, Type: int64, Width: 3 }",
        "Columns",
        "unknown key `Width`",
    ),
    (
        "Type: \"decimal(10,2)\"",
        "Type: \"decimal(50,2)\"",
        "Columns",
        "decimal",
    ),
    (
        "Type: \"decimal(10,2)\"",
        "Type: decimal",
        "Columns",
        "decimal",
    ),
    (
        "Format: \"dd/MM/yyyy\"",
        "Format: \"dd/MM/yyyy\", TimeZone: Mars/Olympus",
        "Columns",
        "TimeZone",
    ),
    (
        "Nullable: true",
        "Nullable: perhaps",
        "Nullable",
        "true or false",
    ),
    // JavaScriptTransform.
    (
        "          function process(context) { return true; }",
        "          function process(context) { return true; ",
        "Pipeline.Plugins[script].Config",
        "Script",
    ),
    (
        "          function process(context) { return true; }",
        "          function handle(context) { return true; }",
        "Pipeline.Plugins[script].Config",
        "process",
    ),
    (
        "        Script: |\n",
        "        Engine: Jint\n        Script: |\n",
        "Pipeline.Plugins[script].Config",
        "`Engine` is not supported",
    ),
    (
        "        Script: |\n",
        "        TimeoutPerRow: 5x\n        Script: |\n",
        "Pipeline.Plugins[script].Config.TimeoutPerRow",
        "a duration from 1ms to 3600s",
    ),
    (
        "        Script: |\n",
        "        Compile: maybe\n        Script: |\n",
        "Pipeline.Plugins[script].Config.Compile",
        "true or false",
    ),
    // Native transforms.
    (
        "        Condition: \"id > 0\"",
        "        Condition: \"idd > 0\"",
        "Config.Condition",
        "did you mean `id`?",
    ),
    (
        "        Condition: \"id > 0\"",
        "        Condition: \"id >\"",
        "Pipeline.Plugins[adults].Config",
        "Condition",
    ),
    (
        "        By: [id]",
        "        By: [nothing]",
        "Config.By[0]",
        "known columns: id, name, day, amount",
    ),
    (
        "        By: [id]",
        "        By: \"id\"",
        "Pipeline.Plugins[sorted].Config.By",
        "a list",
    ),
    // DelimitedSink.
    (
        "        FilePath: out.csv\n",
        "        FilePath: \"\"\n",
        "Config.FilePath",
        "a non-empty path",
    ),
    (
        "        OutputMode: replace",
        "        OutputMode: overwrite",
        "Config.OutputMode",
        "one of replace, create, append",
    ),
    (
        "        OutputMode: replace",
        "        OutputMode: replace\n        ErrorHandling: skip-row",
        "Pipeline.Plugins[write].Config",
        "ErrorHandling",
    ),
    (
        "        FilePath: out.csv\n",
        "        FilePath: missing-input.csv\n",
        "Pipeline.Plugins[write]",
        "missing-input.csv",
    ),
    // Connections.
    (
        "    - { From: read, To: script }",
        "    - { From: reed, To: script }",
        "Pipeline.Connections",
        "reed",
    ),
    (
        "    - { From: read, To: script }",
        "    - { From: read, To: scrpt }",
        "Pipeline.Connections",
        "scrpt",
    ),
    (
        "    - { From: read, To: script }",
        "    - { From: read, To: script, Channel: fast }",
        "Pipeline.Connections",
        "`Channel` is not supported",
    ),
    (
        "    - { From: sorted, To: write }",
        "    - { From: sorted, To: write }\n    - { From: write, To: read }",
        "Pipeline.Plugins[read]",
        "cannot have inputs",
    ),
    (
        "    - { From: sorted, To: write }",
        "    - { From: sorted, To: script }",
        "",
        "write",
    ),
];

#[test]
fn every_broken_file_is_refused_before_any_data_file_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, BASE).unwrap();
    let base = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["validate", "p.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for (i, (from, to, path, says)) in CASES.iter().enumerate() {
        assert!(BASE.contains(from), "case {i}: BASE does not hold {from:?}");
        std::fs::write(&file, BASE.replacen(from, to, 1)).unwrap();
        let run = Command::new(env!("CARGO_BIN_EXE_flowengine"))
            .args(["run", "p.yaml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or("");
        let located = error
            .strip_prefix("error: p.yaml:")
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(at, _)| at.split(':').all(|n| n.parse::<u32>().is_ok()));
        let problems = [
            (run.status.code() != Some(1), "exit code is not 1"),
            (!located, "no p.yaml:LINE:COLUMN"),
            (!stderr.contains(path), "the key path is not named"),
            (
                !stderr.contains(says),
                "the message does not say what to fix",
            ),
            (
                stderr.contains("missing-input.csv: "),
                "the input was opened",
            ),
            (dir.path().join("out.csv").exists(), "an output was written"),
        ];
        for (failed, what) in problems {
            if failed {
                failures.push(format!(
                    "case {i} ({to:?}): {what}; want {path:?} and {says:?}:\n{stderr}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

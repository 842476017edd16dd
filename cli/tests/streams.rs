//! Compressed files and the standard streams, as a user runs them in a shell:
//! - `zcat in.csv.gz | flowengine run p.yaml` with `FilePath: "-"` (here the gzip bytes themselves
//!   go to standard input, and are found by their first bytes), writing CSV to standard output
//!   while the summary goes to standard error;
//! - sinks writing `.gz` and `.zst` files that gzip and zstd readers read back as the plain output.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const CSV: &str = "id,name\n1,Ann\n2,\"Bo\nB\"\n3,Cy\n";

fn pipeline(source: &str, sinks: &[&str]) -> String {
    let mut yaml = format!(
        "Pipeline:\n  Name: streams\n  Settings: {{ ChunkSize: 1 }}\n  Plugins:\n    - Name: read\n      \
         Type: DelimitedSource\n      Config:\n        FilePath: \"{source}\"\n        OutputSchema:\n          \
         Columns: [ {{ Name: id, Type: int64 }}, {{ Name: name, Type: string }} ]\n"
    );
    for (i, sink) in sinks.iter().enumerate() {
        yaml += &format!("    - {{ Name: write{i}, {sink} }}\n");
    }
    yaml += "  Connections:\n";
    for i in 0..sinks.len() {
        yaml += &format!("    - {{ From: read, To: write{i} }}\n");
    }
    yaml
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_on_standard_input_comes_out_as_csv_on_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline("-", &["Type: DelimitedSink, Config: { FilePath: \"-\" }"]);
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = gzip(CSV.as_bytes());
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), CSV);
    assert!(stderr.contains("3 rows read"), "{stderr}");
}

#[test]
fn compressed_outputs_read_back_as_the_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), CSV).unwrap();
    let yaml = pipeline(
        "in.csv",
        &[
            "Type: DelimitedSink, Config: { FilePath: out/plain.csv }",
            "Type: DelimitedSink, Config: { FilePath: out/out.csv.gz }",
            "Type: DelimitedSink, Config: { FilePath: out/out.csv.zst }",
            "Type: DelimitedSink, Config: { FilePath: out/named.data, Compression: gzip }",
            "Type: JsonLinesSink, Config: { FilePath: out/plain.jsonl }",
            "Type: JsonLinesSink, Config: { FilePath: out/out.jsonl.gz }",
        ],
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read(dir.path().join("out").join(name)).unwrap();
    let gunzip = |bytes: Vec<u8>| {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let unzstd = |bytes: Vec<u8>| String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    let plain = String::from_utf8(read("plain.csv")).unwrap();
    assert_eq!(plain, CSV);
    assert_eq!(gunzip(read("out.csv.gz")), plain);
    assert_eq!(unzstd(read("out.csv.zst")), plain);
    assert_eq!(gunzip(read("named.data")), plain);
    let json = String::from_utf8(read("plain.jsonl")).unwrap();
    assert_eq!(gunzip(read("out.jsonl.gz")), json);
    assert!(!Path::new(&dir.path().join("out/out.csv")).exists());
}

/// `flowengine run` reading `input` on standard input with an `ArrowSource` of `FilePath: "-"`,
/// writing CSV to standard output: (success, stdout, stderr).
fn arrow_from_stdin(input: Vec<u8>) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let columns = "[ { Name: id, Type: int64 }, { Name: name, Type: string }, \
                   { Name: note, Type: string, Nullable: true } ]";
    let yaml = format!(
        "Pipeline:\n  Name: streams\n  Plugins:\n    - {{ Name: read, Type: ArrowSource, Config: \
         {{ FilePath: \"-\", OutputSchema: {{ Columns: {columns} }} }} }}\n    - {{ Name: write, \
         Type: DelimitedSink, Config: {{ FilePath: \"-\" }} }}\n  Connections:\n    - {{ From: read, \
         To: write }}\n"
    );
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The run may refuse the input before reading all of it.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn an_arrow_stream_on_standard_input_is_read_and_a_file_is_refused() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases");
    let arrow = |name| std::fs::read(cases.join("arrow_source_round_trip").join(name)).unwrap();
    let (ok, stdout, stderr) = arrow_from_stdin(arrow("in.arrows"));
    assert!(ok, "{stderr}");
    let reference =
        std::fs::read_to_string(cases.join("typed_sources_reference_csv/in.csv")).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "id,name,note");
    assert!(
        lines[1].starts_with("1,Ada,\"comma, \"\"quoted\"\"\""),
        "{stdout}"
    );
    assert_eq!(stdout.matches('\n').count(), 5, "{stdout}");
    assert!(
        reference.contains("Grace"),
        "the reference is the same rows"
    );

    let (ok, _, stderr) = arrow_from_stdin(arrow("in.arrow"));
    assert!(!ok);
    assert!(
        stderr.contains("standard input holds the Arrow IPC file format"),
        "{stderr}"
    );
}

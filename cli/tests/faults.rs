//! I/O faults at each call site of reading, staging and commit, with each errno, for each kind of
//! source and sink: the run fails with a message naming the file and the operation, the old output
//! stays as it was (or, for a fault after the commit's rename, is the complete new one), and no
//! staging or lock file is left.
//!
//! Only in a build with the fault layer: `cargo test -p flowengine-cli --features failpoints
//! --test faults` (`.ci/run` does). The faults are named in the `FAILPOINTS` environment variable
//! of each run (the `fail` crate); the sites are listed in `plugins/src/faults.rs`.
#![cfg(feature = "failpoints")]

use std::path::Path;
use std::process::Command;

/// What the output holds before each run.
const OLD: &[u8] = b"id,name\n0,old\n";
const INPUT: &str = "id,name\n1,Ann\n2,Bo\n";

/// One pipeline: the reader's plugin and config, the writer's, and where the output goes.
struct Job {
    name: &'static str,
    read: &'static str,
    write: &'static str,
    /// The output file, or directory (a partitioned sink), relative to the run's folder.
    output: &'static str,
    /// The input file, made from [`INPUT`] by the `prepare` job's run when not CSV.
    input: &'static str,
    sites: &'static [Site],
}

/// A fault: `(site, how often it passes first, exit code, the operation the message names, the
/// file it names, whether the new output is in place)`. Faults while the plan is built (before any
/// row moves) exit with 1, later ones with 2.
type Site = (&'static str, u32, i32, &'static str, &'static str, bool);

const CSV_IN: &str = "Type: DelimitedSource, Config: { FilePath: in.csv, OutputSchema: { Columns: \
                      [ { Name: id, Type: int64 }, { Name: name, Type: string } ] } }";

const JOBS: &[Job] = &[
    Job {
        name: "csv to csv",
        read: CSV_IN,
        write: "Type: DelimitedSink, Config: { FilePath: out.csv }",
        output: "out.csv",
        input: "in.csv",
        sites: &[
            ("staging::create", 0, 1, "create a temporary file in", "", false),
            // The header is written when the sink is built, the rows while the run goes on.
            ("staging::write", 0, 1, "write", "out.csv", false),
            ("staging::write", 1, 2, "write", "out.csv", false),
            ("staging::fsync", 0, 2, "sync", "out.csv", false),
            ("staging::rename", 0, 2, "replace", "out.csv", false),
            // The rename is done: the output is the new one, its directory entry maybe not durable.
            ("staging::dirsync", 0, 2, "sync the directory of", "out.csv", true),
            // The header is read when the plan is built, the rows after it.
            ("input::open", 0, 1, "open", "in.csv", false),
            ("input::read", 0, 1, "read", "in.csv", false),
            ("input::read", 1, 2, "read", "in.csv", false),
        ],
    },
    Job {
        name: "csv to parquet",
        read: CSV_IN,
        write: "Type: ParquetSink, Config: { FilePath: out.parquet }",
        output: "out.parquet",
        input: "in.csv",
        sites: &[
            ("staging::create", 0, 1, "create a temporary file in", "", false),
            // Inside the Parquet writer, which opens at the first batch (a file this small is
            // written in one call).
            ("staging::write", 0, 2, "write", "out.parquet", false),
            ("staging::fsync", 0, 2, "sync", "out.parquet", false),
            ("staging::rename", 0, 2, "replace", "out.parquet", false),
            ("staging::dirsync", 0, 2, "sync the directory of", "out.parquet", true),
        ],
    },
    Job {
        name: "csv to arrow",
        read: CSV_IN,
        write: "Type: ArrowSink, Config: { FilePath: out.arrow }",
        output: "out.arrow",
        input: "in.csv",
        sites: &[
            ("staging::write", 0, 2, "write", "out.arrow", false),
            ("staging::fsync", 0, 2, "sync", "out.arrow", false),
            ("staging::rename", 0, 2, "replace", "out.arrow", false),
        ],
    },
    Job {
        name: "csv to partitioned parquet",
        read: CSV_IN,
        write: "Type: ParquetSink, Config: { FilePath: parts, PartitionBy: [name] }",
        output: "parts",
        input: "in.csv",
        sites: &[
            ("staging::create", 0, 2, "create", "parts", false),
            ("staging::write", 0, 2, "write", "parts", false),
            ("staging::fsync", 0, 2, "sync", "parts", false),
            ("staging::rename", 0, 2, "replace", "parts", false),
            ("staging::dirsync", 0, 2, "sync the directory of", "parts", true),
        ],
    },
    Job {
        name: "parquet to csv",
        read: "Type: ParquetSource, Config: { FilePath: in.parquet, OutputSchema: { Columns: [ { Name: id, \
               Type: int64 }, { Name: name, Type: string } ] } }",
        write: "Type: DelimitedSink, Config: { FilePath: out.csv }",
        output: "out.csv",
        input: "in.parquet",
        sites: &[
            // The footer is read when the plan is built, the row groups with a handle each.
            ("input::open", 0, 1, "open", "in.parquet", false),
            ("input::read", 0, 1, "read", "in.parquet", false),
            ("input::open", 1, 2, "open", "in.parquet", false),
            ("input::read", 3, 2, "read", "in.parquet", false),
        ],
    },
    Job {
        name: "arrow to csv",
        read: "Type: ArrowSource, Config: { FilePath: in.arrow, OutputSchema: { Columns: [ { Name: id, \
               Type: int64 }, { Name: name, Type: string } ] } }",
        write: "Type: DelimitedSink, Config: { FilePath: out.csv }",
        output: "out.csv",
        input: "in.arrow",
        sites: &[
            ("input::open", 0, 1, "open", "in.arrow", false),
            ("input::read", 0, 1, "open", "in.arrow", false),
        ],
    },
];

const ERRNOS: &[(&str, &str)] = &[
    ("ENOSPC", "No space left on device"),
    ("EIO", "Input/output error"),
    ("EACCES", "Permission denied"),
];

fn pipeline(read: &str, write: &str) -> String {
    format!(
        "Pipeline:\n  Name: faults\n  Plugins:\n    - {{ Name: read, {read} }}\n    - {{ Name: write, \
         {write} }}\n  Connections:\n    - {{ From: read, To: write }}\n"
    )
}

fn run(dir: &Path, yaml: &str, failpoints: Option<String>) -> std::process::Output {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowengine"));
    command.args(["run", "p.yaml"]).current_dir(dir);
    if let Some(f) = failpoints {
        command.env("FAILPOINTS", f);
    }
    command.output().unwrap()
}

/// The job's input in `dir`: CSV as is, Parquet and Arrow written from it by a fault-free run.
fn prepare_input(dir: &Path, input: &str) {
    std::fs::write(dir.join("in.csv"), INPUT).unwrap();
    let sink = match input.rsplit('.').next() {
        Some("parquet") => "ParquetSink",
        Some("arrow") => "ArrowSink",
        _ => return,
    };
    let made = run(
        dir,
        &pipeline(
            CSV_IN,
            &format!("Type: {sink}, Config: {{ FilePath: {input} }}"),
        ),
        None,
    );
    assert!(made.status.success(), "{made:?}");
}

/// The output as bytes: a file's content, or a directory's files with their names.
fn snapshot(path: &Path) -> Vec<u8> {
    if !path.is_dir() {
        return std::fs::read(path).unwrap_or_default();
    }
    let mut all = Vec::new();
    let mut entries: Vec<_> = walk(path);
    entries.sort();
    for entry in entries {
        all.extend(entry.to_string_lossy().as_bytes());
        all.extend(std::fs::read(&entry).unwrap());
    }
    all
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Put the old output in place: a file, or a directory holding one.
fn put_old(dir: &Path, output: &str) {
    let path = dir.join(output);
    if output.contains('.') {
        std::fs::write(&path, OLD).unwrap();
    } else {
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("old.parquet"), OLD).unwrap();
    }
}

#[test]
fn every_fault_at_every_site_fails_cleanly_and_keeps_the_old_output() {
    let mut failures = Vec::new();
    let mut runs = 0;
    for job in JOBS {
        for &(site, passes, code, operation, file, replaced) in job.sites {
            for (errno, text) in ERRNOS {
                runs += 1;
                let dir = tempfile::tempdir().unwrap();
                prepare_input(dir.path(), job.input);
                let yaml = pipeline(job.read, job.write);
                // The complete new output, from a run without faults.
                let new = run(dir.path(), &yaml, None);
                assert!(new.status.success(), "{}: {new:?}", job.name);
                let new = snapshot(&dir.path().join(job.output));
                let _ = std::fs::remove_dir_all(dir.path().join(job.output));
                put_old(dir.path(), job.output);
                let old = snapshot(&dir.path().join(job.output));

                let faulted = run(
                    dir.path(),
                    &yaml,
                    Some(format!("{site}={passes}*off->return({errno})")),
                );
                let stderr = String::from_utf8_lossy(&faulted.stderr);
                let output = snapshot(&dir.path().join(job.output));
                let left: Vec<String> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with('.'))
                    .collect();
                let expected = if replaced { &new } else { &old };
                let checks = [
                    (faulted.status.code() == Some(code), "exit code"),
                    (
                        stderr.contains(&format!("cannot {operation}")),
                        "the operation",
                    ),
                    (stderr.contains(file), "the file"),
                    (stderr.contains(text), "the errno"),
                    (&output == expected, "the output"),
                    (left.is_empty(), "no staging or lock file left"),
                ];
                for (ok, what) in checks {
                    if !ok {
                        failures.push(format!(
                            "{}: {site} after {passes} {errno}: {what} (exit {:?}, left {left:?}):\n{stderr}",
                            job.name,
                            faulted.status.code()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

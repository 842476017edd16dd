//! I/O faults at each call site of staging and commit, with each errno: the run fails with a
//! message naming the file and the operation, the old output stays as it was (or, for a fault
//! after the commit's rename, is the complete new one), and no staging or lock file is left.
//!
//! Only in a build with the fault layer: `cargo test -p flowengine-cli --features failpoints
//! --test faults` (`.ci/run` does). The faults are named in the `FAILPOINTS` environment variable
//! of each run (the `fail` crate).
#![cfg(feature = "failpoints")]

use std::process::Command;

const OLD: &str = "id,name\n0,old\n";
const NEW: &str = "id,name\n1,Ann\n2,Bo\n";

/// `(fault site, how often it passes first, exit code, the operation the message names, whether
/// the new output is in place)`. Faults while the sink is being built (before any row moves) exit
/// with 1, later ones with 2.
const SITES: &[(&str, u32, i32, &str, bool)] = &[
    ("staging::create", 0, 1, "create a temporary file in", false),
    // The header is written when the sink is built, the rows while the run goes on.
    ("staging::write", 0, 1, "write", false),
    ("staging::write", 1, 2, "write", false),
    ("staging::fsync", 0, 2, "sync", false),
    ("staging::rename", 0, 2, "replace", false),
    // The rename is done: the output is the new one, but its directory entry may not be durable.
    ("staging::dirsync", 0, 2, "sync the directory of", true),
];

const ERRNOS: &[(&str, &str)] = &[
    ("ENOSPC", "No space left on device"),
    ("EIO", "Input/output error"),
    ("EACCES", "Permission denied"),
];

#[test]
fn every_fault_at_every_site_fails_cleanly_and_keeps_the_old_output() {
    let mut failures = Vec::new();
    for (site, passes, code, operation, replaced) in SITES {
        for (errno, text) in ERRNOS {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("in.csv"), NEW).unwrap();
            std::fs::write(dir.path().join("out.csv"), OLD).unwrap();
            std::fs::write(
                dir.path().join("p.yaml"),
                "Pipeline:\n  Name: faults\n  Plugins:\n    - { Name: read, Type: DelimitedSource, \
                 Config: { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int64 }, \
                 { Name: name, Type: string } ] } } }\n    - { Name: write, Type: DelimitedSink, \
                 Config: { FilePath: out.csv } }\n  Connections:\n    - { From: read, To: write }\n",
            )
            .unwrap();
            let run = Command::new(env!("CARGO_BIN_EXE_flowengine"))
                .args(["run", "p.yaml"])
                .env(
                    "FAILPOINTS",
                    format!("{site}={passes}*off->return({errno})"),
                )
                .current_dir(dir.path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            let output = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
            let left: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect();
            let expected_output = if *replaced { NEW } else { OLD };
            let checks = [
                (run.status.code() == Some(*code), "exit code"),
                (
                    stderr.contains(&format!("cannot {operation}")),
                    "the operation",
                ),
                (
                    stderr.contains("out.csv") || *site == "staging::create",
                    "the file",
                ),
                (stderr.contains(text), "the errno"),
                (output == expected_output, "the output"),
                (left.is_empty(), "no staging or lock file left"),
            ];
            for (ok, what) in checks {
                if !ok {
                    failures.push(format!(
                        "{site} {errno}: {what} (exit {:?}, output {output:?}, left {left:?}):\n{stderr}",
                        run.status.code()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

//! The accounting of the other engines, node for node: every golden case that is a plain run
//! (`run pipeline.yaml`) and succeeds gives, on `--engine datafusion` and on `--engine ballista
//! --tasks 3`, the summary the local engine gives: rows read, written, filtered and rejected;
//! for each node its rows in and out, filtered, duplicates, aggregated, reference rows, rejects by
//! type, rows per port and warnings; and each path's totals. The golden trials compare outputs and
//! the summary's lines that a case lists; this compares every count. Batches, bytes, times and
//! notes depend on how the rows were cut, and are left out. A case with a `Limit` is left out too:
//! how far its source reads before it stops depends on timing, on every engine.
#![cfg(feature = "distributed")]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|case| {
            let pipeline = std::fs::read_to_string(case.join("pipeline.yaml")).unwrap_or_default();
            let succeeds = std::fs::read_to_string(case.join("expected/exit_code"))
                .map_or(true, |c| c.trim() == "0");
            !pipeline.is_empty()
                && succeeds
                && !pipeline.contains("Type: Limit")
                && !case.join("cmd").exists()
                && !case.join("cwd").exists()
        })
        .collect();
    cases.sort();
    cases
}

fn copy_case(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (path, name) = (entry.path(), entry.file_name());
        if name == "expected" {
            continue;
        }
        if path.is_dir() {
            copy_case(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// The case's summary on `engine`, with what depends on how rows were cut left out.
fn summary(case: &Path, engine: &[&str]) -> Value {
    let work = tempfile::tempdir().unwrap();
    copy_case(case, work.path());
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "pipeline.yaml", "--json"])
        .args(engine)
        .current_dir(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}: {engine:?}: {stderr}",
        case.display()
    );
    // Paths in it (the dead-letter file, warnings) name the work folder, different each run.
    let stdout =
        String::from_utf8_lossy(&out.stdout).replace(&*work.path().to_string_lossy(), "<dir>");
    let mut summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: {engine:?}: no summary on stdout: {e}", case.display()));
    let summary = summary.as_object_mut().unwrap();
    for timing in ["setup_ms", "processing_ms", "rows_per_sec"] {
        summary.remove(timing);
    }
    for node in summary["nodes"].as_array_mut().unwrap() {
        let node = node.as_object_mut().unwrap();
        for cut in ["batches_in", "batches_out", "bytes_out", "busy_ms", "notes"] {
            node.remove(cut);
        }
    }
    Value::Object(summary.clone())
}

#[test]
fn every_engine_accounts_for_every_node_as_the_local_one_does() {
    let cases = cases();
    assert!(cases.len() > 50, "only {} cases", cases.len());
    let engines: [&[&str]; 2] = [
        &["--engine", "datafusion"],
        &["--engine", "ballista", "--tasks", "3"],
    ];
    // Two at a time: each run is one process, most of it waiting on the other's cores.
    let (even, odd): (Vec<_>, Vec<_>) = cases.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    std::thread::scope(|scope| {
        for half in [even, odd] {
            scope.spawn(move || {
                for (_, case) in half {
                    let local = summary(case, &[]);
                    for engine in engines {
                        let other = summary(case, engine);
                        assert!(
                            other == local,
                            "{}: {engine:?} accounts differently\nlocal: {local:#}\n{engine:?}: {other:#}",
                            case.display()
                        );
                    }
                }
            });
        }
    });
}

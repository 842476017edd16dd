//! `flowengine infer` on files it did not make up:
//! - the benchmark file (`../shared/bench/gen_data.py`): the inferred schema is
//!   `../shared/bench/schema.json`, name for name, type for type, format and nullability included;
//! - every distinct clean file of the Pollock corpus (`../shared/corpus/pollock/clean`): `infer
//!   --pipeline` then `run` succeeds with no reject (an empty file is a clear error instead).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn flowengine(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Whether the shared material beside the repository is there; under CI it must be.
fn shared(path: &Path) -> bool {
    if path.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have {}",
        path.display()
    );
    eprintln!("skipped: no {}", path.display());
    false
}

#[test]
fn the_benchmark_file_infers_as_its_declared_schema() {
    let bench = root().join("../shared/bench");
    if !shared(&bench) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    let made = Command::new("python3")
        .arg(bench.join("gen_data.py"))
        .arg("50000")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = flowengine(dir.path(), &["infer", "data.csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bench.join("schema.json")).unwrap()).unwrap();
    let types = |t: &str| {
        match t {
            "utf8" => "string",
            "float64" => "double",
            "date32" => "date",
            other => other,
        }
        .to_string()
    };
    let want: Vec<String> = schema["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut entry = format!(
                "{{ Name: {}, Type: {}",
                c["name"].as_str().unwrap(),
                types(c["type"].as_str().unwrap())
            );
            if let Some(f) = c["format"].as_str() {
                entry += &format!(", Format: \"{f}\"");
            }
            if c["nullable"].as_bool() == Some(true) {
                entry += ", Nullable: true";
            }
            entry + " }"
        })
        .collect();
    let got: Vec<String> = yaml
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- { Name:")
                .map(|r| format!("{{ Name:{r}"))
        })
        .collect();
    assert_eq!(got, want, "{yaml}");
}

#[test]
fn every_clean_corpus_file_runs_as_inferred_without_a_reject() {
    let clean = root().join("../shared/corpus/pollock/clean");
    if !shared(&clean) {
        return;
    }
    let mut files: Vec<(Vec<u8>, PathBuf)> = std::fs::read_dir(&clean)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect();
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (bytes, path) in &files {
        let file = path.to_str().unwrap();
        let inferred = flowengine(dir.path(), &["infer", file, "--pipeline"]);
        if bytes.is_empty() {
            let stderr = String::from_utf8_lossy(&inferred.stderr);
            if inferred.status.code() != Some(1) || !stderr.contains("is empty") {
                problems.push(format!(
                    "{file}: an empty file should be a clear error: {stderr}"
                ));
            }
            continue;
        }
        if !inferred.status.success() {
            problems.push(format!(
                "{file}: {}",
                String::from_utf8_lossy(&inferred.stderr)
            ));
            continue;
        }
        std::fs::write(dir.path().join("p.yaml"), &inferred.stdout).unwrap();
        let run = flowengine(dir.path(), &["run", "p.yaml", "--json"]);
        let summary: serde_json::Value =
            serde_json::from_slice(&run.stdout).unwrap_or(serde_json::Value::Null);
        if !run.status.success() || summary["rows_rejected"] != 0 {
            problems.push(format!(
                "{file}: run as inferred: {}",
                String::from_utf8_lossy(&run.stderr)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} files:\n{}",
        problems.len(),
        files.len(),
        problems.join("\n")
    );
}

//! The relational transforms as a user runs them, where a golden case cannot reach:
//! - a `Sort` killed outright while it spills leaves its spill directory, and the next sort in the
//!   same place removes it (and says so);
//! - a `Distinct` or `Aggregate` past its memory spills by key and stays exact, and so do they
//!   and a `Sort` on `--engine datafusion` and `ballista` (a `distributed` build);
//! - random small tables through `Sort`, `Distinct`, `Aggregate` and `Lookup` agree row for row
//!   with DuckDB
//!   (`scripts/differential-relational`; skipped with a message where DuckDB is not installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/duckdb.rs"]
mod duckdb;

fn flowengine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A pipeline under a 5 MiB limit reading `id,key` rows from `in.csv` through `step` into
/// `out.csv`, spilling to `tmp/`.
fn spill_case(dir: &Path, csv: &str, step: &str) {
    std::fs::write(dir.join("in.csv"), csv).unwrap();
    let yaml = format!(
        "Pipeline:
  Name: spill
  Settings: {{ MemoryLimit: 5 MiB, ChannelCapacity: 1, ChunkSize: 1000, TempDirectory: tmp }}
  Plugins:
    - Name: read
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        OutputSchema:
          Columns:
            - {{ Name: id, Type: int64 }}
            - {{ Name: key, Type: string }}
    - {{ Name: step, {step} }}
    - {{ Name: write, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
  Connections:
    - {{ From: read, To: step }}
    - {{ From: step, To: write }}
"
    );
    std::fs::write(dir.join("pipeline.yaml"), yaml).unwrap();
    std::fs::create_dir(dir.join("tmp")).unwrap();
}

/// A sort that must spill: 300,000 rows under a 5 MiB limit.
fn write_case(dir: &Path) {
    let mut csv = String::from("id,key\n");
    for i in 0..300_000u64 {
        let key = (i * 2_654_435_761) % 1_000_003;
        csv.push_str(&format!("{i},k{key:07}\n"));
    }
    spill_case(dir, &csv, "Type: Sort, Config: { By: [key, id] }");
}

/// Run the spill case in `dir` on `engine`, which must spill (saying `spilled`), finish, and
/// leave no spill directory; what it wrote.
fn run_spilling(dir: &Path, engine: &str, spilled: &str) -> String {
    let out = flowengine()
        .args(["run", "--verbose", "pipeline.yaml", "--engine", engine])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(spilled), "it never spilled:\n{stderr}");
    assert!(spill_dirs(dir).is_empty(), "the spill directory stayed");
    std::fs::read_to_string(dir.join("out.csv")).unwrap()
}

fn spill_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("flowengine-spill-")
        })
        .collect()
}

#[test]
fn a_sort_killed_mid_spill_is_cleaned_up_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    write_case(dir.path());
    let mut child = flowengine()
        .args(["run", "pipeline.yaml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once its second run is on disk.
    let started = Instant::now();
    let spilled = loop {
        let second = spill_dirs(dir.path())
            .iter()
            .any(|d| d.join("run-00001.arrows").exists());
        if second {
            break true;
        }
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(spilled, "the sort never spilled a second run");
    assert_eq!(
        spill_dirs(dir.path()).len(),
        1,
        "a killed run leaves its directory"
    );
    assert!(
        !dir.path().join("out.csv").exists(),
        "a killed run commits nothing"
    );

    let out = flowengine()
        .args(["run", "--verbose", "pipeline.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed 1 spill directories left by killed runs"),
        "{stderr}"
    );
    assert!(stderr.contains("runs spilled"), "{stderr}");
    assert!(
        spill_dirs(dir.path()).is_empty(),
        "the spill directory stayed"
    );
    let sorted = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let keys: Vec<&str> = sorted
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(keys.len(), 300_000);
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "not sorted");
}

/// A `Distinct` whose state outgrows its share spills its rows by key and still keeps exactly
/// the first (or last) row of each, in input order.
fn distinct_spills_and_stays_exact(keep: &str, engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,key\n");
    let mut kept = std::collections::HashMap::new();
    for i in 0..150_000u64 {
        // Mostly new keys, with repeats near and far.
        let key = if i % 3 == 0 { (i * 7) % 40_000 } else { i };
        csv.push_str(&format!("{i},key-{key:09}\n"));
        if keep == "first" {
            kept.entry(key).or_insert(i);
        } else {
            kept.insert(key, i);
        }
    }
    let mut expected: Vec<u64> = kept.into_values().collect();
    expected.sort_unstable();
    let step = format!("Type: Distinct, Config: {{ On: [key], Keep: {keep} }}");
    spill_case(dir.path(), &csv, &step);
    let written = run_spilling(dir.path(), engine, "spilled by key");
    let ids: Vec<u64> = written
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), expected.len());
    assert!(ids == expected, "not the {keep} row of each key, in order");
}

#[test]
fn a_distinct_keeping_first_past_its_memory_spills_and_stays_exact() {
    distinct_spills_and_stays_exact("first", "local");
}

#[test]
fn a_distinct_keeping_last_past_its_memory_spills_and_stays_exact() {
    distinct_spills_and_stays_exact("last", "local");
}

/// An `Aggregate` whose groups outgrow its share spills the rows of later groups by key and
/// still gives every group once, with exact figures, in key order or first-appearance order.
fn aggregate_spills_and_stays_exact(order: &str, engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,key\n");
    // key -> (first id, rows, sum of ids, even ids)
    let mut groups: std::collections::HashMap<u64, (u64, u64, u64, u64)> = Default::default();
    for i in 0..200_000u64 {
        // Mostly new groups, with repeats near and far: an early group keeps growing after the
        // overflow, in memory; a later one grows on disk.
        let key = if i % 3 == 0 { (i * 7) % 30_000 } else { i };
        csv.push_str(&format!("{i},key-{key:09}\n"));
        let g = groups.entry(key).or_insert((i, 0, 0, 0));
        g.1 += 1;
        g.2 += i;
        g.3 += u64::from(i % 2 == 0);
    }
    let mut expected: Vec<(String, u64, u64, u64, u64)> = groups
        .into_iter()
        .map(|(k, (first, rows, sum, even))| (format!("key-{k:09}"), first, rows, sum, even))
        .collect();
    match order {
        "keys" => expected.sort_by(|a, b| a.0.cmp(&b.0)),
        _ => expected.sort_by_key(|g| g.1),
    }
    let expected: Vec<String> = expected
        .iter()
        .map(|(k, first, rows, sum, even)| format!("{k},{first},{rows},{sum},{even}"))
        .collect();
    let step = format!(
        "Type: Aggregate, Config: {{ GroupBy: [key], Order: {order}, Columns: {{ first: \"first(id)\", \
         rows: \"count(*)\", total: \"sum(id)\", even: \"count(DISTINCT id) FILTER (WHERE id % 2 = 0)\" }} }}"
    );
    spill_case(dir.path(), &csv, &step);
    let written = run_spilling(dir.path(), engine, "spilled by key");
    let got: Vec<&str> = written.lines().skip(1).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "groups differ from the expected ones");
}

#[test]
fn an_aggregate_in_key_order_past_its_memory_spills_and_stays_exact() {
    aggregate_spills_and_stays_exact("keys", "local");
}

#[test]
fn an_aggregate_in_input_order_past_its_memory_spills_and_stays_exact() {
    aggregate_spills_and_stays_exact("input", "local");
}

/// The other engines drive the same stateful transforms, under the same share of the memory
/// limit: they spill as the local engine does and give the same rows.
#[cfg(feature = "distributed")]
#[test]
fn the_other_engines_spill_as_the_local_engine_does() {
    for engine in ["datafusion", "ballista"] {
        distinct_spills_and_stays_exact("last", engine);
        aggregate_spills_and_stays_exact("input", engine);
        let dir = tempfile::tempdir().unwrap();
        write_case(dir.path());
        let sorted = run_spilling(dir.path(), engine, "runs spilled");
        let keys: Vec<&str> = (sorted.lines().skip(1))
            .map(|l| l.split(',').nth(1).unwrap())
            .collect();
        assert_eq!(keys.len(), 300_000, "{engine}");
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "not sorted on {engine}"
        );
    }
}

#[test]
fn the_relational_transforms_agree_with_duckdb() {
    if !duckdb::available() {
        return;
    }
    let out = Command::new("python3")
        .arg(root().join("scripts/differential-relational"))
        .arg(env!("CARGO_BIN_EXE_flowengine"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
}

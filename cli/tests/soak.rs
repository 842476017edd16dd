//! The embedded use: 500 runs of the shipped example, back to back, in one process through the
//! library API. Resident memory and open file descriptors must not grow from the first runs to
//! the last (every thread, file, lock and staging file a run makes goes with it).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use flowengine_engine::{load_plan, LoadOptions};

const RUNS: usize = 500;
/// Runs before the baseline: allocator arenas, thread pools and caches settle in the first ones.
const WARM_UP: usize = 50;

/// `VmRSS` in KiB and the number of open file descriptors, from `/proc/self`.
fn rss_and_fds() -> (u64, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    (rss, fds)
}

#[test]
fn five_hundred_runs_in_one_process_leak_neither_memory_nor_files() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/customers");
    let out = tempfile::tempdir().unwrap();
    let registry = flowengine_plugins::builtin_registry();
    let options = LoadOptions {
        vars: vec![("OutDir".into(), out.path().display().to_string())],
        ..LoadOptions::default()
    };
    let never = AtomicBool::new(false);
    let mut baseline = (0, 0);
    for run in 0..RUNS {
        let plan = load_plan(&example.join("pipeline.yaml"), &options, &registry).unwrap();
        let outcome = plan.build().unwrap().run(&never);
        outcome.result.unwrap();
        if run + 1 == WARM_UP {
            baseline = rss_and_fds();
        }
    }
    let (rss, fds) = rss_and_fds();
    let (base_rss, base_fds) = baseline;
    assert_eq!(fds, base_fds, "open file descriptors grew over {RUNS} runs");
    // 10 % of the baseline, and at least 8 MiB for allocator noise in a small process.
    let allowed = (base_rss / 10).max(8 << 10);
    assert!(
        rss <= base_rss + allowed,
        "resident memory grew from {base_rss} KiB after {WARM_UP} runs to {rss} KiB after {RUNS}"
    );
    eprintln!("RSS {base_rss} KiB after {WARM_UP} runs, {rss} KiB after {RUNS}; {fds} open files");
}

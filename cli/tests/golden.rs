//! Golden cases: every folder under `testdata/cases/` and `examples/` is one test.
//!
//! A case folder holds `pipeline.yaml`, its inputs, and `expected/`:
//! - `cmd`: optional, the arguments (default `run pipeline.yaml`), whitespace-separated;
//! - `cwd`: optional, the folder (relative to the case) to run in;
//! - `out/`: never copied, so a local run of an example cannot hide its outputs;
//! - `expected/exit_code`: the exit code (default 0);
//! - `expected/stderr`: lines that must appear in stderr, in order, each as part of a line, after
//!   normalisation (timings masked, runs of spaces collapsed, the work folder shown as `<dir>`; for a
//!   failed run the row counters are dropped, since how far each node got before the failure reached
//!   it depends on timing);
//! - `expected/out/...`: every file the run created or changed, byte for byte; the set of such
//!   files must match exactly, so a stray temporary file fails the case;
//! - `expected/stdout`: optional, standard output exactly (the work folder shown as `<dir>`); bless
//!   writes it when the run wrote any;
//! - `expected/unordered`: optional, output paths whose lines are compared as sorted sets (fan-in
//!   interleaves batches in arrival order).
//! - `expected/readback/<output>.txt`: for every Parquet or Arrow IPC output, what another reader
//!   (the `parquet` and `arrow-ipc` crates) finds in it: types, layout and values as text
//!   (`support/readback.rs`), compared exactly;
//! - `expected/identical_to`: optional, another case folder (relative to this one) whose
//!   `expected/out/` must be byte-identical to this case's (e.g. J2 as a script and J2 native).
//!
//! The case runs in a copy of its folder, under a watchdog. `FLOWENGINE_BLESS=1 cargo test --test
//! golden` rewrites `expected/` from what the runs did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

#[path = "support/readback.rs"]
mod readback;

const WATCHDOG: Duration = Duration::from_secs(60);

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut trials = Vec::new();
    for group in ["testdata/cases", "examples"] {
        let Ok(dir) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        let mut cases: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("pipeline.yaml").is_file())
            .collect();
        cases.sort();
        for case in cases {
            let name = format!("{group}/{}", case.file_name().unwrap().to_string_lossy());
            let scripted = std::fs::read_to_string(case.join("pipeline.yaml"))
                .is_ok_and(|p| p.contains("JavaScriptTransform"));
            // Cases that print how scripts run are about that, and say it differently on boa.
            let explains = std::fs::read_to_string(case.join("cmd"))
                .is_ok_and(|c| c.contains("--explain") || c.contains("--verbose"));
            let scripted = scripted && !explains;
            if scripted && !bless() {
                // Every script case again with compiling off: boa must give the same results.
                let (name, case) = (format!("{name} (boa)"), case.clone());
                trials.push(Trial::test(name.clone(), move || {
                    run_case(&name, &case, Engine::Boa)
                }));
            }
            #[cfg(feature = "distributed")]
            if let Some(supported) = datafusion::runs(&case) {
                // Every case that runs on DataFusion again there, and as a Ballista job: the
                // same expectations.
                for (engine, label) in [
                    (Engine::DataFusion, "datafusion"),
                    (Engine::Ballista, "ballista"),
                ] {
                    let name = format!("{name} ({label})");
                    let trial = Trial::test(name.clone(), {
                        let case = case.clone();
                        move || run_case(&name, &case, engine)
                    });
                    trials.push(trial.with_ignored_flag(!supported || bless()));
                }
            }
            trials.push(Trial::test(name.clone(), move || {
                run_case(&name, &case, Engine::Default)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// How scripts run in a case.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    /// Compiled where they can be.
    Default,
    /// Always on boa (`FLOWENGINE_JS_COMPILE=0`).
    Boa,
    /// `run --engine datafusion`.
    #[cfg(feature = "distributed")]
    DataFusion,
    /// `run --engine ballista --tasks 3`, on a scheduler and an executor inside the process.
    #[cfg(feature = "distributed")]
    Ballista,
}

/// Which cases run again on `--engine datafusion` and `--engine ballista` (a build with the
/// `distributed` feature).
#[cfg(feature = "distributed")]
mod datafusion {
    use std::path::Path;

    use flowengine_engine::load::file::LoadOptions;

    /// `None` for a case that is not one run (another command, or a run about the local
    /// executor's live output), else whether the DataFusion engine supports its pipeline.
    pub fn runs(case: &Path) -> Option<bool> {
        let cmd = std::fs::read_to_string(case.join("cmd"))
            .unwrap_or_else(|_| "run pipeline.yaml".into());
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let local_only = [
            "--verbose",
            "-v",
            "--json",
            "--progress",
            "--monitor",
            "--metrics",
            "--metrics-addr",
        ];
        let pipeline = match args.as_slice() {
            ["run", pipeline, ..] if !pipeline.starts_with('-') => pipeline,
            _ => return None,
        };
        if args.iter().any(|a| local_only.contains(a)) {
            return None;
        }
        let vars = args
            .windows(2)
            .filter(|w| w[0] == "--var")
            .filter_map(|w| w[1].split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let opts = LoadOptions {
            vars,
            ..LoadOptions::default()
        };
        let registry = flowengine_plugins::builtin_registry();
        let plan =
            flowengine_engine::plan::load_plan(&case.join(pipeline), &opts, &registry).ok()?;
        Some(flowengine_distributed::check(&plan).is_ok())
    }
}

fn bless() -> bool {
    std::env::var_os("FLOWENGINE_BLESS").is_some_and(|v| v != "0")
}

fn run_case(name: &str, case: &Path, engine: Engine) -> Result<(), Failed> {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("golden")
        .join(
            name.replace(" (boa)", "@boa")
                .replace(" (datafusion)", "@datafusion")
                .replace(" (ballista)", "@ballista"),
        );
    let _ = std::fs::remove_dir_all(&work);
    let skipped = ["expected", "cmd", "cwd", "out"].map(|n| case.join(n));
    copy_tree(case, &work, &|p| skipped.iter().any(|s| s == p))?;
    let before = snapshot(&work)?;

    let cmd =
        std::fs::read_to_string(case.join("cmd")).unwrap_or_else(|_| "run pipeline.yaml".into());
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let cwd = read_opt(&case.join("cwd")).map_or_else(|| work.clone(), |c| work.join(c.trim()));
    let (code, stderr, stdout) = run_with_watchdog(&work, &cwd, &args, engine)?;
    let stdout = stdout.replace(&*work.to_string_lossy(), "<dir>");
    let mut stderr = normalize(&stderr, &work);
    if code != 0 {
        stderr.retain(|line| !is_counter_line(line));
    }

    let after = snapshot(&work)?;
    let outputs: BTreeMap<String, Vec<u8>> = after
        .into_iter()
        .filter(|(path, bytes)| before.get(path) != Some(bytes))
        .collect();

    let readbacks = read_back(&work, &outputs);
    let expected = case.join("expected");
    if bless() {
        write_expectations(&expected, code, &stderr, &outputs)?;
        if stdout.is_empty() {
            let _ = std::fs::remove_file(expected.join("stdout"));
        } else {
            std::fs::write(expected.join("stdout"), &stdout).map_err(|e| e.to_string())?;
        }
        return write_tree(&expected.join("readback"), &readbacks);
    }
    let want_code: i32 = read_opt(&expected.join("exit_code"))
        .map(|s| s.trim().parse().expect("exit_code holds a number"))
        .unwrap_or(0);
    let mut problems = Vec::new();
    if code != want_code {
        problems.push(format!("exit code {code}, expected {want_code}"));
    }
    #[cfg(feature = "distributed")]
    let (stderr, split) = match engine {
        Engine::Ballista => (stderr.iter().map(|l| mask_batches(l)).collect(), true),
        _ => (stderr, false),
    };
    #[cfg(not(feature = "distributed"))]
    let split = false;
    if let Some(want) = read_opt(&expected.join("stderr")) {
        let want = match split {
            true => want.lines().map(|l| mask_batches(l) + "\n").collect(),
            false => want,
        };
        if let Err(missing) = contains_in_order(&stderr, &want) {
            problems.push(format!("stderr lacks (in order): {missing:?}"));
        }
    }
    if let Some(want) = read_opt(&expected.join("stdout")) {
        if want != stdout {
            problems.push(format!(
                "stdout differs\n{}",
                diff(want.as_bytes(), stdout.as_bytes())
            ));
        }
    }
    let unordered: Vec<String> = read_opt(&expected.join("unordered"))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let want_out = snapshot(&expected.join("out")).unwrap_or_default();
    for (path, want) in &want_out {
        match outputs.get(path) {
            None => problems.push(format!("output {path} was not written")),
            Some(got) if unordered.contains(path) => {
                if sorted_lines(got) != sorted_lines(want) {
                    problems.push(format!(
                        "output {path} differs (as a set of lines)\n{}",
                        diff(want, got)
                    ));
                }
            }
            Some(got) if got != want => {
                problems.push(format!("output {path} differs\n{}", diff(want, got)))
            }
            Some(_) => {}
        }
    }
    for path in outputs.keys().filter(|p| !want_out.contains_key(*p)) {
        problems.push(format!("unexpected output file {path}"));
    }
    let want_readback = snapshot(&expected.join("readback")).unwrap_or_default();
    for (path, got) in &readbacks {
        match want_readback.get(path) {
            None => problems.push(format!("no expected/readback/{path} (bless to write it)")),
            Some(want) if want != got => {
                problems.push(format!("readback/{path} differs\n{}", diff(want, got)))
            }
            Some(_) => {}
        }
    }
    for path in want_readback.keys().filter(|p| !readbacks.contains_key(*p)) {
        problems.push(format!("expected/readback/{path} has no output to read"));
    }
    if let Some(other) = read_opt(&expected.join("identical_to")) {
        let theirs = snapshot(&case.join(other.trim()).join("expected/out"))?;
        if theirs != want_out {
            problems.push(format!(
                "expected/out differs from that of {} (expected/identical_to)",
                other.trim()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- stderr ---\n{}",
            problems.join("\n"),
            stderr.join("\n")
        )
        .into())
    }
}

/// Cases that run as one Ballista task: a script's log lines come from the tasks as they run, so
/// three tasks interleave them, and its rate limit is per task, so three tasks pass more of a
/// flood than one run does; a script's globals live in each task's engine, so a count kept in one
/// starts again in each task (as it does in each thread of a local run on more rows).
#[cfg(feature = "distributed")]
const ONE_TASK: &[&str] = &[
    "js_utils@",
    "js_log_flood_is_rate_limited@",
    "js_row_timeout_rejects_the_slow_row@",
];

/// Run flowengine with `args` in `cwd`: its exit code, standard error and standard output.
fn run_with_watchdog(
    work: &Path,
    cwd: &Path,
    args: &[&str],
    engine: Engine,
) -> Result<(i32, String, String), Failed> {
    let stderr_path = work.with_extension("stderr");
    let stderr_file = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
    let stdout_path = work.with_extension("stdout");
    let stdout_file = std::fs::File::create(&stdout_path).map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowengine"));
    if engine == Engine::Boa {
        command.env("FLOWENGINE_JS_COMPILE", "0");
    }
    command.args(args);
    #[cfg(feature = "distributed")]
    match engine {
        Engine::DataFusion => {
            command.args(["--engine", "datafusion"]);
        }
        Engine::Ballista => {
            // Cut into three tasks where the source can be: the same expectations hold, but for
            // the batch counts (`mask_batches`) and the cases of `ONE_TASK`.
            let case = work.file_name().map(|n| n.to_string_lossy().into_owned());
            let one = case.is_some_and(|c| ONE_TASK.iter().any(|o| c.starts_with(o)));
            let tasks = if one { "1" } else { "3" };
            command.args(["--engine", "ballista", "--tasks", tasks]);
        }
        _ => {}
    }
    let mut child = command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout_file)
        .stderr(stderr_file)
        .spawn()
        .map_err(|e| format!("cannot start flowengine: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            return Err(format!("hung: still running after {WATCHDOG:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = std::fs::read_to_string(&stderr_path).map_err(|e| e.to_string())?;
    let stdout = std::fs::read(&stdout_path).map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    // A signal (crash) has no exit code: report it as such rather than as a number.
    let code = status
        .code()
        .ok_or_else(|| format!("killed by a signal: {status}\n{stderr}"))?;
    Ok((code, stderr, stdout))
}

/// Mask what varies between runs: timings, rates, alignment, the work folder.
fn normalize(stderr: &str, work: &Path) -> Vec<String> {
    let work = work.to_string_lossy();
    stderr
        .lines()
        .map(|line| {
            let line = line.replace(&*work, "<dir>");
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let mut out: Vec<String> = Vec::with_capacity(tokens.len());
            let mut i = 0;
            while i < tokens.len() {
                let number = tokens[i].trim_start_matches('(').replace(',', "");
                let next = tokens.get(i + 1).copied().unwrap_or("");
                let unit = next.trim_end_matches([',', ';', ')']);
                if number.parse::<f64>().is_ok() && matches!(unit, "ms" | "s" | "rows/s") {
                    let open = if tokens[i].starts_with('(') { "(" } else { "" };
                    let what = if unit == "rows/s" { "rate" } else { "time" };
                    out.push(format!("{open}<{what}>{}", &next[unit.len()..]));
                    i += 2;
                } else {
                    out.push(tokens[i].to_string());
                    i += 1;
                }
            }
            let indent = if line.starts_with(' ') { "  " } else { "" };
            format!("{indent}{}", out.join(" "))
        })
        .collect()
}

/// A node's line of the summary table with its batch count masked: a run split into tasks reads
/// its rows in more batches than one run does.
fn mask_batches(line: &str) -> String {
    let mut tokens: Vec<&str> = line.split_whitespace().collect();
    let node = matches!(tokens.get(1), Some(&("source" | "transform" | "sink")));
    if !is_counter_line(line) || !node || tokens.len() < 7 {
        return line.to_string();
    }
    tokens[6] = "<batches>";
    format!("  {}", tokens.join(" "))
}

/// The summary lines holding row counts: the totals line and the node table.
fn is_counter_line(line: &str) -> bool {
    let mut tokens = line.split_whitespace();
    let first = tokens.next().unwrap_or("");
    let second = tokens.next().unwrap_or("");
    line.starts_with("  ")
        && (first == "setup"
            || first == "rejected"
            || (first == "node" && second == "role")
            || matches!(second, "source" | "transform" | "sink"))
}

fn contains_in_order(actual: &[String], want: &str) -> Result<(), String> {
    let mut lines = actual.iter();
    for w in want.lines().filter(|l| !l.trim().is_empty()) {
        if !lines.any(|a| a.contains(w)) {
            return Err(w.to_string());
        }
    }
    Ok(())
}

fn write_expectations(
    expected: &Path,
    code: i32,
    stderr: &[String],
    outputs: &BTreeMap<String, Vec<u8>>,
) -> Result<(), Failed> {
    let _ = std::fs::remove_dir_all(expected.join("out"));
    std::fs::create_dir_all(expected).map_err(|e| e.to_string())?;
    if code == 0 {
        let _ = std::fs::remove_file(expected.join("exit_code"));
    } else {
        std::fs::write(expected.join("exit_code"), format!("{code}\n"))
            .map_err(|e| e.to_string())?;
    }
    std::fs::write(expected.join("stderr"), stderr.join("\n") + "\n").map_err(|e| e.to_string())?;
    for (path, bytes) in outputs {
        let target = expected.join("out").join(path);
        std::fs::create_dir_all(target.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(target, bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The text [`readback::describe`] gives for each Parquet or Arrow output, keyed `<path>.txt`; a
/// file no reader can open is described by its error, so the comparison shows it.
fn read_back(work: &Path, outputs: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    outputs
        .keys()
        .filter_map(|path| {
            let text = readback::describe(&work.join(path))?;
            let text = text.unwrap_or_else(|e| format!("cannot read back: {e}\n"));
            Some((format!("{path}.txt"), text.into_bytes()))
        })
        .collect()
}

/// Replace `dir` with exactly `files` (none: no folder).
fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), Failed> {
    let _ = std::fs::remove_dir_all(dir);
    for (path, bytes) in files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(target, bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Every file under `dir`, by `/`-separated relative path.
fn snapshot(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, Failed> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(rel, std::fs::read(&path).map_err(|e| e.to_string())?);
            }
        }
    }
    Ok(files)
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(), Failed> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if skip(&path) {
            continue;
        }
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target, skip)?;
        } else {
            std::fs::copy(&path, &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn sorted_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.sort();
    lines
}

/// The first differing line, enough to see what went wrong.
fn diff(want: &[u8], got: &[u8]) -> String {
    let (want, got) = (String::from_utf8_lossy(want), String::from_utf8_lossy(got));
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    format!(
        "  first difference at line {}:\n  expected: {:?}\n  actual:   {:?}\n  ({} lines expected, {} actual)",
        at + 1,
        w.get(at).unwrap_or(&"<end>"),
        g.get(at).unwrap_or(&"<end>"),
        w.len(),
        g.len()
    )
}

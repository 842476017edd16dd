//! The commands around `run` on the shipped example: its `Tests:` pass, and `preview` and `graph`
//! work on it (golden cases cover their output on cases of their own).

use std::path::Path;
use std::process::Command;

fn flowengine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap()
}

#[test]
fn the_shipped_example_passes_its_tests_and_previews() {
    let example = "examples/customers/pipeline.yaml";
    let tested = flowengine(&["test", example]);
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    let previewed = flowengine(&["preview", example, "--rows", "3", "--node", "write"]);
    let stdout = String::from_utf8_lossy(&previewed.stdout);
    assert!(previewed.status.success(), "{stdout}");
    assert!(
        stdout.contains("== write (sink DelimitedSink) receives"),
        "{stdout}"
    );
    for format in ["text", "dot", "mermaid"] {
        assert!(flowengine(&["graph", example, "--format", format])
            .status
            .success());
    }
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/customers/out")
            .exists(),
        "preview and test write nothing"
    );
}

/// `GET path` from `addr` with an HTTP client; an error status is an error.
fn http_get(addr: &str, path: &str) -> Result<String, ureq::Error> {
    ureq::get(format!("http://{addr}{path}"))
        .call()?
        .body_mut()
        .read_to_string()
}

/// The samples of a Prometheus text exposition, parsed as a scraper does.
fn scrape(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap().samples
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        other => panic!("no sample {name} {labels:?}: {other:?}"),
    }
}

#[test]
fn metrics_are_served_while_the_run_lasts_and_written_at_its_end() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "Pipeline:\n  Name: watched\n  Plugins:\n    - { Name: read, Type: DelimitedSource, Config: \
         { FilePath: \"-\", OutputSchema: { Columns: [ { Name: id, Type: int64 } ] } } }\n    - { \
         Name: write, Type: NullSink }\n  Connections:\n    - { From: read, To: write }\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args([
            "run",
            "p.yaml",
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics",
            "m.prom",
        ])
        .args(["--monitor", "50ms", "--progress", "never"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("metrics: serving http://")
        .and_then(|rest| rest.split_once("/metrics"))
        .map(|(addr, _)| addr.to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // The run is waiting for its input: the endpoint answers meanwhile.
    let live = scrape(&http_get(&addr, "/metrics").unwrap());
    let watched = [("pipeline", "watched")];
    assert_eq!(sample(&live, "flowengine_rows_read_total", &watched), 0.0);
    assert_eq!(http_get(&addr, "/healthz").unwrap(), "ok\n");
    assert!(matches!(
        http_get(&addr, "/nothing"),
        Err(ureq::Error::StatusCode(404))
    ));
    // Meanwhile the monitor prints a line per interval, and rewrites the metrics file.
    loop {
        line.clear();
        stderr.read_line(&mut line).unwrap();
        if line.starts_with("monitor: ") {
            break;
        }
    }
    assert!(
        line.contains("0 rows read (0/s), 0 written, 0 rejected"),
        "{line}"
    );
    let interval = std::fs::read_to_string(dir.path().join("m.prom")).unwrap();
    assert!(interval.contains("flowengine_rows_read_total{pipeline=\"watched\"} 0"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"id\n1\n2\n3\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let written = scrape(&std::fs::read_to_string(dir.path().join("m.prom")).unwrap());
    assert_eq!(
        sample(&written, "flowengine_rows_read_total", &watched),
        3.0
    );
    let sink = [("node", "write"), ("role", "sink"), ("type", "NullSink")];
    assert_eq!(
        sample(&written, "flowengine_node_rows_in_total", &sink),
        3.0
    );
    let source = [("node", "read")];
    assert!(sample(&written, "flowengine_node_bytes_out_total", &source) > 0.0);
    assert_eq!(sample(&written, "flowengine_run_succeeded", &watched), 1.0);
    assert!(sample(&written, "flowengine_peak_rss_bytes", &watched) > 0.0);
    // The channels are known once the sources are open, so only at the end here.
    let edge = [("from", "read"), ("to", "write")];
    assert_eq!(
        sample(&written, "flowengine_channel_capacity_batches", &edge),
        4.0
    );
    assert_eq!(
        sample(&written, "flowengine_channel_full_total", &edge),
        0.0
    );
}

#[test]
fn a_second_run_writing_the_same_output_fails_at_once_naming_the_first() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "Pipeline:\n  Name: locked\n  Plugins:\n    - { Name: read, Type: DelimitedSource, Config: \
         { FilePath: \"-\", HasHeaders: false, OutputSchema: { Columns: [ { Name: id, Type: \
         int64 } ] } } }\n    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv \
         } }\n  Connections:\n    - { From: read, To: write }\n",
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_flowengine"))
            .args(["run", "p.yaml"])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = run();
    let mut input = first.stdin.take().unwrap();
    // The first bytes let the source open (it sniffs four for compression); the run then waits
    // for more, holding its output.
    input.write_all(b"1\n2\n").unwrap();
    input.flush().unwrap();
    let lock = dir.path().join(".out.csv.lock");
    let started = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the first run never locked its output"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = run().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let holder = format!(
        "out.csv is being written by another run (process {})",
        first.id()
    );
    assert!(stderr.contains(&holder), "{stderr}");
    input.write_all(b"3\n").unwrap();
    drop(input);
    assert!(first.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "id\n1\n2\n3\n"
    );
    assert!(!lock.exists(), "the lock file goes with the lock");
    let mut third = run();
    drop(third.stdin.take());
    assert!(third.wait().unwrap().success(), "the output is free again");
}

#[test]
fn a_run_whose_output_cannot_fit_is_refused_before_rows_move() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "id\n1\n").unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "Pipeline:\n  Name: full\n  Plugins:\n    - { Name: read, Type: DelimitedSource, Config: \
         { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int64 } ] } } }\n    \
         - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv, OutputMode: append \
         } }\n  Connections:\n    - { From: read, To: write }\n",
    )
    .unwrap();
    // Appending copies the existing file first: 8 TiB (sparse, so it takes no room here) cannot
    // be copied on this disk.
    let out = std::fs::File::create(dir.path().join("out.csv")).unwrap();
    out.set_len(8 << 40).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: not enough disk space: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("out.csv need about 8388608.0 MiB"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(the files appended to are copied first)"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-space-check"), "{stderr}");
    assert_eq!(
        out.metadata().unwrap().len(),
        8 << 40,
        "the output is untouched"
    );
    let staged = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        staged, 3,
        "nothing staged beside in.csv, p.yaml and out.csv"
    );
}

#[test]
fn outputs_on_one_file_system_are_added_up_and_an_estimate_only_warns() {
    use flowengine_engine::plan::space;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        format!("id\n{}", "1\n".repeat(50_000)),
    )
    .unwrap();
    let text = "Pipeline:\n  Name: two\n  Plugins:\n    - { Name: read, Type: DelimitedSource, \
                Config: { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int64 } \
                ] } } }\n    - { Name: csv, Type: DelimitedSink, Config: { FilePath: a/out.csv } \
                }\n    - { Name: json, Type: JsonLinesSink, Config: { FilePath: out.jsonl } }\n  \
                Connections:\n    - { From: read, To: csv }\n    - { From: read, To: json }\n";
    let registry = flowengine_plugins::builtin_registry();
    let file = dir.path().join("p.yaml");
    let options = flowengine_engine::LoadOptions::default();
    let plan = flowengine_engine::plan_text(text, &file, &options, &registry).unwrap();
    // 100,003 input bytes: about as much as CSV, twice as JSON Lines, on one file system.
    let roomy = space::check(&plan, &|_| Some((300_009, 7)));
    assert!(roomy.is_empty(), "{roomy:?}");
    let short = space::check(&plan, &|_| Some((300_008, 7)));
    assert_eq!(short.len(), 1);
    assert_eq!(
        short[0].outputs.len(),
        2,
        "both outputs, `a/` not made yet included"
    );
    assert!(!short[0].certain(), "an estimate only warns");
    // On two file systems, each has room for its own (once `a/` exists, it can be asked).
    std::fs::create_dir(dir.path().join("a")).unwrap();
    let apart = space::check(&plan, &|d| Some((200_006, d.ends_with("a") as u64)));
    assert!(apart.is_empty(), "{apart:?}");
}

#[test]
fn a_timeout_also_ends_a_run_waiting_for_input_that_never_comes() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out.csv"), "id\n0\n").unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "Pipeline:\n  Name: waiting\n  Settings: { Timeout: 300ms }\n  Plugins:\n    - { Name: \
         read, Type: DelimitedSource, Config: { FilePath: \"-\", OutputSchema: { Columns: [ { \
         Name: id, Type: int64 } ] } } }\n    - { Name: write, Type: DelimitedSink, Config: { \
         FilePath: out.csv } }\n  Connections:\n    - { From: read, To: write }\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Standard input stays open and empty: the source waits on its first read.
    let input = child.stdin.take().unwrap();
    let output = child.wait_with_output().unwrap();
    drop(input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("longer than `Settings.Timeout` (300ms)"),
        "{stderr}"
    );
    assert!(
        started.elapsed().as_secs() < 20,
        "stopped after the grace, not hung"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left {left:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "id\n0\n"
    );
}

/// `--engine datafusion` and `--engine ballista` in either build: a default build says how to get
/// the engines; a `distributed` build refuses live monitoring, which they cannot give. Both exit 1
/// before any file is opened.
#[test]
fn other_engines_say_what_they_need() {
    let example = "examples/customers/pipeline.yaml";
    for engine in ["datafusion", "ballista"] {
        let (args, expected) = if cfg!(feature = "distributed") {
            (
                vec!["run", example, "--engine", engine, "--monitor", "1s"],
                format!("--monitor is not supported with `--engine {engine}`"),
            )
        } else {
            (
                vec!["run", example, "--engine", engine],
                format!(
                    "built without DataFusion and Ballista; build it with \
                     `cargo build --release -p flowengine-cli --features distributed` for `--engine {engine}`"
                ),
            )
        };
        let out = flowengine(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
    }
    if cfg!(feature = "distributed") {
        // Nothing listens on port 1: a run error (2), said plainly, with nothing written.
        let j2 = [
            "run",
            "benches/pipelines/J2.yaml",
            "--var",
            "Input=examples/customers/data/customers.csv",
            "--var",
            "Output=examples/customers/out/j2.csv",
            "--engine",
            "ballista",
            "--scheduler",
            "127.0.0.1:1",
        ];
        let out = flowengine(&j2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr
                .contains("cannot reach the Ballista scheduler at 127.0.0.1:1 (Connection refused"),
            "{stderr}"
        );
    }
    for option in [["--scheduler", "127.0.0.1:1"], ["--tasks", "4"]] {
        let out = flowengine(&["run", example, option[0], option[1]]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let refusal = format!("{} is for `--engine ballista`", option[0]);
        assert!(stderr.contains(&refusal), "{stderr}");
    }
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/customers/out")
        .exists());
}

//! `flowengine cluster` as real processes on 127.0.0.1: a scheduler and two executors run J2 on a
//! million rows, cut into four tasks, with the local engine's output and counts; and an executor
//! killed in the middle of a job leaves its tasks to another executor, with the same output; and
//! Ctrl-C on the client stops the tasks on the executors, of a split run or a one-task job,
//! committing nothing.
#![cfg(feature = "distributed")]

use std::io::{BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const J2: &str = "benches/pipelines/J2.yaml";
const ROWS: u64 = 1_000_000;

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn flowengine() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowengine"));
    command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    command
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, process: &mut Process) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("a cluster process exited with {status} before listening on {port}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn scheduler(port: u16, executor_timeout: u64) -> Process {
    let mut process = Process(
        flowengine()
            .args(["cluster", "scheduler", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--executor-timeout", &executor_timeout.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("a scheduler"),
    );
    wait_for_port(port, &mut process);
    process
}

fn executor(scheduler: u16, work: &Path) -> Process {
    let (port, grpc) = (free_port(), free_port());
    let dir = work.join(format!("executor-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut process = Process(
        flowengine()
            .args(["cluster", "executor", "--scheduler"])
            .arg(format!("127.0.0.1:{scheduler}"))
            .args([
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc.to_string(),
            ])
            .args(["--slots", "1", "--heartbeat", "1", "--work-dir"])
            .arg(&dir)
            .stderr(Stdio::null())
            .spawn()
            .expect("an executor"),
    );
    wait_for_port(port, &mut process);
    process
}

/// A J2 input of [`ROWS`] rows in the benchmark's 12 columns, with quoted notes (commas, quotes,
/// line breaks) and empty ones, made once per build and shared by the tests.
fn input() -> PathBuf {
    static INPUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INPUT.get_or_init(|| make_input(ROWS)).clone()
}

fn make_input(rows: u64) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-{rows}.csv"));
    if path.exists() {
        return path;
    }
    let partial = path.with_extension("partial");
    let mut out = BufWriter::new(std::fs::File::create(&partial).unwrap());
    writeln!(out, "id,customer_id,first_name,last_name,email,age,country,signup_date,account_value,is_active,score,notes").unwrap();
    let names = ["Ann", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus"];
    let countries = ["US", "DE", "FR", "JP", "BR"];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for id in 0..rows {
        // xorshift: the same rows on every machine.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pick = |k: u64, n: usize| ((x >> k) as usize) % n;
        let (first, last) = (names[pick(3, 7)], names[pick(9, 7)]);
        let notes = match x % 10 {
            0 => String::new(),
            1 => "\"said \"\"hi\"\", then left\"".into(),
            2 => "\"two\nlines\"".into(),
            _ => format!("note {}", x % 1000),
        };
        writeln!(
            out,
            "{id},{},{first},{last},{}.{}@example.com,{},{},20{:02}-{:02}-{:02},{}.{:02},{},{}.{},{notes}",
            x % 2_000_000_000,
            first.to_lowercase(),
            last.to_lowercase(),
            18 + x % 70,
            countries[pick(20, 5)],
            x % 25,
            1 + (x >> 8) % 12,
            1 + (x >> 16) % 28,
            (x >> 24) % 100_000,
            (x >> 40) % 100,
            !(x >> 5).is_multiple_of(3),
            (x >> 30) % 100,
            (x >> 44) % 100_000,
        )
        .unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

fn run_j2(input: &Path, output: &Path, engine: &[String]) -> Output {
    flowengine()
        .args(["run", J2, "--json", "--var"])
        .arg(format!("Input={}", input.display()))
        .arg("--var")
        .arg(format!("Output={}", output.display()))
        .args(engine)
        .output()
        .unwrap()
}

/// The counts of a `--json` summary, without its timings.
fn counts(out: &Output) -> Vec<(String, u64, u64, u64, u64)> {
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let count = |k: &str| n[k].as_u64().unwrap();
            (
                n["name"].as_str().unwrap().to_string(),
                count("rows_in"),
                count("rows_out"),
                count("rows_filtered"),
                count("rows_rejected"),
            )
        })
        .collect()
}

fn work_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn local_run(input: &Path, work: &Path) -> (PathBuf, Output) {
    let output = work.join("local.csv");
    let out = run_j2(input, &output, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (output, out)
}

/// `out` succeeded with the local run's counts and wrote the local run's bytes to `output`.
fn assert_as_local(out: &Output, output: &Path, local: &Output, expected: &Path) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(counts(out), counts(local));
    assert!(
        std::fs::read(output).unwrap() == std::fs::read(expected).unwrap(),
        "{} differs from the local engine's output",
        output.display()
    );
}

#[test]
fn a_scheduler_and_two_executors_run_j2_as_the_local_engine_does() {
    let work = work_dir("cluster-j2");
    let input = input();
    let (expected, local) = local_run(&input, &work);
    let port = free_port();
    let _scheduler = scheduler(port, 180);
    let _executors = [executor(port, &work), executor(port, &work)];
    let output = work.join("cluster.csv");
    let ballista = [
        "--engine".into(),
        "ballista".into(),
        "--scheduler".into(),
        format!("127.0.0.1:{port}"),
        "--tasks".into(),
        "4".into(),
    ];
    let out = run_j2(&input, &output, &ballista);
    assert_as_local(&out, &output, &local, &expected);
    assert!(counts(&out)[0].1 == ROWS, "{:?}", counts(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = summary["nodes"][0]["notes"].to_string();
    assert!(notes.contains("read by 4 tasks"), "{notes}");
}

/// Of the two outcomes a lost executor may have (the job completes as if nothing happened, or fails
/// clearly with no output), Ballista gives the first: the scheduler takes the executor as lost
/// after `--executor-timeout`, runs its task again on another, and the job completes with the
/// local engine's output and counts.
#[test]
fn an_executor_killed_mid_job_leaves_the_job_to_another() {
    let work = work_dir("cluster-kill");
    let input = input();
    let (expected, local) = local_run(&input, &work);
    let port = free_port();
    let _scheduler = scheduler(port, 3);
    let mut first = executor(port, &work);
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let output = out_dir.join("cluster.csv");
    let client = start_job(port, &input, &output, "3");
    first.0.kill().unwrap();
    let _ = first.0.wait();
    assert!(!output.exists(), "the job committed before the kill");
    let _second = executor(port, &work);
    let out = client.wait_with_output().unwrap();
    assert_as_local(&out, &output, &local, &expected);
    // The parts, and what the killed attempts had staged, went with the parts directory.
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["cluster.csv"]);
}

/// J2 on `input` in `tasks` tasks on the cluster at `port`, once they are running: one of them has
/// staged a part in the parts directory the client made next to `output` (or, for one task, its
/// sink has staged the output).
fn start_job(port: u16, input: &Path, output: &Path, tasks: &str) -> Child {
    let client = flowengine()
        .args([
            "run", J2, "--json", "--engine", "ballista", "--tasks", tasks,
        ])
        .arg("--scheduler")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--var")
        .arg(format!("Input={}", input.display()))
        .arg("--var")
        .arg(format!("Output={}", output.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !staged(output.parent().unwrap(), tasks == "1") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    client
}

/// Whether a task has staged a part in a parts directory in `dir` (or, for `one` task, its sink
/// has staged its output there: the client of a split run stages the sink itself).
fn staged(dir: &Path, one: bool) -> bool {
    let entries = |d: &Path| std::fs::read_dir(d).into_iter().flatten().flatten();
    entries(dir).any(|e| match e.path().is_dir() {
        true => !one && entries(&e.path()).next().is_some(),
        false => one && e.file_name().to_string_lossy().ends_with(".tmp"),
    })
}

/// Ctrl-C on the client of a remote cluster reaches the tasks, which stop before the end of their
/// input: a split run's through its parts directory, a one-task job's through a control directory
/// of its own. The run fails as an interrupted local run does, and nothing is committed or left.
#[test]
fn ctrl_c_on_the_client_stops_the_tasks_on_the_cluster() {
    let work = work_dir("cluster-cancel");
    let input = input();
    let port = free_port();
    let _scheduler = scheduler(port, 180);
    let _executor = executor(port, &work);
    for tasks in ["3", "1"] {
        let out_dir = work.join(format!("out-{tasks}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let output = out_dir.join("cluster.csv");
        let client = start_job(port, &input, &output, tasks);
        let interrupted = Command::new("kill")
            .args(["-INT", &client.id().to_string()])
            .status()
            .unwrap();
        assert!(interrupted.success());
        let out = client.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tasks} tasks: {stderr}");
        assert!(
            stderr.contains("interrupted; no output was changed"),
            "{tasks} tasks: {stderr}"
        );
        let read = counts(&out)[0].1;
        assert!(read < ROWS, "{tasks} tasks read all {read} rows");
        assert!(!output.exists(), "an interrupted run committed its output");
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "{tasks} tasks left {left:?}");
    }
}

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

/// `GET path` over HTTP/1.1 on `addr`: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
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
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let sample = body
        .lines()
        .find(|l| l.starts_with("flowengine_rows_read_total{pipeline=\"watched\"} "))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(sample.rsplit(' ').next().unwrap().parse::<u64>().is_ok());
    assert!(body.contains("# TYPE flowengine_rows_read_total counter"));
    assert_eq!(
        http_get(&addr, "/healthz"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert_eq!(http_get(&addr, "/nothing").0, "HTTP/1.1 404 Not Found");
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
    let written = std::fs::read_to_string(dir.path().join("m.prom")).unwrap();
    assert!(
        written.contains("flowengine_rows_read_total{pipeline=\"watched\"} 3"),
        "{written}"
    );
    assert!(written.contains(
        "flowengine_node_rows_in_total{pipeline=\"watched\",node=\"write\",role=\"sink\",type=\"NullSink\"} 3"
    ));
    assert!(written.contains("flowengine_run_succeeded{pipeline=\"watched\"} 1"));
    assert!(written.contains(
        "flowengine_channel_capacity_batches{pipeline=\"watched\",from=\"read\",to=\"write\"} "
    ));
    assert!(written.contains("# TYPE flowengine_channel_full_total counter"));
    // Every sample line parses as `name{labels} value`.
    for sample in written.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = sample.rsplit_once(' ').unwrap();
        assert!(
            series.ends_with('}') && value.parse::<f64>().is_ok(),
            "{sample}"
        );
    }
}

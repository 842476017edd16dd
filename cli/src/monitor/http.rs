//! `--metrics-addr`: `/metrics` and `/healthz` over HTTP/1.1, one request per connection, on the
//! thread that watches the run (a scraper asks every few seconds; no server framework needed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flowengine_engine::metrics::Progress;

use super::{bytes_read_by_process, prometheus, Seen, Watch};

/// Serve `/metrics` (the live counters) and `/healthz` on `listener` until `done`.
pub fn serve(listener: &TcpListener, watch: &Watch, progress: &Progress, done: &AtomicBool) {
    let started = Instant::now();
    let base = bytes_read_by_process();
    let _ = listener.set_nonblocking(true);
    while !done.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let seen = Seen::now(progress, started, base, watch.total());
                let body = prometheus::live(&watch.pipeline, &seen);
                let _ = answer(stream, &body);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::park_timeout(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Read one HTTP request from `stream` and answer it.
fn answer(mut stream: TcpStream, metrics: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 << 10 {
        match stream.read(&mut buf)? {
            0 => break,
            n => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = match target {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.to_string()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Bind `addr` for `--metrics-addr`.
pub fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("`--metrics-addr {addr}`: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, local))
}

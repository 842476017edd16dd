//! Watching a run: a status line on a terminal (`--progress`), a line per interval (`--monitor`),
//! Prometheus metrics in a file (`--metrics`) and over HTTP (`--metrics-addr`).
//!
//! While the run goes on, these read the executor's live counters ([`Progress`]: rows read,
//! rejected and written); at its end, `--metrics` is rewritten from the summary, node by node.

mod http;
mod prometheus;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flowengine_engine::metrics::{group, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// When the status line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// On a terminal only.
    Auto,
    /// Always (on stderr).
    Always,
    /// Never.
    Never,
}

/// What to watch a run with.
#[derive(Debug, Clone)]
pub struct Watch {
    pub progress: ProgressMode,
    pub monitor: Option<Duration>,
    pub metrics: Option<PathBuf>,
    pub pipeline: String,
    /// The size of the input files, summed (0 when all is read from standard input).
    pub input_bytes: u64,
}

impl Watch {
    /// The input's size, when there is one to show progress against.
    fn total(&self) -> Option<u64> {
        (self.input_bytes > 0).then_some(self.input_bytes)
    }

    /// Whether [`watch`] has anything to do.
    pub fn wanted(&self) -> bool {
        self.bar() || self.monitor.is_some()
    }

    /// Whether the progress bar shows.
    fn bar(&self) -> bool {
        match self.progress {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        }
    }
}

/// `5s`, `500ms`, `2m` or a number of seconds, from 10ms to a day.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = flowengine_engine::load::config::parse_duration(s)
        .ok_or_else(|| format!("expected a duration such as 5s or 500ms, found {s:?}"))?;
    if !(Duration::from_millis(10)..=Duration::from_secs(86_400)).contains(&interval) {
        return Err(format!("{s:?} is out of range (10ms to 24h)"));
    }
    Ok(interval)
}

/// Bytes this process has read so far through `read`/`pread` (Linux `/proc/self/io` `rchar`):
/// the sources' reads, compressed bytes for compressed files, standard input included, at no
/// cost to the readers. Spill files read back count too, hence the cap at the total.
fn bytes_read_by_process() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let line = io.lines().find(|l| l.starts_with("rchar:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A snapshot of the run for a status line or the live metrics.
struct Seen<'a> {
    progress: &'a Progress,
    elapsed: Duration,
    /// Input bytes read since the run started.
    bytes: Option<u64>,
    input_bytes: Option<u64>,
}

impl<'a> Seen<'a> {
    /// The run as it is now; `base` is what the process had read when it started.
    fn now(
        progress: &'a Progress,
        started: Instant,
        base: Option<u64>,
        input_bytes: Option<u64>,
    ) -> Self {
        Seen {
            progress,
            elapsed: started.elapsed(),
            bytes: base.zip(bytes_read_by_process()).map(|(b, now)| now - b),
            input_bytes,
        }
    }

    fn rows(&self) -> (u64, u64, u64) {
        let p = self.progress;
        (
            p.rows_read.load(Ordering::Relaxed),
            p.rows_written.load(Ordering::Relaxed),
            p.rows_rejected.load(Ordering::Relaxed),
        )
    }

    /// The bytes read, capped at the input's size.
    fn bytes_read(&self) -> Option<u64> {
        let read = self.bytes?;
        Some(self.input_bytes.map_or(read, |total| read.min(total)))
    }

    /// Time left at the rate so far, once there is one.
    fn eta(&self) -> Option<Duration> {
        let (read, total) = (self.bytes_read()?, self.input_bytes?);
        if read == 0 || self.elapsed < Duration::from_secs(1) {
            return None;
        }
        let rate = read as f64 / self.elapsed.as_secs_f64();
        Some(Duration::from_secs_f64((total - read) as f64 / rate))
    }

    /// `12.0 s, 41% of 1.2 GiB read, ETA 17 s, 1,234,567 rows read (102,880/s), 1,234,000 written, 3 rejected`
    fn line(&self) -> String {
        let mut out = format!("{:.1} s, ", self.elapsed.as_secs_f64());
        match (self.bytes_read(), self.input_bytes) {
            (Some(read), Some(total)) if total > 0 => {
                let percent = read as f64 * 100.0 / total as f64;
                let _ = write!(out, "{percent:.0}% of {} read, ", bytes(total));
                if let Some(eta) = self.eta() {
                    let _ = write!(out, "ETA {}, ", seconds(eta));
                }
            }
            (Some(read), _) => {
                let _ = write!(out, "{} read, ", bytes(read));
            }
            _ => {}
        }
        out.push_str(&self.rows_message());
        out
    }

    fn rows_message(&self) -> String {
        let (read, written, rejected) = self.rows();
        let rate = read as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} rows read ({}/s), {} written, {} rejected",
            group(read),
            group(rate as u64),
            group(written),
            group(rejected),
        )
    }
}

fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

fn seconds(d: Duration) -> String {
    indicatif::HumanDuration(d).to_string()
}

/// Watch the run until `done`: the progress bar and the monitor lines on stderr, the metrics
/// file at each monitor interval.
pub fn watch(watch: &Watch, progress: &Progress, done: &AtomicBool) {
    let started = Instant::now();
    let show_bar = watch.bar();
    let base = bytes_read_by_process();
    let mut bar: Option<ProgressBar> = None;
    let mut next_line = watch.monitor.map(|i| started + i);
    while !done.load(Ordering::SeqCst) {
        // `run` unparks this thread when the run ends, so it does not wait out the tick.
        std::thread::park_timeout(Duration::from_millis(100));
        let seen = Seen::now(progress, started, base, watch.total());
        // A run that ends within a second shows no bar.
        if show_bar && seen.elapsed >= Duration::from_secs(1) {
            let bar = bar.get_or_insert_with(|| progress_bar(watch.total(), started));
            bar.set_position(seen.bytes_read().unwrap_or(0));
            bar.set_message(seen.rows_message());
        }
        if let Some(at) = next_line.filter(|at| Instant::now() >= *at) {
            // The file first: whoever reads the line may look at the file next.
            if let Some(path) = &watch.metrics {
                let _ = write_atomically(path, &prometheus::live(&watch.pipeline, &seen));
            }
            let line = format!("monitor: {}", seen.line());
            match &bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
            next_line = watch.monitor.map(|i| at + i);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// A bar of bytes read when the input's size is known, else a spinner; on stderr even when it
/// is not a terminal (`--progress always`).
fn progress_bar(input_bytes: Option<u64>, started: Instant) -> ProgressBar {
    let target = ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10);
    let (bar, template) = match input_bytes {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), target),
            "{elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
             ({binary_bytes_per_sec}, ETA {eta}) {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, target),
            "{spinner} {elapsed_precise} {binary_bytes} read ({binary_bytes_per_sec}) {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.with_elapsed(started.elapsed())
}

/// A memory figure of this process from `/proc/self/status` (Linux), in bytes: `VmRSS` (now) or
/// `VmHWM` (the peak).
fn memory_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The last resort of a run: limits that stop the process itself, for what cannot be stopped
/// between batches.
#[derive(Debug)]
pub struct Guard {
    /// Resident memory past which the run stops: a script that builds a huge string or array
    /// cannot be interrupted inside the JavaScript engine, and would otherwise run until the
    /// kernel kills the process.
    pub memory: u64,
    /// `Settings.Timeout` and when it started counting. The executor stops a run between
    /// batches past it; this stops one that does not end within [`GRACE`] after that (a source
    /// blocked on a read that never returns).
    pub timeout: Option<(Instant, Duration)>,
    /// The files the run writes, given up before the process stops (what was staged for them
    /// and their lock files removed), so none is changed.
    pub outputs: Vec<PathBuf>,
}

/// How long past `Settings.Timeout` a run may take to stop by itself.
pub const GRACE: Duration = Duration::from_secs(2);

/// Watch the run until `done`, and stop the process (exit code 2) when it passes a limit.
pub fn guard(guard: &Guard, done: &AtomicBool) {
    while !done.load(Ordering::SeqCst) {
        std::thread::park_timeout(Duration::from_millis(50));
        let resident = memory_bytes("VmRSS").unwrap_or(0);
        let message = if resident > guard.memory {
            format!(
                "the run used more than {} MiB of memory (4 x `Settings.MemoryLimit` + 512 MiB) \
                 and was stopped; no output was changed\n  hint: a script building a huge string \
                 or array? Batches themselves stay within `MemoryLimit`",
                guard.memory >> 20
            )
        } else if let Some((_, limit)) = guard
            .timeout
            .filter(|(start, limit)| start.elapsed() > *limit + GRACE)
        {
            format!(
                "the run took longer than `Settings.Timeout` ({limit:?}) and did not stop between \
                 batches within {GRACE:?}; it was stopped; no output was changed\n  hint: a \
                 source waiting for input that does not come?"
            )
        } else {
            continue;
        };
        if done.load(Ordering::SeqCst) {
            return;
        }
        eprintln!("error: {message}");
        for output in &guard.outputs {
            flowengine_plugins::staging::abandon(output);
        }
        std::process::exit(2);
    }
}

/// Write `text` to `path` through a temporary file beside it and a rename.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.persist(path).map(drop).map_err(|e| e.error)
}

pub use http::{bind, serve};
pub use prometheus::summary;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_written() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("5d").is_err());
        assert!(parse_interval("25h").is_err());
        assert!(parse_interval("0s").is_err());
    }
}

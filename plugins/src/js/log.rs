//! `context.utils.log`: the log levels, and the per-node log that prints a script's lines on
//! stderr at a bounded rate. Used by the `context` API ([`super::api`]) when a script logs, and set
//! up from the config's `LogLevel`.

use std::time::Instant;

/// `utils.log` levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
}

impl Level {
    /// Accepted spellings for `LogLevel`.
    pub const CHOICES: [(&'static str, Level); 5] = [
        ("trace", Level::Trace),
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ];

    /// A level as scripts write it (the original's names are accepted too).
    pub(super) fn parse(written: &str) -> Option<Level> {
        Some(match written.trim().to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" | "information" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "critical" | "fatal" => Level::Error,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// `utils.log` output: one line per call on stderr, prefixed with the node name, at most a burst
/// then a steady rate per node so a log call per row cannot flood the terminal.
#[derive(Debug)]
pub struct Log {
    node: String,
    min: Level,
    gate: std::sync::Mutex<Gate>,
}

#[derive(Debug)]
struct Gate {
    window: Instant,
    printed: u32,
    suppressed: u64,
}

/// Lines per second per node after which lines are counted, not printed.
const LOG_LINES_PER_SECOND: u32 = 20;

impl Log {
    /// A log for `node` printing `min` and above.
    pub fn new(node: &str, min: Level) -> Self {
        Self {
            node: node.to_string(),
            min,
            gate: std::sync::Mutex::new(Gate {
                window: Instant::now(),
                printed: 0,
                suppressed: 0,
            }),
        }
    }

    pub(super) fn write(&self, level: Level, line: u64, message: &str) {
        if level < self.min {
            return;
        }
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.window.elapsed().as_secs() >= 1 {
            gate.window = Instant::now();
            gate.printed = 0;
            if gate.suppressed > 0 {
                eprintln!(
                    "[{}] {} log lines suppressed (more than {LOG_LINES_PER_SECOND} a second)",
                    self.node, gate.suppressed
                );
                gate.suppressed = 0;
            }
        }
        if gate.printed >= LOG_LINES_PER_SECOND {
            gate.suppressed += 1;
            return;
        }
        gate.printed += 1;
        eprintln!(
            "[{}] {} (line {line}): {message}",
            self.node,
            level.as_str()
        );
    }

    /// Report lines still held back at the end of the run.
    pub fn flush(&self) {
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.suppressed > 0 {
            eprintln!(
                "[{}] {} log lines suppressed (more than {LOG_LINES_PER_SECOND} a second)",
                self.node, gate.suppressed
            );
            gate.suppressed = 0;
        }
    }
}

//! Per-node counters and the run summary. Recorded by the executor, never by plugins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// What a running pipeline has done so far; the executor adds to it as batches move, and a
/// monitor may read it from another thread meanwhile.
#[derive(Debug, Default)]
pub struct Progress {
    /// Rows the sources have read (rejected ones included).
    pub rows_read: AtomicU64,
    /// Rows rejected by any node.
    pub rows_rejected: AtomicU64,
    /// Rows the sinks have written.
    pub rows_written: AtomicU64,
    /// One gauge per connection, set when the run starts.
    pub channels: OnceLock<Vec<ChannelGauge>>,
}

/// How full one connection's channel is: where a pipeline waits (backpressure).
#[derive(Debug)]
pub struct ChannelGauge {
    /// The producing node.
    pub from: String,
    /// The consuming node.
    pub to: String,
    /// Batches the channel holds at most (`Settings.ChannelCapacity`).
    pub capacity: usize,
    /// Batches queued when last seen (after each send and each receive).
    pub queued: AtomicUsize,
    /// Sends that found the channel full and waited for the consumer.
    pub full: AtomicU64,
}

/// Counters for one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSummary {
    /// Node name.
    pub name: String,
    /// `source`, `transform` or `sink`.
    #[serde(deserialize_with = "interned")]
    pub role: StaticName,
    /// Plugin type.
    #[serde(rename = "type", deserialize_with = "interned")]
    pub type_name: StaticName,
    /// Rows received (for a source: rows read from its input).
    pub rows_in: u64,
    /// Rows emitted (for a sink: rows written).
    pub rows_out: u64,
    /// Rows a transform dropped on purpose.
    pub rows_filtered: u64,
    /// Rows `Distinct` dropped as duplicates of a row it kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_duplicate: u64,
    /// Rows received on named input ports (a `Lookup`'s reference rows), not counted in
    /// `rows_in`.
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_reference: u64,
    /// Rows `Aggregate` folded into groups; its `rows_out` are the groups.
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_aggregated: u64,
    /// Whether its output rows are groups (`Aggregate`): then rows in = aggregated + filtered +
    /// rejected.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aggregates: bool,
    /// Rows rejected as bad data.
    pub rows_rejected: u64,
    /// Rejected rows by error type (`TYPE_CONVERSION`, ...).
    pub rejected_by_type: BTreeMap<String, u64>,
    /// Batches received (for a source: batches read).
    pub batches_in: u64,
    /// Batches emitted.
    pub batches_out: u64,
    /// Arrow memory of the batches emitted, in bytes (buffers shared between batches counted in
    /// each).
    pub bytes_out: u64,
    /// Time spent inside the plugin's own code, in milliseconds.
    pub busy_ms: f64,
    /// For a transform with named ports: rows per output, the default first. A row sent to
    /// several outputs is counted on each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRows>,
    /// What the plugin said about how it ran (e.g. how a source split its input), for verbose
    /// output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What a sink had to write another way (a NaN as `null` in JSON), shown in every summary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A name that lives as long as the process (a role, a plugin type). Spelled as an alias so that
/// serde reads it through [`interned`] instead of borrowing it from the input, which would tie a
/// summary's deserialization to `'static` input.
pub type StaticName = &'static str;

/// A role or plugin type read back from a summary (one that ran on another process): each
/// distinct name is kept once for the life of the process, as the names a plan holds are.
fn interned<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    static NAMES: std::sync::Mutex<BTreeMap<String, &'static str>> =
        std::sync::Mutex::new(BTreeMap::new());
    let name = String::deserialize(d)?;
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    Ok(*names
        .entry(name)
        .or_insert_with_key(|n| Box::leak(n.clone().into_boxed_str())))
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Rows one output of a routing transform carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRows {
    /// `default`, or the port's name.
    pub name: String,
    /// Rows sent there.
    pub rows: u64,
}

/// The rows along one chain of nodes from a source to a sink: `read = written + filtered +
/// rejected + routed` holds for every one on every successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSummary {
    /// `read -> clean -> write`.
    pub path: String,
    /// Rows the source read.
    pub read: u64,
    /// Rows the sink wrote.
    pub written: u64,
    /// Rows transforms on the path filtered out.
    pub filtered: u64,
    /// Rows `Distinct` nodes on the path dropped as duplicates.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: u64,
    /// Rows nodes on the path rejected.
    pub rejected: u64,
    /// Rows routing transforms on the path sent only to their other outputs.
    pub routed: u64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every source was read and every sink committed.
    Succeeded,
    /// The run stopped on an error; no output was changed.
    Failed,
}

/// What a run did, for people (stderr) and machines (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Outcome.
    pub status: Status,
    /// Loading, planning and opening files, in milliseconds.
    pub setup_ms: f64,
    /// Moving rows, in milliseconds.
    pub processing_ms: f64,
    /// Rows read by all sources.
    pub rows_read: u64,
    /// Rows written by all sinks.
    pub rows_written: u64,
    /// Rows filtered out by transforms.
    pub rows_filtered: u64,
    /// Rows rejected (written to the dead-letter file).
    pub rows_rejected: u64,
    /// `rows_read` per second of processing.
    pub rows_per_sec: f64,
    /// The dead-letter file, when rows may be skipped.
    pub dead_letter: Option<String>,
    /// One entry per node, in declaration order.
    pub nodes: Vec<NodeSummary>,
    /// One entry per source-to-sink chain.
    pub paths: Vec<PathSummary>,
    /// The error that ended the run, if it failed.
    pub error: Option<String>,
}

/// Milliseconds with microsecond resolution.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl RunSummary {
    /// The summary as aligned text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let status = match self.status {
            Status::Succeeded => "succeeded",
            Status::Failed => "FAILED",
        };
        out.push_str(&format!("pipeline `{}` {status}\n", self.pipeline));
        out.push_str(&format!(
            "  setup {}, processing {}; {} rows read ({} rows/s), {} rows written\n",
            human_duration(self.setup_ms),
            human_duration(self.processing_ms),
            group(self.rows_read),
            group(self.rows_per_sec.round() as u64),
            group(self.rows_written),
        ));
        let header = [
            "node", "role", "rows in", "rows out", "filtered", "rejected", "batches", "busy",
        ];
        let mut rows: Vec<[String; 8]> = vec![header.map(str::to_string)];
        for n in &self.nodes {
            rows.push([
                n.name.clone(),
                n.role.to_string(),
                group(n.rows_in),
                group(n.rows_out),
                group(n.rows_filtered),
                group(n.rows_rejected),
                group(n.batches_in.max(n.batches_out)),
                human_duration(n.busy_ms),
            ]);
        }
        let by_type: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.rejected_by_type
                    .iter()
                    .map(move |(t, c)| format!("{}: {} {t}", n.name, group(*c)))
            })
            .collect();
        let widths: Vec<usize> = (0..8)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            out.push_str("  ");
            for (c, cell) in r.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c < 2 {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                } else {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
                out.push_str(if c + 1 < r.len() { "  " } else { "\n" });
            }
        }
        if !by_type.is_empty() {
            out.push_str(&format!("  rejected by type: {}\n", by_type.join(", ")));
        }
        for n in self.nodes.iter().filter(|n| !n.ports.is_empty()) {
            let ports: Vec<String> = n
                .ports
                .iter()
                .map(|p| format!("{} {}", group(p.rows), p.name))
                .collect();
            out.push_str(&format!("  {} routed: {}\n", n.name, ports.join(", ")));
        }
        let succeeded = self.status == Status::Succeeded;
        for n in self.nodes.iter().filter(|n| n.aggregates && succeeded) {
            let (rows, groups) = (group(n.rows_aggregated), group(n.rows_out));
            out.push_str(&format!(
                "  {}: {rows} rows aggregated into {groups} groups\n",
                n.name
            ));
        }
        for n in self
            .nodes
            .iter()
            .filter(|n| n.rows_reference > 0 && succeeded)
        {
            let rows = group(n.rows_reference);
            out.push_str(&format!("  {}: {rows} reference rows\n", n.name));
        }
        for n in &self.nodes {
            for warning in &n.warnings {
                out.push_str(&format!("  {}: warning: {warning}\n", n.name));
            }
        }
        for n in self.nodes.iter().filter(|n| n.rows_duplicate > 0) {
            let rows = group(n.rows_duplicate);
            out.push_str(&format!("  {}: {rows} duplicates dropped\n", n.name));
        }
        // On a failed run the counts are partial, so the identity need not hold: do not show it.
        let paths = if self.status == Status::Succeeded {
            &self.paths[..]
        } else {
            &[]
        };
        for p in paths {
            let mut routed = if p.routed > 0 {
                format!(" + {} routed elsewhere", group(p.routed))
            } else {
                String::new()
            };
            if p.duplicates > 0 {
                routed.push_str(&format!(" + {} duplicates", group(p.duplicates)));
            }
            out.push_str(&format!(
                "  {}: {} read = {} written + {} filtered + {} rejected{routed}\n",
                p.path,
                group(p.read),
                group(p.written),
                group(p.filtered),
                group(p.rejected)
            ));
        }
        if self.rows_rejected > 0 && self.status == Status::Succeeded {
            let path = self
                .dead_letter
                .as_deref()
                .unwrap_or("the dead-letter file");
            let rows = if self.rows_rejected == 1 {
                "row"
            } else {
                "rows"
            };
            out.push_str(&format!(
                "{} {rows} rejected → {path}\n",
                group(self.rows_rejected)
            ));
        }
        out
    }
}

fn human_duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// `1234567` → `1,234,567`.
/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn render_aligns_the_node_table() {
        let summary = RunSummary {
            pipeline: "p".into(),
            status: Status::Succeeded,
            setup_ms: 1.0,
            processing_ms: 2000.0,
            rows_read: 1000,
            rows_written: 1000,
            rows_filtered: 0,
            rows_rejected: 0,
            dead_letter: None,
            paths: vec![],
            rows_per_sec: 500.0,
            nodes: vec![NodeSummary {
                name: "read".into(),
                role: "source",
                type_name: "DelimitedSource",
                rows_in: 1000,
                rows_out: 1000,
                batches_out: 1,
                ..Default::default()
            }],
            error: None,
        };
        let text = summary.render();
        assert!(text.starts_with("pipeline `p` succeeded\n  setup 1.0 ms, processing 2.00 s; 1,000 rows read (500 rows/s), 1,000 rows written\n"), "{text}");
        assert!(text.contains("  read  source    1,000     1,000"), "{text}");
    }

    #[test]
    fn a_summary_reads_back_as_written() {
        let summary = RunSummary {
            pipeline: "p".into(),
            status: Status::Failed,
            setup_ms: 1.0,
            processing_ms: 2.5,
            rows_read: 3,
            rows_written: 1,
            rows_filtered: 1,
            rows_rejected: 1,
            rows_per_sec: 1200.0,
            dead_letter: Some("bad.csv".into()),
            paths: vec![PathSummary {
                path: "read -> write".into(),
                read: 3,
                written: 1,
                filtered: 1,
                duplicates: 0,
                rejected: 1,
                routed: 0,
            }],
            nodes: vec![NodeSummary {
                name: "read".into(),
                role: "source",
                type_name: "SomeSource",
                rows_in: 3,
                rows_rejected: 1,
                rejected_by_type: BTreeMap::from([("TYPE_CONVERSION".into(), 1)]),
                ..Default::default()
            }],
            error: Some("stopped".into()),
        };
        let text = serde_json::to_string(&summary).unwrap();
        let back: RunSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(back, summary);
    }
}

//! The run's metrics in the Prometheus text exposition format: live (the totals so far, input
//! bytes, channels) and at the end (per node, per connection, the run).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use flowengine_engine::metrics::{ChannelGauge, NodeSummary, Progress, RunSummary};

use super::Seen;

/// A Prometheus label value: backslash, quote and line break escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The live counters in the text exposition format.
pub(super) fn live(pipeline: &str, seen: &Seen<'_>) -> String {
    let p = format!("pipeline=\"{}\"", label(pipeline));
    let (read, written, rejected) = seen.rows();
    let mut out = String::new();
    totals(&mut out, &p, read, written, rejected);
    if let Some(bytes) = seen.bytes {
        metric(
            &mut out,
            "flowengine_input_bytes_read",
            "gauge",
            "Bytes read from the inputs so far.",
        );
        let _ = writeln!(out, "flowengine_input_bytes_read{{{p}}} {bytes}");
    }
    if let Some(total) = seen.input_bytes {
        metric(
            &mut out,
            "flowengine_input_bytes",
            "gauge",
            "Size of the input files.",
        );
        let _ = writeln!(out, "flowengine_input_bytes{{{p}}} {total}");
    }
    channels(&mut out, &p, seen.progress);
    metric(
        &mut out,
        "flowengine_run_seconds",
        "gauge",
        "Seconds since the run started.",
    );
    let _ = writeln!(
        out,
        "flowengine_run_seconds{{{p}}} {:.3}",
        seen.elapsed.as_secs_f64()
    );
    out
}

/// Rows read, written and rejected over the whole pipeline.
fn totals(out: &mut String, p: &str, read: u64, written: u64, rejected: u64) {
    let totals = [
        (
            "flowengine_rows_read_total",
            "Rows the sources have read, rejected ones included.",
            read,
        ),
        (
            "flowengine_rows_written_total",
            "Rows the sinks have written.",
            written,
        ),
        (
            "flowengine_rows_rejected_total",
            "Rows rejected by any node.",
            rejected,
        ),
    ];
    for (name, help, value) in totals {
        metric(out, name, "counter", help);
        let _ = writeln!(out, "{name}{{{p}}} {value}");
    }
}

/// Per connection: batches queued, the capacity, and the sends that waited (backpressure: the
/// consumer of a channel that is often full is the slow node).
fn channels(out: &mut String, p: &str, progress: &Progress) {
    let Some(gauges) = progress.channels.get() else {
        return;
    };
    type Value = fn(&ChannelGauge) -> u64;
    let series: [(&str, &str, &str, Value); 3] = [
        (
            "flowengine_channel_queued_batches",
            "gauge",
            "Batches waiting in a connection's channel when last seen.",
            |g| g.queued.load(Ordering::Relaxed) as u64,
        ),
        (
            "flowengine_channel_capacity_batches",
            "gauge",
            "Batches a connection's channel holds at most.",
            |g| g.capacity as u64,
        ),
        (
            "flowengine_channel_full_total",
            "counter",
            "Sends that found the channel full and waited for the consumer.",
            |g| g.full.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in series {
        metric(out, name, kind, help);
        for g in gauges {
            let (from, to) = (label(&g.from), label(&g.to));
            let _ = writeln!(
                out,
                "{name}{{{p},from=\"{from}\",to=\"{to}\"}} {}",
                value(g)
            );
        }
    }
}

/// The finished run in the text exposition format: the totals, each node's counters, the status,
/// the duration and the peak resident memory.
pub fn summary(summary: &RunSummary, progress: &Progress) -> String {
    let p = format!("pipeline=\"{}\"", label(&summary.pipeline));
    let mut out = String::new();
    let (read, written, rejected) = (
        summary.rows_read,
        summary.rows_written,
        summary.rows_rejected,
    );
    totals(&mut out, &p, read, written, rejected);
    type NodeValue = fn(&NodeSummary) -> f64;
    let per_node: [(&str, &str, &str, NodeValue); 8] = [
        (
            "flowengine_node_rows_in_total",
            "counter",
            "Rows a node received.",
            |n| n.rows_in as f64,
        ),
        (
            "flowengine_node_rows_out_total",
            "counter",
            "Rows a node sent on or wrote.",
            |n| n.rows_out as f64,
        ),
        (
            "flowengine_node_rows_filtered_total",
            "counter",
            "Rows a node filtered out.",
            |n| n.rows_filtered as f64,
        ),
        (
            "flowengine_node_rows_rejected_total",
            "counter",
            "Rows a node rejected.",
            |n| n.rows_rejected as f64,
        ),
        (
            "flowengine_node_batches_in_total",
            "counter",
            "Batches a node received.",
            |n| n.batches_in as f64,
        ),
        (
            "flowengine_node_batches_out_total",
            "counter",
            "Batches a node sent on.",
            |n| n.batches_out as f64,
        ),
        (
            "flowengine_node_bytes_out_total",
            "counter",
            "Arrow memory of the batches a node sent on.",
            |n| n.bytes_out as f64,
        ),
        (
            "flowengine_node_busy_seconds",
            "gauge",
            "Seconds a node spent working.",
            |n| n.busy_ms / 1000.0,
        ),
    ];
    for (name, kind, help, value) in per_node {
        metric(&mut out, name, kind, help);
        for n in &summary.nodes {
            let _ = writeln!(
                out,
                "{name}{{{p},node=\"{}\",role=\"{}\",type=\"{}\"}} {}",
                label(&n.name),
                n.role,
                n.type_name,
                value(n)
            );
        }
    }
    channels(&mut out, &p, progress);
    metric(
        &mut out,
        "flowengine_run_succeeded",
        "gauge",
        "1 if the run succeeded, 0 if it failed.",
    );
    let ok = u8::from(summary.error.is_none());
    let _ = writeln!(out, "flowengine_run_succeeded{{{p}}} {ok}");
    metric(
        &mut out,
        "flowengine_run_seconds",
        "gauge",
        "Seconds the run took (setup and processing).",
    );
    let seconds = (summary.setup_ms + summary.processing_ms) / 1000.0;
    let _ = writeln!(out, "flowengine_run_seconds{{{p}}} {seconds:.3}");
    if let Some(bytes) = super::memory_bytes("VmHWM") {
        metric(
            &mut out,
            "flowengine_peak_rss_bytes",
            "gauge",
            "Peak resident memory of the process.",
        );
        let _ = writeln!(out, "flowengine_peak_rss_bytes{{{p}}} {bytes}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}

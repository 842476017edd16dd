//! The end-of-run checks that no row was lost, and the per-path totals, from a run's node
//! summaries: shared by every engine that runs a [`Plan`](crate::plan::Plan) (the local executor
//! here, and `--engine datafusion`), so that they all hold their runs to the same identities.

use crate::error::RunError;
use crate::metrics::{NodeSummary, PathSummary};
use crate::plan::Edge;

/// For each sink fed by a single chain of nodes back to one source, the rows along that chain.
pub fn path_summaries(nodes: &[NodeSummary], edges: &[Edge]) -> Vec<PathSummary> {
    let mut paths = Vec::new();
    for (sink, n) in nodes.iter().enumerate().filter(|(_, n)| n.role == "sink") {
        let mut names = vec![n.name.clone()];
        let (mut filtered, mut duplicates, mut rejected, mut routed) = (0, 0, 0, 0);
        let mut current = sink;
        loop {
            // Along the main inputs: a `Lookup`'s reference rows are not on the path.
            let into: Vec<&Edge> = edges
                .iter()
                .filter(|e| e.to == current && e.to_port == 0)
                .collect();
            let [edge] = into.as_slice() else { break };
            current = edge.from;
            let up = &nodes[current];
            let port = up.ports.get(edge.port);
            names.push(match port {
                Some(p) if edge.port > 0 => format!("{}.{}", up.name, p.name),
                _ => up.name.clone(),
            });
            // Before an aggregate, rows are input rows, after it groups: the path starts at the
            // aggregate, with its groups as the rows read.
            if !up.aggregates {
                filtered += up.rows_filtered;
                duplicates += up.rows_duplicate;
                rejected += up.rows_rejected;
                // Rows a routing transform sent only to its other outputs left this path.
                routed += port.map_or(0, |p| up.rows_out - p.rows);
            }
            if up.role == "source" || up.aggregates {
                names.reverse();
                paths.push(PathSummary {
                    path: names.join(" -> "),
                    read: if up.aggregates {
                        up.rows_out
                    } else {
                        up.rows_in
                    },
                    written: n.rows_out,
                    filtered,
                    duplicates,
                    rejected,
                    routed,
                });
                break;
            }
        }
    }
    paths
}

/// What a run counted besides its nodes' summaries.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Per connection (in the plan's edge order): rows its producer sent on it, and rows its
    /// consumer received from it.
    pub edges: Vec<(u64, u64)>,
    /// Rows the sinks report written.
    pub written: u64,
    /// Rows rejected in the whole run.
    pub rejected: u64,
    /// Rows the dead-letter file reports written.
    pub dead_letter_written: u64,
}

/// Every row that entered a node left it, was filtered, or was rejected; every row sent on a
/// connection arrived; every row handed to a sink was written; every reject was written; along
/// every simple path, read = written + filtered + rejected. An `Err` is a bug in an engine or a
/// plugin, never in the data.
pub fn check(
    nodes: &[NodeSummary],
    edges: &[Edge],
    totals: &Totals,
    paths: &[PathSummary],
) -> Result<(), RunError> {
    let bug = |msg: String| Err(RunError::Internal(msg));
    for (edge, &(sent, received)) in edges.iter().zip(&totals.edges) {
        if sent != received {
            let (from, to) = (&nodes[edge.from].name, &nodes[edge.to].name);
            return bug(format!(
                "connection {from} -> {to} lost rows: {sent} sent, {received} received"
            ));
        }
    }
    for n in nodes {
        if n.aggregates {
            if n.rows_in != n.rows_aggregated + n.rows_filtered + n.rows_rejected {
                return bug(format!(
                    "node `{}`: {} rows in but {} aggregated + {} filtered + {} rejected",
                    n.name, n.rows_in, n.rows_aggregated, n.rows_filtered, n.rows_rejected
                ));
            }
            continue;
        }
        if n.rows_in != n.rows_out + n.rows_filtered + n.rows_duplicate + n.rows_rejected {
            return bug(format!(
                "node `{}`: {} rows in but {} out + {} filtered + {} duplicates + {} rejected",
                n.name, n.rows_in, n.rows_out, n.rows_filtered, n.rows_duplicate, n.rows_rejected
            ));
        }
    }
    let delivered: u64 = nodes
        .iter()
        .filter(|n| n.role == "sink")
        .map(|n| n.rows_in)
        .sum();
    if delivered != totals.written {
        return bug(format!(
            "sinks received {delivered} rows but report {} written",
            totals.written
        ));
    }
    if totals.rejected != totals.dead_letter_written {
        return bug(format!(
            "{} rows rejected but {} written to the dead-letter file",
            totals.rejected, totals.dead_letter_written
        ));
    }
    for p in paths {
        if p.read != p.written + p.filtered + p.duplicates + p.rejected + p.routed {
            return bug(format!(
                "path {}: read {} but written {} + filtered {} + duplicates {} + rejected {} + routed elsewhere {}",
                p.path, p.read, p.written, p.filtered, p.duplicates, p.rejected, p.routed
            ));
        }
    }
    Ok(())
}

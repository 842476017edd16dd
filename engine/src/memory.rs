//! How `Settings.MemoryLimit` bounds the data a run holds at once.
//!
//! A run holds batches in a fixed number of places, whatever the file size: each connection buffers
//! up to `ChannelCapacity` batches, the reject channel as many, and each node has up to its window
//! (2 × worker threads, fewer if the limit is tight) in the pool plus the one it is sending.
//! [`Budget`] counts those places and shares the limit between them. Sources cut their batches at
//! `ChunkSize` rows or at [`Budget::batch_bytes`] of input, whichever comes first, so the limit
//! holds for wide rows too.
//!
//! One batch costs more than its input bytes while it is worked on: a source holds the range it
//! read, the split fields and the raw records (kept for rejects) next to the Arrow arrays, and a sink
//! holds the encoded output next to the batch. [`EXPANSION`] is that factor, an estimate that
//! docs/benchmarks.md checks on wide rows (152 MiB peak under the default 256 MiB). The limit
//! bounds batch data; the program, the worker stacks and JavaScript engines come on top (the
//! shipped example peaks at 21 MiB).

/// How many bytes of memory one byte of a batch's input takes at most while it is in flight.
pub const EXPANSION: u64 = 4;

/// The smallest per-batch share that still makes sense; below it per-batch overhead dominates.
pub const MIN_BATCH_BYTES: u64 = 64 << 10;

/// The default `MemoryLimit`: 256 MiB.
pub const DEFAULT_LIMIT: u64 = 256 << 20;

/// The batches a run may hold at once, and the input bytes each may be cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Batches one node keeps on the worker pool at once.
    pub window: usize,
    /// Batches the whole run may hold at once.
    pub batches: u64,
    /// Input bytes a source puts in one batch at most (one record may exceed it alone).
    pub batch_bytes: u64,
    /// Bytes each stateful node (sort, distinct) may hold across batches before it spills: half
    /// the limit, shared equally between them (0 when there are none).
    pub state_bytes: u64,
}

/// The pipeline's shape, as far as memory is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    /// Worker threads.
    pub threads: usize,
    /// `Settings.ChannelCapacity`.
    pub channel_capacity: usize,
    /// Plugins.
    pub nodes: usize,
    /// Connections.
    pub edges: usize,
    /// Nodes that hold rows across batches (sort, distinct).
    pub stateful: usize,
}

impl Budget {
    /// Share `limit` bytes between the batches `shape` can hold at once. The window is 2 × threads
    /// where the limit allows it, and shrinks (to one batch per node at least) where it does not,
    /// so that many threads do not make the default limit too small.
    pub fn new(limit: u64, shape: Topology) -> Self {
        let (limit, state_bytes) = match shape.stateful as u64 {
            0 => (limit, 0),
            n => (limit - limit / 2, limit / 2 / n),
        };
        let nodes = shape.nodes.max(1) as u64;
        let channels = (shape.edges as u64 + 1) * shape.channel_capacity as u64;
        let full = shape.threads.max(1) as u64 * 2;
        let affordable = limit / (EXPANSION * MIN_BATCH_BYTES);
        let window = affordable
            .saturating_sub(channels)
            .div_euclid(nodes)
            .saturating_sub(1)
            .clamp(1, full);
        let batches = channels + nodes * (window + 1);
        Self {
            window: usize::try_from(window).unwrap_or(usize::MAX),
            batches,
            batch_bytes: limit / (batches * EXPANSION),
            state_bytes,
        }
    }

    /// The smallest limit that gives every batch [`MIN_BATCH_BYTES`] (with this window).
    pub fn smallest_limit(&self) -> u64 {
        let batches = self.batches * EXPANSION * MIN_BATCH_BYTES;
        // Stateful nodes take half the limit, so the batches need twice as much.
        if self.state_bytes > 0 {
            batches * 2
        } else {
            batches
        }
    }

    /// Whether the limit leaves each batch a useful share.
    pub fn is_enough(&self) -> bool {
        self.batch_bytes >= MIN_BATCH_BYTES
    }
}

/// `1073741824` as `1 GiB`, `1536 KiB` as `1.5 MiB`: for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(threads: usize, nodes: usize, edges: usize) -> Topology {
        Topology {
            threads,
            channel_capacity: 4,
            nodes,
            edges,
            stateful: 0,
        }
    }

    #[test]
    fn a_two_node_pipeline_on_two_cores_counts_eighteen_batches() {
        // Windows of 4 plus the one being sent, per node; 4 on the connection, 4 rejects.
        let b = Budget::new(DEFAULT_LIMIT, shape(2, 2, 1));
        assert_eq!(b.window, 4);
        assert_eq!(b.batches, 2 * 5 + 2 * 4);
        assert_eq!(b.batch_bytes, DEFAULT_LIMIT / (18 * EXPANSION));
        assert!(b.is_enough());
    }

    #[test]
    fn more_threads_mean_smaller_batches_within_the_same_limit() {
        let few = Budget::new(DEFAULT_LIMIT, shape(2, 3, 2));
        let many = Budget::new(DEFAULT_LIMIT, shape(64, 3, 2));
        assert!(many.batch_bytes < few.batch_bytes);
        assert!(many.batches * many.batch_bytes * EXPANSION <= DEFAULT_LIMIT);
    }

    #[test]
    fn many_threads_shrink_the_window_before_the_default_limit_is_too_small() {
        let b = Budget::new(DEFAULT_LIMIT, shape(1024, 6, 5));
        assert!(b.window < 2048 && b.window >= 1);
        assert!(b.is_enough());
        let bigger = Budget::new(DEFAULT_LIMIT * 16, shape(1024, 6, 5));
        assert!(bigger.window > b.window);
    }

    #[test]
    fn a_limit_too_small_says_what_would_do() {
        // Even a window of one leaves each batch under 64 KiB.
        let b = Budget::new(1 << 20, shape(2, 3, 2));
        assert_eq!(b.window, 1);
        assert!(!b.is_enough());
        let enough = Budget::new(b.smallest_limit(), shape(2, 3, 2));
        assert!(enough.is_enough());
    }

    #[test]
    fn stateful_nodes_share_half_the_limit() {
        let plain = Budget::new(DEFAULT_LIMIT, shape(2, 3, 2));
        let sorting = Budget::new(
            DEFAULT_LIMIT,
            Topology {
                stateful: 2,
                ..shape(2, 3, 2)
            },
        );
        assert_eq!(plain.state_bytes, 0);
        assert_eq!(sorting.state_bytes, DEFAULT_LIMIT / 4);
        assert_eq!(sorting.batch_bytes, plain.batch_bytes / 2);
        let held = sorting.batches * sorting.batch_bytes * EXPANSION + 2 * sorting.state_bytes;
        assert!(held <= DEFAULT_LIMIT);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(3 << 30), "3 GiB");
    }
}

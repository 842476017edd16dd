//! `Limit` (`Rows`, `Offset`) and `Sample` (`Fraction` or `Rows`, with a `Seed`).
//!
//! `Limit` says it is satisfied once it has its rows, and the executor then stops the sources
//! that feed only it: `Rows: 10` on a 10 GB file reads a batch or so per source, not the file.
//! Rows it does not pass on count as filtered.
//!
//! `Sample` draws from one generator seeded by `Seed`, in the order rows arrive, which is the
//! input order for a single source whatever the thread count: the same seed keeps the same rows.
//! `Fraction` keeps each row with that probability (Bernoulli) and streams; `Rows` keeps a uniform
//! sample of exactly that many (reservoir, Algorithm R) and sends it, in input order, at the end.

use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use arrow_select::interleave::interleave_record_batch;
use flowengine_engine::component::{
    BuildCx, BuiltTransform, NodeCx, Output, StatefulTransform, TransformConfig,
};
use flowengine_engine::error::{BuildError, ConfigErrorKind, PlanError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

use super::{node_error, Provenance};

/// Parsed `Limit` config.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    rows: u64,
    offset: u64,
}

/// Parse a `Limit` `Config` map: `Rows` (required) and `Offset` (default 0).
pub fn parse_limit(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let rows = m.integer(cx, "Rows", 0, i64::MAX as u64);
    let offset = m.integer(cx, "Offset", 0, i64::MAX as u64).unwrap_or(0);
    let Some(rows) = rows else {
        if !m.has("Rows") {
            m.missing(cx, "Rows");
        }
        return None;
    };
    Some(Box::new(LimitConfig { rows, offset }))
}

impl TransformConfig for LimitConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        Ok(input.clone())
    }

    fn per_batch(&self) -> bool {
        false
    }

    fn build(&self, _input: SchemaRef, _cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        Ok(BuiltTransform::Stateful(Box::new(Limit {
            skip: self.offset,
            left: self.rows,
        })))
    }
}

struct Limit {
    /// Rows still to skip (`Offset`).
    skip: u64,
    /// Rows still to pass on.
    left: u64,
}

impl StatefulTransform for Limit {
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        let rows = batch.num_rows() as u64;
        let skip = self.skip.min(rows);
        let take = self.left.min(rows - skip);
        self.skip -= skip;
        self.left -= take;
        out.filtered += rows - take;
        if take > 0 {
            let mut batch = batch;
            if take < rows {
                batch = slice(&batch, skip as usize, take as usize);
            }
            out.batches.push(batch);
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Output) -> Result<bool, RunError> {
        Ok(false)
    }

    fn satisfied(&self) -> bool {
        self.left == 0
    }
}

/// Rows `offset..offset + len` of `batch`, with their lines.
fn slice(batch: &Batch, offset: usize, len: usize) -> Batch {
    Batch::new(
        batch.data.slice(offset, len),
        batch.origin.file.clone(),
        batch.origin.lines.slice(offset, len),
    )
}

/// How a `Sample` picks.
#[derive(Debug, Clone, Copy)]
enum Draw {
    /// Each row with this probability.
    Fraction(f64),
    /// Exactly this many (or every row, if fewer arrive).
    Rows(usize),
}

/// Parsed `Sample` config.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    draw: Draw,
    seed: u64,
}

/// Parse a `Sample` `Config` map: one of `Fraction` (0..=1) and `Rows`, and `Seed` (default 0).
pub fn parse_sample(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    _node: &NodeCx,
) -> Option<Box<dyn TransformConfig>> {
    let fraction = read_fraction(m, cx);
    let rows = m.integer(cx, "Rows", 0, u32::MAX as u64);
    let seed = m.integer(cx, "Seed", 0, u64::MAX).unwrap_or(0);
    let draw = match (m.has("Fraction"), m.has("Rows")) {
        (true, false) => Draw::Fraction(fraction?),
        (false, true) => Draw::Rows(rows? as usize),
        (both, _) => {
            let kind = ConfigErrorKind::InvalidValue {
                expected: "one of `Fraction` (a probability per row) and `Rows` (a sample size)"
                    .into(),
                found: if both { "both" } else { "neither" }.into(),
            };
            cx.error(kind, m.path(), m.mark());
            return None;
        }
    };
    Some(Box::new(SampleConfig { draw, seed }))
}

fn read_fraction(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<f64> {
    let text = m.string(cx, "Fraction")?;
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Some(f),
        _ => {
            m.invalid(cx, "Fraction", "a number from 0 to 1", &format!("`{text}`"));
            None
        }
    }
}

impl TransformConfig for SampleConfig {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>> {
        Ok(input.clone())
    }

    fn stateful(&self) -> bool {
        matches!(self.draw, Draw::Rows(_))
    }

    fn per_batch(&self) -> bool {
        false
    }

    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError> {
        Ok(BuiltTransform::Stateful(Box::new(Sample {
            node: cx.node.clone(),
            draw: self.draw,
            rng: SplitMix64(self.seed),
            seen: 0,
            kept: RecordBatch::new_empty(input),
            kept_lines: UInt64Array::from(Vec::<u64>::new()),
            kept_seq: Vec::new(),
            provenance: Provenance::default(),
            done: false,
        })))
    }
}

struct Sample {
    node: String,
    draw: Draw,
    rng: SplitMix64,
    /// Rows seen so far.
    seen: u64,
    /// `Rows`: the reservoir, its rows' lines and their positions in the input.
    kept: RecordBatch,
    kept_lines: UInt64Array,
    kept_seq: Vec<u64>,
    provenance: Provenance,
    done: bool,
}

impl StatefulTransform for Sample {
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError> {
        let rows = batch.num_rows();
        match self.draw {
            Draw::Fraction(p) => {
                let keep: arrow_array::BooleanArray =
                    (0..rows).map(|_| Some(self.rng.unit() < p)).collect();
                self.seen += rows as u64;
                out.filtered += (rows - keep.true_count()) as u64;
                let batch = batch.filter(&keep).map_err(|e| node_error(&self.node, e))?;
                out.batches.push(batch);
            }
            Draw::Rows(k) => self.reservoir(batch, k)?,
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError> {
        if self.done || matches!(self.draw, Draw::Fraction(_)) {
            return Ok(false);
        }
        self.done = true;
        let n = self.kept.num_rows();
        out.filtered += self.seen - n as u64;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| self.kept_seq[i]);
        let picked: Vec<(usize, usize)> = order.iter().map(|&i| (0, i)).collect();
        let data = interleave_record_batch(&[&self.kept], &picked)
            .map_err(|e| node_error(&self.node, e))?;
        let lines: UInt64Array = order.iter().map(|&i| self.kept_lines.value(i)).collect();
        out.batches
            .push(Batch::new(data, self.provenance.file(), lines));
        Ok(false)
    }
}

impl Sample {
    /// Algorithm R: row `i` (0-based) replaces a random slot with probability `k / (i + 1)`.
    fn reservoir(&mut self, batch: Batch, k: usize) -> Result<(), RunError> {
        self.provenance.add(&batch);
        let have = self.kept.num_rows();
        // Slots as (source, row): source 0 is the reservoir, 1 this batch.
        let mut slots: Vec<(usize, usize)> = (0..have).map(|i| (0, i)).collect();
        let mut seq = self.kept_seq.clone();
        for r in 0..batch.num_rows() {
            let i = self.seen;
            self.seen += 1;
            if slots.len() < k {
                slots.push((1, r));
                seq.push(i);
            } else {
                let j = self.rng.below(i + 1);
                if (j as usize) < k {
                    slots[j as usize] = (1, r);
                    seq[j as usize] = i;
                }
            }
        }
        if slots.iter().all(|&(s, _)| s == 0) && slots.len() == have {
            return Ok(());
        }
        let data = interleave_record_batch(&[&self.kept, &batch.data], &slots)
            .map_err(|e| node_error(&self.node, e))?;
        let lines = [&self.kept_lines, &batch.origin.lines];
        self.kept_lines = slots.iter().map(|&(s, i)| lines[s].value(i)).collect();
        self.kept = data;
        self.kept_seq = seq;
        Ok(())
    }
}

/// A small, fast generator with a fixed sequence per seed (Steele, Lea and Flood's SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; its bias is below 2^-32 for any `n` here).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_the_same_for_a_seed() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut g = SplitMix64(42);
                move |_| g.next()
            })
            .collect();
        let mut g = SplitMix64(42);
        assert_eq!(a, (0..5).map(|_| g.next()).collect::<Vec<_>>());
        let mut g = SplitMix64(7);
        assert!((0..1000).all(|_| g.below(10) < 10 && (0.0..1.0).contains(&g.unit())));
    }
}

//! Byte helpers the reader and the writer share: [`Masks`], the SIMD search for the delimiter, the
//! quote, CR and LF (the tokenizer's stops, the sink's "must this field be quoted" scan), and
//! [`POWERS_OF_TEN`], the exact doubles behind both plain-decimal fast paths.
//!
//! A leaf: it imports nothing from the crate, so the writer (`encode.rs`) borrows these without
//! depending on the reader's modules, and the reader without depending on the writer's.

use wide::u8x16;

/// Powers of ten that are exact doubles, for the plain-decimal fast paths of reader and writer.
pub(super) const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Finds the delimiter, the quote, CR and LF 16 bytes at a time (SSE2 or NEON through `wide`):
/// the bytes the cutter stops at, and the bytes that make the sink quote a field.
#[derive(Debug, Clone)]
pub(super) struct Masks {
    needles: [u8x16; 4],
}

impl Masks {
    pub(super) fn new(delimiter: u8, quote: u8) -> Self {
        Self {
            needles: [delimiter, quote, b'\n', b'\r'].map(u8x16::splat),
        }
    }

    /// Bit `i` is set where `part[i]` is one of the four (`part` holds 16 bytes).
    #[inline]
    pub(super) fn part(&self, part: &[u8]) -> u16 {
        let v = u8x16::from(<[u8; 16]>::try_from(part).unwrap_or_default());
        let [d, q, n, r] = self.needles.map(|needle| v.simd_eq(needle));
        (d | q | n | r).to_bitmask() as u16
    }

    /// Bit `i` is set where `block[i]` is one of the four (`block` holds 64 bytes).
    #[inline]
    pub(super) fn block(&self, block: &[u8]) -> u64 {
        let mut mask = 0;
        for (k, part) in block.chunks_exact(16).enumerate() {
            mask |= u64::from(self.part(part)) << (16 * k);
        }
        mask
    }
}

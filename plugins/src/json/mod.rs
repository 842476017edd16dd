//! JSON Lines: one JSON object per line, on the `arrow-json` crate (no JSON written or parsed by
//! hand). `sink.rs` is `JsonLinesSink`; `source/` is `JsonLinesSource`.

pub mod sink;
pub mod source;

//! JSON Lines: one JSON object per line, on the `arrow-json` crate (no JSON written or parsed by
//! hand). `sink.rs` is `JsonLinesSink`.

pub mod sink;

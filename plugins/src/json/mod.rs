//! JSON Lines: one JSON object per line, written by the `arrow-json` crate and read by serde_json
//! (no JSON written or parsed by hand). `sink.rs` is `JsonLinesSink`; `source/` is
//! `JsonLinesSource`.

pub mod sink;
pub mod source;

//! `JavaScriptTransform`: a user's `process(context)` function, run on boa_engine, once per row.
//!
//! The script is compiled once per worker thread (a boa `Context` is not `Send`); batches run in
//! parallel on the executor's workers unless `Parallel: false`. Only the script sees rows: input
//! columns the script does not replace pass through as the same Arrow arrays, and declared fields
//! are appended straight into Arrow builders.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the `Config` keys, the output schema, plan-time compilation |
//! | [`engine`] | one compiled script on one thread: the `context` API and the per-batch driver |
//! | [`format`] | `context.utils.format` |
//! | [`values`] | Arrow values to JavaScript and back, with the conversion rules |
//! | [`transform`] | the running transform: batches in, routed batches and rejects out |

pub mod config;
pub mod engine;
pub mod format;
pub mod transform;
pub mod values;

pub use config::parse;

//! FlowEngine's built-in plugins, and the one list that registers them.
//!
//! | type | role | module |
//! |---|---|---|
//! | `DelimitedSource` | source | `delimited::source` |
//! | `DelimitedSink` | sink | `delimited::sink` |
//! | `JavaScriptTransform` | transform | `js` |
//! | `NullSink` | sink | `null` |
//! | `ParquetSink` | sink | `parquet_sink` |
//! | `ArrowSink` | sink | `arrow_ipc` |
//! | `ParquetSource` | source | `columnar::parquet` |
//! | `ArrowSource` | source | `columnar::ipc` |
//! | `JsonLinesSource` | source | `json::source` |
//! | `JsonLinesSink` | sink | `json::sink` |
//! | `Filter` | transform | `native::filter` |
//! | `Compute` | transform | `native::compute` |
//! | `Select` | transform | `native::select` |
//! | `Cast` | transform | `native::cast` |
//! | `Sort` | transform | `relational::sort` |
//! | `Distinct` | transform | `relational::distinct` |
//! | `Aggregate` | transform | `relational::aggregate` |
//! | `Lookup` | transform | `relational::lookup` |
//! | `Limit` | transform | `relational::limit` |
//! | `Sample` | transform | `relational::limit` |
//!
//! The public API is [`register_builtin`] and [`builtin_registry`]: a host registers the plugins
//! and runs pipelines through `flowengine-engine`. The plugin modules are public only so that
//! `benches/` (the decoder, tokenizer, converter, encoder and script engine measured alone) and
//! `fuzz/` (the decoder and the range tokenizer against it) can reach inside them; they are hidden
//! from the documentation and are not an API: they change whenever the plugins need them to.

#[doc(hidden)]
pub mod arrow_ipc;
#[doc(hidden)]
pub mod columnar;
#[doc(hidden)]
pub mod compress;
#[doc(hidden)]
pub mod delimited;
#[doc(hidden)]
pub mod encoding;
#[doc(hidden)]
pub mod faults;
#[doc(hidden)]
pub mod files;
#[doc(hidden)]
pub mod js;
#[doc(hidden)]
pub mod json;
#[doc(hidden)]
pub mod lock;
#[doc(hidden)]
pub mod mapping;
#[doc(hidden)]
pub mod native;
#[doc(hidden)]
pub mod null;
#[doc(hidden)]
pub mod parquet_sink;
#[doc(hidden)]
pub mod relational;
#[doc(hidden)]
pub mod spill;
#[doc(hidden)]
pub mod staging;

use flowengine_engine::registry::{Parser, Registry};

/// Register every built-in plugin. This is the only place a plugin is named.
pub fn register_builtin(registry: &mut Registry) {
    registry
        .register("DelimitedSource", Parser::Source(delimited::source::parse))
        .register("DelimitedSink", Parser::Sink(delimited::sink::parse))
        .register("JavaScriptTransform", Parser::Transform(js::parse))
        .register("NullSink", Parser::Sink(null::parse))
        .register("ParquetSink", Parser::Sink(parquet_sink::parse))
        .register("ArrowSink", Parser::Sink(arrow_ipc::parse))
        .register("ParquetSource", Parser::Source(columnar::parquet::parse))
        .register("ArrowSource", Parser::Source(columnar::ipc::parse))
        .register("JsonLinesSource", Parser::Source(json::source::parse))
        .register("JsonLinesSink", Parser::Sink(json::sink::parse))
        .register("Filter", Parser::Transform(native::filter::parse))
        .register("Compute", Parser::Transform(native::compute::parse))
        .register("Select", Parser::Transform(native::select::parse))
        .register("Cast", Parser::Transform(native::cast::parse))
        .register("Sort", Parser::Transform(relational::sort::parse))
        .register("Distinct", Parser::Transform(relational::distinct::parse))
        .register("Aggregate", Parser::Transform(relational::aggregate::parse))
        .register("Lookup", Parser::Transform(relational::lookup::parse))
        .register("Limit", Parser::Transform(relational::limit::parse_limit))
        .register("Sample", Parser::Transform(relational::limit::parse_sample))
        .set_dead_letter(delimited::sink::dead_letter);
}

/// A registry holding every built-in plugin.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    register_builtin(&mut registry);
    registry
}

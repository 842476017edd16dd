//! FlowEngine's built-in plugins, and the one list that registers them.
//!
//! | type | role | module |
//! |---|---|---|
//! | `DelimitedSource` | source | [`delimited::source`] |
//! | `DelimitedSink` | sink | [`delimited::sink`] |
//! | `JavaScriptTransform` | transform | [`js`] |
//! | `NullSink` | sink | [`null`] |

pub mod delimited;
pub mod js;
pub mod null;

use flowengine_engine::registry::{Parser, Registry};

/// Register every built-in plugin. This is the only place a plugin is named.
pub fn register_builtin(registry: &mut Registry) {
    registry
        .register("DelimitedSource", Parser::Source(delimited::source::parse))
        .register("DelimitedSink", Parser::Sink(delimited::sink::parse))
        .register("JavaScriptTransform", Parser::Transform(js::parse))
        .register("NullSink", Parser::Sink(null::parse))
        .set_dead_letter(delimited::sink::dead_letter);
}

/// A registry holding every built-in plugin.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    register_builtin(&mut registry);
    registry
}

//! The table from plugin `Type` names to their config parsers.
//!
//! The engine knows no plugin: the plugins crate fills a [`Registry`] with one visible list.

use std::path::Path;

use crate::component::{BuildCx, NodeCx, Sink, SinkConfig, SourceConfig, TransformConfig};
use crate::error::BuildError;
use crate::load::config::{ConfigCx, MapReader};

/// Parses a source's `Config` map. Record errors in the `ConfigCx` and return `None` on failure;
/// unread keys are reported by the engine afterwards.
pub type SourceParser =
    fn(&mut MapReader<'_>, &mut ConfigCx, &NodeCx) -> Option<Box<dyn SourceConfig>>;
/// Parses a transform's `Config` map.
pub type TransformParser =
    fn(&mut MapReader<'_>, &mut ConfigCx, &NodeCx) -> Option<Box<dyn TransformConfig>>;
/// Parses a sink's `Config` map.
pub type SinkParser = fn(&mut MapReader<'_>, &mut ConfigCx, &NodeCx) -> Option<Box<dyn SinkConfig>>;

/// Builds the sink that writes the dead-letter file: batches of [`crate::reject::reject_schema`]
/// to `path`, in a format chosen by its extension.
pub type DeadLetterBuilder = fn(path: &Path, cx: &BuildCx) -> Result<Box<dyn Sink>, BuildError>;

/// A registered plugin's parser, by role.
#[derive(Debug, Clone, Copy)]
pub enum Parser {
    /// Produces rows.
    Source(SourceParser),
    /// Consumes and produces rows.
    Transform(TransformParser),
    /// Consumes rows.
    Sink(SinkParser),
}

/// Plugin types by name.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<(&'static str, Parser)>,
    dead_letter: Option<DeadLetterBuilder>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a plugin type under `name` (matched case-insensitively).
    pub fn register(&mut self, name: &'static str, parser: Parser) -> &mut Self {
        self.entries.push((name, parser));
        self
    }

    /// Look up a type name; a `Plugin` suffix is accepted (`DelimitedSourcePlugin`), as the original
    /// system allowed.
    pub fn lookup(&self, written: &str) -> Option<(&'static str, Parser)> {
        let name = written.trim();
        let base = name
            .len()
            .checked_sub(6)
            .filter(|&cut| cut > 0 && name.is_char_boundary(cut))
            .filter(|&cut| name[cut..].eq_ignore_ascii_case("plugin"))
            .map_or(name, |cut| &name[..cut]);
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(base))
            .copied()
    }

    /// Set the writer of dead-letter files.
    pub fn set_dead_letter(&mut self, builder: DeadLetterBuilder) -> &mut Self {
        self.dead_letter = Some(builder);
        self
    }

    /// The writer of dead-letter files, if one is registered.
    pub fn dead_letter(&self) -> Option<DeadLetterBuilder> {
        self.dead_letter
    }

    /// Every registered name, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|(n, _)| *n).collect()
    }
}

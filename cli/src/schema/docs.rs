//! Descriptions and defaults for the schema, from the reference docs: each plugin's key table in
//! `docs/plugins.md`, the column table and the annotated example of `docs/pipeline.md`.

use std::collections::BTreeMap;

use serde_json::Value;

const PLUGINS: &str = include_str!("../../../docs/plugins.md");
const PIPELINE: &str = include_str!("../../../docs/pipeline.md");

/// What the docs say of one key.
#[derive(Debug, Default)]
pub struct Described {
    pub description: Option<String>,
    pub default: Option<Value>,
}

/// The docs, read once.
#[derive(Debug, Default)]
pub struct Docs {
    /// `(plugin type, key)` to `(default, meaning)`.
    plugins: BTreeMap<(String, String), (String, String)>,
    /// Schema column keys to `(default, meaning)`.
    columns: BTreeMap<String, (String, String)>,
    /// Keys of the annotated example to their comment.
    comments: BTreeMap<String, String>,
}

impl Docs {
    pub fn load() -> Self {
        let mut docs = Docs::default();
        let mut section = String::new();
        for line in PLUGINS.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading.trim().to_string();
            } else if let Some((key, default, meaning)) = key_row(line) {
                docs.plugins
                    .insert((section.clone(), key), (default, meaning));
            }
        }
        let mut in_columns = false;
        for line in PIPELINE.lines() {
            if line.starts_with("## ") {
                in_columns = line.contains("Types and schemas");
            } else if let Some((key, default, meaning)) = key_row(line).filter(|_| in_columns) {
                docs.columns.insert(key, (default, meaning));
            }
            if let Some((key, comment)) = commented_key(line) {
                docs.comments.entry(key).or_insert(comment);
            }
        }
        docs
    }

    /// What the docs say of `key` in the map at `path` (normalized as the schema's maps are).
    pub fn describe(&self, path: &str, key: &str) -> Described {
        let row = if let Some(plugin) = path.strip_prefix('@').filter(|p| !p.contains('.')) {
            self.plugins.get(&(plugin.to_string(), key.to_string()))
        } else if path.ends_with("OutputSchema.Columns[]") {
            self.columns.get(key)
        } else {
            None
        };
        match row {
            Some((default, meaning)) => described(default, meaning),
            None if path.starts_with("Pipeline") || path.is_empty() => Described {
                description: self.comments.get(key).cloned(),
                default: None,
            },
            None => Described::default(),
        }
    }
}

/// The description, and the default when it is one plain value (`` `true` ``, `` `0` ``,
/// `` `auto` ``); another default (`Settings.ChunkSize`, "none", "required") is said in words.
fn described(default: &str, meaning: &str) -> Described {
    let plain = default
        .strip_prefix('`')
        .and_then(|d| d.strip_suffix('`'))
        .filter(|d| !d.contains('`'));
    let value = plain.map(|d| match d {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => d
            .parse::<u64>()
            .map_or(Value::String(d.to_string()), Value::from),
    });
    let mut description = meaning.replace("\\|", "|");
    if value.is_none() && !default.is_empty() {
        description = format!("{description} (default: {default})");
    }
    Described {
        description: Some(description),
        default: value,
    }
}

/// A row of a key table: `` | `Key` | default | meaning | ``.
fn key_row(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("| `")?;
    let (key, _) = rest.split_once('`')?;
    let cells = split_cells(line);
    let [_, default, meaning] = <[String; 3]>::try_from(cells).ok()?;
    Some((key.to_string(), default, meaning))
}

/// The cells of a table row; `\|` inside a cell is not a separator.
fn split_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push_str("\\|");
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    cells
}

/// `    ChunkSize: 8192   # rows per batch, ...` (commented out or not) in the annotated example.
fn commented_key(line: &str) -> Option<(String, String)> {
    let line = line.trim_start().trim_start_matches("# ").trim_start();
    let (key, rest) = line.split_once(':')?;
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (_, comment) = rest.split_once("  # ")?;
    Some((key.to_string(), comment.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rows_and_defaults_are_read() {
        let (key, default, meaning) = key_row("| `Quote` | `\"` | a \\| b |").unwrap();
        assert_eq!((key.as_str(), default.as_str()), ("Quote", "`\"`"));
        assert_eq!(described(&default, &meaning).description.unwrap(), "a | b");
        assert_eq!(described("`true`", "x").default, Some(Value::Bool(true)));
        assert_eq!(described("`8192`", "x").default, Some(Value::from(8192)));
        assert_eq!(
            described("none", "x").description.unwrap(),
            "x (default: none)"
        );
    }

    #[test]
    fn every_plugin_has_its_keys_described() {
        let docs = Docs::load();
        let d = docs.describe("@DelimitedSource", "HasHeaders");
        assert_eq!(d.default, Some(Value::Bool(true)));
        assert!(docs
            .describe("Pipeline.Settings", "ChunkSize")
            .description
            .is_some());
        assert!(docs
            .describe("@Sort.OutputSchema.Columns[]", "Format")
            .description
            .is_some());
    }
}

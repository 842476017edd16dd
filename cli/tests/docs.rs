//! Every plugin type and every config key the loader accepts is documented in `docs/`.
//!
//! How the keys are found: not by reading the source, but by asking the loader itself. Every key
//! is read through a `MapReader`, and `flowengine_engine::load::config::record_asked_keys` lists the keys
//! the readers were asked for (accepted keys, and the keys of the original system that are refused
//! with their replacement). The test plans, under that recorder:
//! - `MAXIMAL` (`cli/src/schema/maximal.yaml`): one pipeline that uses every plugin type with
//!   every key it accepts, which must plan without error, so that keys read only when another key
//!   is present are asked too;
//! - every pipeline the golden cases, the examples and the benchmark jobs hold (errors or not).
//!
//! Then:
//! - every type in the plugin registry has a heading of its own in `docs/plugins.md`;
//! - every key of a plugin's own `Config` map appears in backticks in that plugin's section of
//!   `docs/plugins.md` (a key every plugin accepts, such as `ErrorHandling`, anywhere in
//!   `plugins.md`);
//! - every other key (the file's structure, `Settings`, connections, schema columns, nested maps,
//!   and the legacy keys of the original system, whatever map they are in) appears in backticks
//!   somewhere in `docs/*.md`.
//!
//! The same recording makes `flowengine schema` (`cli/src/schema/`); the last two tests check the
//! schema against the loader on every shipped pipeline and on broken variants of the example.
//!
//! "In backticks" means as a word inside an inline code span, so `` `OutputSchema.Inherit` ``
//! documents both `OutputSchema` and `Inherit`. A new key read by a plugin fails this test until it
//! is documented; a key read only under a condition `MAXIMAL` does not meet is missed, so give
//! `MAXIMAL` the key when you add one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flowengine_engine::load::config::{record_asked_keys, AskedKey};
use flowengine_engine::{plan_text, LoadOptions};
use flowengine_plugins::builtin_registry;

/// Every plugin type, with every key it accepts (nested keys included). It must plan cleanly.
const MAXIMAL: &str = include_str!("../src/schema/maximal.yaml");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The words inside the inline code spans of a markdown text (fenced blocks left out).
fn code_words(markdown: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 {
                words.extend(
                    span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| !w.is_empty())
                        .map(str::to_string),
                );
            }
        }
    }
    words
}

/// A markdown heading line's level and text.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    (level > 0 && line[level..].starts_with(' ')).then(|| (level, line[level..].trim()))
}

/// The headings of a markdown text, with their level and the text of their section (up to the
/// next heading of the same or a higher level).
fn sections(markdown: &str) -> Vec<(usize, String, String)> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut fenced = false;
    let mut headings = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            if let Some((level, text)) = heading(line) {
                headings.push((i, level, text.to_string()));
            }
        }
    }
    headings
        .iter()
        .map(|(start, level, text)| {
            let end = headings
                .iter()
                .find(|(i, l, _)| i > start && l <= level)
                .map_or(lines.len(), |(i, _, _)| *i);
            (*level, text.clone(), lines[*start..end].join("\n"))
        })
        .collect()
}

/// Plan `text` under the recorder; the node types by name when it planned.
fn plan_recording(
    text: &str,
    path: &Path,
) -> (Result<BTreeMap<String, String>, String>, Vec<AskedKey>) {
    let registry = builtin_registry();
    let (planned, asked) =
        record_asked_keys(|| plan_text(text, path, &LoadOptions::default(), &registry));
    let types = planned
        .map(|plan| {
            plan.nodes
                .iter()
                .map(|n| (n.name.clone(), n.type_name.to_string()))
                .collect()
        })
        .map_err(|e| e.to_string());
    (types, asked)
}

/// Every pipeline file of the golden cases, the examples and the benchmark jobs.
fn shipped_pipelines() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    for group in ["testdata/cases", "examples"] {
        for entry in std::fs::read_dir(root.join(group)).unwrap() {
            let file = entry.unwrap().path().join("pipeline.yaml");
            if file.is_file() {
                files.push(file);
            }
        }
    }
    for entry in std::fs::read_dir(root.join("benches/pipelines")).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_some_and(|e| e == "yaml") {
            files.push(file);
        }
    }
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} pipeline files",
        files.len()
    );
    files
}

/// `Pipeline.Plugins[name].Config` → `name`.
fn config_owner(map: &str) -> Option<&str> {
    map.strip_prefix("Pipeline.Plugins[")?
        .strip_suffix("].Config")
}

#[test]
fn every_plugin_type_has_a_heading_in_plugins_md() {
    let plugins_md = std::fs::read_to_string(root().join("docs/plugins.md")).unwrap();
    let headings: BTreeSet<String> = sections(&plugins_md)
        .into_iter()
        .map(|(_, text, _)| text.trim_matches('`').to_string())
        .collect();
    let missing: Vec<&str> = builtin_registry()
        .names()
        .into_iter()
        .filter(|name| !headings.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "plugin types without a heading of their own in docs/plugins.md: {missing:?}"
    );
}

#[test]
fn every_config_key_is_documented() {
    let root = root();
    let docs_dir = root.join("docs");
    let mut all_docs = String::new();
    for entry in std::fs::read_dir(&docs_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            all_docs.push_str(&std::fs::read_to_string(&path).unwrap());
            all_docs.push('\n');
        }
    }
    let plugins_md = std::fs::read_to_string(docs_dir.join("plugins.md")).unwrap();
    let anywhere = code_words(&all_docs);
    let in_plugins_md = code_words(&plugins_md);
    let by_type: BTreeMap<String, BTreeSet<String>> = sections(&plugins_md)
        .into_iter()
        .map(|(_, text, body)| (text.trim_matches('`').to_string(), code_words(&body)))
        .collect();

    // Plan the maximal pipeline first: it must plan, and it names which node is which type.
    let here = root.join("docs/maximal.yaml");
    let (types, mut asked) = plan_recording(MAXIMAL, &here);
    let types = types.unwrap_or_else(|e| panic!("the MAXIMAL pipeline no longer plans:\n{e}"));
    let mut node_types = types;
    for file in shipped_pipelines() {
        let text = std::fs::read_to_string(&file).unwrap();
        let (planned, more) = plan_recording(&text, &file);
        // A shipped pipeline's node names are its own: attribute its keys only if it planned.
        let planned = planned.unwrap_or_default();
        for key in more {
            match config_owner(&key.map).and_then(|n| planned.get(n)) {
                Some(ty) => asked.push(AskedKey {
                    map: format!("Pipeline.Plugins[{ty}].Config"),
                    ..key
                }),
                None if config_owner(&key.map).is_some() => asked.push(AskedKey {
                    map: format!("{}.?", key.map),
                    ..key
                }),
                None => asked.push(key),
            }
        }
    }
    for ty in node_types.values().cloned().collect::<Vec<_>>() {
        node_types.insert(ty.clone(), ty);
    }
    assert!(
        builtin_registry()
            .names()
            .iter()
            .all(|n| node_types.values().any(|t| t == n)),
        "MAXIMAL must use every plugin type"
    );

    // The keys of each plugin type's own Config map; those all types share are common.
    let mut own: BTreeMap<&str, BTreeSet<&'static str>> = BTreeMap::new();
    for key in &asked {
        if let Some(ty) = config_owner(&key.map).and_then(|n| node_types.get(n)) {
            own.entry(ty.as_str()).or_default().insert(key.key);
        }
    }
    let common: BTreeSet<&str> = own
        .values()
        .fold(None::<BTreeSet<&str>>, |acc, keys| match acc {
            None => Some(keys.clone()),
            Some(acc) => Some(acc.intersection(keys).copied().collect()),
        })
        .unwrap_or_default();

    let mut problems = BTreeSet::new();
    for key in &asked {
        // Legacy keys are documented together, in the table of replacements in pipeline.md.
        let owner = config_owner(&key.map)
            .and_then(|n| node_types.get(n))
            .filter(|_| !key.legacy);
        match owner {
            Some(_) if common.contains(key.key) => {
                if !in_plugins_md.contains(key.key) {
                    problems.insert(format!(
                        "`{}`, which every plugin accepts, is not in backticks in docs/plugins.md",
                        key.key
                    ));
                }
            }
            Some(ty) => {
                let documented = by_type
                    .get(ty.as_str())
                    .is_some_and(|w| w.contains(key.key));
                if !documented {
                    problems.insert(format!(
                        "`{}` ({ty}'s Config) is not in backticks in the `{ty}` section of docs/plugins.md",
                        key.key
                    ));
                }
            }
            None => {
                if !anywhere.contains(key.key) {
                    let what = if key.legacy { "legacy key" } else { "key" };
                    problems.insert(format!(
                        "{what} `{}` (read at `{}`) is not in backticks in any docs/*.md",
                        key.key, key.map
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "undocumented config keys ({}):\n{}",
        problems.len(),
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
    assert!(
        asked.len() > 100,
        "the recorder saw only {} keys",
        asked.len()
    );
}

/// The pipeline the README shows plans (its input file is not needed: planning opens no file).
#[test]
fn readme_pipeline_plans() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## A pipeline")
        .expect("README has `## A pipeline`")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let registry = builtin_registry();
    let path = root().join("README.yaml");
    if let Err(e) = plan_text(
        &section[start..end],
        &path,
        &LoadOptions::default(),
        &registry,
    ) {
        panic!("the README's pipeline does not plan:\n{e}");
    }
}

/// The schema `flowengine schema` prints, compiled.
fn schema_validator() -> jsonschema::Validator {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("not a valid schema: {e}"))
}

/// A YAML document as the JSON value an editor validates.
fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(r) => r
            .parse::<f64>()
            .map_or(Value::String(r.clone()), Value::from),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => yaml_to_json(other).to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// What the schema finds wrong with `text`.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let docs = match yaml_rust2::YamlLoader::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let json = docs.first().map_or(serde_json::Value::Null, yaml_to_json);
    validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect()
}

fn refuses_a_key(errors: &flowengine_engine::ConfigErrors) -> bool {
    use flowengine_engine::error::ConfigErrorKind;
    errors.0.iter().any(|e| {
        matches!(
            e.kind,
            ConfigErrorKind::UnknownKey { .. } | ConfigErrorKind::LegacyKey { .. }
        )
    })
}

/// Every shipped and golden pipeline the loader plans, the schema accepts; every one the loader
/// refuses for a key it does not know (or a key of the original system), the schema refuses.
#[test]
fn the_schema_agrees_with_the_loader_on_every_shipped_pipeline() {
    let validator = schema_validator();
    let registry = builtin_registry();
    let (mut accepted, mut refused) = (0, 0);
    for file in shipped_pipelines() {
        let text = std::fs::read_to_string(&file).unwrap();
        let errors = schema_errors(&validator, &text);
        match plan_text(&text, &file, &LoadOptions::default(), &registry) {
            Ok(_) => {
                assert!(
                    errors.is_empty(),
                    "{}: the loader plans it, the schema refuses it:\n{}",
                    file.display(),
                    errors.join("\n")
                );
                accepted += 1;
            }
            Err(e) if refuses_a_key(&e) => {
                assert!(
                    !errors.is_empty(),
                    "{}: the loader refuses a key ({e}), the schema accepts it",
                    file.display()
                );
                refused += 1;
            }
            Err(_) => {}
        }
    }
    assert!(accepted > 50, "only {accepted} pipelines planned");
    assert!(refused > 0, "no pipeline with an unknown key was checked");
}

/// An unknown key in each map of the shipped example: the loader refuses it, and so does the
/// schema. So do a legacy key, a plugin type the registry lacks, a value outside a range and a word
/// outside a choice.
#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    let validator = schema_validator();
    let registry = builtin_registry();
    let file = root().join("examples/customers/pipeline.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(schema_errors(&validator, &text).is_empty());
    let edits: [(&str, &str); 10] = [
        ("Pipeline:\n", "Pipelines: 1\nPipeline:\n"),
        ("  Settings:\n", "  Colour: blue\n  Settings:\n"),
        ("    ChunkSize: 8192", "    ChunkSize: 8192\n    Chunks: 2"),
        ("    - Name: read\n", "    - Name: read\n      Notes: x\n"),
        (
            "        HasHeaders: true",
            "        HasHeaders: true\n        Header: true",
        ),
        ("Type: int64 }", "Type: int64, Width: 3 }"),
        (
            "        HasHeaders: true",
            "        HasHeaders: true\n        InferSchema: true",
        ),
        ("Type: DelimitedSource", "Type: ExcelSource"),
        ("    ChunkSize: 8192", "    ChunkSize: 0"),
        (
            "    ChunkSize: 8192",
            "    ChunkSize: 8192\n    ErrorHandling: skip-rows",
        ),
    ];
    for (from, to) in edits {
        assert!(text.contains(from), "the example no longer holds {from:?}");
        let broken = text.replacen(from, to, 1);
        assert!(
            plan_text(&broken, &file, &LoadOptions::default(), &registry).is_err(),
            "the loader accepts {to:?}"
        );
        assert!(
            !schema_errors(&validator, &broken).is_empty(),
            "the schema accepts {to:?}, which the loader refuses"
        );
    }
}

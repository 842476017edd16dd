//! The `JavaScriptTransform` `Config` keys: the typed config ([`JsConfig`]), the readers that
//! [`super::parse`] runs over the `Config` map, and the output schema. Compiling the script at
//! plan time is `parse`'s last step, in `mod.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{Field, Schema, SchemaRef};
use flowengine_engine::error::{ConfigErrorKind, PlanError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::load::yaml::Node;
use flowengine_engine::schema::{ColumnType, TYPE_NAMES};

use super::log::Level;

/// Ports are a bit set per row, the default output included.
const MAX_PORTS: usize = 63;

/// One field the script may set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Name as declared; `setField` matches it case-insensitively.
    pub name: String,
    /// Declared type.
    pub ty: ColumnType,
    /// `Required: true`: a kept row must have a non-null value.
    pub required: bool,
}

/// Resource limits for one script call or batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Loop iterations per function call (boa counts every loop of one call together).
    pub loop_iterations: u64,
    /// Nested calls.
    pub recursion: usize,
    /// Wall-clock time one batch may take, enforced from outside the engine.
    pub batch_timeout: Duration,
    /// Wall-clock time one row may take (`TimeoutPerRow`); past it the row fails with a
    /// `SCRIPT_LIMIT` problem and the batch goes on with a fresh engine.
    pub row_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            loop_iterations: 10_000_000,
            recursion: 256,
            batch_timeout: Duration::from_secs(30),
            row_timeout: None,
        }
    }
}

/// A parsed `JavaScriptTransform` config.
#[derive(Debug, Clone)]
pub struct JsConfig {
    /// The node's name, for messages and log lines.
    pub node: String,
    /// The script text.
    pub script: Arc<str>,
    /// How positions in the script are shown: the `ScriptFile` path, or `<node>.Script`.
    pub script_name: String,
    /// Declared output fields.
    pub fields: Vec<FieldSpec>,
    /// Whether input columns pass through (true) or the output is the declared fields only.
    pub inherit: bool,
    /// Named output ports, wired as `From: node.port`.
    pub ports: Vec<String>,
    /// Batches on several threads (one engine each) or one engine in source order.
    pub parallel: bool,
    /// Loop, recursion and time limits.
    pub limits: Limits,
    /// The lowest `utils.log` level printed.
    pub log_level: Level,
    /// Whether `process` may be compiled to columnar code (`Compile: false` keeps every row on
    /// boa).
    pub compile: bool,
}

pub(super) fn read_script(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    node: &str,
) -> Option<(String, String)> {
    // Scripts are code: `{Name}` inside them is JavaScript, never a variable.
    let inline = m.raw_string(cx, "Script");
    let file: Option<PathBuf> = m.path_value(cx, "ScriptFile");
    match (inline, file) {
        (Some(_), Some(_)) => {
            let msg = "`Script` and `ScriptFile` are both set; use one";
            cx.error(ConfigErrorKind::Invalid(msg.into()), m.path(), m.mark());
            None
        }
        (Some(text), None) => Some((text, format!("{node}.Script"))),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => Some((text, path.display().to_string())),
            Err(e) => {
                let msg = format!("cannot read `ScriptFile` {}: {e}", path.display());
                let mark = m.entry_mark("ScriptFile");
                cx.error(
                    ConfigErrorKind::Invalid(msg),
                    &m.key_path("ScriptFile"),
                    mark,
                );
                None
            }
        },
        (None, None) => {
            let hint = "write the script inline (`Script: |` then `function process(context) { … }`) or point `ScriptFile` at a .js file";
            let kind = ConfigErrorKind::MissingKey("Script".into());
            cx.error_with_hint(kind, m.path(), m.mark(), hint);
            None
        }
    }
}

/// `OutputSchema: { Inherit, Fields }`. Without it the output is the input, unchanged in shape
/// (a script that only filters, validates or routes).
pub(super) fn read_output_schema(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
) -> Option<(bool, Vec<FieldSpec>)> {
    let Some(mut s) = m.map(cx, "OutputSchema") else {
        return Some((true, Vec::new()));
    };
    s.take("Name");
    s.take("Description");
    // The original's behaviour: the output is the declared fields only.
    let inherit = s.bool(cx, "Inherit").unwrap_or(false);
    let fields = match s.list(cx, "Fields") {
        Some(items) => read_fields(&items, cx),
        None if inherit => Some(Vec::new()),
        None => {
            let hint =
                "declare the fields the script sets, or `Inherit: true` to keep the input columns";
            cx.error_with_hint(
                ConfigErrorKind::MissingKey("Fields".into()),
                s.path(),
                s.mark(),
                hint,
            );
            None
        }
    };
    s.finish(cx);
    Some((inherit, fields?))
}

fn read_fields(items: &[(String, &Node)], cx: &mut ConfigCx) -> Option<Vec<FieldSpec>> {
    let mut fields: Vec<FieldSpec> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (path, node) in items {
        match read_field(node, path, cx) {
            Some(f) if fields.iter().any(|d| d.name.eq_ignore_ascii_case(&f.name)) => {
                let msg = format!(
                    "duplicate field `{}` (names match case-insensitively)",
                    f.name
                );
                cx.error(ConfigErrorKind::Invalid(msg), path, node.mark);
                ok = false;
            }
            Some(f) => fields.push(f),
            None => ok = false,
        }
    }
    ok.then_some(fields)
}

fn read_field(node: &Node, path: &str, cx: &mut ConfigCx) -> Option<FieldSpec> {
    let mut m = MapReader::new(node, path, cx)?;
    let name = m.required_string(cx, "Name");
    let ty_mark = m.entry_mark("Type");
    let ty = m.required_string(cx, "Type").and_then(|t| {
        ColumnType::parse(&t)
            .map_err(|msg| {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: format!("a type ({TYPE_NAMES})"),
                    found: format!("{t:?}"),
                };
                cx.error_with_hint(kind, &m.key_path("Type"), ty_mark, &msg);
            })
            .ok()
    });
    let required = match (m.bool(cx, "Required"), m.bool(cx, "Nullable")) {
        (Some(r), _) => r,
        (None, Some(n)) => !n,
        (None, None) => false,
    };
    m.take("Description");
    m.finish(cx);
    let name = name?;
    if name.trim().is_empty() {
        let kind = ConfigErrorKind::InvalidValue {
            expected: "a non-empty field name".into(),
            found: "\"\"".into(),
        };
        cx.error(kind, path, node.mark);
        return None;
    }
    Some(FieldSpec {
        name,
        ty: ty?,
        required,
    })
}

pub(super) fn read_limits(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Limits {
    let d = Limits::default();
    Limits {
        loop_iterations: m
            .integer(cx, "MaxLoopIterations", 1, u64::MAX >> 1)
            .unwrap_or(d.loop_iterations),
        recursion: m
            .integer(cx, "MaxRecursion", 1, 100_000)
            .map_or(d.recursion, |n| n as usize),
        batch_timeout: m
            .integer(cx, "BatchTimeoutMs", 1, 24 * 3600 * 1000)
            .map_or(d.batch_timeout, Duration::from_millis),
        row_timeout: m.duration(
            cx,
            "TimeoutPerRow",
            Duration::from_millis(1),
            Duration::from_secs(3600),
        ),
    }
}

/// `Ports:` as declared, or else the port names the script sends to with string literals.
/// Either way every port the script names literally must be declared, so a typo is a plan-time
/// error rather than rows sent nowhere.
pub(super) fn read_ports(
    m: &mut MapReader<'_>,
    cx: &mut ConfigCx,
    script: &str,
) -> Option<Vec<String>> {
    let used = literal_ports(script);
    let mark = m.entry_mark("Ports");
    let path = m.key_path("Ports");
    let declared: Option<Vec<String>> = m.list(cx, "Ports").map(|items| {
        items
            .iter()
            .filter_map(|(_, n)| n.as_scalar().map(str::to_string))
            .collect()
    });
    let ports = match declared {
        None => used,
        Some(declared) => {
            if let Some(missing) = used.iter().find(|p| !declared.contains(p)) {
                let msg = format!(
                    "the script sends rows to port `{missing}`, which `Ports` does not list ({})",
                    declared.join(", ")
                );
                cx.error(ConfigErrorKind::Invalid(msg), &path, mark);
                return None;
            }
            declared
        }
    };
    if let Some(bad) = ports.iter().find(|p| !valid_port_name(p)) {
        let msg = format!("port name `{bad}` must be letters, digits, `_` or `-`");
        cx.error(ConfigErrorKind::Invalid(msg), &path, mark);
        return None;
    }
    if ports.len() > MAX_PORTS {
        let msg = format!("{} ports; at most {MAX_PORTS} are supported", ports.len());
        cx.error(ConfigErrorKind::Invalid(msg), &path, mark);
        return None;
    }
    Some(ports)
}

fn valid_port_name(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Port names in `.send('x')` / `.sendCopy("x")` calls, in order of first use.
pub(crate) fn literal_ports(script: &str) -> Vec<String> {
    let mut ports: Vec<String> = Vec::new();
    for method in [".send", ".sendCopy"] {
        let mut rest = script;
        while let Some(at) = rest.find(method) {
            rest = &rest[at + method.len()..];
            let Some(args) = rest.trim_start().strip_prefix('(') else {
                continue;
            };
            let args = args.trim_start();
            let Some(quote) = args
                .chars()
                .next()
                .filter(|c| matches!(c, '\'' | '"' | '`'))
            else {
                continue;
            };
            let body = &args[1..];
            if let Some(end) = body.find(quote) {
                let name = body[..end].to_string();
                if !ports.contains(&name) {
                    ports.push(name);
                }
            }
        }
    }
    ports
}

impl JsConfig {
    /// The output schema for `input`: declared fields replace input columns of the same name and
    /// the rest follow them when `Inherit` is true; only the declared fields otherwise.
    pub fn schema_for(&self, input: &Schema) -> Result<SchemaRef, PlanError> {
        let declared = |f: &FieldSpec| Field::new(&f.name, f.ty.to_arrow(), !f.required);
        let mut out: Vec<Field> = Vec::new();
        if self.inherit {
            for f in input.fields() {
                let replaced = self
                    .fields
                    .iter()
                    .find(|d| d.name.eq_ignore_ascii_case(f.name()));
                out.push(replaced.map_or_else(|| f.as_ref().clone(), declared));
            }
        }
        for f in &self.fields {
            if !out.iter().any(|o| o.name().eq_ignore_ascii_case(&f.name)) {
                out.push(declared(f));
            }
        }
        if out.is_empty() {
            return Err(PlanError::new(
                "the output has no columns: declare `OutputSchema.Fields`",
            ));
        }
        Ok(Arc::new(Schema::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_ports_are_found_in_order() {
        let script = "context.route.send('no_email'); context.route.sendCopy( \"audit\" ); x.send(name); route.send(`no_email`)";
        assert_eq!(literal_ports(script), vec!["no_email", "audit"]);
    }
}

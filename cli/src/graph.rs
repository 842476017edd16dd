//! `flowengine graph`: a planned pipeline's nodes and connections as text, DOT or Mermaid, each
//! connection labelled with the schema that travels on it.

use std::fmt::Write as _;

use arrow_schema::SchemaRef;
use flowengine_engine::schema::type_name;
use flowengine_engine::Plan;

/// How the graph is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Nodes in run order, then each connection with its columns.
    Text,
    /// Graphviz (`dot -Tsvg graph.dot > graph.svg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab markdown).
    Mermaid,
}

/// One connection, ready to draw.
struct Link {
    from: usize,
    to: usize,
    /// `from` or `from.port`, `to` or `to.port`.
    from_end: String,
    to_end: String,
    schema: Option<SchemaRef>,
}

/// `plan` drawn in `format`.
pub fn render(plan: &Plan, format: Format) -> String {
    let links = links(plan);
    match format {
        Format::Text => text(plan, &links),
        Format::Dot => dot(plan, &links),
        Format::Mermaid => mermaid(plan, &links),
    }
}

fn links(plan: &Plan) -> Vec<Link> {
    plan.edges
        .iter()
        .map(|e| {
            let end = |node: usize, port: usize, ports: &[String]| match port {
                0 => plan.nodes[node].name.clone(),
                k => format!("{}.{}", plan.nodes[node].name, ports[k - 1]),
            };
            let to = &plan.nodes[e.to];
            let schema = match e.to_port {
                0 => to.input_schema.clone(),
                k => to.side_schemas.get(k - 1).cloned(),
            };
            Link {
                from: e.from,
                to: e.to,
                from_end: end(e.from, e.port, &plan.nodes[e.from].ports),
                to_end: end(e.to, e.to_port, &to.input_ports),
                schema: schema.or_else(|| plan.nodes[e.from].output_schema.clone()),
            }
        })
        .collect()
}

/// `name type` for each column, `?` after a nullable one's type.
fn columns(schema: &Option<SchemaRef>) -> Vec<String> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    schema
        .fields()
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "?" } else { "" };
            format!("{} {}{null}", f.name(), type_name(f.data_type()))
        })
        .collect()
}

fn text(plan: &Plan, links: &[Link]) -> String {
    let mut out = format!(
        "pipeline `{}`: {} nodes, {} connections\n\nnodes (in run order):\n",
        plan.name,
        plan.nodes.len(),
        links.len()
    );
    let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for &i in &plan.order {
        let n = &plan.nodes[i];
        let _ = writeln!(
            out,
            "  {:width$}  {:9}  {}",
            n.name,
            n.kind.role(),
            n.type_name
        );
    }
    out.push_str("\nconnections:\n");
    for link in links {
        let _ = writeln!(out, "  {} -> {}", link.from_end, link.to_end);
        let _ = writeln!(out, "    {}", columns(&link.schema).join(", "));
    }
    if let Some(dead) = &plan.dead_letter {
        let _ = writeln!(
            out,
            "\nrejected rows -> {} (dead letter)",
            dead.path.display()
        );
    }
    out
}

/// Text inside a DOT string: quotes and backslashes escaped.
fn dot_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(plan: &Plan, links: &[Link]) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
        dot_escaped(&plan.name)
    );
    for (i, n) in plan.nodes.iter().enumerate() {
        let shape = match n.kind.role() {
            "source" => "cylinder",
            "sink" => "folder",
            _ => "box",
        };
        let label = format!("{}\\n{}", dot_escaped(&n.name), dot_escaped(n.type_name));
        let _ = writeln!(out, "  n{i} [label=\"{label}\", shape={shape}];");
    }
    for link in links {
        let mut label = port_label(link);
        for column in columns(&link.schema) {
            label.push_str(&dot_escaped(&column));
            label.push_str("\\l");
        }
        let _ = writeln!(out, "  n{} -> n{} [label=\"{label}\"];", link.from, link.to);
    }
    out.push_str("}\n");
    out
}

/// `port no_age` or `into port lookup` when a connection leaves or enters a named port, as a line
/// of a DOT label.
fn port_label(link: &Link) -> String {
    let from = link.from_end.split_once('.').map(|(_, p)| p);
    let to = link.to_end.split_once('.').map(|(_, p)| p);
    match (from, to) {
        (None, None) => String::new(),
        (Some(f), None) => format!("port {f}\\l"),
        (None, Some(t)) => format!("into port {t}\\l"),
        (Some(f), Some(t)) => format!("port {f} into port {t}\\l"),
    }
}

/// Mermaid label text: quotes as entities, so a label can be quoted.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn mermaid(plan: &Plan, links: &[Link]) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, n) in plan.nodes.iter().enumerate() {
        let label = format!(
            "{}<br/>{}",
            mermaid_text(&n.name),
            mermaid_text(n.type_name)
        );
        let (open, close) = match n.kind.role() {
            "source" => ("[(", ")]"),
            "sink" => ("[/", "/]"),
            _ => ("[", "]"),
        };
        let _ = writeln!(out, "  n{i}{open}\"{label}\"{close}");
    }
    for link in links {
        let mut label: Vec<String> = columns(&link.schema)
            .iter()
            .map(|c| mermaid_text(c))
            .collect();
        let ports = port_label(link).replace("\\l", "");
        if !ports.is_empty() {
            label.insert(0, mermaid_text(&ports));
        }
        let _ = writeln!(
            out,
            "  n{} -->|\"{}\"| n{}",
            link.from,
            label.join("<br/>"),
            link.to
        );
    }
    out
}

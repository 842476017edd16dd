//! From a pipeline file to a checked graph of typed nodes. Does no I/O.
//!
//! Every problem is recorded, not just the first: unknown types, bad plugin configs, unknown or
//! duplicate names, cycles (with the chain), misplaced sources and sinks, unconnected nodes, schema
//! mismatches where several inputs meet, and outputs that would overwrite inputs or each other.

mod files;
mod graph;
pub mod space;

use std::collections::HashMap;
use std::path::Path;

use arrow_schema::SchemaRef;

use crate::component::{NodeCx, SinkConfig, SourceConfig, TransformConfig};
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, PlanError};
use crate::load::config::{closest, ConfigCx, MapReader};
use crate::load::file::{self, LoadOptions, PipelineConfig, PluginEntry, Settings};
use crate::load::yaml::Mark;
use crate::memory::{self, Budget};
use crate::registry::{DeadLetterBuilder, Parser, Registry};
use crate::reject::ErrorPolicy;

/// A node's role and typed config.
#[derive(Debug)]
pub enum NodeKind {
    /// Produces batches.
    Source(Box<dyn SourceConfig>),
    /// Consumes and produces batches.
    Transform(Box<dyn TransformConfig>),
    /// Consumes batches.
    Sink(Box<dyn SinkConfig>),
}

impl NodeKind {
    /// `source`, `transform` or `sink`.
    pub fn role(&self) -> &'static str {
        match self {
            NodeKind::Source(_) => "source",
            NodeKind::Transform(_) => "transform",
            NodeKind::Sink(_) => "sink",
        }
    }
}

/// A node in the plan.
#[derive(Debug)]
pub struct PlanNode {
    /// Its unique name.
    pub name: String,
    /// The plugin type as registered.
    pub type_name: &'static str,
    /// Role and config.
    pub kind: NodeKind,
    /// Indexes of edges into this node.
    pub inputs: Vec<usize>,
    /// Indexes of edges out of this node.
    pub outputs: Vec<usize>,
    /// The schema of the batches it receives (none for sources).
    pub input_schema: Option<SchemaRef>,
    /// The schema of the batches it emits (none for sinks).
    pub output_schema: Option<SchemaRef>,
    /// What its bad rows do.
    pub policy: ErrorPolicy,
    /// Where the plugin's own `Config` set `ErrorHandling`, if it did.
    pub policy_mark: Option<Mark>,
    /// Named output ports besides the default (transforms that route rows).
    pub ports: Vec<String>,
    /// Named input ports besides the main input (a `Lookup`'s reference rows).
    pub input_ports: Vec<String>,
    /// The schema arriving at each input port, in `input_ports` order.
    pub side_schemas: Vec<SchemaRef>,
}

/// Where rejected rows are written, and by what.
#[derive(Debug, Clone)]
pub struct DeadLetterPlan {
    /// The file.
    pub path: std::path::PathBuf,
    /// The writer, from the registry.
    pub builder: DeadLetterBuilder,
}

/// A connection between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Producing node index.
    pub from: usize,
    /// Consuming node index.
    pub to: usize,
    /// The producer's output: 0 for the default, `k` for its `k`-th named port (`From: node.port`).
    pub port: usize,
    /// The consumer's input: 0 for the main one, `k` for its `k`-th input port (`To: node.port`).
    pub to_port: usize,
}

/// A checked pipeline, ready to build.
#[derive(Debug)]
pub struct Plan {
    /// The pipeline's name, substituted.
    pub name: String,
    /// Pipeline-wide settings.
    pub settings: Settings,
    /// Nodes in declaration order.
    pub nodes: Vec<PlanNode>,
    /// Connections.
    pub edges: Vec<Edge>,
    /// Node indexes in topological order.
    pub order: Vec<usize>,
    /// Where rejects go; present when any node skips bad rows.
    pub dead_letter: Option<DeadLetterPlan>,
    /// The sink whose file the default dead-letter path sits next to.
    dead_letter_from: Option<String>,
    /// `Tests:`, checked against the nodes; only `flowengine test` runs them.
    pub tests: Vec<crate::load::tests::TestCase>,
}

/// Load a pipeline file and plan it: everything `flowengine validate` checks.
pub fn load_plan(
    path: &Path,
    opts: &LoadOptions,
    registry: &Registry,
) -> Result<Plan, ConfigErrors> {
    finish_plan(file::load(path, opts)?, registry)
}

/// Like [`load_plan`], for pipeline text already in memory; `path` places it.
pub fn plan_text(
    text: &str,
    path: &Path,
    opts: &LoadOptions,
    registry: &Registry,
) -> Result<Plan, ConfigErrors> {
    finish_plan(file::load_text(text, path, opts)?, registry)
}

fn finish_plan(
    (config, mut cx): (Option<PipelineConfig>, ConfigCx),
    registry: &Registry,
) -> Result<Plan, ConfigErrors> {
    let plan = config.and_then(|c| Plan::new(c, registry, &mut cx));
    let plan = cx.finish(plan)?;
    plan.ok_or_else(|| {
        let msg = "internal error (a bug in FlowEngine): planning failed without an error";
        ConfigErrors(vec![crate::error::ConfigError::new(
            ConfigErrorKind::Graph(msg.into()),
            "",
            None,
        )])
    })
}

impl Plan {
    /// Plan `config`, recording every problem in `cx`. Returns `None` when the graph itself is
    /// unusable; otherwise a plan (which is only valid if `cx` has no errors).
    pub fn new(config: PipelineConfig, registry: &Registry, cx: &mut ConfigCx) -> Option<Plan> {
        if config.plugins.is_empty() {
            return None; // already reported while reading `Plugins`
        }
        let mut nodes = Vec::with_capacity(config.plugins.len());
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut graph_ok = true;
        for entry in &config.plugins {
            if let Some(&first) = by_name.get(&entry.name) {
                let msg = format!(
                    "duplicate plugin name `{}` (first used by plugin #{})",
                    entry.name,
                    first + 1
                );
                cx.error(ConfigErrorKind::Graph(msg), &entry.path, entry.mark);
                graph_ok = false;
                continue;
            }
            let Some(node) = parse_node(entry, registry, cx, &config.settings) else {
                graph_ok = false;
                continue;
            };
            by_name.insert(entry.name.clone(), nodes.len());
            nodes.push(node);
        }
        let mut names: Vec<&str> = Vec::with_capacity(config.plugins.len());
        for p in &config.plugins {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
        let mut edges: Vec<Edge> = Vec::new();
        for conn in &config.connections {
            let from = graph::resolve_endpoint(
                &conn.from, &nodes, &by_name, &names, cx, &conn.path, "From", conn.mark,
            );
            let to = graph::resolve_endpoint(
                &conn.to, &nodes, &by_name, &names, cx, &conn.path, "To", conn.mark,
            );
            let (Some((from, port)), Some((to, to_port))) = (from, to) else {
                graph_ok = false;
                continue;
            };
            let edge = Edge {
                from,
                to,
                port,
                to_port,
            };
            if edges.contains(&edge) {
                let msg = format!("duplicate connection {} -> {}", conn.from, conn.to);
                cx.error(ConfigErrorKind::Graph(msg), &conn.path, conn.mark);
                continue;
            }
            nodes[from].outputs.push(edges.len());
            nodes[to].inputs.push(edges.len());
            edges.push(edge);
        }
        if !graph_ok {
            return None;
        }
        let tests = config.tests.clone();
        let mut plan = Plan {
            name: config.name,
            settings: config.settings,
            nodes,
            edges,
            order: Vec::new(),
            dead_letter: None,
            dead_letter_from: None,
            tests: Vec::new(),
        };
        let marks: Vec<(String, Mark)> = config
            .plugins
            .iter()
            .map(|p| (p.path.clone(), p.mark))
            .collect();
        let find = |name: &str| {
            config
                .plugins
                .iter()
                .find(|p| p.name == name)
                .map(|p| (p.path.clone(), p.mark))
                .unwrap_or_else(|| marks[0].clone())
        };
        if !plan.check_roles(cx, &find) {
            return Some(plan);
        }
        match plan.topological_order() {
            Ok(order) => plan.order = order,
            Err(chain) => {
                let (path, mark) = find(&chain[0]);
                let msg = format!("the connections form a cycle: {}", chain.join(" -> "));
                cx.error(ConfigErrorKind::Graph(msg), &path, mark);
                return Some(plan);
            }
        }
        plan.propagate_schemas(cx, &find);
        plan.plan_dead_letter(registry, cx);
        plan.check_files(cx, &find);
        plan.check_memory(cx);
        plan.check_tests(&tests, cx);
        plan.tests = tests;
        Some(plan)
    }

    /// Each test's inputs must name sources, and its expectations nodes and reason codes.
    fn check_tests(&self, tests: &[crate::load::tests::TestCase], cx: &mut ConfigCx) {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let node = |name: &str| self.nodes.iter().find(|n| n.name == name);
        for (i, test) in tests.iter().enumerate() {
            let path = format!("Tests[{i}]");
            for input in &test.inputs {
                let problem = match node(&input.node) {
                    None => format!(
                        "no node `{}`; the nodes are {}",
                        input.node,
                        names.join(", ")
                    ),
                    Some(n) if !matches!(n.kind, NodeKind::Source(_)) => {
                        format!("`{}` is a {}, not a source", input.node, n.kind.role())
                    }
                    Some(_) => continue,
                };
                let at = format!("{path}.Inputs.{}", input.node);
                cx.error(ConfigErrorKind::Graph(problem), &at, input.mark);
            }
            for expect in &test.expects {
                let at = format!("{path}.Expect.{}", expect.node);
                if node(&expect.node).is_none() {
                    let problem = format!(
                        "no node `{}`; the nodes are {}",
                        expect.node,
                        names.join(", ")
                    );
                    cx.error(ConfigErrorKind::Graph(problem), &at, expect.mark);
                }
                for code in expect.rejects.iter().flatten() {
                    if !crate::error::RowErrorKind::ALL
                        .iter()
                        .any(|k| k.as_str() == code)
                    {
                        let codes: Vec<&str> = crate::error::RowErrorKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect();
                        let problem = format!(
                            "`{code}` is not a reason code; the codes are {}",
                            codes.join(", ")
                        );
                        cx.error(ConfigErrorKind::Graph(problem), &at, expect.mark);
                    }
                }
            }
        }
    }

    /// How `Settings.MemoryLimit` is shared between the batches this pipeline can hold at once.
    pub fn budget(&self) -> Budget {
        let s = &self.settings;
        let shape = memory::Topology {
            threads: s.threads.unwrap_or_else(rayon::current_num_threads),
            channel_capacity: s.channel_capacity,
            nodes: self.nodes.len(),
            edges: self.edges.len(),
            stateful: self
                .nodes
                .iter()
                .filter(|n| matches!(&n.kind, NodeKind::Transform(t) if t.stateful()))
                .count(),
        };
        Budget::new(s.memory_limit, shape)
    }

    fn check_memory(&self, cx: &mut ConfigCx) {
        let budget = self.budget();
        if budget.is_enough() {
            return;
        }
        let msg = format!(
            "`MemoryLimit` {} leaves {} of input to each of the {} batches this pipeline can hold \
             at once ({} bytes of memory per byte of input); it needs at least {}",
            memory::human_bytes(self.settings.memory_limit),
            memory::human_bytes(budget.batch_bytes),
            budget.batches,
            memory::EXPANSION,
            memory::human_bytes(budget.smallest_limit()),
        );
        let hint = "raise `MemoryLimit`, or lower `ChannelCapacity`";
        cx.error_with_hint(
            ConfigErrorKind::Invalid(msg),
            "Pipeline.Settings.MemoryLimit",
            self.settings.marks.memory_limit,
            hint,
        );
    }

    fn propagate_schemas(&mut self, cx: &mut ConfigCx, find: &dyn Fn(&str) -> (String, Mark)) {
        for &i in &self.order.clone() {
            let input = self.merged_input_schema(i, 0, cx, find);
            let sides: Option<Vec<SchemaRef>> = (1..=self.nodes[i].input_ports.len())
                .map(|k| self.merged_input_schema(i, k, cx, find))
                .collect();
            let node = &mut self.nodes[i];
            let (path, mark) = find(&node.name);
            node.input_schema = input.clone();
            node.side_schemas = sides.clone().unwrap_or_default();
            let found = match (&node.kind, input, sides) {
                (NodeKind::Source(s), _, _) => {
                    node.output_schema = Some(s.output_schema());
                    Ok(())
                }
                (NodeKind::Transform(t), Some(input), Some(sides)) => t
                    .output_schema_with(&input, &sides)
                    .map(|s| node.output_schema = Some(s)),
                (NodeKind::Sink(s), Some(input), _) => s.check_input(&input),
                // An upstream error was already reported.
                _ => Ok(()),
            };
            if let Err(errors) = found {
                plugin_errors(cx, &node.name, &path, mark, &errors);
            }
        }
    }

    /// The schema arriving at input `port` of node `i` (0: the main input); several inputs must
    /// agree exactly.
    fn merged_input_schema(
        &self,
        i: usize,
        port: usize,
        cx: &mut ConfigCx,
        find: &dyn Fn(&str) -> (String, Mark),
    ) -> Option<SchemaRef> {
        let node = &self.nodes[i];
        let into_port = node
            .inputs
            .iter()
            .filter(|&&e| self.edges[e].to_port == port);
        let mut schemas = into_port.map(|&e| {
            let from = &self.nodes[self.edges[e].from];
            (from.name.as_str(), from.output_schema.clone())
        });
        let (first_name, first) = schemas.next()?;
        let mut merged = first?;
        for (name, schema) in schemas {
            let schema = schema?;
            if let Some(diff) = crate::schema::describe_difference(&merged, &schema) {
                let (path, mark) = find(&node.name);
                let msg = format!(
                    "the inputs of `{}` have different schemas: `{first_name}` vs `{name}`: {diff}",
                    node.name
                );
                cx.error(ConfigErrorKind::Graph(msg), &path, mark);
                return None;
            }
            merged = crate::schema::nullable_union(&merged, &schema);
        }
        Some(merged)
    }
}

/// Record what a plugin found wrong with its config against its input schema: one error at the
/// node, listing every problem, so the line a user sees names the node once and each problem
/// names its key (from `Config` on) and, when the plugin knows it, where it was written.
fn plugin_errors(cx: &mut ConfigCx, node: &str, path: &str, mark: Mark, errors: &[PlanError]) {
    let shown: Vec<String> = errors
        .iter()
        .map(|e| {
            let mut line = describe(cx, path, e);
            // A lone problem's hint goes on the error itself, as the engine's own do.
            if let (Some(hint), true) = (&e.hint, errors.len() > 1) {
                line.push_str(&format!("\n    hint: {hint}"));
            }
            line
        })
        .collect();
    let message = match shown.as_slice() {
        [one] => format!("`{node}`: {one}"),
        _ => format!(
            "`{node}`: {} problems:\n  {}",
            shown.len(),
            shown.join("\n  ")
        ),
    };
    let error = ConfigError::new(ConfigErrorKind::Graph(message), path, cx.location(mark));
    match errors {
        [PlanError {
            hint: Some(hint), ..
        }] => cx.push(error.with_hint(hint)),
        _ => cx.push(error),
    }
}

/// One plugin problem as `Config.Key (file:line:col): message`; the key path is shown relative
/// to the node (`node_path`), which the error already names.
fn describe(cx: &ConfigCx, node_path: &str, e: &PlanError) -> String {
    let key = e
        .path
        .strip_prefix(node_path)
        .and_then(|p| p.strip_prefix('.'))
        .unwrap_or(&e.path);
    let mut out = key.to_string();
    if let Some(loc) = e.mark.and_then(|m| cx.location(m)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("({loc})"));
    }
    if !out.is_empty() {
        out.push_str(": ");
    }
    out.push_str(&e.message);
    out
}

fn parse_node(
    entry: &PluginEntry,
    registry: &Registry,
    cx: &mut ConfigCx,
    settings: &Settings,
) -> Option<PlanNode> {
    let Some((type_name, parser)) = registry.lookup(&entry.type_name) else {
        let names = registry.names();
        let kind = ConfigErrorKind::UnknownType {
            name: entry.type_name.clone(),
            suggestion: closest(&entry.type_name, &names).map(str::to_string),
            known: names.join(", "),
        };
        cx.error(kind, &format!("{}.Type", entry.path), entry.type_mark);
        return None;
    };
    let node_cx = NodeCx {
        node: entry.name.clone(),
        chunk_size: settings.chunk_size,
    };
    let mut map = MapReader::new(&entry.config, format!("{}.Config", entry.path), cx)?;
    let policy_mark = map
        .has("ErrorHandling")
        .then(|| map.entry_mark("ErrorHandling"));
    let policy = map
        .choice(cx, "ErrorHandling", &ErrorPolicy::CHOICES)
        .unwrap_or(settings.error_handling);
    let kind = match parser {
        Parser::Source(parse) => parse(&mut map, cx, &node_cx).map(NodeKind::Source),
        Parser::Transform(parse) => parse(&mut map, cx, &node_cx).map(NodeKind::Transform),
        Parser::Sink(parse) => parse(&mut map, cx, &node_cx).map(NodeKind::Sink),
    };
    map.finish(cx);
    let (ports, input_ports) = match &kind {
        Some(NodeKind::Transform(t)) => (t.ports(), t.input_ports()),
        _ => (Vec::new(), Vec::new()),
    };
    Some(PlanNode {
        name: entry.name.clone(),
        type_name,
        kind: kind?,
        inputs: Vec::new(),
        outputs: Vec::new(),
        input_schema: None,
        output_schema: None,
        policy,
        policy_mark,
        ports,
        input_ports,
        side_schemas: Vec::new(),
    })
}

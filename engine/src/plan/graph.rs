//! The graph checks: roles, unwired ports, connection ends and the order nodes run in.

use std::collections::HashMap;

use super::{NodeKind, Plan, PlanNode};
use crate::error::ConfigErrorKind;
use crate::load::config::{closest, ConfigCx};
use crate::load::yaml::Mark;

impl Plan {
    pub(super) fn check_roles(
        &self,
        cx: &mut ConfigCx,
        find: &dyn Fn(&str) -> (String, Mark),
    ) -> bool {
        let mut problems: Vec<(&str, String)> = Vec::new();
        if !self
            .nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Source(_)))
        {
            problems.push((&self.nodes[0].name, "the pipeline has no source".into()));
        }
        for n in &self.nodes {
            let outs = n.outputs.len();
            // The main input: connections into a named input port are counted there.
            let ins = n
                .inputs
                .iter()
                .filter(|&&e| self.edges[e].to_port == 0)
                .count();
            let name = n.name.as_str();
            let problem = match n.kind {
                NodeKind::Source(_) if ins > 0 => Some(format!(
                    "source `{name}` cannot have inputs, but {} connects to it",
                    self.input_names(n)
                )),
                NodeKind::Sink(_) if outs > 0 => Some(format!(
                    "sink `{name}` cannot have outputs, but it connects to {}",
                    self.output_names(n)
                )),
                _ if ins == 0 && outs == 0 => Some(format!(
                    "plugin `{name}` is not connected; add a `Connections` entry or remove it"
                )),
                NodeKind::Source(_) if outs == 0 => {
                    Some(format!("source `{name}` has no output connection"))
                }
                NodeKind::Sink(_) if ins == 0 => {
                    Some(format!("sink `{name}` has no input connection"))
                }
                NodeKind::Transform(_) if ins == 0 => {
                    Some(format!("transform `{name}` has no input connection"))
                }
                NodeKind::Transform(_) if outs == 0 => Some(format!(
                    "transform `{name}` has no output connection; its rows would be lost"
                )),
                _ => None,
            };
            problems.extend(problem.map(|p| (name, p)));
            if outs > 0 {
                problems.extend(self.unwired_ports(n).into_iter().map(|p| (name, p)));
            }
            problems.extend(self.side_input_problems(n).into_iter().map(|p| (name, p)));
        }
        for (name, msg) in &problems {
            let (path, mark) = find(name);
            cx.error(ConfigErrorKind::Graph(msg.clone()), &path, mark);
        }
        problems.is_empty()
    }

    /// Input ports left unconnected, and input ports fed (through any chain) by a node that also
    /// feeds the main input (through main inputs): the node reads every input port to its end
    /// before the main input, so such a node would wait on a full main connection forever. A
    /// chain through another node's input port cannot fill up that way, since ports are read
    /// eagerly: one reference source may feed the ports of several chained nodes.
    fn side_input_problems(&self, n: &PlanNode) -> Vec<String> {
        let name = &n.name;
        let mut problems = Vec::new();
        if n.input_ports.is_empty() {
            return problems;
        }
        let main = self.ancestors(n, 0, true);
        for (k, port) in n.input_ports.iter().enumerate() {
            if !n.inputs.iter().any(|&e| self.edges[e].to_port == k + 1) {
                problems.push(format!(
                    "input port `{port}` of `{name}` is not connected (add a connection `To: {name}.{port}`)"
                ));
                continue;
            }
            let shared: Vec<&str> = self
                .ancestors(n, k + 1, false)
                .into_iter()
                .filter(|a| main.contains(a))
                .map(|a| self.nodes[a].name.as_str())
                .collect();
            if let Some(first) = shared.first() {
                problems.push(format!(
                    "`{first}` feeds both the main input and input port `{port}` of `{name}`, which \
                     reads `{port}` to its end first; give `{port}` a source of its own"
                ));
            }
        }
        problems
    }

    /// The nodes upstream of input `port` of `n`, in the order found.
    /// The nodes upstream of `n`'s input `port`; with `main_only`, through main inputs only.
    fn ancestors(&self, n: &PlanNode, port: usize, main_only: bool) -> Vec<usize> {
        let mut found: Vec<usize> = Vec::new();
        let mut stack: Vec<usize> = n
            .inputs
            .iter()
            .filter(|&&e| self.edges[e].to_port == port)
            .map(|&e| self.edges[e].from)
            .collect();
        while let Some(i) = stack.pop() {
            if found.contains(&i) {
                continue;
            }
            found.push(i);
            let inputs = self.nodes[i].inputs.iter().map(|&e| &self.edges[e]);
            stack.extend(
                inputs
                    .filter(|e| !main_only || e.to_port == 0)
                    .map(|e| e.from),
            );
        }
        found
    }

    /// Outputs of a routing transform that lead nowhere: rows sent there would be lost.
    fn unwired_ports(&self, n: &PlanNode) -> Vec<String> {
        let wired = |port: usize| n.outputs.iter().any(|&e| self.edges[e].port == port);
        let name = &n.name;
        let mut problems = Vec::new();
        if !n.ports.is_empty() && !wired(0) {
            problems.push(format!(
                "the default output of `{name}` is not connected; rows that are not routed to a port would be lost (add a connection `From: {name}`)"
            ));
        }
        for (k, port) in n.ports.iter().enumerate() {
            if !wired(k + 1) {
                problems.push(format!(
                    "output port `{port}` of `{name}` is not connected; rows sent there would be lost (add a connection `From: {name}.{port}`)"
                ));
            }
        }
        problems
    }

    fn input_names(&self, n: &PlanNode) -> String {
        let names: Vec<&str> = n
            .inputs
            .iter()
            .map(|&e| self.nodes[self.edges[e].from].name.as_str())
            .collect();
        format!("`{}`", names.join("`, `"))
    }

    fn output_names(&self, n: &PlanNode) -> String {
        let names: Vec<&str> = n
            .outputs
            .iter()
            .map(|&e| self.nodes[self.edges[e].to].name.as_str())
            .collect();
        format!("`{}`", names.join("`, `"))
    }

    /// Kahn's order, or the names along one cycle (first name repeated at the end).
    pub(super) fn topological_order(&self) -> Result<Vec<usize>, Vec<String>> {
        let mut indegree: Vec<usize> = self.nodes.iter().map(|n| n.inputs.len()).collect();
        let mut ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| indegree[i] == 0)
            .rev()
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop() {
            order.push(i);
            for &e in &self.nodes[i].outputs {
                let to = self.edges[e].to;
                indegree[to] -= 1;
                if indegree[to] == 0 {
                    ready.push(to);
                }
            }
        }
        if order.len() == self.nodes.len() {
            return Ok(order);
        }
        Err(self.find_cycle(&indegree))
    }

    /// Walk backwards from any node left with inputs; within the leftover nodes every node has a
    /// leftover predecessor, so the walk must revisit a node, and that loop is a cycle.
    fn find_cycle(&self, indegree: &[usize]) -> Vec<String> {
        let start = (0..self.nodes.len())
            .find(|&i| indegree[i] > 0)
            .unwrap_or_default();
        let mut seen: Vec<usize> = vec![start];
        let mut current = start;
        loop {
            let prev = self.nodes[current]
                .inputs
                .iter()
                .map(|&e| self.edges[e].from)
                .find(|&p| indegree[p] > 0)
                .unwrap_or(current);
            if let Some(pos) = seen.iter().position(|&s| s == prev) {
                let mut cycle: Vec<usize> = seen[pos..].iter().rev().copied().collect();
                // Start at the plugin declared first, so the message does not depend on the walk.
                let first = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
                cycle.rotate_left(first);
                cycle.push(cycle[0]);
                return cycle.iter().map(|&i| self.nodes[i].name.clone()).collect();
            }
            seen.push(prev);
            current = prev;
        }
    }
}

/// A connection end: the node and, for `From: node.port`, the port (0 is the default output).
#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_endpoint(
    written: &str,
    nodes: &[PlanNode],
    by_name: &HashMap<String, usize>,
    names: &[&str],
    cx: &mut ConfigCx,
    path: &str,
    key: &str,
    mark: Mark,
) -> Option<(usize, usize)> {
    if let Some(&i) = by_name.get(written) {
        return Some((i, 0));
    }
    let path = format!("{path}.{key}");
    if let Some((node, port)) = written.rsplit_once('.') {
        if let Some(&i) = by_name.get(node) {
            let (ports, kind) = match key {
                "From" => (&nodes[i].ports, "output"),
                _ => (&nodes[i].input_ports, "input"),
            };
            if let Some(k) = ports.iter().position(|p| p == port) {
                return Some((i, k + 1));
            }
            let msg = match (key, ports.is_empty()) {
                ("To", true) => {
                    format!("`{written}`: plugin `{node}` has no input ports; write `To: {node}`")
                }
                (_, true) => format!("plugin `{node}` has no {kind} port `{port}`"),
                (_, false) => format!(
                    "plugin `{node}` has no {kind} port `{port}`; its {kind} ports are: {}",
                    ports.join(", ")
                ),
            };
            cx.error(ConfigErrorKind::Graph(msg), &path, mark);
            return None;
        }
    }
    // A name that failed to parse was declared: do not call it unknown.
    if names.contains(&written)
        || written
            .rsplit_once('.')
            .is_some_and(|(n, _)| names.contains(&n))
    {
        return None;
    }
    let suggestion = closest(written, names)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    let msg = format!(
        "unknown plugin `{written}`{suggestion}; plugins are: {}",
        names.join(", ")
    );
    cx.error(ConfigErrorKind::Graph(msg), &path, mark);
    None
}

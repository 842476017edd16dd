//! The plans this engine runs: one source, batch transforms one after another, one sink. Anything
//! else is refused at once, naming the node and what it needs, before any file is opened.

use flowengine_engine::plan::{NodeKind, Plan};

use crate::Error;

/// Node indexes from the source to the sink.
pub(crate) fn chain(plan: &Plan) -> Result<Vec<usize>, Error> {
    let unsupported = |i: usize, what: &str| Error::Unsupported {
        node: plan.nodes[i].name.clone(),
        plugin: plan.nodes[i].type_name,
        what: what.to_string(),
    };
    let sources: Vec<usize> = (0..plan.nodes.len())
        .filter(|&i| matches!(plan.nodes[i].kind, NodeKind::Source(_)))
        .collect();
    let (&first, rest) = sources.split_first().ok_or_else(|| Error::Unsupported {
        node: plan.name.clone(),
        plugin: "pipeline",
        what: "a pipeline without a source".into(),
    })?;
    if let Some(&second) = rest.first() {
        return Err(unsupported(second, "a second source (fan-in)"));
    }
    let mut chain = vec![first];
    let mut at = first;
    loop {
        let node = &plan.nodes[at];
        if let NodeKind::Transform(t) = &node.kind {
            if !t.per_batch() {
                return Err(unsupported(at, "a transform that works across batches"));
            }
            if node.ports.len() > 1 {
                return Err(unsupported(at, "named output ports (routes)"));
            }
            if !node.input_ports.is_empty() {
                return Err(unsupported(at, "named input ports"));
            }
        }
        let outs: Vec<_> = plan.edges.iter().filter(|e| e.from == at).collect();
        match (&node.kind, outs.as_slice()) {
            (NodeKind::Sink(_), []) => break,
            (_, [edge]) => {
                let next = edge.to;
                if plan.edges.iter().filter(|e| e.to == next).count() > 1 {
                    return Err(unsupported(next, "several inputs (fan-in)"));
                }
                chain.push(next);
                at = next;
            }
            (_, []) => return Err(unsupported(at, "a node whose output goes nowhere")),
            (_, _) => return Err(unsupported(at, "several consumers (fan-out)")),
        }
    }
    if let Some(i) = (0..plan.nodes.len()).find(|i| !chain.contains(i)) {
        return Err(unsupported(i, "a second path"));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use flowengine_engine::load::file::LoadOptions;
    use flowengine_engine::plan::plan_text;

    use super::*;

    const HEAD: &str = "
Pipeline:
  Name: t
  Plugins:
    - { Name: read, Type: DelimitedSource, Config: { FilePath: in.csv, OutputSchema: { Columns: [{ Name: id, Type: int64 }] } } }
";

    fn chain_of(rest: &str) -> Result<Vec<String>, String> {
        let registry = flowengine_plugins::builtin_registry();
        let text = format!("{HEAD}{rest}");
        let plan = plan_text(
            &text,
            Path::new("/tmp/t.yaml"),
            &LoadOptions::default(),
            &registry,
        )
        .map_err(|e| format!("{e:?}"))?;
        chain(&plan)
            .map(|c| c.iter().map(|&i| plan.nodes[i].name.clone()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_chain_runs_and_the_rest_is_refused_naming_the_node() {
        let chain = chain_of(
            "    - { Name: keep, Type: Filter, Config: { Condition: 'id > 1' } }
    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections: [{ From: read, To: keep }, { From: keep, To: write }]
",
        );
        assert_eq!(chain.unwrap(), ["read", "keep", "write"]);

        let sorted = chain_of(
            "    - { Name: sorted, Type: Sort, Config: { By: [id] } }
    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections: [{ From: read, To: sorted }, { From: sorted, To: write }]
",
        );
        let message = sorted.unwrap_err();
        assert!(
            message.contains("node `sorted` (Sort): a transform that works across batches"),
            "{message}"
        );

        // `Limit` holds no rows, but it ends the input early: not a batch transform either.
        let limited = chain_of(
            "    - { Name: first, Type: Limit, Config: { Rows: 10 } }
    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections: [{ From: read, To: first }, { From: first, To: write }]
",
        );
        let message = limited.unwrap_err();
        assert!(
            message.contains("node `first` (Limit): a transform that works across batches"),
            "{message}"
        );

        let fan_out = chain_of(
            "    - { Name: a, Type: DelimitedSink, Config: { FilePath: a.csv } }
    - { Name: b, Type: DelimitedSink, Config: { FilePath: b.csv } }
  Connections: [{ From: read, To: a }, { From: read, To: b }]
",
        );
        let message = fan_out.unwrap_err();
        assert!(
            message.contains("node `read` (DelimitedSource): several consumers"),
            "{message}"
        );
    }
}

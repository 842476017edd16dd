//! The shapes this engine runs: any acyclic graph of sources, transforms (routing ones, and
//! those that keep state, with their input ports) and sinks, with fan-out and fan-in, as the
//! local engine runs. A Ballista run cuts its input into ranges only for a plain chain
//! ([`chain`]).

use flowengine_engine::plan::{NodeKind, Plan};

use crate::Error;

/// The nodes in an order where every node comes after its producers (the planner's), or what
/// this engine does not run.
pub(crate) fn order(plan: &Plan) -> Result<Vec<usize>, Error> {
    let unsupported = |i: usize, what: &str| Error::Unsupported {
        node: plan.nodes[i].name.clone(),
        plugin: plan.nodes[i].type_name,
        what: what.to_string(),
    };
    if !plan
        .nodes
        .iter()
        .any(|n| matches!(n.kind, NodeKind::Source(_)))
    {
        return Err(Error::Unsupported {
            node: plan.name.clone(),
            plugin: "pipeline",
            what: "a pipeline without a source".into(),
        });
    }
    for (i, node) in plan.nodes.iter().enumerate() {
        if node.outputs.is_empty() && !matches!(node.kind, NodeKind::Sink(_)) {
            return Err(unsupported(i, "a node whose output goes nowhere"));
        }
    }
    // The planner's order, so that nodes are built (inputs opened, outputs staged) in the order
    // the local engine builds them, and the first error is the same.
    if plan.order.len() != plan.nodes.len() {
        let message = format!(
            "a plan of {} nodes ordered as {:?}",
            plan.nodes.len(),
            plan.order
        );
        return Err(crate::run::internal(plan, message).into());
    }
    Ok(plan.order.clone())
}

/// The node indexes from the source to the sink, if `plan` is one source, transforms one after
/// another and one sink; otherwise why it is not.
pub(crate) fn chain(plan: &Plan) -> Result<Vec<usize>, String> {
    let sources: Vec<usize> = (0..plan.nodes.len())
        .filter(|&i| matches!(plan.nodes[i].kind, NodeKind::Source(_)))
        .collect();
    let [first] = sources.as_slice() else {
        return Err("the pipeline has several sources".into());
    };
    let mut chain = vec![*first];
    let mut at = *first;
    loop {
        let node = &plan.nodes[at];
        if !node.ports.is_empty() {
            return Err(format!("`{}` routes rows to named ports", node.name));
        }
        if let NodeKind::Transform(t) = &node.kind {
            if !t.per_batch() {
                return Err(format!(
                    "`{}` ({}) needs all its rows in one task",
                    node.name, node.type_name
                ));
            }
        }
        let outs = &node.outputs;
        match (&node.kind, outs.as_slice()) {
            (NodeKind::Sink(_), []) => break,
            (_, [edge]) => {
                let next = plan.edges[*edge].to;
                if plan.nodes[next].inputs.len() > 1 {
                    return Err(format!("`{}` has several inputs", plan.nodes[next].name));
                }
                chain.push(next);
                at = next;
            }
            _ => return Err(format!("`{}` feeds several nodes", node.name)),
        }
    }
    if chain.len() != plan.nodes.len() {
        return Err("the pipeline has several sinks".into());
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

    fn planned(rest: &str) -> Plan {
        let registry = flowengine_plugins::builtin_registry();
        let text = format!("{HEAD}{rest}");
        plan_text(
            &text,
            Path::new("/tmp/t.yaml"),
            &LoadOptions::default(),
            &registry,
        )
        .unwrap()
    }

    fn names(plan: &Plan, nodes: &[usize]) -> Vec<String> {
        nodes.iter().map(|&i| plan.nodes[i].name.clone()).collect()
    }

    #[test]
    fn a_chain_runs_and_is_a_chain() {
        let plan = planned(
            "    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
    - { Name: keep, Type: Filter, Config: { Condition: 'id > 1' } }
  Connections: [{ From: read, To: keep }, { From: keep, To: write }]
",
        );
        assert_eq!(
            names(&plan, &order(&plan).unwrap()),
            ["read", "keep", "write"]
        );
        assert_eq!(
            names(&plan, &chain(&plan).unwrap()),
            ["read", "keep", "write"]
        );
    }

    #[test]
    fn fan_out_and_fan_in_run_but_are_not_chains() {
        let plan = planned(
            "    - { Name: low, Type: Filter, Config: { Condition: 'id < 5' } }
    - { Name: high, Type: Filter, Config: { Condition: 'id >= 5' } }
    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections:
    - { From: read, To: low }
    - { From: read, To: high }
    - { From: low, To: write }
    - { From: high, To: write }
",
        );
        let order = names(&plan, &order(&plan).unwrap());
        let at = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(
            at("read") < at("low") && at("read") < at("high"),
            "{order:?}"
        );
        assert!(
            at("low") < at("write") && at("high") < at("write"),
            "{order:?}"
        );
        assert_eq!(chain(&plan).unwrap_err(), "`read` feeds several nodes");
    }

    #[test]
    fn a_transform_across_batches_runs_but_is_one_task() {
        let sorted = planned(
            "    - { Name: sorted, Type: Sort, Config: { By: [id] } }
    - { Name: write, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections: [{ From: read, To: sorted }, { From: sorted, To: write }]
",
        );
        assert_eq!(
            names(&sorted, &order(&sorted).unwrap()),
            ["read", "sorted", "write"]
        );
        assert_eq!(
            chain(&sorted).unwrap_err(),
            "`sorted` (Sort) needs all its rows in one task"
        );
    }
}

//! How our plan node crosses the wire: [`Codec`] writes a [`PipelineExec`] as a tag and its
//! [`Spec`], and reads it back with this process's plugins. The client, the scheduler and every
//! executor install it ([`codec`]) in front of Ballista's own, which handles the rest of a plan
//! (its shuffle and stage nodes).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    ComposedPhysicalExtensionCodec, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use flowengine_engine::registry::Registry;

use super::parts::Parts;
use super::spec::Spec;
use super::task::PipelineExec;

/// What a message of ours starts with: the node and the version of its encoding.
const TAG: &[u8] = b"flowengine-pipeline/3\n";

/// A pipeline node on the wire, after the tag (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    spec: Spec,
    parts: Option<Parts>,
    /// Where the client's Ctrl-C appears.
    control: Option<PathBuf>,
}

/// The codec for FlowEngine's plan nodes.
#[derive(Debug)]
pub struct Codec {
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
}

impl Codec {
    /// A codec that rebuilds nodes with `registry`'s plugins; runs they start stop when
    /// `interrupt` is set.
    pub fn new(registry: Arc<Registry>, interrupt: &'static AtomicBool) -> Self {
        Codec {
            registry,
            interrupt,
        }
    }
}

/// Ours first, then Ballista's. Ours writes nothing for a node it does not know: the composed
/// codec hands every codec the same buffer in turn.
pub fn codec(
    registry: Arc<Registry>,
    interrupt: &'static AtomicBool,
) -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(ComposedPhysicalExtensionCodec::new(vec![
        Arc::new(Codec::new(registry, interrupt)),
        Arc::new(BallistaPhysicalExtensionCodec::default()),
    ]))
}

impl PhysicalExtensionCodec for Codec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _cx: &TaskContext,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let body = buf.strip_prefix(TAG).ok_or_else(|| {
            DataFusionError::Internal(
                "not a FlowEngine plan node (is every process of the cluster the same flowengine?)"
                    .into(),
            )
        })?;
        let wire: Wire = serde_json::from_slice(body).map_err(|e| {
            DataFusionError::Internal(format!(
                "a FlowEngine pipeline node that does not read: {e}"
            ))
        })?;
        let tasks = match (&wire.parts, inputs) {
            (None, []) => None,
            (Some(_), [tasks]) => Some(tasks.clone()),
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "a FlowEngine pipeline node with {} inputs",
                    inputs.len()
                )))
            }
        };
        Ok(Arc::new(PipelineExec::decoded(
            (wire.spec, wire.parts, wire.control),
            tasks,
            self.registry.clone(),
            self.interrupt,
        )))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(pipeline) = node.downcast_ref::<PipelineExec>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} is not a FlowEngine node",
                node.name()
            )));
        };
        let wire = Wire {
            spec: pipeline.spec().clone(),
            parts: pipeline.parts().cloned(),
            control: pipeline.control().map(Into::into),
        };
        let body = serde_json::to_vec(&wire).map_err(|e| DataFusionError::External(Box::new(e)))?;
        buf.extend_from_slice(TAG);
        buf.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;

    static NEVER: AtomicBool = AtomicBool::new(false);

    fn spec() -> Spec {
        Spec {
            text: "Pipeline:\n  Name: p\n".into(),
            path: "/data/p.yaml".into(),
            vars: vec![("Input".into(), "in.csv".into())],
            now: "2026-12-06T19:30:00+00:00".into(),
        }
    }

    fn parts() -> Parts {
        let range = |start, end, line, record| flowengine_engine::component::SourceRange {
            start,
            end,
            line,
            record,
        };
        Parts {
            dir: "/data/out/.flowengine-parts-1-2".into(),
            ranges: vec![range(10, Some(500), 2, 1), range(500, None, 40, 39)],
        }
    }

    #[test]
    fn a_pipeline_node_crosses_the_composed_codec_whole() {
        let codec = codec(Arc::new(Registry::new()), &NEVER);
        let control = || {
            Some(std::path::PathBuf::from(
                "/data/out/.out.csv.job-a1b2c3.tmp",
            ))
        };
        for (parts, control) in [(None, None), (None, control()), (Some(parts()), None)] {
            let node: Arc<dyn ExecutionPlan> = Arc::new(
                PipelineExec::new(
                    spec(),
                    (parts.clone(), control.clone()),
                    Arc::new(Registry::new()),
                    &NEVER,
                )
                .unwrap(),
            );
            let inputs: Vec<_> = node.children().into_iter().cloned().collect();
            let mut buf = Vec::new();
            codec
                .try_encode(node, &mut buf, &DefaultPhysicalProtoConverter {})
                .unwrap();
            let back = codec
                .try_decode(
                    &buf,
                    &inputs,
                    &TaskContext::default(),
                    &DefaultPhysicalProtoConverter {},
                )
                .unwrap();
            let back = back
                .downcast_ref::<PipelineExec>()
                .expect("a pipeline node");
            assert_eq!(back.spec(), &spec());
            assert_eq!(back.parts(), parts.as_ref());
            assert_eq!(back.control(), control.as_deref());
            let tasks = parts.as_ref().map_or(1, |p| p.ranges.len());
            assert_eq!(back.properties().partitioning.partition_count(), tasks);
        }
    }

    #[test]
    fn another_node_leaves_the_buffer_as_it_was() {
        let ours = Codec::new(Arc::new(Registry::new()), &NEVER);
        let other: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(Arc::new(arrow_schema::Schema::empty())));
        let mut buf = Vec::new();
        assert!(ours
            .try_encode(other, &mut buf, &DefaultPhysicalProtoConverter {})
            .is_err());
        assert!(buf.is_empty());
    }
}

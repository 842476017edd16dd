//! `NullSink`: counts rows and writes nothing. For parse-and-validate runs (every row is still
//! decoded, typed and checked, and the summary accounts for it) and for benchmarks.

use arrow_schema::SchemaRef;
use flowengine_engine::component::{BuildCx, BuiltSink, NodeCx, Sink, SinkCommon, SinkConfig};
use flowengine_engine::error::{BuildError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::Batch;

/// Parsed `NullSink` config (it has no keys).
#[derive(Debug, Clone, Copy)]
pub struct NullSinkConfig;

/// Parse a `NullSink` `Config` map.
pub fn parse(_: &mut MapReader<'_>, _: &mut ConfigCx, _: &NodeCx) -> Option<Box<dyn SinkConfig>> {
    Some(Box::new(NullSinkConfig))
}

impl SinkConfig for NullSinkConfig {
    fn build(&self, _: SchemaRef, _: &BuildCx) -> Result<BuiltSink, BuildError> {
        Ok(BuiltSink::Rows(Box::new(NullSink { rows: 0 })))
    }
}

struct NullSink {
    rows: u64,
}

impl Sink for NullSink {
    fn write(&mut self, batch: &Batch) -> Result<(), RunError> {
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

impl SinkCommon for NullSink {
    fn finish(&mut self) -> Result<u64, RunError> {
        Ok(self.rows)
    }

    fn commit(self: Box<Self>) -> Result<(), RunError> {
        Ok(())
    }
}

//! The traits a plugin implements.
//!
//! Each node has two halves. The *config* half is parsed from YAML at plan time and is pure: it
//! declares schemas and the files it touches, and opens nothing. Its `build` makes the *runtime*
//! half, which opens files and moves batches. The executor owns threads, channels and metrics;
//! plugins never spawn threads or count rows.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};

use arrow_schema::SchemaRef;

use crate::batch::Batch;
use crate::error::{BuildError, PlanError, RowError, RunError};

/// What a node's `build` gets to know about its place in the pipeline.
#[derive(Debug, Clone)]
pub struct BuildCx {
    /// The node's name, for messages.
    pub node: String,
    /// Rows per batch a source should aim for.
    pub chunk_size: usize,
    /// Input bytes per batch a source should not pass (its share of `Settings.MemoryLimit`); a
    /// single larger record still makes a batch of its own.
    pub batch_bytes: u64,
    /// Bytes a stateful transform may hold across batches before it spills (its share of
    /// `Settings.MemoryLimit`; see [`crate::memory::Budget::state_bytes`]).
    pub state_bytes: u64,
    /// Where spill files go: `Settings.TempDirectory`, else the system's temporary directory.
    pub temp_dir: PathBuf,
}

/// What a node's config parser gets to know about its place in the pipeline.
#[derive(Debug, Clone)]
pub struct NodeCx {
    /// The node's name.
    pub node: String,
    /// The pipeline-wide `Settings.ChunkSize`.
    pub chunk_size: usize,
}

/// A parsed source config.
pub trait SourceConfig: Debug + Send + Sync {
    /// The schema of every batch this source will emit.
    fn output_schema(&self) -> SchemaRef;
    /// Files this source reads (so a sink cannot overwrite them).
    fn files_read(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Open the input, in the mode the source reads in.
    fn build(&self, cx: &BuildCx) -> Result<BuiltSource, BuildError>;
    /// The same source reading `file` instead of its own files (a test's input), if it reads
    /// files.
    fn read_instead(&self, _file: &std::path::Path) -> Option<Box<dyn SourceConfig>> {
        None
    }
    /// Cut the input into at most `parts` [`SourceRange`]s, so that separate tasks can read it
    /// (`--engine ballista`); [`Split::Whole`] when this source can only be read from its start.
    fn split(&self, parts: usize, cx: &BuildCx) -> Result<Split, BuildError> {
        let _ = (parts, cx);
        Ok(Split::Whole("it cannot be read in parts".into()))
    }
    /// The same source reading only `range`, one of [`SourceConfig::split`]'s.
    fn read_range(&self, range: SourceRange) -> Option<Box<dyn SourceConfig>> {
        let _ = range;
        None
    }
}

/// A run of whole records in a source's input file: the bytes from `start` to `end` (to the end
/// of the file when `None`). Its first record is on `line` and is the file's `record`-th (the
/// header and skipped records counted), as a one-thread read of the whole file numbers it, so
/// its rejects name the same line and record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceRange {
    /// The offset of its first byte in the file.
    pub start: u64,
    /// The offset just past its last byte; `None`: the end of the file.
    pub end: Option<u64>,
    /// The line its first record starts on.
    pub line: u64,
    /// How many records come before its first one.
    pub record: u64,
}

/// How a source's input can be read by separate tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// In these ranges, in order: together they hold every record, each once.
    Ranges(Vec<SourceRange>),
    /// Only whole, from its start; why, for `--verbose`.
    Whole(String),
}

/// A built source, in the mode it reads in. The mode is a type, not a flag, so the executor can
/// only call the methods that mode has.
pub enum BuiltSource {
    /// Makes whole batches on the node thread ([`Source::next_batch`]).
    Batches(Box<dyn Source>),
    /// Splits each batch into a sequential part and a pure part that the executor finishes on its
    /// workers ([`DeferringSource`]).
    Deferred(Box<dyn DeferringSource>),
}

impl BuiltSource {
    /// Offer the source a condition; see [`SourceCommon::push_condition`].
    pub fn push_condition(&mut self, condition: Arc<dyn RowCondition>) -> bool {
        match self {
            BuiltSource::Batches(s) => s.push_condition(condition),
            BuiltSource::Deferred(s) => s.push_condition(condition),
        }
    }
}

/// What every running source offers, whichever mode it reads in.
pub trait SourceCommon: Send {
    /// How the source read its input, worth a line in verbose output (e.g. why it could not read
    /// in parallel).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Offered the condition of the node this source feeds, when that node is its only consumer
    /// and reads only from it. A source that takes it may leave out the rows the condition rules
    /// out, counting them in [`Batch::prefiltered`] instead of building them. True if taken.
    fn push_condition(&mut self, _condition: Arc<dyn RowCondition>) -> bool {
        false
    }
}

/// A running source that makes whole batches on its node thread.
pub trait Source: SourceCommon {
    /// The next batch, or `None` at the end of the input. Rows that cannot be read are left out of
    /// the batch and reported in `rejects`, in input order; the executor applies the error policy.
    /// An `Err` means the source itself failed (I/O) and ends the run.
    fn next_batch(&mut self, rejects: &mut Vec<RowError>) -> Result<Option<Batch>, RunError>;
}

/// A running source that splits its work: a sequential part ([`DeferringSource::next_pending`])
/// and a pure part ([`Pending::finish`]) that the executor runs on its workers, several at once,
/// emitting the batches in order.
pub trait DeferringSource: SourceCommon {
    /// The sequential part of the next batch; `None` at the end of the input.
    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError>;

    /// Called on the node thread for each piece [`Pending::finish`] completed, in the order the
    /// pieces were handed off, before its rows are counted or sent. The source completes what
    /// depends on the pieces before it (such as record numbers in `rejects`) and checks any guess
    /// it split the piece on. [`Settle::Redo`] drops this piece and every piece handed off after
    /// it; the next [`DeferringSource::next_pending`] starts again where this piece started.
    fn settle(&mut self, rejects: &mut [RowError]) -> Settle {
        let _ = rejects;
        Settle::Keep
    }
}

/// The part of a transform's work that decides which rows it filters out, in a form a source can
/// evaluate while it decodes (late materialization: rows that would be dropped are never built).
///
/// The transform still runs on every row the source sends, so a source may use or ignore the
/// condition, and a row the condition keeps is judged again by the transform.
pub trait RowCondition: Send + Sync + Debug {
    /// The columns the condition reads, ascending, as indexes into the source's schema.
    fn columns(&self) -> &[usize];
    /// Given those columns (in that order) of `rows` rows: false for each row the transform would
    /// filter out without rejecting it, true for every other row.
    fn may_keep(&self, columns: &[ArrayRef], rows: usize) -> Result<BooleanArray, RunError>;
}

/// What [`DeferringSource::settle`] decided about a finished piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Count and send it.
    Keep,
    /// Drop it and every later piece; the source reads them again.
    Redo,
}

/// Work a source handed off, finished on any worker thread.
pub trait Pending: Send {
    /// Finish the batch, reporting bad rows as [`Source::next_batch`] does.
    fn finish(self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError>;
}

/// A parsed transform config.
pub trait TransformConfig: Debug + Send + Sync {
    /// The schema of the batches this transform emits, given its input schema; otherwise every
    /// problem found with the config against that schema (never empty), so one `validate` shows
    /// them all.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<PlanError>>;
    /// Whether batches may be processed concurrently (output order is kept either way).
    fn parallel(&self) -> bool {
        false
    }
    /// Named outputs besides the default one, wired as `From: node.port`. Each must be connected;
    /// [`Transform::apply_routed`] fills them in this order.
    fn ports(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether it holds rows across batches (sort, distinct): such a node gets a share of
    /// `MemoryLimit` for its state ([`BuildCx::state_bytes`]) and must build a
    /// [`BuiltTransform::Stateful`].
    fn stateful(&self) -> bool {
        false
    }
    /// Whether it builds a [`BuiltTransform::Batches`]: each batch on its own, nothing held and
    /// nothing to do at the end of the input. An engine that runs only such transforms (the
    /// DataFusion one) asks this before building anything. `Limit` holds no rows but is not one.
    fn per_batch(&self) -> bool {
        !self.stateful()
    }
    /// Prepare the transform.
    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltTransform, BuildError>;
    /// Named inputs besides the main one, wired as `To: node.port` (a `Lookup`'s reference
    /// rows). Each must be connected. Such a transform is built with [`Self::build_with`] and
    /// must be stateful: every batch of these inputs reaches [`StatefulTransform::push_side`]
    /// before the first batch of the main input reaches `push`.
    fn input_ports(&self) -> Vec<String> {
        Vec::new()
    }
    /// [`Self::output_schema`] for a transform with input ports, given their schemas in
    /// [`Self::input_ports`] order.
    fn output_schema_with(
        &self,
        input: &SchemaRef,
        sides: &[SchemaRef],
    ) -> Result<SchemaRef, Vec<PlanError>> {
        let _ = sides;
        self.output_schema(input)
    }
    /// [`Self::build`] for a transform with input ports.
    fn build_with(
        &self,
        input: SchemaRef,
        sides: &[SchemaRef],
        cx: &BuildCx,
    ) -> Result<BuiltTransform, BuildError> {
        let _ = sides;
        self.build(input, cx)
    }
    /// The condition that decides which input rows this transform filters out, for the source
    /// before it to evaluate early (see [`RowCondition`]); `None` if it has none.
    fn condition(&self, _input: &SchemaRef) -> Option<Arc<dyn RowCondition>> {
        None
    }
    /// How it will run on batches of `input`, for `validate --explain` and `run --verbose`
    /// (e.g. whether a script was compiled, and if not, why).
    fn explain(&self, input: &SchemaRef) -> Vec<String> {
        let _ = input;
        Vec::new()
    }
}

/// A transform's output for one input batch, over its default output and its named ports.
#[derive(Debug, Clone)]
pub struct Routed {
    /// Rows for the default output.
    pub main: Batch,
    /// Rows for each named port, in [`TransformConfig::ports`] order (empty: none routed).
    pub ports: Vec<Batch>,
    /// How many input rows left on at least one output. A row sent to several outputs counts
    /// once, so `input = emitted + filtered + rejected` still holds.
    pub emitted: usize,
}

impl Routed {
    /// Everything on the default output.
    pub fn single(main: Batch) -> Self {
        Self {
            emitted: main.num_rows(),
            main,
            ports: Vec::new(),
        }
    }
}

/// A built transform, in the mode the executor drives it in.
pub enum BuiltTransform {
    /// Each batch on its own ([`Transform::apply`]), concurrently where
    /// [`TransformConfig::parallel`] says so.
    Batches(Box<dyn Transform>),
    /// State across batches: every batch in arrival order on the node's thread, then `finish`.
    Stateful(Box<dyn StatefulTransform>),
}

impl BuiltTransform {
    /// A batch-by-batch transform.
    pub fn batches(t: impl Transform + 'static) -> Self {
        Self::Batches(Box::new(t))
    }
}

/// A transform that keeps state across batches: `Sort`, `Distinct`, `Limit`. The executor calls
/// it on the worker pool (so rayon inside it uses the run's threads), one call at a time.
pub trait StatefulTransform: Send {
    /// Take one batch. Rows that can already go on are pushed to `out`.
    fn push(&mut self, batch: Batch, out: &mut Output) -> Result<(), RunError>;
    /// Once every input port has ended: a batch-by-batch transform for the main input, if its
    /// rows no longer depend on each other (a `Lookup` with its reference loaded). The executor
    /// then runs that on the pool in parallel, in order, instead of calling `push` and `finish`.
    fn batches(&mut self) -> Result<Option<Box<dyn Transform>>, RunError> {
        Ok(None)
    }
    /// Take one batch of input port `port` (0 is the first of [`TransformConfig::input_ports`]).
    /// All of them come before the main input's first batch.
    fn push_side(&mut self, port: usize, batch: Batch) -> Result<(), RunError> {
        let _ = batch;
        Err(RunError::Internal(format!(
            "a batch arrived on input port {port} of a transform that has none"
        )))
    }
    /// Every input has ended: pass on the rest, a piece per call, so that a sort's output is
    /// never in memory twice. Returns whether there is more (call again).
    fn finish(&mut self, out: &mut Output) -> Result<bool, RunError>;
    /// True once it needs no more rows (a `Limit` that has them). Sources whose every path ends
    /// in satisfied nodes stop reading; rows still on the way are counted as filtered.
    fn satisfied(&self) -> bool {
        false
    }
    /// What it did, for verbose output (runs spilled, bytes spilled).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether its output rows are groups of its input rows (`Aggregate`) rather than input rows.
    fn aggregates(&self) -> bool {
        false
    }
    /// Whether the rows its source leaves out for its [`TransformConfig::condition`] are
    /// duplicates (`Distinct`) rather than filtered rows.
    fn prefiltered_are_duplicates(&self) -> bool {
        false
    }
}

/// What one call of a [`StatefulTransform`] hands on, and what it did with the rows it did not.
/// Over the whole run, rows in = rows out + `filtered` + `duplicates` + rejects; for a node that
/// [aggregates](StatefulTransform::aggregates), rows in = `aggregated` + `filtered` + rejects, and
/// rows out are its groups.
#[derive(Debug, Default)]
pub struct Output {
    /// Batches for the default output, in order.
    pub batches: Vec<Batch>,
    /// Rows left out on purpose (past a limit, not sampled).
    pub filtered: u64,
    /// Rows left out as duplicates of a row kept.
    pub duplicates: u64,
    /// Rows folded into groups (`Aggregate`); its output rows are the groups.
    pub aggregated: u64,
    /// Bad rows, for the node's error policy.
    pub rejects: Vec<RowError>,
}

/// A running transform.
pub trait Transform: Send + Sync {
    /// Transform one batch. Bad rows are left out of the output and reported in `rejects`; other
    /// rows missing from the output count as filtered. An `Err` ends the run.
    fn apply(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Batch, RunError>;

    /// Like [`Transform::apply`], for a transform with named ports. The default sends everything
    /// to the default output.
    fn apply_routed(&self, batch: Batch, rejects: &mut Vec<RowError>) -> Result<Routed, RunError> {
        self.apply(batch, rejects).map(Routed::single)
    }

    /// How it ran, for verbose output (e.g. how many batches took which path), once its input
    /// is done.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A parsed sink config.
pub trait SinkConfig: Debug + Send + Sync {
    /// Check that the sink can write batches of this schema; otherwise every problem found
    /// (never empty).
    fn check_input(&self, _input: &SchemaRef) -> Result<(), Vec<PlanError>> {
        Ok(())
    }
    /// Files this sink writes (so no two sinks write one file, and no sink overwrites an input).
    fn files_written(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// The disk space its output takes while staged, when the pipeline reads `input_bytes` (see
    /// [`crate::plan::space`]). By default none: a sink that writes no file.
    fn space_needed(&self, input_bytes: u64) -> SpaceNeed {
        let _ = input_bytes;
        SpaceNeed::default()
    }
    /// Prepare the output, in the mode the sink receives rows in (nothing visible is changed
    /// until [`SinkCommon::commit`]).
    fn build(&self, input: SchemaRef, cx: &BuildCx) -> Result<BuiltSink, BuildError>;
}

/// Disk space a sink's staged output takes, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceNeed {
    /// Space it takes whatever the rows are (an existing file copied before appending to it).
    pub certain: u64,
    /// Space the rows are estimated to take (every input row reaching the output).
    pub estimated: u64,
}

/// Turns batches into a sink's bytes without touching the sink: pure and thread-safe, so the
/// executor can encode several batches at once on its workers.
pub trait Encode: Send + Sync {
    /// Append the encoding of `batch` to `out`.
    fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), RunError>;
}

/// A built sink, in the mode it receives rows in. The mode is a type, not a flag, so the executor
/// can only call the methods that mode has.
pub enum BuiltSink {
    /// Gets every batch through [`Sink::write`].
    Rows(Box<dyn Sink>),
    /// Gets its batches as bytes through [`EncodedSink::write_encoded`], made by `encoder` on
    /// the executor's workers and delivered in order.
    Encoded {
        /// The sink that stages the bytes.
        sink: Box<dyn EncodedSink>,
        /// The sink's encoding, which runs apart from it.
        encoder: Arc<dyn Encode>,
    },
}

/// What every running sink does, whichever mode it receives rows in. Writes are staged; the
/// executor calls `finish` on every sink and, only if the whole run succeeded, `commit` on every
/// sink. A sink dropped without `commit` must leave every existing file untouched and remove what
/// it staged.
///
/// The writes and `finish` run on the executor's worker pool (one call at a time, in order), so
/// rayon's parallel iterators inside them share its threads instead of starting a pool of their
/// own.
pub trait SinkCommon: Send {
    /// Make the staged output durable (flush, fsync) without making it visible. Returns the number
    /// of rows the sink wrote, which the executor checks against the rows it delivered.
    fn finish(&mut self) -> Result<u64, RunError>;
    /// Make the output visible (e.g. rename over the target).
    fn commit(self: Box<Self>) -> Result<(), RunError>;
    /// What the user should know about the output once it is finished (values the format could
    /// not hold, written another way), shown in every summary, not only with `--verbose`.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A running sink that gets every batch as rows (and the dead-letter writer, which always does).
pub trait Sink: SinkCommon {
    /// Stage one batch.
    fn write(&mut self, batch: &Batch) -> Result<(), RunError>;
}

/// A running sink that gets its batches already encoded by the [`Encode`] it was built with.
pub trait EncodedSink: SinkCommon {
    /// Stage `rows` rows encoded by the sink's [`Encode`].
    fn write_encoded(&mut self, rows: u64, bytes: &[u8]) -> Result<(), RunError>;
}

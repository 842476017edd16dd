//! Many files per source: `FilePath` as a glob (`data/*.csv`, `logs/**/*.jsonl`) or a list, read in
//! one sorted order as one input, and `FileNameColumn`, which names each row's file.
//!
//! Each file is read by a source of its own, built when the one before it ends ([`ManyFiles`]):
//! its header is checked, its rejects name it, its lines are its own. The pieces of one file are
//! settled before the pieces of the next are counted; if a file's source redoes a piece, the
//! sources of the files after it are dropped and built again from their start, so whatever runs in
//! parallel, the rows come in file order, then in each file's order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use flowengine_engine::component::{
    BuildCx, BuiltSource, DeferringSource, Pending, RowCondition, Settle, SourceCommon,
};
use flowengine_engine::error::{BuildError, ConfigErrorKind, RowError, RunError};
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::load::yaml::Mark;
use flowengine_engine::Batch;

/// One input file: as the user would name it, and where it is.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path relative to the pipeline file's directory (or as written), for messages.
    pub label: Arc<str>,
    /// The file; `-` for standard input.
    pub path: PathBuf,
}

/// A source's inputs: its files, and the column that names each row's file, if any.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The files, in the order they are read.
    pub files: Vec<InputFile>,
    /// `FileNameColumn`: a string column added after the declared ones, holding each row's file as
    /// the user would name it.
    pub name_column: Option<String>,
}

impl Inputs {
    /// Read `FilePath` (see [`read`]) and `FileNameColumn`.
    pub fn read(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Inputs> {
        let files = read(m, cx);
        let name_column = m.string(cx, "FileNameColumn");
        Some(Inputs {
            files: files?,
            name_column,
        })
    }

    /// The source's schema: `declared`, then the file-name column. A file-name column that a
    /// declared column already names is a configuration error.
    pub fn schema(
        &self,
        declared: SchemaRef,
        m: &mut MapReader<'_>,
        cx: &mut ConfigCx,
    ) -> Option<SchemaRef> {
        let Some(name) = &self.name_column else {
            return Some(declared);
        };
        if declared.field_with_name(name).is_ok() {
            m.invalid(
                cx,
                "FileNameColumn",
                "a name no declared column has",
                &format!("`{name}`, a declared column"),
            );
            return None;
        }
        let mut fields: Vec<Field> = declared
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(name, DataType::Utf8, false));
        Some(Arc::new(Schema::new(fields)))
    }

    /// The files on disk, for the plan's overwrite check.
    pub fn paths(&self) -> Vec<PathBuf> {
        paths(&self.files)
    }

    /// The same inputs with `file` as the only file (a test's input).
    pub fn only(&self, file: &std::path::Path) -> Inputs {
        Inputs {
            files: vec![InputFile {
                label: file.display().to_string().into(),
                path: file.to_path_buf(),
            }],
            name_column: self.name_column.clone(),
        }
    }
}

/// A source's `FilePath`: one file, `-` for standard input, a glob, or a list of any of them
/// (globs expanded in name order, the list in its own order). A glob that matches nothing is a
/// configuration error naming it.
fn read(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Vec<InputFile>> {
    let written: Vec<(String, String, Mark)> = if m.is_list("FilePath") {
        let items = m.list(cx, "FilePath")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (path, node) in items {
            match node.as_scalar() {
                Some(text) => match cx.substitute(text, &path, node.mark) {
                    Some(text) => out.push((path, text, node.mark)),
                    None => ok = false,
                },
                None => {
                    let kind = ConfigErrorKind::InvalidValue {
                        expected: "a file path or a glob".into(),
                        found: node.kind_name().into(),
                    };
                    cx.error(kind, &path, node.mark);
                    ok = false;
                }
            }
        }
        if out.is_empty() && ok {
            m.invalid(cx, "FilePath", "at least one file", "an empty list");
            return None;
        }
        ok.then_some(out)?
    } else {
        let (path, mark) = (m.key_path("FilePath"), m.entry_mark("FilePath"));
        vec![(path, m.required_string(cx, "FilePath")?, mark)]
    };
    let base = cx.resolve_path(".");
    let mut files = Vec::new();
    let mut ok = true;
    for (path, text, mark) in written {
        match expand(&text, &base, cx) {
            Ok(found) => files.extend(found),
            Err(message) => {
                let kind = ConfigErrorKind::InvalidValue {
                    expected: "a pattern that matches at least one file".into(),
                    found: message,
                };
                cx.error(kind, &path, mark);
                ok = false;
            }
        }
    }
    if files.iter().filter(|f| f.path.as_os_str() == "-").count() > 0 && files.len() > 1 {
        m.invalid(
            cx,
            "FilePath",
            "`-` (standard input) alone, not in a list",
            "a list with `-`",
        );
        return None;
    }
    ok.then_some(files)
}

/// `-`, one path, or the files a glob matches, sorted by name.
fn expand(text: &str, base: &std::path::Path, cx: &ConfigCx) -> Result<Vec<InputFile>, String> {
    if text == "-" {
        return Ok(vec![InputFile {
            label: "-".into(),
            path: PathBuf::from("-"),
        }]);
    }
    let resolved = cx.resolve_path(text);
    if !text.contains(['*', '?', '[']) {
        return Ok(vec![InputFile {
            label: text.into(),
            path: resolved,
        }]);
    }
    let pattern = resolved.to_string_lossy().into_owned();
    let matches = glob::glob(&pattern).map_err(|e| format!("`{text}` ({e})"))?;
    let mut paths: Vec<PathBuf> = matches
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("`{text}`, which matches no file"));
    }
    Ok(paths
        .into_iter()
        .map(|path| InputFile {
            label: path
                .strip_prefix(base)
                .unwrap_or(&path)
                .display()
                .to_string()
                .into(),
            path,
        })
        .collect())
}

/// The files `files` names on disk (standard input is none), for the plan's overwrite check.
pub fn paths(files: &[InputFile]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| f.path.as_os_str() != "-")
        .map(|f| f.path.clone())
        .collect()
}

/// How a source config opens one of its files.
pub type OpenWith<C> = fn(&C, &InputFile, &BuildCx) -> Result<Box<dyn DeferringSource>, BuildError>;

/// The source of `inputs`: the one file's own source, or [`ManyFiles`] over them, each built by
/// `open` from `config`; with a file-name column, each file's batches get it (`schema` is the
/// source's whole schema, that column included).
pub fn build<C: Clone + Send + 'static>(
    config: &C,
    inputs: &Inputs,
    schema: SchemaRef,
    cx: &BuildCx,
    open: OpenWith<C>,
) -> Result<BuiltSource, BuildError> {
    let named = inputs.name_column.is_some().then_some(schema);
    let (config, list) = (config.clone(), inputs.files.clone());
    let opener: OpenFile = Box::new(move |i, cx| {
        let source = open(&config, &list[i], cx)?;
        Ok(match &named {
            Some(schema) => Box::new(Named {
                inner: source,
                label: list[i].label.clone(),
                schema: schema.clone(),
            }),
            None => source,
        })
    });
    if inputs.files.len() == 1 {
        return Ok(BuiltSource::Deferred(opener(0, cx)?));
    }
    let many = ManyFiles::new(inputs.files.clone(), opener, cx)?;
    Ok(BuiltSource::Deferred(Box::new(many)))
}

/// One file's source with the file-name column added to its batches.
struct Named {
    inner: Box<dyn DeferringSource>,
    label: Arc<str>,
    schema: SchemaRef,
}

impl DeferringSource for Named {
    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        Ok(self.inner.next_pending()?.map(|inner| {
            Box::new(NamedPiece {
                inner,
                label: self.label.clone(),
                schema: self.schema.clone(),
            }) as Box<dyn Pending>
        }))
    }

    fn settle(&mut self, rejects: &mut [RowError]) -> Settle {
        self.inner.settle(rejects)
    }
}

impl SourceCommon for Named {
    fn push_condition(&mut self, condition: Arc<dyn RowCondition>) -> bool {
        // The file's own source cannot test a column it does not make.
        let file_name = self.schema.fields().len() - 1;
        !condition.columns().contains(&file_name) && self.inner.push_condition(condition)
    }

    fn notes(&self) -> Vec<String> {
        self.inner.notes()
    }
}

/// A piece of one file, finished with the file-name column.
struct NamedPiece {
    inner: Box<dyn Pending>,
    label: Arc<str>,
    schema: SchemaRef,
}

impl Pending for NamedPiece {
    fn finish(self: Box<Self>, rejects: &mut Vec<RowError>) -> Result<Batch, RunError> {
        let mut batch = self.inner.finish(rejects)?;
        let rows = batch.num_rows();
        let mut columns = batch.data.columns().to_vec();
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &*self.label,
            rows,
        )));
        columns.push(names);
        batch.data = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| RunError::Internal(format!("adding the file-name column: {e}")))?;
        Ok(batch)
    }
}

/// Builds the source of file `i`.
pub type OpenFile =
    Box<dyn Fn(usize, &BuildCx) -> Result<Box<dyn DeferringSource>, BuildError> + Send>;

/// Several files read one after the other as one source.
pub struct ManyFiles {
    files: Vec<InputFile>,
    open: OpenFile,
    cx: BuildCx,
    sources: Vec<Option<Box<dyn DeferringSource>>>,
    /// The file being read.
    current: usize,
    /// For each piece handed off and not settled, the file it came from.
    handed: VecDeque<usize>,
    condition: Option<Arc<dyn RowCondition>>,
}

impl ManyFiles {
    /// Read `files` in order, each with the source `open` builds; the first is built now, so its
    /// header is checked before rows move.
    pub fn new(files: Vec<InputFile>, open: OpenFile, cx: &BuildCx) -> Result<Self, BuildError> {
        let first = open(0, cx)?;
        let mut sources: Vec<Option<Box<dyn DeferringSource>>> =
            (0..files.len()).map(|_| None).collect();
        sources[0] = Some(first);
        Ok(ManyFiles {
            files,
            open,
            cx: cx.clone(),
            sources,
            current: 0,
            handed: VecDeque::new(),
            condition: None,
        })
    }

    fn source(&mut self, i: usize) -> Result<&mut Box<dyn DeferringSource>, RunError> {
        if self.sources[i].is_none() {
            let mut source = (self.open)(i, &self.cx).map_err(|e| match e {
                BuildError::Io(io) => RunError::Io(io),
                BuildError::Invalid { node, message } => RunError::Node { node, message },
                other => RunError::Node {
                    node: self.cx.node.clone(),
                    message: other.to_string(),
                },
            })?;
            if let Some(condition) = &self.condition {
                source.push_condition(condition.clone());
            }
            self.sources[i] = Some(source);
        }
        Ok(self.sources[i].as_mut().expect("built above"))
    }
}

impl DeferringSource for ManyFiles {
    fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
        while self.current < self.files.len() {
            let i = self.current;
            if let Some(piece) = self.source(i)?.next_pending()? {
                self.handed.push_back(i);
                return Ok(Some(piece));
            }
            self.current += 1;
        }
        Ok(None)
    }

    fn settle(&mut self, rejects: &mut [RowError]) -> Settle {
        let Some(i) = self.handed.pop_front() else {
            return Settle::Keep;
        };
        let Some(source) = self.sources[i].as_mut() else {
            return Settle::Keep;
        };
        let settled = source.settle(rejects);
        if matches!(settled, Settle::Keep) && i < self.current && !self.handed.contains(&i) {
            // Read to its end and every piece settled: its buffers can go.
            self.sources[i] = None;
        }
        if matches!(settled, Settle::Redo) {
            // Every piece after this one is dropped: the files after it start again.
            self.handed.clear();
            for later in &mut self.sources[i + 1..] {
                *later = None;
            }
            self.current = i;
        }
        settled
    }
}

impl SourceCommon for ManyFiles {
    fn push_condition(&mut self, condition: Arc<dyn RowCondition>) -> bool {
        let taken = self.sources[0]
            .as_mut()
            .is_some_and(|s| s.push_condition(condition.clone()));
        if taken {
            self.condition = Some(condition);
        }
        taken
    }

    fn notes(&self) -> Vec<String> {
        let names: Vec<&str> = self.files.iter().map(|f| &*f.label).take(5).collect();
        let more = match self.files.len() {
            n if n > 5 => format!(", and {} more", n - 5),
            _ => String::new(),
        };
        let mut notes = vec![format!(
            "{} files read in this order: {}{more}",
            self.files.len(),
            names.join(", ")
        )];
        if let Some(last) = self.sources.iter().rev().flatten().next() {
            notes.extend(
                last.notes()
                    .into_iter()
                    .map(|n| format!("last file read: {n}")),
            );
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A file of `pieces` pieces whose source redoes piece `redo_at` once, as a range it split on
    /// a wrong guess.
    struct Fake {
        file: usize,
        pieces: usize,
        next: usize,
        unsettled: VecDeque<usize>,
        redo_at: Option<usize>,
        log: Arc<Mutex<Vec<(usize, usize)>>>,
    }

    struct Piece;

    impl Pending for Piece {
        fn finish(
            self: Box<Self>,
            _: &mut Vec<RowError>,
        ) -> Result<flowengine_engine::Batch, RunError> {
            unreachable!("the test settles without finishing")
        }
    }

    impl DeferringSource for Fake {
        fn next_pending(&mut self) -> Result<Option<Box<dyn Pending>>, RunError> {
            if self.next == self.pieces {
                return Ok(None);
            }
            self.log.lock().unwrap().push((self.file, self.next));
            self.unsettled.push_back(self.next);
            self.next += 1;
            Ok(Some(Box::new(Piece)))
        }

        fn settle(&mut self, _: &mut [RowError]) -> Settle {
            let piece = self.unsettled.pop_front().unwrap();
            if self.redo_at == Some(piece) {
                self.redo_at = None;
                self.unsettled.clear();
                self.next = piece;
                return Settle::Redo;
            }
            Settle::Keep
        }
    }

    impl SourceCommon for Fake {}

    fn cx() -> BuildCx {
        BuildCx {
            node: "read".into(),
            chunk_size: 1,
            batch_bytes: 1,
            state_bytes: 1,
            temp_dir: std::env::temp_dir(),
        }
    }

    /// Hand off up to `window` pieces, settle the oldest, as the executor does; the pieces kept,
    /// in order.
    fn run(redo: (usize, usize), window: usize) -> Vec<(usize, usize)> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let files: Vec<InputFile> = (0..3)
            .map(|i| InputFile {
                label: format!("{i}.csv").into(),
                path: PathBuf::from(format!("{i}.csv")),
            })
            .collect();
        let shared = log.clone();
        let open: OpenFile = Box::new(move |i, _| {
            Ok(Box::new(Fake {
                file: i,
                pieces: 3,
                next: 0,
                unsettled: VecDeque::new(),
                redo_at: (i == redo.0).then_some(redo.1),
                log: shared.clone(),
            }))
        });
        let mut many = ManyFiles::new(files, open, &cx()).unwrap();
        let mut handed: VecDeque<(usize, usize)> = VecDeque::new();
        let mut kept = Vec::new();
        loop {
            while handed.len() < window {
                match many.next_pending().unwrap() {
                    Some(_) => handed.push_back(*log.lock().unwrap().last().unwrap()),
                    None => break,
                }
            }
            let Some(id) = handed.pop_front() else {
                return kept;
            };
            match many.settle(&mut []) {
                Settle::Keep => kept.push(id),
                Settle::Redo => handed.clear(),
            }
        }
    }

    #[test]
    fn pieces_come_in_file_order_whatever_is_redone() {
        let all: Vec<(usize, usize)> = (0..3).flat_map(|f| (0..3).map(move |p| (f, p))).collect();
        for file in 0..3 {
            for piece in 0..3 {
                for window in [1, 2, 4, 8] {
                    assert_eq!(
                        run((file, piece), window),
                        all,
                        "redo {file}/{piece}, window {window}"
                    );
                }
            }
        }
    }
}

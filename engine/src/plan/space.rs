//! Will the outputs fit? Checked before any row moves (`run`, unless `--no-space-check`).
//!
//! Each file sink says how much space its staged output takes ([`SinkConfig::space_needed`]):
//! a part that is certain (an existing file copied before appending to it) and an estimate from
//! the size of the pipeline's input files (every row reaching the output, in the sink's format).
//! The needs of outputs on one file system are added up and compared with the space it has free
//! for this user. Not even the certain part fitting is an error; the estimate not fitting is a
//! warning, since filters may drop rows and formats compress.

use std::path::{Path, PathBuf};

use crate::component::SpaceNeed;
use crate::plan::{NodeKind, Plan};

/// An output file system without room enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceShortage {
    /// The outputs on that file system.
    pub outputs: Vec<PathBuf>,
    /// What they need, added up.
    pub need: SpaceNeed,
    /// Bytes free there.
    pub available: u64,
}

impl SpaceShortage {
    /// Whether even the certain part does not fit: the run would surely fail.
    pub fn certain(&self) -> bool {
        self.need.certain > self.available
    }
}

impl std::fmt::Display for SpaceShortage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .outputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let need = self.need.certain + self.need.estimated;
        write!(
            f,
            "{} need about {} while staged, and their file system has {} free",
            names.join(", "),
            mib(if self.certain() {
                self.need.certain
            } else {
                need
            }),
            mib(self.available)
        )?;
        if self.certain() {
            write!(f, " (the files appended to are copied first)")
        } else {
            write!(f, " (an estimate: every input row reaching the output)")
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The input files' size and each output's need, grouped by file system; `free` gives the bytes
/// free on the file system holding a directory and an id for that file system (none when
/// unknown: that output is not checked).
pub fn check(plan: &Plan, free: &dyn Fn(&Path) -> Option<(u64, u64)>) -> Vec<SpaceShortage> {
    let input_bytes = input_bytes(plan);
    let mut by_fs: Vec<(u64, SpaceShortage)> = Vec::new();
    for node in &plan.nodes {
        let NodeKind::Sink(sink) = &node.kind else {
            continue;
        };
        let need = sink.space_needed(input_bytes);
        let Some(output) = sink.files_written().into_iter().next() else {
            continue;
        };
        let Some((available, fs)) = existing_dir(&output).and_then(|d| free(&d)) else {
            continue;
        };
        match by_fs.iter_mut().find(|(id, _)| *id == fs) {
            Some((_, s)) => {
                s.outputs.push(output);
                s.need.certain += need.certain;
                s.need.estimated += need.estimated;
            }
            None => by_fs.push((
                fs,
                SpaceShortage {
                    outputs: vec![output],
                    need,
                    available,
                },
            )),
        }
    }
    by_fs
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.need.certain + s.need.estimated > s.available)
        .collect()
}

/// The size of the files the sources read, summed (standard input counts as nothing, and so does a
/// file that cannot be found, which the build reports).
pub fn input_bytes(plan: &Plan) -> u64 {
    plan.nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Source(s) => Some(s.files_read()),
            _ => None,
        })
        .flatten()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// The nearest directory of `path` that exists (outputs may go in directories not made yet).
fn existing_dir(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .find(|d| d.is_dir())
        .map(Path::to_path_buf)
}

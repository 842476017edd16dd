//! The dead-letter file, and the files the plan reads and writes: no output may overwrite an
//! input or another output.

use super::{DeadLetterPlan, NodeKind, Plan};
use crate::error::ConfigErrorKind;
use crate::load::config::ConfigCx;
use crate::load::yaml::Mark;
use crate::registry::Registry;
use crate::reject::ErrorPolicy;

impl Plan {
    /// With any node on `skip-row`, rejects need a file: `Settings.DeadLetter`, else
    /// `<first sink's file stem>.rejects.csv` next to that file.
    pub(super) fn plan_dead_letter(&mut self, registry: &Registry, cx: &mut ConfigCx) {
        for n in &self.nodes {
            if let (NodeKind::Sink(_), Some(mark)) = (&n.kind, n.policy_mark) {
                let msg = format!("sink `{}`: `ErrorHandling` applies to sources and transforms; a sink that cannot write fails the run", n.name);
                cx.error(
                    ConfigErrorKind::Graph(msg),
                    &format!("Pipeline.Plugins[{}].Config.ErrorHandling", n.name),
                    mark,
                );
            }
        }
        if !self.nodes.iter().any(|n| n.policy == ErrorPolicy::SkipRow) {
            let marks = self.settings.marks;
            let unused = [
                (
                    "MaxErrors",
                    self.settings.max_errors != crate::reject::MaxErrors::Unlimited,
                    marks.max_errors,
                ),
                (
                    "DeadLetter",
                    self.settings.dead_letter.is_some(),
                    marks.dead_letter,
                ),
            ];
            for (key, set, mark) in unused {
                if set {
                    let msg =
                        format!("`{key}` has no effect: no plugin uses `ErrorHandling: skip-row`");
                    let hint = "set `ErrorHandling: skip-row`, or remove the key";
                    cx.error_with_hint(
                        ConfigErrorKind::Graph(msg),
                        &format!("Pipeline.Settings.{key}"),
                        mark,
                        hint,
                    );
                }
            }
            return;
        }
        let dead_letter_mark = self.settings.marks.dead_letter;
        let fail = |cx: &mut ConfigCx, msg: &str| {
            cx.error(
                ConfigErrorKind::Graph(msg.into()),
                "Pipeline.Settings.DeadLetter",
                dead_letter_mark,
            );
        };
        let Some(builder) = registry.dead_letter() else {
            return fail(
                cx,
                "`ErrorHandling: skip-row` needs a dead-letter writer, and none is registered",
            );
        };
        let first_sink_file = self.nodes.iter().find_map(|n| match &n.kind {
            NodeKind::Sink(s) => s
                .files_written()
                .into_iter()
                .next()
                .map(|f| (f, n.name.clone())),
            _ => None,
        });
        let path = match (&self.settings.dead_letter, first_sink_file) {
            (Some(p), _) => p.clone(),
            (None, Some((sink, name))) => {
                let stem = sink.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                self.dead_letter_from = Some(name);
                sink.with_file_name(format!("{stem}.rejects.csv"))
            }
            (None, None) => return fail(cx, "`ErrorHandling: skip-row` needs `Settings.DeadLetter` (no sink writes a file to put it next to)"),
        };
        self.dead_letter = Some(DeadLetterPlan { path, builder });
    }

    pub(super) fn check_files(&self, cx: &mut ConfigCx, find: &dyn Fn(&str) -> (String, Mark)) {
        let mut read = Vec::new();
        // (file, who writes it, YAML path, position)
        let mut written: Vec<(std::path::PathBuf, String, String, Mark)> = Vec::new();
        for n in &self.nodes {
            match &n.kind {
                NodeKind::Source(s) => {
                    read.extend(s.files_read().into_iter().map(|p| (p, n.name.as_str())))
                }
                NodeKind::Sink(s) => {
                    let (ypath, mark) = find(&n.name);
                    for p in s.files_written() {
                        written.push((p, format!("sink `{}`", n.name), ypath.clone(), mark));
                    }
                }
                NodeKind::Transform(_) => {}
            }
        }
        if let Some(dl) = &self.dead_letter {
            // A default path is blamed on the sink it was derived from.
            let (who, ypath, mark) = match &self.dead_letter_from {
                Some(sink) => {
                    let (ypath, mark) = find(sink);
                    (
                        format!("the dead-letter file (next to sink `{sink}`)"),
                        ypath,
                        mark,
                    )
                }
                None => (
                    "the dead-letter file".to_string(),
                    "Pipeline.Settings.DeadLetter".into(),
                    self.settings.marks.dead_letter,
                ),
            };
            written.push((dl.path.clone(), who, ypath, mark));
        }
        for (i, (path, who, ypath, mark)) in written.iter().enumerate() {
            if let Some((_, source)) = read.iter().find(|(p, _)| p == path) {
                let msg = format!(
                    "{who} would overwrite {}, which source `{source}` reads",
                    path.display()
                );
                cx.error(ConfigErrorKind::Graph(msg), ypath, *mark);
            }
            if let Some((_, other, ..)) = written[..i].iter().find(|(p, ..)| p == path) {
                let msg = format!("{other} and {who} both write {}", path.display());
                cx.error(ConfigErrorKind::Graph(msg), ypath, *mark);
            }
        }
    }
}

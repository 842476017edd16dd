//! `ColumnMappings`, as every file sink that writes named columns reads it: which input columns,
//! in which order, under which names, dates and datetimes in which `Format`.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use flowengine_engine::datefmt;
use flowengine_engine::error::PlanError;
use flowengine_engine::load::config::{ConfigCx, MapReader};
use flowengine_engine::load::yaml::Mark;

use crate::delimited::encode::{Encoder, OutputColumn};

/// One `ColumnMappings` entry: `{ SourceColumn, OutputColumn, Format }`.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    source: String,
    output: String,
    format: Option<String>,
    /// Where `SourceColumn` and `Format` were written (YAML path and position), for the errors
    /// found once the input schema is known.
    source_at: (String, Mark),
    format_at: (String, Mark),
}

/// Read `ColumnMappings`: `None` on error; `Some(None)` when there are none.
pub(crate) fn read(m: &mut MapReader<'_>, cx: &mut ConfigCx) -> Option<Option<Vec<Mapping>>> {
    let Some(items) = m.list(cx, "ColumnMappings") else {
        return Some(None);
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (path, node) in items {
        let Some(mut e) = MapReader::new(node, path, cx) else {
            ok = false;
            continue;
        };
        let at = |key| (e.key_path(key), e.entry_mark(key));
        let (source_at, format_at) = (at("SourceColumn"), at("Format"));
        let source = e.required_string(cx, "SourceColumn");
        let output = e.string(cx, "OutputColumn");
        let format = e.string(cx, "Format").and_then(|f| {
            match datefmt::to_strftime(&f).and_then(|p| datefmt::validate_strftime(&p).map(|()| p))
            {
                Ok(p) => Some(p),
                Err(err) => {
                    e.invalid(
                        cx,
                        "Format",
                        "a date format such as `yyyy-MM-dd` or `%Y-%m-%d`",
                        &format!("{f:?} ({err})"),
                    );
                    None
                }
            }
        });
        e.finish(cx);
        match source {
            Some(source) => out.push(Mapping {
                output: output.unwrap_or_else(|| source.clone()),
                source,
                format,
                source_at,
                format_at,
            }),
            None => ok = false,
        }
    }
    ok.then_some(Some(out))
}

/// The columns a sink writes: every input column as it is, or the `mappings` checked against
/// `input` (every bad mapping reported at once).
pub(crate) fn output_columns(
    mappings: Option<&[Mapping]>,
    input: &SchemaRef,
) -> Result<Vec<OutputColumn>, Vec<PlanError>> {
    let Some(mappings) = mappings else {
        return Ok(input
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| OutputColumn {
                input: i,
                name: f.name().clone(),
                format: None,
            })
            .collect());
    };
    let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
    let columns = mappings
            .iter()
            .map(|mp| {
                let at = |(path, mark): &(String, Mark), message| {
                    PlanError::at(path, Some(*mark), message)
                };
                let i = names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(&mp.source))
                    .ok_or_else(|| {
                        at(&mp.source_at, format!(
                            "`ColumnMappings` names `{}`, which is not an input column; input columns are: {}",
                            mp.source,
                            names.join(", ")
                        ))
                    })?;
                let ty = input.field(i).data_type();
                if mp.format.is_some() && !matches!(ty, DataType::Date32 | DataType::Timestamp(..)) {
                    return Err(at(&mp.format_at, format!(
                        "`Format` on column `{}` applies only to date and datetime columns, not {ty}",
                        mp.source
                    )));
                }
                if let Some(format) = &mp.format {
                    check_format(ty, format).map_err(|_| {
                        at(&mp.format_at, format!(
                            "`Format: {format}` cannot format column `{}` ({ty}): it asks for parts the values do not have, such as a time of day on a date, or an offset on a datetime without `TimeZone`",
                            mp.source
                        ))
                    })?;
                }
                Ok(OutputColumn {
                    input: i,
                    name: mp.output.clone(),
                    format: mp.format.clone(),
                })
            })
            .collect::<Vec<_>>();
    // Report every bad mapping at once, not the first.
    let problems: Vec<PlanError> = columns
        .iter()
        .filter_map(|c| c.as_ref().err().cloned())
        .collect();
    if problems.is_empty() {
        Ok(columns.into_iter().flatten().collect())
    } else {
        Err(problems)
    }
}

/// Format one sample value of type `ty` with `format`, exactly as a run would, so a pattern the
/// type cannot fill (an hour on a date, an offset on a zone-less datetime) fails at plan time.
fn check_format(ty: &DataType, format: &str) -> Result<(), String> {
    use arrow_array::{ArrayRef, Date32Array, TimestampMicrosecondArray};
    let sample: ArrayRef = match ty {
        DataType::Date32 => Arc::new(Date32Array::from(vec![19_753])),
        DataType::Timestamp(_, tz) => Arc::new(
            TimestampMicrosecondArray::from(vec![1_706_708_700_000_000])
                .with_timezone_opt(tz.clone()),
        ),
        _ => return Ok(()),
    };
    let columns = vec![OutputColumn {
        input: 0,
        name: "sample".into(),
        format: Some(format.to_string()),
    }];
    let batch = RecordBatch::try_from_iter([("sample", sample)]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    Encoder::new(b',', b'"', false, columns)
        .encode(&batch, &mut out)
        .map_err(|e| e.to_string())
}

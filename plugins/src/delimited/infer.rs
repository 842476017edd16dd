//! `flowengine infer`: a delimited file's dialect and the narrowest declared type of each column,
//! found by the reader and converters `DelimitedSource` runs, so a schema inferred here reads the
//! sampled records without a reject.
//!
//! The sample is the first [`HEAD_RECORDS`] records plus, in a plain file larger than that, records
//! from [`BLOCKS`] evenly spaced places, so a type that breaks late in the file is seen (as DuckDB
//! samples). A block that starts inside a quoted field splits badly; such a block is left out.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use arrow_array::Array;
use flowengine_engine::schema::ColumnType;

use super::convert::{self, ColumnReader, Take};
use super::decode::{Checks, Decoder, Dialect, Ragged, RecordSet, Records};
use crate::compress;

/// Records read from the start of the file.
pub const HEAD_RECORDS: usize = 20_000;
/// Places further into the file that are sampled too.
pub const BLOCKS: u64 = 8;
/// Records read at each of those places.
const BLOCK_RECORDS: usize = 1_000;
/// Bytes read at each place.
const BLOCK_BYTES: usize = 1 << 20;
/// Bytes read at most for the head.
const HEAD_BYTES: usize = 64 << 20;

/// Date formats tried, in this order; day-first before month-first.
const DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y",
];
/// Datetime formats tried, in this order.
const DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
];

/// What to infer.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The delimiter, if the user knows it.
    pub delimiter: Option<u8>,
    /// Records sampled from the start (default [`HEAD_RECORDS`]).
    pub sample_rows: Option<usize>,
    /// Fractional numbers as `decimal(p,s)` instead of `double`.
    pub decimals: bool,
}

/// One inferred column.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header's name, or a proposed one (`renamed` says why).
    pub name: String,
    /// Why the header's name was not kept.
    pub renamed: Option<String>,
    /// The narrowest type every sampled value fits.
    pub ty: ColumnType,
    /// The `Format` that reads its dates or datetimes.
    pub format: Option<String>,
    /// An empty value was seen.
    pub nullable: bool,
    /// Something the user should know (an ambiguous day/month order).
    pub note: Option<String>,
}

/// A file's inferred dialect and columns.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// The field separator.
    pub delimiter: u8,
    /// Whether the first record is a header.
    pub has_headers: bool,
    /// Lines end in CRLF.
    pub crlf: bool,
    /// The file starts with a UTF-8 byte-order mark (read past).
    pub bom: bool,
    /// The compression found by the first bytes (`plain` for none).
    pub compression: &'static str,
    /// The columns.
    pub columns: Vec<Column>,
    /// Records sampled, and from how many places past the head.
    pub sampled: usize,
    /// Places past the head that were sampled.
    pub blocks: usize,
}

/// Infer `path`'s dialect and schema.
pub fn infer(path: &Path, options: &Options) -> Result<Inferred, String> {
    let shown = path.display();
    let want = options.sample_rows.unwrap_or(HEAD_RECORDS).max(2);
    let opened = compress::open_input(path, false, None).map_err(|e| format!("{shown}: {e}"))?;
    let compression = opened.format;
    let mut reader = opened.reader.take(HEAD_BYTES as u64);
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut eof = false;
    // Lines are at least records: stop once there are enough of them.
    while memchr::memchr_iter(b'\n', &head).count() <= want {
        let n = reader
            .read(&mut chunk)
            .map_err(|e| format!("{shown}: {e}"))?;
        if n == 0 {
            eof = head.len() < HEAD_BYTES;
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    let body = if bom { &head[3..] } else { &head[..] };
    if body.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    let delimiter = match options.delimiter {
        Some(d) => d,
        None => sniff_delimiter(body, eof),
    };
    let dialect = Dialect {
        delimiter,
        ..Dialect::default()
    };
    let (records, _) = split(body, dialect, eof, want + 1);
    if records.is_empty() {
        return Err(format!("{shown} holds no complete record"));
    }
    let width = records.field_count(0);
    let mut samples = vec![records];
    let mut blocks = 0;
    if compression == compress::Compression::None && !eof {
        for block in sample_blocks(path, dialect, width)? {
            samples.push(block);
            blocks += 1;
        }
    }
    let header = &samples[0];
    let names: Vec<String> = (0..width)
        .map(|k| String::from_utf8_lossy(header.field(0, k).unwrap_or_default()).into_owned())
        .collect();
    let mut columns = Vec::with_capacity(width);
    for k in 0..width {
        columns.push(infer_column(&samples, k, 1, options));
    }
    let has_headers = looks_like_header(&samples[0], &columns, options);
    if !has_headers {
        for (k, c) in columns.iter_mut().enumerate() {
            *c = infer_column(&samples, k, 0, options);
        }
    }
    name_columns(&mut columns, has_headers.then_some(&names[..]));
    let sampled = samples.iter().map(RecordSet::len).sum::<usize>() - usize::from(has_headers);
    Ok(Inferred {
        delimiter,
        has_headers,
        crlf: body.windows(2).any(|w| w == b"\r\n"),
        bom,
        compression: compression.name(),
        columns,
        sampled,
        blocks,
    })
}

/// Split `bytes` into at most `limit` records with `dialect` (records with a problem are kept
/// out); also how many had a problem.
fn split(bytes: &[u8], dialect: Dialect, eof: bool, limit: usize) -> (Records, usize) {
    let checks = Checks {
        ragged: Ragged::Error,
        ..Checks::default()
    };
    let mut decoder = Decoder::new(dialect, checks, 1, 0);
    let mut records = Records::with_cap(usize::MAX);
    decoder.decode(bytes, eof, &mut records, limit);
    let bad = (0..records.len())
        .filter(|&r| records.problem(r).is_some())
        .count();
    (records, bad)
}

/// The candidate that splits the first records into the most fields, every record alike.
fn sniff_delimiter(bytes: &[u8], eof: bool) -> u8 {
    let mut best = (b',', 0usize, 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let dialect = Dialect {
            delimiter: d,
            ..Dialect::default()
        };
        let (records, bad) = split(bytes, dialect, eof, 200);
        if records.is_empty() || bad * 10 > records.len() {
            continue;
        }
        let width = records.field_count(0);
        let good = records.len() - bad;
        if width > 1 && (width, good) > (best.1, best.2) {
            best = (d, width, good);
        }
    }
    best.0
}

/// Records from [`BLOCKS`] evenly spaced places past the head, each starting after a line break;
/// a place whose records do not all split cleanly into `width` fields is left out.
fn sample_blocks(path: &Path, dialect: Dialect, width: usize) -> Result<Vec<Records>, String> {
    let shown = path.display();
    let mut file = File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let size = file.metadata().map_err(|e| format!("{shown}: {e}"))?.len();
    let mut out = Vec::new();
    let mut buf = vec![0u8; BLOCK_BYTES];
    for i in 1..=BLOCKS {
        let at = size / (BLOCKS + 1) * i;
        file.seek(SeekFrom::Start(at))
            .map_err(|e| format!("{shown}: {e}"))?;
        let n = read_full(&mut file, &mut buf).map_err(|e| format!("{shown}: {e}"))?;
        let bytes = &buf[..n];
        let Some(start) = memchr::memchr(b'\n', bytes) else {
            continue;
        };
        let eof = at + n as u64 >= size;
        let (records, bad) = split(&bytes[start + 1..], dialect, eof, BLOCK_RECORDS);
        let clean = bad == 0 && (0..records.len()).all(|r| records.field_count(r) == width);
        if clean && !records.is_empty() {
            out.push(records);
        }
    }
    Ok(out)
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The reader `DelimitedSource` would use for column `k` declared `ty` (nullable, so empty values
/// fit any type).
fn trial_reader(k: usize, ty: &ColumnType, format: Option<&str>) -> ColumnReader {
    ColumnReader {
        name: String::new(),
        ty: ty.clone(),
        nullable: true,
        format: format.map(str::to_string),
        field: k,
        trim: false,
    }
}

/// Whether every sampled value of column `k` (from record `from` of the first sample on) reads as
/// `ty` with `format`: the converters `DelimitedSource` runs decide.
fn fits(samples: &[Records], k: usize, from: usize, ty: &ColumnType, format: Option<&str>) -> bool {
    let reader = trial_reader(k, ty, format);
    samples.iter().enumerate().all(|(i, records)| {
        let skip = if i == 0 { from.min(records.len()) } else { 0 };
        let take: Vec<Take> = (0..records.len())
            .map(|r| if r < skip { Take::Skip } else { Take::Value })
            .collect();
        let mut errors = Vec::new();
        convert::convert_one(
            records,
            std::slice::from_ref(&reader),
            0,
            &take,
            &mut errors,
        );
        errors.is_empty()
    })
}

/// The values of column `k` (from record `from` of the first sample), as text.
fn values(samples: &[Records], k: usize, from: usize) -> impl Iterator<Item = &[u8]> {
    samples.iter().enumerate().flat_map(move |(i, records)| {
        let skip = if i == 0 { from } else { 0 };
        (skip..records.len()).map(move |r| records.field(r, k).unwrap_or_default())
    })
}

/// The narrowest type that reads every sampled value of column `k`.
fn infer_column(samples: &[Records], k: usize, from: usize, options: &Options) -> Column {
    let nullable = values(samples, k, from).any(<[u8]>::is_empty);
    let mut column = Column {
        name: String::new(),
        renamed: None,
        ty: ColumnType::Utf8,
        format: None,
        nullable,
        note: None,
    };
    if values(samples, k, from).all(<[u8]>::is_empty) {
        column.note = Some("every sampled value is empty: read as string".into());
        return column;
    }
    let plain = [ColumnType::Int32, ColumnType::Int64];
    if let Some(ty) = plain.into_iter().find(|t| fits(samples, k, from, t, None)) {
        column.ty = ty;
        return column;
    }
    // `DelimitedSource` also reads `yes`/`no`, `y`/`n`, ... as booleans; a column is inferred
    // `bool` only when it says `true`/`false`, or a column of `y` and `n` initials would be one.
    let words = values(samples, k, from).all(|v| {
        v.is_empty() || v.eq_ignore_ascii_case(b"true") || v.eq_ignore_ascii_case(b"false")
    });
    if words && fits(samples, k, from, &ColumnType::Bool, None) {
        column.ty = ColumnType::Bool;
        return column;
    }
    if fits(samples, k, from, &ColumnType::Float64, None) {
        column.ty = match options
            .decimals
            .then(|| decimal_of(samples, k, from))
            .flatten()
        {
            Some(ty) => ty,
            None => ColumnType::Float64,
        };
        return column;
    }
    let dates: Vec<&str> = DATE_FORMATS
        .iter()
        .copied()
        .filter(|f| fits(samples, k, from, &ColumnType::Date, Some(f)))
        .collect();
    if let Some(first) = dates.first() {
        column.ty = ColumnType::Date;
        column.format = Some((*first).to_string());
        column.note = ambiguity(&dates);
        return column;
    }
    let times: Vec<&str> = DATETIME_FORMATS
        .iter()
        .copied()
        .filter(|f| {
            fits(
                samples,
                k,
                from,
                &ColumnType::Timestamp { tz: None },
                Some(f),
            )
        })
        .collect();
    if let Some(first) = times.first() {
        column.ty = ColumnType::Timestamp { tz: None };
        column.format = Some((*first).to_string());
        column.note = ambiguity(&times);
    }
    column
}

/// A note when both a day-first and a month-first format read every value.
fn ambiguity(formats: &[&str]) -> Option<String> {
    let day = formats.iter().find(|f| f.starts_with("%d"));
    let month = formats.iter().find(|f| f.starts_with("%m"));
    match (day, month) {
        (Some(d), Some(m)) => Some(format!(
            "ambiguous: every sampled value reads both as `{d}` (day first, chosen) and as `{m}` \
             (month first); check which the file means"
        )),
        _ => None,
    }
}

/// `decimal(p,s)` wide enough for every sampled value, if 38 digits are.
fn decimal_of(samples: &[Records], k: usize, from: usize) -> Option<ColumnType> {
    let (mut whole, mut scale) = (1usize, 0usize);
    for v in values(samples, k, from).filter(|v| !v.is_empty()) {
        let v = v
            .strip_prefix(b"-")
            .or_else(|| v.strip_prefix(b"+"))
            .unwrap_or(v);
        if !v.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            return None;
        }
        let (w, f) = match v.iter().position(|b| *b == b'.') {
            Some(p) => (p, v.len() - p - 1),
            None => (v.len(), 0),
        };
        whole = whole.max(w);
        scale = scale.max(f);
    }
    let precision = whole + scale;
    (precision <= 38).then_some(ColumnType::Decimal {
        precision: precision as u8,
        scale: scale as i8,
    })
}

/// The first record is a header unless it reads as data: every column's first value fits the type
/// the other records have, and some of those types is not a string.
fn looks_like_header(first: &Records, columns: &[Column], options: &Options) -> bool {
    let _ = options;
    let mut typed = false;
    for (k, c) in columns.iter().enumerate() {
        let value = first.field(0, k).unwrap_or_default();
        if value.is_empty() {
            return false;
        }
        if c.ty == ColumnType::Utf8 {
            continue;
        }
        typed = true;
        if !fits(
            std::slice::from_ref(first),
            k,
            0,
            &c.ty,
            c.format.as_deref(),
        ) || !only_first(first, k, &c.ty, c.format.as_deref())
        {
            return true;
        }
    }
    !typed
}

/// Whether record 0's value of column `k` alone reads as `ty`.
fn only_first(records: &Records, k: usize, ty: &ColumnType, format: Option<&str>) -> bool {
    let reader = trial_reader(k, ty, format);
    let take: Vec<Take> = (0..records.len())
        .map(|r| if r == 0 { Take::Value } else { Take::Skip })
        .collect();
    let mut errors = Vec::new();
    let array = convert::convert_one(
        records,
        std::slice::from_ref(&reader),
        0,
        &take,
        &mut errors,
    );
    errors.is_empty() && array.null_count() == 0
}

/// Names from the header, or `column_1`, ...; an empty or repeated name gets a proposed one.
fn name_columns(columns: &mut [Column], header: Option<&[String]>) {
    let mut seen: Vec<String> = Vec::new();
    for (k, c) in columns.iter_mut().enumerate() {
        let written = header.map(|h| h[k].trim().to_string());
        let mut name = match &written {
            Some(n) if !n.is_empty() => n.clone(),
            Some(_) => {
                c.renamed = Some("the header's name is empty".into());
                format!("column_{}", k + 1)
            }
            None => format!("column_{}", k + 1),
        };
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
            let mut n = 2;
            while seen
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&format!("{name}_{n}")))
            {
                n += 1;
            }
            c.renamed = Some(format!("`{name}` is the name of an earlier column too"));
            name = format!("{name}_{n}");
        }
        if written
            .as_deref()
            .is_some_and(|w| w != name && !w.is_empty())
            && c.renamed.is_none()
        {
            c.renamed = Some("the header's name has spaces around it".into());
        }
        seen.push(name.clone());
        c.name = name;
    }
}

impl Inferred {
    /// A `DelimitedSource` plugin entry (a YAML list item) reading `file` as inferred.
    pub fn source_yaml(&self, node: &str, file: &str) -> String {
        let mut out = format!(
            "- Name: {node}\n  Type: DelimitedSource\n  Config:\n    FilePath: {}\n",
            yaml_string(file)
        );
        if self.delimiter != b',' {
            let d = match self.delimiter {
                b'\t' => "\"\\t\"".to_string(),
                d => yaml_string(&(d as char).to_string()),
            };
            let _ = writeln!(out, "    Delimiter: {d}");
        }
        let renamed = self.columns.iter().any(|c| c.renamed.is_some());
        if !self.has_headers {
            out.push_str("    HasHeaders: false\n");
        } else if renamed {
            // The header's names are replaced: read past the header line instead of checking it.
            out.push_str("    HasHeaders: false\n    SkipRows: 1  # the header line\n");
        }
        out.push_str("    OutputSchema:\n      Columns:\n");
        for c in &self.columns {
            let mut entry = format!(
                "{{ Name: {}, Type: {}",
                yaml_string(&c.name),
                type_text(&c.ty)
            );
            if let Some(f) = &c.format {
                let _ = write!(entry, ", Format: {}", yaml_string(f));
            }
            if c.nullable {
                entry.push_str(", Nullable: true");
            }
            entry.push_str(" }");
            let _ = write!(out, "        - {entry}");
            let notes: Vec<&str> = [c.renamed.as_deref(), c.note.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if !notes.is_empty() {
                let _ = write!(out, "  # {}", notes.join("; "));
            }
            out.push('\n');
        }
        out
    }

    /// A whole pipeline: the source, and a `DelimitedSink` writing `output`.
    pub fn pipeline_yaml(&self, name: &str, file: &str, output: &str) -> String {
        let source = self.source_yaml("read", file);
        let indented: String = source.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "Pipeline:\n  Name: {}\n  Plugins:\n{indented}    - Name: write\n      Type: DelimitedSink\n      Config:\n        FilePath: {}\n  Connections:\n    - {{ From: read, To: write }}\n",
            yaml_string(name),
            yaml_string(output)
        )
    }
}

/// `decimal(p,s)` quoted (YAML would read the comma as a separator in a flow map).
fn type_text(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Decimal { .. } => format!("\"{ty}\""),
        other => other.to_string(),
    }
}

/// `text` as a YAML scalar: plain when that reads back the same, double-quoted otherwise.
fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !text.starts_with(['-', '.'])
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "null" | "on" | "off" | "y" | "n" | "~"
        );
    if plain {
        return text.to_string();
    }
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer_text(text: &str) -> Inferred {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, text).unwrap();
        infer(&path, &Options::default()).unwrap()
    }

    #[test]
    fn dialect_types_and_nulls_are_found() {
        let found = infer_text(
            "id;amount;day;flag;name\n1;1.5;31/01/2024;true;Ann\n2;;01/02/2024;false;\n3000000000;2;13/02/2024;true;Cy\n",
        );
        assert_eq!(found.delimiter, b';');
        assert!(found.has_headers);
        let types: Vec<String> = found.columns.iter().map(|c| c.ty.to_string()).collect();
        assert_eq!(types, ["int64", "double", "date", "bool", "string"]);
        assert_eq!(found.columns[2].format.as_deref(), Some("%d/%m/%Y"));
        assert!(found.columns[2].note.is_none(), "13/02 is day first only");
        assert!(found.columns[1].nullable && found.columns[4].nullable);
        assert!(!found.columns[0].nullable);
    }

    #[test]
    fn ambiguous_dates_renamed_headers_and_headerless_files_are_said() {
        let found = infer_text("d,d,\n01/02/2024,1,x\n03/04/2024,2,y\n");
        assert!(found.columns[0]
            .note
            .as_deref()
            .unwrap()
            .contains("ambiguous"));
        let names: Vec<&str> = found.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["d", "d_2", "column_3"]);
        assert!(found.source_yaml("read", "in.csv").contains("SkipRows: 1"));
        let bare = infer_text("1,2024-01-31,x\n2,2024-02-01,y\n3,2024-02-02,z\n");
        assert!(!bare.has_headers);
        assert_eq!(bare.columns[1].ty, ColumnType::Date);
    }
}

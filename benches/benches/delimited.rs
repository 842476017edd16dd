//! Decode, encode and end-to-end throughput of the delimited plugins.
//!
//! `cargo bench -p flowengine-benches`. Quote ratios against a peer measured in the same session:
//! absolute numbers drift on shared machines.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow_array::RecordBatch;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flowengine_engine::schema::ColumnType;
use flowengine_engine::LoadOptions;
use flowengine_plugins::delimited::convert::{convert, ColumnReader, Take};
use flowengine_plugins::delimited::decode::{Checks, Decoder, Dialect, RecordSet, Records};
use flowengine_plugins::delimited::encode::{Encoder, OutputColumn};
use flowengine_plugins::delimited::split::Scan;
use flowengine_plugins::delimited::tokens::{tokenize, Slice};

const ROWS: usize = 50_000;
const CHUNK: usize = 8192;

fn readers() -> Vec<ColumnReader> {
    use ColumnType::*;
    let types = [
        Int64, Int32, Utf8, Utf8, Utf8, Int32, Utf8, Date, Float64, Bool, Float64, Utf8,
    ];
    types
        .into_iter()
        .enumerate()
        .map(|(i, ty)| ColumnReader {
            name: format!("c{i}"),
            ty,
            nullable: i == 11,
            format: None,
            field: i,
            trim: false,
        })
        .collect()
}

/// Decode `input` (header skipped) into typed batches.
fn decode_all(input: &[u8], readers: &[ColumnReader]) -> Vec<Vec<arrow_array::ArrayRef>> {
    let body_start = input.iter().position(|&b| b == b'\n').unwrap() + 1;
    let checks = Checks {
        width: Some(12),
        ..Checks::default()
    };
    let mut decoder = Decoder::new(Dialect::default(), checks, 2, body_start as u64);
    let mut records = Records::default();
    let mut rest = &input[body_start..];
    let mut batches = Vec::new();
    while !decoder.is_done() {
        records.clear();
        let used = decoder.decode(rest, true, &mut records, CHUNK);
        rest = &rest[used..];
        if !records.is_empty() {
            let take = vec![Take::Value; records.len()];
            let (arrays, errors) = convert(&records, readers, &take);
            assert!(errors.is_empty() && records.problems.iter().all(Option::is_none));
            batches.push(arrays);
        }
    }
    batches
}

/// `input` (header skipped) cut into ranges of `CHUNK` records, as the source cuts them: each
/// range's bytes, first line and offset.
fn ranges(input: &[u8]) -> Vec<(Slice, u64, u64)> {
    let body_start = input.iter().position(|&b| b == b'\n').unwrap() + 1;
    let block = Arc::new(input.to_vec());
    let (mut start, mut line, mut out) = (body_start, 2, Vec::new());
    while start < input.len() {
        let mut scan = Scan::new(Some(b'"'));
        let len = scan
            .cut(&input[start..], true, CHUNK, usize::MAX)
            .unwrap_or(input.len() - start);
        let bytes = Slice {
            block: block.clone(),
            start,
            end: start + len,
        };
        out.push((bytes, line, start as u64));
        line += scan.lines();
        start += len;
    }
    out
}

/// Split and type every range the way a worker does: field spans over the range (the fast path).
fn tokenize_all(
    ranges: &[(Slice, u64, u64)],
    readers: &[ColumnReader],
) -> Vec<Vec<arrow_array::ArrayRef>> {
    let mut batches = Vec::new();
    for (bytes, line, offset) in ranges {
        let tokens = tokenize(bytes, *line, *offset, Dialect::default(), 12, 16 << 20)
            .expect("the benchmark data is well formed");
        let take = vec![Take::Value; tokens.len()];
        let (arrays, errors) = convert(&tokens, readers, &take);
        assert!(errors.is_empty());
        batches.push(arrays);
    }
    batches
}

fn bench_decode(c: &mut Criterion) {
    let input = flowengine_benches::generate(ROWS);
    let readers = readers();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("typed_12_columns", |b| {
        b.iter(|| decode_all(input.as_bytes(), &readers))
    });
    let ranges = ranges(input.as_bytes());
    g.bench_function("typed_12_columns_ranges", |b| {
        b.iter(|| tokenize_all(&ranges, &readers))
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let input = flowengine_benches::generate(ROWS);
    let readers = readers();
    let batches: Vec<RecordBatch> = decode_all(input.as_bytes(), &readers)
        .into_iter()
        .map(|arrays| {
            let named = arrays
                .into_iter()
                .enumerate()
                .map(|(i, a)| (format!("c{i}"), a));
            RecordBatch::try_from_iter(named).unwrap()
        })
        .collect();
    let columns = (0..12)
        .map(|i| OutputColumn {
            input: i,
            name: format!("c{i}"),
            format: None,
        })
        .collect();
    let encoder = Encoder::new(b',', b'"', false, columns);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("12_columns", |b| {
        b.iter_batched(
            || Vec::with_capacity(input.len()),
            |mut out| {
                for batch in &batches {
                    encoder.encode(batch, &mut out).unwrap();
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_pipeline(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("flowengine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = flowengine_benches::generate(ROWS);
    std::fs::write(dir.join("in.csv"), &input).unwrap();
    let yaml = format!(
        "Pipeline:
  Name: bench
  Plugins:
    - Name: read
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        OutputSchema:
          Columns:{}
    - Name: write
      Type: DelimitedSink
      Config: {{ FilePath: out.csv }}
  Connections:
    - {{ From: read, To: write }}
",
        flowengine_benches::COLUMNS_YAML
    );
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    let registry = Arc::new(flowengine_plugins::builtin_registry());
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(20);
    g.bench_function("csv_to_csv_typed", |b| {
        b.iter(|| {
            let plan = flowengine_engine::load_plan(&pipeline, &LoadOptions::default(), &registry)
                .unwrap();
            let outcome = plan.build().unwrap().run(&AtomicBool::new(false));
            outcome.result.unwrap();
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_decode, bench_encode, bench_pipeline);
criterion_main!(benches);

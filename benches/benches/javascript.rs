//! The per-row JavaScript call path: one batch of benchmark-shaped rows through the J2 script
//! (filter, two derived fields) on one thread, engine already compiled.
//!
//! `cargo bench -p flowengine-benches --bench javascript`.

use std::sync::Arc;

use arrow_array::{RecordBatch, UInt64Array};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowengine_engine::component::Transform;
use flowengine_engine::schema::ColumnType;
use flowengine_engine::Batch;
use flowengine_plugins::delimited::convert::{convert, ColumnReader, Take};
use flowengine_plugins::delimited::decode::{Checks, Decoder, Dialect, Records};
use flowengine_plugins::js::config::{FieldSpec, JsConfig, Limits};
use flowengine_plugins::js::engine::Level;
use flowengine_plugins::js::transform::JsTransform;

const ROWS: usize = 8192;

const J2: &str = "function process(context) {
  var r = context.input.current();
  if (!(r.is_active && r.age >= 30)) return false;
  context.output.setField('full_name', r.first_name + ' ' + r.last_name);
  context.output.setField('value_band', r.account_value >= 50000 ? 'high' : 'low');
  return true;
}";

/// One typed batch of `ROWS` generated rows.
fn batch() -> Batch {
    use ColumnType::*;
    let names = [
        "id",
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "age",
        "country",
        "signup_date",
        "account_value",
        "is_active",
        "score",
        "notes",
    ];
    let types = [
        Int64, Int32, Utf8, Utf8, Utf8, Int32, Utf8, Date, Float64, Bool, Float64, Utf8,
    ];
    let readers: Vec<ColumnReader> = names
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (name, ty))| ColumnReader {
            name: name.to_string(),
            ty,
            nullable: i == 11,
            format: None,
            field: i,
            trim: false,
        })
        .collect();
    let input = flowengine_benches::generate(ROWS);
    let body = input.find('\n').unwrap() + 1;
    let checks = Checks {
        width: Some(12),
        ..Checks::default()
    };
    let mut decoder = Decoder::new(Dialect::default(), checks, 2, body as u64);
    let mut records = Records::default();
    decoder.decode(&input.as_bytes()[body..], true, &mut records, ROWS);
    let (arrays, errors) = convert(&records, &readers, &vec![Take::Value; records.len()]);
    assert!(errors.is_empty());
    let data = RecordBatch::try_from_iter(names.iter().map(|n| n.to_string()).zip(arrays)).unwrap();
    let lines = UInt64Array::from((2..2 + data.num_rows() as u64).collect::<Vec<_>>());
    Batch::new(data, Some("bench.csv".into()), lines)
}

fn bench_j2_script(c: &mut Criterion) {
    let batch = batch();
    let field = |name: &str| FieldSpec {
        name: name.into(),
        ty: ColumnType::Utf8,
        required: true,
    };
    let mut g = c.benchmark_group("javascript");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    for (compile, name) in [(true, "j2_script_compiled"), (false, "j2_script_boa")] {
        let config = JsConfig {
            node: "j2".into(),
            script: J2.into(),
            script_name: "j2.Script".into(),
            fields: vec![field("full_name"), field("value_band")],
            inherit: true,
            ports: Vec::new(),
            parallel: true,
            limits: Limits::default(),
            log_level: Level::Info,
            compile,
        };
        let input = batch.data.schema();
        let output = config.schema_for(&input).unwrap();
        let transform = Arc::new(JsTransform::new(config, input, output));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut rejects = Vec::new();
                let out = transform.apply_routed(batch.clone(), &mut rejects).unwrap();
                assert!(rejects.is_empty());
                out
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_j2_script);
criterion_main!(benches);

//! The relational transforms, each in a pipeline of its own beside a passthrough on the same
//! rows, so the difference is the transform: `Sort` (in memory, and spilling under a small
//! `MemoryLimit`), `Distinct`, `Aggregate` and `Lookup`.
//!
//! `cargo bench -p flowengine-benches --bench relational`. Quote ratios against the passthrough
//! (or a peer) measured in the same session: absolute numbers drift on shared machines.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowengine_engine::{LoadOptions, Registry};

const ROWS: usize = 200_000;

/// A pipeline reading `in.csv`, through `steps` (plugin entries chained in order, the first
/// named `step`), into a `NullSink`; `extra` adds plugins and connections of its own.
fn pipeline(settings: &str, steps: &[&str], extra: (&str, &str)) -> String {
    let mut plugins = String::new();
    let mut connections = String::new();
    let mut last = "read".to_string();
    for (i, step) in steps.iter().enumerate() {
        let name = format!("step{i}");
        plugins.push_str(&format!("    - {{ Name: {name}, {step} }}\n"));
        connections.push_str(&format!("    - {{ From: {last}, To: {name} }}\n"));
        last = name;
    }
    format!(
        "Pipeline:
  Name: bench
  Settings: {{ {settings} }}
  Plugins:
    - Name: read
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        OutputSchema:
          Columns:{}
{plugins}{}    - {{ Name: write, Type: NullSink }}
  Connections:
{connections}{}    - {{ From: {last}, To: write }}
",
        flowengine_benches::COLUMNS_YAML,
        extra.0,
        extra.1
    )
}

fn run(path: &Path, registry: &Registry) {
    let plan = flowengine_engine::load_plan(path, &LoadOptions::default(), registry).unwrap();
    let outcome = plan.build().unwrap().run(&AtomicBool::new(false));
    outcome.result.unwrap();
}

fn bench_relational(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("flowengine-bench-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = flowengine_benches::generate(ROWS);
    std::fs::write(dir.join("in.csv"), &input).unwrap();
    std::fs::write(
        dir.join("countries.csv"),
        "code,name\nUS,United States\nDE,Germany\nFR,France\nJP,Japan\n",
    )
    .unwrap();
    let lookup = (
        "    - Name: countries
      Type: DelimitedSource
      Config:
        FilePath: countries.csv
        OutputSchema:
          Columns:
            - { Name: code, Type: string }
            - { Name: name, Type: string }
",
        "    - { From: countries, To: step0.lookup }\n",
    );
    let none = ("", "");
    let cases: [(&str, String); 7] = [
        ("passthrough", pipeline("", &[], none)),
        (
            "sort",
            pipeline(
                "",
                &[r#"Type: Sort, Config: { By: [country, "account_value DESC", id] }"#],
                none,
            ),
        ),
        (
            "sort_spilling",
            pipeline(
                "MemoryLimit: 8 MiB, ChannelCapacity: 1",
                &[r#"Type: Sort, Config: { By: [country, "account_value DESC", id] }"#],
                none,
            ),
        ),
        (
            "distinct",
            pipeline(
                "",
                &["Type: Distinct, Config: { On: [first_name, last_name, country] }"],
                none,
            ),
        ),
        (
            "distinct_spilling",
            pipeline(
                "MemoryLimit: 8 MiB, ChannelCapacity: 1",
                &["Type: Distinct, Config: { On: [email] }"],
                none,
            ),
        ),
        (
            "aggregate",
            pipeline(
                "",
                &[
                    r#"Type: Aggregate, Config: { GroupBy: [country, is_active], Columns: { rows: "count(*)", total: "sum(account_value)", mean: "avg(score)", oldest: "max(age)" } }"#,
                ],
                none,
            ),
        ),
        (
            "lookup",
            pipeline(
                "",
                &["Type: Lookup, Config: { On: { country: code }, Columns: [name] }"],
                lookup,
            ),
        ),
    ];
    let registry = flowengine_plugins::builtin_registry();
    let mut g = c.benchmark_group("relational");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10);
    for (name, yaml) in cases {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        g.bench_function(name, |b| b.iter(|| run(&path, &registry)));
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_relational);
criterion_main!(benches);

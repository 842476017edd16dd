//! Reads back what `ParquetSink` and `ArrowSink` wrote, with the `parquet` and `arrow-ipc`
//! crates: the declared types must survive (date32, decimal128, timestamp), and the values too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

/// Run a golden case's pipeline in a fresh copy of its folder; returns the copy.
fn run_case(case: &str) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/cases")
        .join(case);
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["pipeline.yaml", "in.csv"] {
        std::fs::copy(from.join(name), dir.path().join(name)).expect("copy case");
    }
    let status = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "pipeline.yaml"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run flowengine");
    assert!(status.success(), "{case} failed: {status}");
    dir
}

fn out(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join("out").join(name)
}

fn check_types_and_values(batches: &[RecordBatch]) {
    let schema = batches[0].schema();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        [
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Date32,
            &DataType::Decimal128(10, 2),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &DataType::Boolean,
        ]
    );
    assert!(!schema.field(0).is_nullable());
    assert!(schema.field(3).is_nullable());
    let all = concat(batches);
    let ids: Vec<i64> = all.column(0).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, [1, 3, 4]);
    let signup = all.column(2).as_primitive::<Date32Type>();
    assert_eq!(signup.value(0), 19_753, "2024-01-31");
    let balance = all.column(3).as_primitive::<Decimal128Type>();
    assert_eq!(balance.value(0), 123_450);
    assert_eq!(balance.value(1), -1);
    let seen = all.column(4).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(seen.value(0), 1_706_708_700_000_000, "2024-01-31T13:45:00");
    assert!(seen.is_null(1));
}

/// The rows of several batches as one (the test data is tiny).
fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).expect("same schema")
}

#[test]
fn parquet_keeps_declared_types_and_values() {
    let dir = run_case("parquet-fanout-csv-and-parquet");
    let file = File::open(out(&dir, "active.parquet")).expect("parquet written");
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file");
    let meta = builder.metadata().clone();
    let column = meta.row_group(0).column(0);
    assert_eq!(column.compression(), parquet::basic::Compression::SNAPPY);
    let parquet_schema = meta.file_metadata().schema_descr();
    let logical: Vec<String> = parquet_schema
        .columns()
        .iter()
        .map(|c| format!("{:?}", c.logical_type_ref()))
        .collect();
    assert!(logical[2].contains("Date"), "{logical:?}");
    assert!(logical[3].contains("Decimal"), "{logical:?}");
    assert!(logical[4].contains("Timestamp"), "{logical:?}");
    let batches: Vec<RecordBatch> = builder
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches");
    check_types_and_values(&batches);
}

/// Per column of the first row group: whether its chunk starts with a dictionary page.
fn dictionary_pages(path: &Path) -> Vec<bool> {
    use parquet::file::reader::FileReader;
    let file = File::open(path).expect("parquet written");
    let reader = parquet::file::reader::SerializedFileReader::new(file).expect("a Parquet file");
    let group = reader.metadata().row_group(0);
    assert_eq!(group.num_rows(), 2000);
    (0..group.num_columns())
        .map(|i| group.column(i).dictionary_page_offset().is_some())
        .collect()
}

#[test]
fn parquet_dictionary_auto_writes_distinct_columns_plain() {
    let dir = run_case("parquet-dictionary-auto");
    // id and email are all distinct; name has four values.
    assert_eq!(
        dictionary_pages(&out(&dir, "auto.parquet")),
        [false, true, false]
    );
    assert_eq!(
        dictionary_pages(&out(&dir, "always.parquet")),
        [true, true, true]
    );
}

#[test]
fn arrow_file_and_stream_keep_declared_types_and_values() {
    let dir = run_case("arrow-file-and-stream");
    let file = File::open(out(&dir, "all.arrow")).expect("arrow file written");
    let reader = arrow_ipc::reader::FileReader::try_new(file, None).expect("an IPC file");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("batches");
    assert_eq!(batches.len(), 2, "one IPC batch per pipeline batch");
    let stream = File::open(out(&dir, "all.arrows")).expect("arrow stream written");
    let reader = arrow_ipc::reader::StreamReader::try_new(stream, None).expect("an IPC stream");
    let streamed: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("batches");
    assert_eq!(batches, streamed);
    // The Arrow case keeps every row; keep the active ones to compare with the Parquet case.
    let all = concat(&batches);
    let active = arrow_select::filter::filter_record_batch(&all, all.column(5).as_boolean())
        .expect("filter");
    check_types_and_values(&[active]);
}

/// The JavaScript and the native J2 must agree on every byte of the benchmark sample.
#[test]
fn javascript_and_native_j2_write_identical_output() {
    let native = run_case("native-j2-benchmark-sample");
    let js = run_case("js_j2_benchmark_sample");
    let native = std::fs::read(out(&native, "out.csv")).expect("native output");
    let js = std::fs::read(out(&js, "out.csv")).expect("JavaScript output");
    assert!(native.len() > 1000, "the sample should keep rows");
    assert!(native == js, "J2 native and J2 JavaScript outputs differ");
}

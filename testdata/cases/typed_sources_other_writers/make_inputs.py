"""Writes other.parquet and other.arrow the way pandas/pyarrow users have them (run once; the
files are committed, so the case needs no Python): narrow and unsigned integers, float32, a
dictionary-encoded and a large string, decimal(5,2), nanosecond and millisecond timestamps, a
nested column nobody declares, gzip-compressed Parquet pages and an LZ4-compressed Arrow file."""
import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

table = pa.table({
    "id": pa.array([1, 2, 3, 4], pa.int8()),
    "count": pa.array([0, 4294967295, 7, 8], pa.uint32()),
    "score": pa.array([0.5, -1.25, None, 3.0], pa.float32()),
    "city": pa.array(["Oslo", "Lima", "Oslo", "Pune"]).dictionary_encode(),
    "text": pa.array(["a", "ünï", "", "d"], pa.large_string()),
    "price": pa.array([decimal.Decimal("1.50"), decimal.Decimal("-999.99"), None,
                       decimal.Decimal("0.01")], pa.decimal128(5, 2)),
    # Row 3's value has a fraction of a microsecond: a datetime cannot hold it.
    "at": pa.array([1_700_000_000_000_000_000, 1_700_000_000_000_001_000,
                    1_700_000_000_000_000_001, 0], pa.timestamp("ns")),
    "utc": pa.array([dt.datetime(2024, 1, 31, 12, 0, tzinfo=dt.timezone.utc)] * 4,
                    pa.timestamp("ms", tz="UTC")),
    # Row 4 is null, and the pipeline declares the column required.
    "required": pa.array([10, 20, 30, None], pa.int32()),
    "tags": pa.array([["x"], [], None, ["y", "z"]], pa.list_(pa.string())),
})
pq.write_table(table, "other.parquet", compression="gzip", store_schema=True)
feather.write_feather(table, "other.arrow", compression="lz4")

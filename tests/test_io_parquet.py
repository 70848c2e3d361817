import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fpfast.io.sources import SourceError, SourceSpecError, iter_sources
from fpfast.io.writers import read_rows
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import run
from io_helpers import encode, rand_rgb


def write(path, n=5, null_at=(2,), key=True, column="image"):
    imgs = [None if i in null_at else encode(rand_rgb(20, 20, seed=i)) for i in range(n)]
    cols = {column: pa.array(imgs, pa.binary())}
    if key:
        cols["key"] = [f"k{i}" for i in range(n)]
    pq.write_table(pa.table(cols), path, row_group_size=2)


def test_parquet_rows_in_order_null_is_an_error_row(tmp_path):
    p = tmp_path / "d.parquet"
    write(p)
    items = list(iter_sources([str(p)]))
    assert [k for k, _ in items] == [f"k{i}" for i in range(5)]
    assert isinstance(items[2][1], SourceError) and "null" in items[2][1].message
    out = tmp_path / "out"
    s = run([str(p)], fingerprint_mapper(), str(out), shard_size=2, quiet=True)
    rows = read_rows(str(out))
    assert [r["path"] for r in rows] == [f"k{i}" for i in range(5)]
    assert [bool(r["error"]) for r in rows] == [False, False, True, False, False]
    assert s.exit_code == 3


def test_parquet_named_column_and_default_keys(tmp_path):
    p = tmp_path / "e.parquet"
    write(p, n=3, null_at=(), key=False, column="pixels_png")
    with pytest.raises(SourceSpecError, match="no column 'nope'"):
        list(iter_sources([str(p)], column="nope"))
    keys = [k for k, _ in iter_sources([str(p)], column="pixels_png")]
    assert keys == [f"{p}#{i}" for i in range(3)]
    # a single binary column is found without --column
    assert [k for k, _ in iter_sources([str(p)])] == keys


def test_hf_image_struct_column(tmp_path):
    p = tmp_path / "hf.parquet"
    st = pa.array([{"bytes": encode(rand_rgb(20, 20)), "path": "a.png"}, {"bytes": None, "path": "b.png"}])
    pq.write_table(pa.table({"image": st}), p)
    items = list(iter_sources([str(p)]))
    assert isinstance(items[0][1], bytes) and isinstance(items[1][1], SourceError)

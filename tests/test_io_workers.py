"""Decode in worker processes gives the same rows, in the same order, as in-process decode."""
from fpfast.io.writers import read_rows
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import run
from io_helpers import encode, rand_rgb


def test_workers_match_in_process(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(30):
        (d / f"{i:03d}.png").write_bytes(b"junk" if i % 7 == 3 else encode(rand_rgb(20 + i % 3, 20, seed=i)))
    a, b = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    sa = run([str(d)], fingerprint_mapper(), a, shard_size=8, batch_size=4, quiet=True, workers=0)
    sb = run([str(d)], fingerprint_mapper(), b, shard_size=8, batch_size=4, quiet=True, workers=2, chunksize=3)
    ra, rb = read_rows(a), read_rows(b)
    assert len(ra) == len(rb) == 30
    assert [r["path"] for r in ra] == [r["path"] for r in rb]
    assert [r["error"] for r in ra] == [r["error"] for r in rb]
    assert [r["vector"] for r in ra] == [r["vector"] for r in rb]
    assert sa.errors == sb.errors == 4 and sb.exit_code == 3
    assert sb.seconds["decode"] > 0


def test_csv_output(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        (d / f"{i}.png").write_bytes(encode(rand_rgb(20, 20, seed=i)))
    out = str(tmp_path / "r.csv")
    run([str(d)], fingerprint_mapper(), out, shard_size=2, quiet=True)
    rows = read_rows(out)
    assert len(rows) == 5 and rows[0]["vector"].startswith("[")


def test_spec_in_parquet_metadata(tmp_path):
    import pyarrow.parquet as pq
    from fpfast.spec import FingerprintSpec
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(encode(rand_rgb(20, 20)))
    spec = FingerprintSpec(residual="npr")
    for out in (tmp_path / "o.parquet", tmp_path / "dir"):
        run([str(d)], fingerprint_mapper(spec), str(out), spec=spec, quiet=True)
        f = out if out.suffix else out / "part-000000.parquet"
        md = pq.read_schema(f).metadata
        assert FingerprintSpec.from_json(md[b"fpfast.spec"].decode()) == spec


def test_all_error_first_shard_keeps_the_columns(tmp_path):
    import pyarrow.parquet as pq
    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        (d / f"{i}.png").write_bytes(b"" if i < 2 else encode(rand_rgb(20, 20, seed=i)))
    out = tmp_path / "o"
    run([str(d)], fingerprint_mapper(), str(out), shard_size=2, quiet=True)
    t = pq.read_table(out)  # what pandas.read_parquet(out) does
    assert t.num_rows == 6 and "vector" in t.column_names
    assert pq.read_schema(out / "part-000000.parquet").names == t.column_names

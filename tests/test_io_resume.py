"""Crash in the middle (os._exit in a subprocess: no cleanup, like kill -9), then resume."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fpfast.io.writers import MANIFEST, OutputError, read_rows
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import run
from io_helpers import encode, rand_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, SHARD, BATCH = 23, 4, 2


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(N):
        data = b"" if i in (5, 17) else encode(rand_rgb(18 + i % 5, 20, seed=i))
        (d / f"{i:03d}.png").write_bytes(data)
    return d


def crash_after(src, out, k_batches):
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from fpfast.jobs.mappers import fingerprint_mapper
        from fpfast.pipeline import run
        inner = fingerprint_mapper()
        calls = [0]
        def mapper(batch, keys):
            calls[0] += 1
            if calls[0] > {k_batches}:
                os._exit(9)
            return inner(batch, keys)
        run([{str(src)!r}], mapper, {out!r}, shard_size={SHARD}, batch_size={BATCH}, quiet=True)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr


def as_set(rows):
    return {(r["path"], r["error"], None if r.get("vector") is None else tuple(np.asarray(r["vector"], np.float32).tolist()))
            for r in rows}


@pytest.mark.parametrize("out_name", ["dir_out", "single.parquet", "single.jsonl"])
def test_crash_then_resume_equals_uninterrupted(tmp_path, src, out_name):
    ref = str(tmp_path / "ref")
    run([str(src)], fingerprint_mapper(), ref, shard_size=SHARD, batch_size=BATCH, quiet=True)
    want = read_rows(ref)
    assert len(want) == N

    out = str(tmp_path / out_name)
    crash_after(src, out, k_batches=5)
    parts = out if os.path.isdir(out) else os.path.join(str(tmp_path), f".{out_name}.parts")
    with open(os.path.join(parts, MANIFEST)) as fh:
        finished = [json.loads(line) for line in fh][1:]
    assert 0 < len(finished) < -(-N // SHARD)  # crashed part way

    with pytest.raises(OutputError, match="resume"):
        run([str(src)], fingerprint_mapper(), out if os.path.isdir(out) else parts,
            shard_size=SHARD, batch_size=BATCH, quiet=True)
    s = run([str(src)], fingerprint_mapper(), out, shard_size=SHARD, batch_size=BATCH, quiet=True,
            resume=True)
    assert s.skipped == SHARD * len(finished)
    assert s.inputs == N
    got = read_rows(out)
    assert len(got) == N and len({r["path"] for r in got}) == N
    if out_name.endswith(".jsonl"):
        got = [dict(r, vector=None if r.get("vector") is None else np.asarray(r["vector"], np.float32))
               for r in got]
    assert as_set(got) == as_set(want)
    assert [r["path"] for r in got] == [r["path"] for r in want]  # input order


def test_resume_refuses_another_configuration(tmp_path, src):
    out = str(tmp_path / "o")
    run([str(src)], fingerprint_mapper(), out, shard_size=SHARD, quiet=True)
    with pytest.raises(OutputError, match="shard_size"):
        run([str(src)], fingerprint_mapper(), out, shard_size=SHARD + 1, quiet=True, resume=True)
    with pytest.raises(OutputError, match="spec_id"):
        run([str(src)], fingerprint_mapper("npr"), out, spec="npr", shard_size=SHARD, quiet=True, resume=True)


def test_resume_of_a_finished_run_redoes_only_the_last_short_shard(tmp_path, src):
    out = str(tmp_path / "o")
    run([str(src)], fingerprint_mapper(), out, shard_size=SHARD, quiet=True)
    s = run([str(src)], fingerprint_mapper(), out, shard_size=SHARD, quiet=True, resume=True)
    assert s.skipped == (N // SHARD) * SHARD and s.ok + s.errors == N % SHARD
    assert len(read_rows(out)) == N


def test_leftover_tmp_and_cut_manifest_line_are_ignored(tmp_path, src):
    out = tmp_path / "o"
    run([str(src)], fingerprint_mapper(), str(out), shard_size=SHARD, quiet=True)
    (out / ".part-000001.parquet.tmp").write_bytes(b"half a file")
    with open(out / MANIFEST, "a") as fh:
        fh.write('{"shard": 3, "inp')  # a crash while appending
    s = run([str(src)], fingerprint_mapper(), str(out), shard_size=SHARD, quiet=True, resume=True)
    assert not (out / ".part-000001.parquet.tmp").exists()
    assert len(read_rows(str(out))) == N


def test_npy_extract_layout(tmp_path, src):
    import pyarrow.parquet as pq  # pandas.read_parquet reads the same folders when installed
    out = tmp_path / "x"
    s = run([str(src)], fingerprint_mapper(), str(out), shard_size=SHARD, quiet=True, kind="npy")
    emb = sorted(os.listdir(out / "embeddings"))
    vecs = np.concatenate([np.load(out / "embeddings" / f) for f in emb])
    meta = pq.read_table(out / "metadata").to_pydict()
    errors = pq.read_table(out / "errors").to_pydict()["path"]
    assert vecs.dtype == np.float32 and len(vecs) == len(meta["path"]) == N - 2 and len(errors) == 2
    assert list(meta["path"]) == sorted(meta["path"])
    assert s.exit_code == 3
    from fpfast.spec import FingerprintSpec
    assert FingerprintSpec.from_json((out / "spec.json").read_text()) == FingerprintSpec()
    md = pq.read_schema(out / "metadata" / "part-000000.parquet").metadata
    assert FingerprintSpec.from_json(md[b"fpfast.spec"].decode()) == FingerprintSpec()

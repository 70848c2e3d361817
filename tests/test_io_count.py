"""The progress bar's total (:func:`count_inputs`) is the number of rows the stream yields, error
rows included, for every kind of source: both come from one expansion of the sources, which the
counted stream walks once."""
from __future__ import annotations

import gzip
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli_helpers import invoke
from fpfast.io import sources as src_mod
from fpfast.io.sources import SourceSpecError, count_inputs, counted_sources, iter_sources
from fpfast.io.writers import read_rows
from io_helpers import encode, rand_rgb
from test_io_tar import damage_second_header, make_tar, make_tar_gz, shard_members


@pytest.fixture()
def kinds(tmp_path):
    """One source of every kind, keyed by what it is."""
    f = tmp_path / "f"
    (f / "sub").mkdir(parents=True)
    for j in range(3):
        (f / f"{j}.png").write_bytes(encode(rand_rgb(20, 20, seed=j)))
    (f / "sub" / "x.png").write_bytes(b"not an image")  # an error row
    (f / "notes.txt").write_text("a sidecar: not an input")
    make_tar(tmp_path / "s.tar", shard_members(0, n=3))
    raw, _ = damage_second_header([(f"m{j}.png", encode(rand_rgb(20, 20, seed=j))) for j in range(4)])
    (tmp_path / "damaged.tar").write_bytes(raw)
    make_tar_gz(tmp_path / "s.tgz", shard_members(1, n=2))
    pq.write_table(pa.table({"image": [encode(rand_rgb(20, 20, seed=9)), None, b"junk"]}), tmp_path / "p.parquet")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 's.tar'}\n# a comment\n\n{f / '0.png'}\n"
                                       f"{tmp_path / 'gone.png'}\n{f}\n")
    return {"folder": [str(f)], "list": [f"@{tmp_path / 'list.txt'}"], "tar": [str(tmp_path / "s.tar")],
            "damaged tar": [str(tmp_path / "damaged.tar")], "parquet": [str(tmp_path / "p.parquet")],
            "missing": [str(tmp_path / "gone.png")], "missing tar": [str(tmp_path / "gone.tar")],
            "missing parquet": [str(tmp_path / "gone.parquet")], "glob": [str(f / "*.png")],
            "braces": [str(tmp_path / "{s,damaged}.tar")], "gzip tar": [str(tmp_path / "s.tgz")],
            "glob of nothing": [str(f / "*.gif")]}


def test_count_equals_the_rows_of_the_stream_for_every_kind_of_source(kinds):
    for kind, srcs in kinds.items():
        if kind == "glob of nothing":  # a usage error for the stream, no count
            assert count_inputs(srcs) is None
            with pytest.raises(SourceSpecError, match="no files match"):
                list(iter_sources(srcs))
        elif kind == "gzip tar":  # counting it means decompressing it: no count, the bar runs without a total
            assert count_inputs(srcs) is None and len(list(iter_sources(srcs))) == 2
        else:
            assert count_inputs(srcs) == len(list(iter_sources(srcs))), kind
    every = [s for k, v in kinds.items() if k not in ("glob of nothing", "gzip tar") for s in v]
    assert count_inputs(every) == len(list(iter_sources(every))) == 36


def test_count_equals_the_rows_fpfast_extract_writes(kinds, tmp_path):
    every = [s for k, v in kinds.items() if k not in ("glob of nothing", "gzip tar") for s in v]
    r = invoke("extract", *every, "-o", tmp_path / "out", "--spec", "default", "--quiet")
    assert r.exit_code == 3, r.output  # error rows: the broken and missing inputs
    assert len(read_rows(str(tmp_path / "out"))) == count_inputs(every)


def test_the_counted_stream_walks_each_folder_once_and_yields_what_iter_sources_does(kinds, monkeypatch):
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(src_mod.os, "walk", lambda *a, **kw: walks.append(a[0]) or real_walk(*a, **kw))
    srcs = kinds["folder"] + kinds["list"] + kinds["tar"]
    ignored = []
    items, total = counted_sources(srcs, ignored=ignored.append)
    got = list(items)
    assert len(walks) == 2  # the folder, and the same folder named in the list: each walked once
    assert total == len(got) and ignored == [os.path.join(kinds["folder"][0], "notes.txt")] * 2
    assert [k for k, _ in got] == [k for k, _ in iter_sources(srcs)]


def test_a_source_that_fails_raises_where_the_counted_stream_gets_to_it(kinds):
    items, total = counted_sources(kinds["folder"] + kinds["glob of nothing"])
    assert total is None
    got = []
    with pytest.raises(SourceSpecError, match="no files match"):
        for item in items:
            got.append(item)
    assert len(got) == 4  # the folder's inputs came first, as in the uncounted stream


def test_count_gives_up_past_its_budget(kinds):
    assert count_inputs(kinds["folder"], budget_s=0.0) is None
    items, total = counted_sources(kinds["folder"], budget_s=0.0)
    assert total is None and len(list(items)) == 4  # the stream is whole

"""The zoo's content metadata (``content.parquet``, written by ``fpfast zoo build``): which real
patch every generated image was made from, and the counterfactual pairs it gives.

Columns: ``split, model, label, file`` (relative to the zoo's root), ``content_id`` (null for
prior samples), ``photo, top, left, flip``. Two files with the same ``content_id`` show the same
content made by two generators ("same content, other generator"); two files of one ``model``
and split with other content ids are "same generator, other content".
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UsageError
from ..zoo.images import CONTENT_FILE


def load_content(path) -> list[dict]:
    """The rows of a zoo's content table (``path``: the zoo's root or the parquet file)."""
    import pyarrow.parquet as pq
    p = Path(path)
    if p.is_dir():
        p = p / CONTENT_FILE
    if not p.is_file():
        raise UsageError(f"no content table at {p}: build the zoo with this fpfast (fpfast zoo build) "
                         "or pass --content FILE")
    return pq.read_table(p).to_pylist()


def content_of(paths, table: list[dict], root) -> list[str | None]:
    """The content id of each image path (None: not in the table, or a prior sample)."""
    root = Path(root)
    by_file = {os.path.realpath(root / r["file"]): r["content_id"] for r in table}
    return [by_file.get(os.path.realpath(p)) for p in paths]


def pairs(table: list[dict], kind: str, split: str = "train") -> Iterator[tuple[str, str]]:
    """File pairs of ``split``: ``same_content`` (one content id, two models) or ``same_model``
    (one model, two content ids)."""
    if kind not in ("same_content", "same_model"):
        raise ValueError(f"kind must be 'same_content' or 'same_model', got {kind!r}")
    key = "content_id" if kind == "same_content" else "model"
    other = "model" if kind == "same_content" else "content_id"
    groups: dict = {}
    for r in table:
        if r["split"] == split and r["content_id"] is not None:
            groups.setdefault(r[key], []).append(r)
    for rows in groups.values():
        for a, b in itertools.combinations(rows, 2):
            if a[other] != b[other]:
                yield a["file"], b["file"]


def grouped_order(content: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(content))`` in which images of one content id (>= 0) are
    consecutive (groups in random order, -1 = no content: a group of one), so that a batch holds
    whole counterfactual groups."""
    content = np.asarray(content)
    groups: dict = {}
    for i, c in enumerate(content):
        groups.setdefault(int(c) if c >= 0 else -1 - i, []).append(i)
    keys = list(groups)
    return np.array([i for g in rng.permutation(len(keys)) for i in groups[keys[g]]], np.int64)

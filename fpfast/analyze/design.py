"""Which models an analysis covers, where their images are, and their design labels.

Two layouts:

* a GM-zoo folder (``zoo.json`` at its root): the models of one split (``test`` by default) plus
  the ``unseen_seed`` and ``open_set`` models, labelled from each folder's ``model.json``;
* a folder of per-model sub-folders, labelled from ``--design design.csv`` (a ``model`` column,
  one column per attribute; an empty cell means "not applicable"), or, without a CSV, from a
  ``model.json`` in every sub-folder.

The real class (``family == "real"``) has no design and is left out.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

DESIGN_ATTRIBUTES = ("family", "upsampling", "normalization", "activation", "loss", "sampler")
ZOO_EXTRA_SPLITS = ("unseen_seed", "open_set")


class DesignError(UsageError):
    """The design table and the folders disagree, or a label is missing (exit 2)."""


@dataclass
class Design:
    folders: dict[str, str]                  # model -> image folder
    labels: dict[str, dict[str, str | None]]  # model -> attribute -> value (None: not applicable)
    attributes: list[str]

    def values(self, attribute: str) -> dict[str, str]:
        """model -> value for the models where ``attribute`` applies."""
        return {m: v[attribute] for m, v in self.labels.items() if v.get(attribute) not in (None, "")}


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_model_json(folder: Path) -> dict:
    f = folder / "model.json"
    if not f.is_file():
        raise DesignError(f"{folder} has no model.json: give the design labels with --design design.csv")
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise DesignError(f"cannot read {f}: {e}") from None


def _from_meta(folders: dict[str, Path]) -> Design:
    labels = {}
    for m, d in folders.items():
        meta = _read_model_json(d)
        if meta.get("family") == "real":
            continue
        labels[m] = {a: (None if meta.get(a) is None else str(meta[a])) for a in DESIGN_ATTRIBUTES}
    attrs = [a for a in DESIGN_ATTRIBUTES if any(v[a] is not None for v in labels.values())]
    return Design({m: str(folders[m]) for m in labels}, labels, attrs)


def from_zoo(root: "str | os.PathLike", split: str = "test") -> Design:
    root = Path(root)
    if not (root / split).is_dir():
        have = sorted(p.name for p in _subfolders(root))
        raise DesignError(f"zoo {root} has no split {split!r} (it has {have})")
    folders: dict[str, Path] = {}
    for s in (split,) + tuple(x for x in ZOO_EXTRA_SPLITS if x != split):
        if (root / s).is_dir():
            for d in _subfolders(root / s):
                if d.name in folders:
                    raise DesignError(f"model {d.name!r} appears in two splits of {root}")
                folders[d.name] = d
    return _from_meta(folders)


def from_csv(root: "str | os.PathLike", design_csv: "str | os.PathLike") -> Design:
    root = Path(root)
    try:
        with open(design_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise DesignError(f"cannot read --design {design_csv}: {e}") from None
    if not rows or "model" not in rows[0]:
        raise DesignError(f"--design {design_csv}: expected a header with a 'model' column and one column "
                          f"per design attribute")
    attrs = [c for c in rows[0] if c != "model"]
    if not attrs:
        raise DesignError(f"--design {design_csv}: no attribute columns besides 'model'")
    table = {}
    for r in rows:
        m = (r["model"] or "").strip()
        if not m:
            raise DesignError(f"--design {design_csv}: a row has an empty 'model' cell")
        if m in table:
            raise DesignError(f"--design {design_csv}: model {m!r} has two rows")
        table[m] = {a: ((r.get(a) or "").strip() or None) for a in attrs}
    folders = {d.name: d for d in _subfolders(root)}
    no_folder = sorted(set(table) - set(folders))
    no_row = sorted(set(folders) - set(table))
    if no_folder:
        raise DesignError(f"--design {design_csv} names model(s) with no folder in {root}: {no_folder}")
    if no_row:
        raise DesignError(f"folder(s) of {root} have no row in --design {design_csv}: {no_row} "
                          f"(add a row, or move the folder out)")
    return Design({m: str(folders[m]) for m in table}, table, attrs)


def load_design(source: "str | os.PathLike", design_csv=None, split: str = "test") -> Design:
    """The :class:`Design` of SOURCE (see the module docstring)."""
    root = Path(source)
    if not root.is_dir():
        raise DesignError(f"{source}: not a directory (expected a zoo folder or per-model sub-folders)")
    if design_csv:
        d = from_csv(root, design_csv)
    elif (root / "zoo.json").is_file():
        d = from_zoo(root, split)
    else:
        subs = _subfolders(root)
        if not subs:
            raise DesignError(f"{source} has no sub-folders (one per model expected)")
        d = _from_meta({p.name: p for p in subs})
    if len(d.labels) < 2:
        raise DesignError(f"{source}: {len(d.labels)} model(s) with a design; an analysis needs at least 2")
    return d

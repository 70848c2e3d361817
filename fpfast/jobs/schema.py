"""The columns of the ``attribute`` output."""
from __future__ import annotations


def attribute_schema(top: int = 3):
    """The columns of ``attribute`` output, fixed up front so that an output whose rows all failed
    still has every column (model, score, distance, top-k) for pandas and the other readers."""
    import pyarrow as pa
    fields = [("path", pa.string()), ("error", pa.string()), ("note", pa.string()), ("model", pa.string()),
              ("score", pa.float64()), ("distance", pa.float64()), ("ratio", pa.float64()), ("predicted", pa.string()),
              ("condition", pa.string())]
    for j in range(1, top + 1):
        fields += [(f"top{j}_model", pa.string()), (f"top{j}_distance", pa.float64())]
    return pa.schema(fields)


def attribution_columns(a, top: int) -> dict:
    """An :class:`~fpfast.gallery.attribution.Attribution` as the output's columns (host values)."""
    cols = {"model": [str(m) for m in a.model], "score": [float(x) for x in a.score],
            "distance": [float(x) for x in a.distance], "ratio": [float(x) for x in a.ratio],
            "predicted": [str(p) for p in a.predicted],
            "condition": list(a.condition) if a.condition is not None else [None] * len(a.model)}
    for j in range(top):
        pairs = [t[j] if j < len(t) else ("", float("nan")) for t in a.top]
        cols[f"top{j + 1}_model"] = [str(name) for name, _ in pairs]
        cols[f"top{j + 1}_distance"] = [float(dist) for _, dist in pairs]
    return cols

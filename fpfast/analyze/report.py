"""The analysis table (ManiFPT Table 5 style) as CSV and Markdown, and the error list."""
from __future__ import annotations

import csv
import os

COLUMNS = ["space", "attribute", "values", "models", "images", "nmi", "ari", "lomo_accuracy", "chance",
           "lomo_balanced", "lomo_models", "lomo_skipped"]


def _atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_csv(path: str, rows: list[dict]) -> None:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    _atomic(path, buf.getvalue())


def write_errors(path: str, errors: list[dict]) -> None:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["model", "path", "error"])
    w.writeheader()
    w.writerows(errors)
    _atomic(path, buf.getvalue())


def _f(x: float) -> str:
    return "—" if x != x else f"{x:.3f}"


def markdown(rows: list[dict], spaces: dict[str, str], header: list[str]) -> str:
    """One table per measure family: attribute rows, space columns (NMI / ARI; LOMO (chance))."""
    names = list(dict.fromkeys(r["space"] for r in rows))
    attrs = list(dict.fromkeys(r["attribute"] for r in rows))
    cell = {(r["space"], r["attribute"]): r for r in rows}
    out = list(header) + ["", "Spaces:", ""]
    out += [f"- `{n}`: {spaces[n]}" for n in names]
    out += ["", "### k-means clusters vs the design attribute: NMI / ARI (k = number of values)", "",
            "| attribute (values) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for a in attrs:
        r0 = next(cell[(n, a)] for n in names if (n, a) in cell)
        out.append(f"| {a} ({r0['values']}) | " + " | ".join(
            f"{_f(cell[(n, a)]['nmi'])} / {_f(cell[(n, a)]['ari'])}" if (n, a) in cell else "" for n in names) + " |")
    out += ["", "### Model parsing: leave-one-model-out linear-probe accuracy (chance) / balanced accuracy", "",
            "A model is held out, a linear probe (standardise, PCA ≤ 64, logistic regression) is trained on "
            "the other models' fingerprints and predicts the held-out model's value. Only models whose value "
            "another model shares can be scored; chance = the best label-only guess under the same protocol (training majority, or 1 / number of values).", "",
            "| attribute (models scored) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for a in attrs:
        r0 = next(cell[(n, a)] for n in names if (n, a) in cell)
        out.append(f"| {a} ({r0['lomo_models'].count(';') + 1 if r0['lomo_models'] else 0}/{r0['models']}) | "
                   + " | ".join(f"{_f(cell[(n, a)]['lomo_accuracy'])} ({_f(cell[(n, a)]['chance'])}) / "
                                f"{_f(cell[(n, a)]['lomo_balanced'])}"
                                if (n, a) in cell else "" for n in names) + " |")
    skipped = {a: next(cell[(n, a)] for n in names if (n, a) in cell)["lomo_skipped"] for a in attrs}
    if any(skipped.values()):
        out += ["", "Not scored (value unique to the model): " +
                "; ".join(f"{a}: {s.replace(';', ', ')}" for a, s in skipped.items() if s)]
    return "\n".join(out) + "\n"


def write_markdown(path: str, rows, spaces, header) -> None:
    _atomic(path, markdown(rows, spaces, header))

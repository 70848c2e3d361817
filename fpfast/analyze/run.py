"""``analyze``: design labels + fingerprints -> table, CSV, pictures (what `fpfast analyze` runs)."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ..errors import UsageError
from ..jobs.options import StreamOptions
from ..spec import FingerprintSpec
from . import plots
from .design import Design
from .fingerprints import Collected, collect
from .metrics import ari, kmeans_labels, leave_one_model_out, nmi, reduce

FORMAT = "fpfast-analysis"
PER_SPACE = ("map_pca_{}.png", "map_tsne_{}.png", "distance_{}.png")


def _earlier(out: str) -> dict | None:
    """The manifest of an earlier analysis in ``out``, or None."""
    try:
        with open(os.path.join(out, "manifest.json")) as fh:
            m = json.load(fh)
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == FORMAT else None


def check_out(out: str, overwrite: bool) -> None:
    """OUT must be new, empty, or an earlier analysis (with ``overwrite``): nothing else is written over."""
    if os.path.isfile(out):
        raise UsageError(f"--out {out} is a file; give a directory")
    if os.path.isdir(out) and os.listdir(out):
        ours = _earlier(out) is not None
        if not (ours and overwrite):
            raise UsageError(f"--out {out} is not empty" + (": pass --overwrite to replace that analysis" if ours
                                                           else " and holds no earlier analysis: choose another"))


def score(X: np.ndarray, models: list[str], design: Design, seed: int = 0, reduction: str = "pca",
          within: str | None = None) -> list[dict]:
    """NMI / ARI of k-means and leave-one-model-out accuracy per attribute, for one space.

    ``within``: also score every other attribute inside each value of this one (only that value's
    models are clustered and probed), so that a confounded attribute can be read apart from it; those
    rows are named ``"<attribute> within <within>=<value>"``.
    """
    rows = _score(X, models, design, None, seed, reduction)
    if within:
        strata = design.values(within)
        for v in sorted(set(strata.values())):
            rows += _score(X, models, design, (within, v), seed, reduction)
    return rows


def _score(X, models, design: Design, stratum, seed: int, reduction: str) -> list[dict]:
    rows = []
    models_a = np.asarray(models, dtype=object)
    inside = design.values(stratum[0]) if stratum else {}
    for attr in design.attributes:
        if stratum and attr == stratum[0]:
            continue
        val = design.values(attr)
        keep = np.array([m in val and (not stratum or inside.get(m) == stratum[1]) for m in models])
        if keep.sum() == 0:
            continue
        y = np.array([val[m] for m in models_a[keep]], dtype=object)
        names = sorted(set(y.tolist()))
        if len(names) < 2:  # one value: nothing to cluster or predict
            continue
        clusters = kmeans_labels(X[keep], len(names), seed, reduction)
        lomo = leave_one_model_out(X[keep], y, models_a[keep], seed=seed)
        rows.append({"attribute": f"{attr} within {stratum[0]}={stratum[1]}" if stratum else attr, "values": len(names), "models": len({m for m in models_a[keep]}),
                     "images": int(keep.sum()), "nmi": nmi(y, clusters), "ari": ari(y, clusters),
                     "lomo_accuracy": lomo.accuracy, "chance": lomo.chance, "lomo_balanced": lomo.balanced, "lomo_models": ";".join(lomo.scored),
                     "lomo_skipped": ";".join(lomo.skipped)})
    return rows


def _subsample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def pictures(out: str, name: str, X: np.ndarray, models: list[str], design: Design, tsne: bool,
             max_points: int, seed: int) -> dict[str, list[int]]:
    Z = reduce(X, seed=seed).fit_transform(np.nan_to_num(X))
    sizes = {}
    pick = _subsample(len(Z), max_points, seed)
    mods = [models[i] for i in pick]
    colour = {"model": np.array(mods, dtype=object)}
    colour.update({a: np.array([design.labels[m].get(a) for m in mods], dtype=object) for a in design.attributes
                   if len(set(design.values(a).values())) > 1})
    from sklearn.decomposition import PCA
    p2 = PCA(2, random_state=seed).fit_transform(Z[pick]) if Z.shape[1] >= 2 else np.c_[Z[pick], Z[pick]]
    f = PER_SPACE[0].format(name)
    sizes[f] = plots.scatter_maps(os.path.join(out, f), p2, colour, f"{name}: PCA of the fingerprints")
    if tsne:
        from sklearn.manifold import TSNE
        t2 = TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, max(2.0, (len(pick) - 1) / 3))
                  ).fit_transform(Z[pick])
        f = PER_SPACE[1].format(name)
        sizes[f] = plots.scatter_maps(os.path.join(out, f), t2, colour, f"{name}: t-SNE of the fingerprints")
    names = list(dict.fromkeys(models))
    ma = np.asarray(models, dtype=object)
    C = np.stack([Z[ma == m].mean(0) for m in names])
    D = np.sqrt(((C[:, None, :] - C[None, :, :]) ** 2).sum(-1))
    f = PER_SPACE[2].format(name)
    sizes[f] = plots.distance_heatmap(os.path.join(out, f), D, names,
                                      f"{name}: distance between model centroids (standardised, PCA)")
    return {k: list(v) for k, v in sizes.items()}


def analyze(design: Design, out: str, spec: FingerprintSpec, opts: StreamOptions, *, gallery=None,
            refset=None, encoder=None, encoder_about: str = "user encoder", tsne: bool = True,
            max_points: int = 2000, seed: int = 0, reduction: str = "pca", within: str | None = None,
            source: str = "", log=None) -> dict:
    """Run the analysis and write OUT (see ``fpfast analyze --help``). Returns the manifest."""
    log = log or (lambda msg: None)
    if within is not None and within not in design.attributes:
        raise UsageError(f"--within {within}: not a design attribute here (have: {', '.join(design.attributes)})")
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    old = _earlier(out)
    for f in (old or {}).get("files", []) + (["manifest.json"] if old else []):
        p = os.path.join(out, os.path.basename(f))   # only names an earlier analysis wrote, inside OUT
        if os.path.isfile(p):
            os.remove(p)
    from ..progress import Progress
    with Progress("fingerprints", len(design.folders), unit="model", quiet=opts.quiet) as bar:
        col: Collected = collect(design, spec, opts, gallery=gallery, refset=refset, encoder=encoder,
                                 encoder_about=encoder_about, progress=lambda m: bar.update(1))
    rows, files = [], {}
    for name, sp in col.spaces.items():
        if not sp.models:
            continue
        log(f"scoring {name} ({len(sp.models)} images, {sp.X.shape[1]} dims)")
        X = sp.X
        rows += [{"space": name, **r} for r in score(X, sp.models, design, seed, reduction, within)]
        log(f"pictures of {name}")
        files.update(pictures(out, name, X, sp.models, design, tsne, max_points, seed))
    if col.spectra:
        files["spectra.png"] = list(plots.spectra_grid(os.path.join(out, "spectra.png"), col.spectra,
                                                       f"mean power spectrum of the {spec.residual} residual "
                                                       "(gray, log10, DC centred)"))
    from . import report
    about = {n: s.about for n, s in col.spaces.items()}
    header = [f"# Design-choice analysis of {source or 'the models'}", "",
              f"- {len(design.folders)} models, {sum(col.images.values())} images read, "
              f"{len(col.errors)} error rows (errors.csv); attributes: {', '.join(design.attributes)}",
              f"- attributes with a single value over these models (not scored): "
              f"{', '.join(a for a in design.attributes if len(set(design.values(a).values())) < 2) or 'none'}",
              f"- k-means on {'the first 64 principal components' if reduction == 'pca' else '16 whitened principal components'}"
              f" of the standardised fingerprints; seed {seed}; written by `fpfast analyze` in {time.perf_counter() - t0:.0f} s"]
    if within:
        header.append(f"- rows `<attribute> within {within}=<value>`: scored on that value's models only "
                      f"(k-means and leave-one-model-out among them), to read an attribute apart from {within}")
    report.write_csv(os.path.join(out, "design.csv"), rows)
    report.write_markdown(os.path.join(out, "design.md"), rows, about, header)
    report.write_errors(os.path.join(out, "errors.csv"), col.errors)
    manifest = {"format": FORMAT, "source": source, "models": list(design.folders),
                "attributes": design.attributes, "spaces": about, "images": col.images,
                "errors": len(col.errors), "pngs": files,
                "files": ["design.md", "design.csv", "errors.csv"] + sorted(files), "seconds": time.perf_counter() - t0}
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))
    manifest["rows"] = rows
    return manifest

"""What this installation can do: version, backends, devices, faiss. Used by `fpfast info`."""
from __future__ import annotations

import importlib.util
import platform

from . import __version__, backends


def _faiss() -> dict:
    if importlib.util.find_spec("faiss") is None:
        return {"installed": False}
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return {"installed": True, "version": getattr(faiss, "__version__", "?"), "gpus": gpus}


def _devices() -> dict:
    import torch

    out = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "cuda": []}
    if torch.cuda.is_available():  # asked for explicitly by the user; never at import
        out["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def info() -> dict:
    devs = _devices()
    cfg = backends.build_config()
    usable = {"cpu": backends.available("cpu")}
    if devs["cuda"]:
        usable["cuda"] = backends.available("cuda")
    return {"fpfast": __version__, "python": platform.python_version(), "machine": platform.machine(),
            "build": cfg, "backends": usable, "devices": devs, "faiss": _faiss(), "new_gallery": _new_gallery()}


def _new_gallery() -> dict:
    """What `fpfast enroll` gives a new gallery: the shipped universal embedding followed by the
    handcrafted default fingerprint, when it loads and matches its card."""
    from .embed.model import EmbedError
    from .embed.universal import available, load_card
    if not available():
        return {"vectors": "universal+handcrafted", "universal": "not shipped: fpfast enroll refuses without --spec"}
    try:
        emb, card = load_card()
    except EmbedError as e:
        return {"vectors": "universal+handcrafted", "universal": f"refused: {e}"}
    return {"vectors": "universal+handcrafted", "universal": f"{emb.identity[:16]} ({card.get('steps')} "
            f"pretraining steps, seed {card.get('seed')}, {card.get('date')})"}


def format_info(d: dict) -> str:
    lines = [f"fpfast {d['fpfast']}  (python {d['python']}, {d['machine']}, torch {d['devices']['torch']})"]
    b = d["build"]
    lines.append(f"compiled: cpp={'yes' if b.get('cpp') else 'no'}"
                 + (f" (OpenMP {b.get('omp_max_threads')} threads, {b.get('simd')}, kernels {', '.join(b.get('cpu_kernels', []))})" if b.get("cpp") else "")
                 + f"; cuda={'yes' if b.get('cuda_module') else 'no'}; triton installed={'yes' if b.get('triton') else 'no'}")
    for dev, avail in d["backends"].items():
        lines.append(f"backends for {dev} tensors:")
        for name, why in avail.items():
            lines.append(f"  {name:7s} {why}")
    cuda = d["devices"]["cuda"]
    lines.append("GPUs: " + (", ".join(cuda) if cuda else "none visible to torch"))
    f = d["faiss"]
    lines.append("faiss: " + (f"{f['version']}, {f['gpus']} GPU(s)" if f["installed"] else "not installed"))
    n = d["new_gallery"]
    lines.append(f"new galleries (fpfast enroll without --spec): {n['vectors']} (the shipped universal embedding "
                 f"{n['universal']}, followed by the handcrafted default fingerprint), with views (each image "
                 "also JPEG-compressed and down-scaled: --views); --spec default --views none: the handcrafted "
                 "fingerprint alone (the speed mode)")
    return "\n".join(lines)


def gallery_info(path: str) -> dict:
    """What a gallery holds: spec, models, normaliser, index, calibration and, for an embedding
    gallery, the embedding's identity, architecture and training record (read from its config)."""
    import json

    from .gallery import Gallery
    from .gallery.conditions import is_copy
    g = Gallery.load(path)
    d = {"path": path, "spec_id": g.spec.id, "dim": g.spec.dim, "samples": len(g), "models": g.models(),
         "held_out": g.holdout_counts(), "normalize": g.normalize, "index": g.index_type,
         "calibrated": sorted(g.calibration), "created": g.created, "crops": g.spec.crops,
         "augment": g.augment, "calibration_copies": sum(is_copy(k) for k in g.hold_keys),
         "condition_detector": any("detector" in r for r in g.calibration.values()),
         "views": {v: len(g.views[v]) if v in g.views else 0 for v in g.view_names}, "router": g.router is not None,
         "large_views": g.large_views, "router_clean": (g.router or {}).get("clean", 0), "min_side": g.min_side,
         "crop": g.spec.size, "crossfit": _crossfit_count(g.calibration.get("knn") or {}),
         "openset_blocks": g.openset_blocks, "openset_space": g.openset_space,
         "reads_openset": g.reads_openset, "frr_sharing": _frr_sharing(g)}
    emb = g.embedder()
    if emb is not None:
        t = json.loads(emb.to_bytes()[0]).get("training", {})
        d["embedding"] = {"identity": emb.identity, "arch": emb.arch, "appended": emb.appended_dim, "flips": emb.flips,
                          "reference": emb.reference_dim,
                          "training": {k: t.get(k) for k in ("kind", "epochs", "steps", "n_images", "classes",
                                                             "final_loss", "init", "device", "seed",
                                                             "torch_version")}}
    return d


def _crossfit_count(rec: dict) -> int:
    """How many enrolled samples' cross-fitted statistics joined the clean thresholds of a record."""
    return int((rec.get("clean") or rec).get("crossfit", 0))


def _frr_sharing(g) -> dict | None:
    """How the open-set tests of gallery ``g``'s knn calibration share its false-reject rate, for
    clean-looking and for processed queries: "one" (a single test), a float (jointly: the factor of
    the thresholds) or "union" (each test at its share: calibrated before 2026-12-07); None
    without a calibration."""
    rec = g.calibration.get("knn") or {}
    if not rec:
        return None
    clean = rec.get("clean") or rec
    if g.reads_openset and g.openset_space == "vectors":   # clean-looking queries meet the open-set space's record
        clean = (rec.get("openset") or {}).get("clean") or rec.get("openset") or clean

    def how(r):
        return "one" if "ratio" not in r else r.get("joint", "union")
    return {"clean": how(clean), "processed": how(rec) if "clean" in rec else None}


def _sharing_words(how) -> str:
    if how == "one":
        return "one test, at the whole rate"
    if how == "union":
        return ("each test at its share (the union bound: calibrated before 2026-12-07, it answers `unknown` less "
                "often than asked; enrolling into the gallery again recalibrates it jointly)")
    return f"its tests jointly (each fitted at its share, then all x {how:.3f})"


def _large_views_note(d: dict) -> str:
    from .gallery.views import MIN_LOOK_CLEAN, looks_enough
    own = d.get("min_side") and d["min_side"] > d.get("crop", 0)   # sides recorded before the crop
    side = f" ({d['min_side']} px)" if own else ""
    old = ("" if own else "; its images' own side was not recorded (enrolled before 2026-12-06): re-enroll it to "
           "route queries smaller than them by their size")
    if looks_enough(d.get("router_clean", 0)):
        return f"; made of images larger than the crop{side}: a down-scaled query of any size is routed" + old
    return (f"; made of images larger than the crop: a query smaller than its images{side} is routed by its size, "
            f"not yet by its look alone: the router was fitted on {d.get('router_clean', 0)} clean held-out images, "
            f"fewer than the {MIN_LOOK_CLEAN} that needs" + old)


def format_gallery_info(d: dict) -> str:
    lines = [f"gallery {d['path']}: {d['samples']} samples of {len(d['models'])} models, spec {d['spec_id']} "
             f"({d['dim']} dims), normalise {d['normalize']}, index {d['index']}, open-set thresholds: "
             f"{', '.join(d['calibrated']) or 'none'}"]
    c = d.get("crops")
    lines.append(f"crops per image: {c['n']} ({c['layout']}" + (f", seed {c['seed']}" if c["layout"] == "random" else "")
                 + f", {c['aggregate']} of the vectors)" if c else "crops per image: 1 (the centre crop)")
    if d.get("augment"):
        lines.append(f"augmented copies per enrolled image: {d['augment']} (JPEG / down-scaled, `fpfast enroll --augment`)")
    if d.get("calibration_copies"):
        lines.append(f"calibration: held-out images and {d['calibration_copies']} processed copies of them "
                     "(JPEG, down-scaled, cropped: `fpfast enroll --calibrate-on augmented`); "
                     + ("queries that look clean meet thresholds of clean images, others the pooled ones"
                        if d.get("condition_detector") else "one pooled threshold set (too few for a detector)"))
    if d.get("openset_blocks") and d.get("openset_space") == "normalized":
        from .gallery.openspace import GAUSS_MIN_FACTOR
        b = d["openset_blocks"][0]
        lines.append(f"open-set statistics (`unknown`) of queries that look clean: the distance and ratio in the space "
                     f"searched, each over its threshold; once a model has {GAUSS_MIN_FACTOR * (b[1] - b[0])} enrolled "
                     f"samples, also the ratio of each model's own Gaussian in the first {b[1]} normalised (discriminant) "
                     "axes" + ("" if d.get("reads_openset") else " (not yet: no model has that many)"))
    elif d.get("openset_blocks"):
        lines.append("open-set statistics (`unknown`) of queries that look clean: " + _openset_line(d)
                     + "; of processed ones and in the views: the whole vector, which names the model")
    share = d.get("frr_sharing")
    if share:
        lines.append("false-reject rate, clean-looking queries: " + _sharing_words(share["clean"])
                     + ("; processed ones: " + _sharing_words(share["processed"]) if share.get("processed") else ""))
    if d.get("crossfit"):
        lines.append(f"clean thresholds: the held-out images and {d['crossfit']} enrolled samples, cross-fitted "
                     "(each measured in the gallery refitted without its fold: few held-out images)")
    if d.get("views"):
        lines.append("views (the enrolled images processed, each searched for queries processed alike): "
                     + ", ".join(f"{v} {n} samples" for v, n in d["views"].items())
                     + ("; queries routed by their look, size and file type" if d.get("router")
                        else "; no router fitted yet (needs held-out processed copies): not used")
                     + (_large_views_note(d) if d.get("router") and d.get("large_views") else ""))
    for m, n in d["models"].items():
        lines.append(f"  {m:<24s} {n:7d} samples, {d['held_out'].get(m, 0):5d} calibration vectors")
    e = d.get("embedding")
    if e:
        a, t = e["arch"], e["training"]
        how = (f"universal, pretrained {t['steps']} steps on {t['classes']} random decoders (seed {t['seed']})"
               if t.get("kind") == "pretrain" else
               f"trained {t['epochs']} epochs on {t['n_images']} images ({t['device']}, seed {t['seed']})")
        lines.append(f"learned embedding {e['identity'][:16]}: {a['kind']} widths {a['widths']} -> {a['dim']} dims, "
                     f"residual {a['residual']}, handcrafted head {'on' if a['handcrafted_dim'] else 'off'}; "
                     f"{how}, final loss {t['final_loss']:.4f}"
                     + (f", fine-tuned from {t['init'][:16]}" if t["init"] else "")
                     + (f"; its vector of an image averaged over {e['flips']} mirror images" if e.get("flips", 1) > 1 else "")
                     + (f"; followed by the {e['appended']}-dim handcrafted fingerprint" if e.get("appended") else "")
                     + (f"; then the {e['reference']}-dim vector of the universal network it was fine-tuned from "
                        "(one pass, for `unknown`)" if e.get("reference") else ""))
    return "\n".join(lines)


def _openset_line(d: dict) -> str:
    """Where a gallery reads the open-set statistics of clean-looking queries, in words."""
    blocks = d["openset_blocks"]
    if len(blocks) == 1:
        return f"the first {blocks[0][1]} dimensions, raw (the fine-tuned network's vector)"
    e = d.get("embedding") or {}
    net = (e.get("arch") or {}).get("dim")
    names = {0: "the fine-tuned network's vector"}
    if net is not None and e.get("appended"):
        names[net] = "the handcrafted fingerprint"
        if e.get("reference"):
            names[net + e["appended"]] = "the reference (universal) network's vector"
    parts = [f"{names.get(a, f'dimensions {a}-{b - 1}')} ({'standardised' if std else 'raw'}, {b - a} dims"
             + (", its own Gaussian" if kind == ["gauss"] else "") + ")" for a, b, std, *kind in blocks]
    return ("per model, the geometric mean of its distances (nearest sample, or Mahalanobis under the model's own "
            "Gaussian) in " + ", ".join(parts[:-1]) + " and " + parts[-1] + ", each divided by its held-out images' own")

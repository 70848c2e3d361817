import os

import click
import numpy as np

from .. import workflows as wf
from ..gallery import Gallery, evaluate
from .options import handle_errors, stream_options


@click.command("eval")
@click.argument("gallery", type=click.Path(exists=True, file_okay=False))
@click.option("--from-folders", "root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Test images, one sub-folder per true model; folders of models the gallery lacks test open set.")
@click.option("--method", type=click.Choice(["knn", "centroid"]), default="knn", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Directory for metrics.json, confusion.csv and confusion.png (default: ROOT/../eval).")
@stream_options
@handle_errors
def eval_cmd(gallery, root, method, k, out, opts):
    """Accuracy, macro-F1, per-model precision/recall, confusion matrix, open-set AUROC.

    \b
    Example:
      fpfast eval my_gallery --from-folders zoo/test --out eval/
    """
    g = Gallery.load(gallery)
    res = evaluate_folders(g, root, opts, method=method, k=k,
                           out=out or os.path.join(os.path.dirname(os.path.abspath(root)), "eval"))
    click.echo(format_metrics(res))


def evaluate_folders(g: Gallery, root: str, opts, method="knn", k=10, out=None) -> dict:
    """Fingerprint ROOT/<model>/*, attribute, and evaluate against the folder names."""
    truth, preds, dists = [], [], []
    quiet = wf.StreamOptions(**{**opts.__dict__, "quiet": True})
    for model, folder in wf.model_folders(root).items():
        fp = wf.gallery_fingerprints(g, [folder], quiet)
        if len(fp.keys) == 0:
            continue
        a = g.attribute(fp.vectors, method=method, k=k)
        truth += [model] * len(fp.keys)
        preds += list(a.model)
        dists.append(a.distance)
    known = list(g.models())
    scores = np.concatenate(dists) if dists else np.zeros(0)
    return evaluate(truth, preds, known, open_set_scores=scores, out_dir=out)


def format_metrics(res: dict) -> str:
    cs = res["closed_set"]
    lines = [f"accuracy {cs['accuracy']:.3f}   macro-F1 {cs['macro_f1']:.3f}   ({res['n_queries']} images)"]
    if res.get("open_set_auroc") is not None:
        lines.append(f"open-set AUROC {res['open_set_auroc']:.3f}")
    if res.get("unknown_recall") is not None:
        lines.append(f"unknown recall {res['unknown_recall']:.3f}")
    labels, cm = res["confusion_labels"], np.asarray(res["confusion"])
    w = max(len(x) for x in labels) + 1
    lines.append("confusion (rows: true, columns: predicted):")
    lines.append(" " * w + " ".join(f"{x[:6]:>6s}" for x in labels))
    for name, row in zip(labels, cm):
        lines.append(f"{name:<{w}s}" + " ".join(f"{v:6d}" for v in row))
    for key in ("confusion_csv", "confusion_png", "metrics_json"):
        if res.get(key):
            lines.append(f"{key.replace('_', ' ')}: {res[key]}")
    return "\n".join(lines)

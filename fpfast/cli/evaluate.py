import os
import sys

import click
import numpy as np

from ..errors import EXIT_ROW_ERRORS
from ..gallery import Gallery, evaluate
from ..io.paths import check_output_path
from ..io.writers import OutputError
from ..jobs.collect import gallery_fingerprints
from ..jobs.enroll import model_folders
from ..progress import Stages
from .options import GalleryDir, expect_digest_option, handle_errors, stream_options


@click.command("eval")
@click.argument("gallery", type=GalleryDir())
@click.option("--from-folders", "root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Test images, one sub-folder per true model; folders of models the gallery lacks test open set.")
@click.option("--method", type=click.Choice(["knn", "centroid"]), default="knn", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=None,
              help="Neighbours for the kNN vote.  [default: a tenth of the smallest model's samples, 1 to 10]")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Directory for metrics.json, confusion.csv and confusion.png (default: GALLERY-eval, beside the gallery).")
@click.option("--overwrite", is_flag=True, help="Replace the metrics of an earlier eval in OUT.")
@click.option("--open-set-folders", is_flag=True,
              help="Count folders whose name matches a model only up to case as open set (else refused as a likely typo).")
@expect_digest_option
@stream_options
@handle_errors
def eval_cmd(gallery, root, method, k, out, overwrite, open_set_folders, expect_digest, opts):
    """Accuracy, macro-F1, per-model precision/recall, confusion matrix, open-set AUROC.

    \b
    Example:
      fpfast eval my_gallery --from-folders zoo/test --out eval/
    """
    g = Gallery.load(gallery, expect_digest=expect_digest)
    out = out or os.path.abspath(gallery).rstrip(os.sep) + "-eval"
    check_eval_out(out, root, gallery, overwrite)
    for line in check_folder_names(model_folders(root), g.models(), open_set_folders):
        click.echo(line, err=True)
    stages = Stages()
    res = evaluate_folders(g, root, opts, method=method, k=k, out=out, stages=stages)
    click.echo(format_metrics(res, out))
    stages.report(opts.quiet)
    bad = res.get("unreadable") or []
    if bad:
        for row in bad[:20]:
            click.echo(f"{row['path']}: error: {row['error']}", err=True)
        click.echo(f"fpfast: {len(bad)} image(s) could not be read and are not in the metrics (exit 3)", err=True)
        sys.exit(EXIT_ROW_ERRORS)


def check_eval_out(out: str, root: str, gallery: str, overwrite: bool) -> None:
    """An eval output never lies inside the test folders or the gallery, and replaces an earlier
    eval only with --overwrite; any other non-empty directory is refused."""
    check_output_path(out, [root], gallery, kind="dir")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, "metrics.json")):
            raise OutputError(f"--out {out} is a directory that is not empty and holds no eval; choose another")
        if not overwrite:
            raise OutputError(f"--out {out} holds an earlier eval: pass --overwrite to replace it or choose another --out")


def check_folder_names(folders, models, open_set_folders: bool) -> list[str]:
    """Warnings about test folders that match no model; a folder matching one only up to case
    (``DCGAN`` vs ``dcgan``) is refused unless ``open_set_folders``."""
    lower = {m.lower(): m for m in models}
    unmatched = [f for f in folders if f not in models]
    typos = {f: lower[f.lower()] for f in unmatched if f.lower() in lower}
    if typos and not open_set_folders:
        raise OutputError("test folders match a model only up to case: "
                          + ", ".join(f"{f!r} vs model {m!r}" for f, m in typos.items())
                          + "; rename the folder, or pass --open-set-folders to count them as open set")
    if unmatched:
        return ["warning: folders matching no model are counted as open set (answer 'unknown' expected): "
                + ", ".join(repr(f) + (f" (model {typos[f]!r} differs in case)" if f in typos else "")
                            for f in unmatched)]
    return []


def evaluate_folders(g: Gallery, root: str, opts, method="knn", k=None, out=None, stages=None) -> dict:
    """Fingerprint ROOT/<model>/*, attribute, and evaluate against the folder names."""
    truth, preds, dists, margins, unreadable = [], [], [], [], []
    stages = stages or Stages()
    for model, folder in model_folders(root).items():
        with stages("fingerprint"):
            fp = gallery_fingerprints(g, [folder], opts, file_types=True, desc=model)
        unreadable += fp.errors
        if len(fp.keys) == 0:
            continue
        with stages("attribute"):
            a = g.attribute(fp.vectors, method=method, k=k, sides=fp.sides, condition=fp.condition,
                            jpeg=fp.jpeg)
        truth += [model] * len(fp.keys)
        preds += list(a.model)
        dists.append(a.distance)
        margins.append(a.open_set_score)
    known = list(g.models())
    scores = np.concatenate(dists) if dists else np.zeros(0)
    with stages("metrics"):
        res = evaluate(truth, preds, known, open_set_scores=scores, out_dir=out,
                       open_set_margins=np.concatenate(margins) if margins else np.zeros(0))
    res["unreadable"] = [{"path": r["path"], "error": r["error"]} for r in unreadable]
    return res


def format_confusion(labels: list[str], cm: np.ndarray, width: int | None = None) -> list[str]:
    """The confusion matrix with every model's full name: as column headers when the table fits
    ``width`` (default: the terminal's), else numbered columns and the rows as the legend."""
    import shutil
    width = width or shutil.get_terminal_size((100, 24)).columns
    digits = len(str(int(cm.max()))) if cm.size else 1
    w = max(len(x) for x in labels)
    cols = [max(len(x), digits) for x in labels]
    if w + sum(c + 2 for c in cols) <= width:
        out = ["confusion matrix (rows: true model, columns: answer):",
               " " * w + "".join(f"  {x:>{c}s}" for x, c in zip(labels, cols))]
        out += [f"{name:<{w}s}" + "".join(f"  {int(v):>{c}d}" for v, c in zip(row, cols))
                for name, row in zip(labels, cm)]
        return out
    num = len(str(len(labels)))
    c = max(num, digits)
    out = ["confusion matrix (rows: true model, numbered; columns: answer, by row number):",
           " " * (num + 1 + w) + "".join(f"  {i:>{c}d}" for i in range(1, len(labels) + 1))]
    out += [f"{i:>{num}d} {name:<{w}s}" + "".join(f"  {int(v):>{c}d}" for v in row)
            for i, (name, row) in enumerate(zip(labels, cm), 1)]
    return out


def format_metrics(res: dict, out_dir: str | None = None) -> str:
    """The evaluation as a terminal reads it: headline metrics, then the confusion matrix."""
    cs = res["closed_set"]
    lines = [f"closed set: accuracy {cs['accuracy']:.3f}, macro-F1 {cs['macro_f1']:.3f} over {cs['n']} images "
             f"of {len(cs['labels'])} enrolled models"]
    if res.get("n_unknown_queries"):
        lines.append(f"open set: {res['n_unknown_queries']} images of models outside the gallery; "
                     f"answered 'unknown': {res.get('unknown_recall', float('nan')):.3f}; "
                     f"AUROC (distance to nearest known) {res.get('open_set_auroc', float('nan')):.3f}"
                     + (f", (distance over its model's threshold) {res['open_set_auroc_margin']:.3f}"
                        if "open_set_auroc_margin" in res else ""))
    lines += format_confusion(res["confusion_labels"], np.asarray(res["confusion"]))
    if out_dir:
        lines.append(f"written: {os.path.join(out_dir, 'metrics.json')}, confusion.csv, confusion.png")
    return "\n".join(lines)

import os

import click

from .evaluate import format_metrics
from .options import handle_errors, stream_options

# The demo's wall time, said the same way in `fpfast --help`, `fpfast demo --help` and the README's
# first line (a test holds the three together); measured: benchmarks/results/demo.md.
DEMO_TIME = "under 2 min on 2 idle cores"


OTHERS = (("default", "fpfast enroll's default: universal embedding + handcrafted fingerprint"),
          ("handcrafted", "handcrafted fingerprint"))


@click.command("demo", help=f"""Offline, end to end ({DEMO_TIME}): build a zoo of tiny generative
    models, enroll them (the handcrafted fingerprint, and `fpfast enroll`'s default), train a
    learned embedding, attribute held-out images with each gallery, evaluate.

    Nothing is downloaded: the real images are the photos bundled with scikit-image and
    scikit-learn, and every generator is trained here in seconds. Every stage shows its progress
    on stderr; stdout ends with a short summary: accuracy, the confusion-matrix picture, three
    example rows.

    \b
    Example:
      fpfast demo --out fpfast-demo
    """)
@click.option("--out", "-o", type=click.Path(file_okay=False), default="fpfast-demo", show_default=True,
              help="Working directory: zoo/, gallery/, attributions.parquet, eval/ (replaced if it exists).")
@click.option("--preset", type=click.Choice(["tiny", "small", "standard"]), default="tiny", show_default=True,
              help="GM-zoo size: tiny (seconds), small (minutes), standard (tens of minutes on 2 cores).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--spec", help="Fingerprint spec (default: 'default' at the zoo's image size).")
@click.option("--method", type=click.Choice(["knn", "centroid"]), default="knn", show_default=True)
@click.option("--embedding-epochs", type=click.IntRange(0, 10_000), default=120, show_default=True,
              help="Epochs of the learned embedding trained after the handcrafted gallery (0: skip it).")
@stream_options
@handle_errors
def demo_cmd(out, preset, seed, spec, method, embedding_epochs, opts):
    from ..demo import run_demo
    from ..progress import Stages

    stages = Stages()
    res = run_demo(out, preset=preset, seed=seed, spec=spec, opts=opts, method=method,
                   embedding_epochs=embedding_epochs, echo=lambda s: click.echo(s, err=True), stages=stages)
    click.echo(f"-- {res['vectors']} ({res['gallery']}):")
    click.echo(format_metrics(res, res["eval_dir"]))
    for key, what in OTHERS:
        e = res.get(key)
        if e is not None:
            click.echo(f"-- {what} ({e['gallery']}): closed-set accuracy "
                       f"{e['closed_set']['accuracy']:.3f}, macro-F1 {e['closed_set']['macro_f1']:.3f}, open-set "
                       f"AUROC {e.get('open_set_auroc', float('nan')):.3f}; details in {e['eval_dir']}/")
    click.echo(f"per-image answers: {res['attributions']} ({res['rows']} rows)")
    click.echo(demo_summary(res))
    stages.report(opts.quiet)


def demo_summary(res: dict) -> str:
    """The few lines a person reads at the end of the demo."""
    acc = [f"{res['closed_set']['accuracy']:.3f} ({res['vectors']})"]
    acc += [f"{res[key]['closed_set']['accuracy']:.3f} ({what})" for key, what in OTHERS if res.get(key) is not None]
    w = max((len(os.path.relpath(e["path"], res["zoo"])) for e in res["examples"]), default=0)
    lines = ["== summary",
             f"closed-set accuracy: {', '.join(acc)}",
             f"confusion matrix:    {os.path.join(res['eval_dir'], 'confusion.png')}",
             f"three rows of {res['attributions']}:"]
    lines += [f"  {os.path.relpath(e['path'], res['zoo']):<{w}s}  made by {e['true']:<14s} answer {e['model']:<14s} "
              f"distance {e['distance']:.3g}" for e in res["examples"]]
    lines.append(f"done in {res['seconds']:.0f}s")
    return "\n".join(lines)

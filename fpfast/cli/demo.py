import click

from .evaluate import format_metrics
from .options import handle_errors, stream_options


@click.command("demo")
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
    """Offline, end to end: build a zoo of tiny generative models, enroll them, train a learned
    embedding, attribute held-out images with both galleries.

    Nothing is downloaded: the real images are the photos bundled with scikit-image and
    scikit-learn, and every generator is trained here in seconds.

    \b
    Example:
      fpfast demo --out fpfast-demo
    """
    from ..demo import run_demo

    res = run_demo(out, preset=preset, seed=seed, spec=spec, opts=opts, method=method,
                   embedding_epochs=embedding_epochs, echo=lambda s: click.echo(s, err=True))
    click.echo(f"-- {res['vectors']} ({res['gallery']}):")
    click.echo(format_metrics(res, res["eval_dir"]))
    if res["handcrafted"] is not res:
        hc = res["handcrafted"]
        click.echo(f"-- handcrafted fingerprint ({hc['gallery']}): closed-set accuracy "
                   f"{hc['closed_set']['accuracy']:.3f}, macro-F1 {hc['closed_set']['macro_f1']:.3f}, open-set "
                   f"AUROC {hc.get('open_set_auroc', float('nan')):.3f}; details in {hc['eval_dir']}/")
    click.echo(f"per-image answers: {res['attributions']} ({res['rows']} rows); confusion plot: "
               f"{res['eval_dir']}/confusion.png; done in {res['seconds']:.0f}s")

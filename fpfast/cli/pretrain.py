import json
import shlex
import sys

import click

from .options import handle_errors


def _count(flag: str, lo: int, hi: int, default: int, help: str):
    return click.option(flag, type=click.IntRange(lo, hi), default=default, show_default=True, help=help)


@click.command("pretrain")
@click.argument("out", type=click.Path(file_okay=False))
@_count("--steps", 1, 10_000_000, 2000, "Optimizer steps.")
@_count("--classes", 2, 999_999, 512, "Random decoders in the training pool (class 0 is the real photos).")
@_count("--batch-classes", 2, 4096, 16, "Classes per step.")
@_count("--per-class", 2, 1024, 4, "Images per class per step.")
@_count("--crop", 16, 4096, 64, "Side of the real-photo crops the decoders run on (a multiple of 4).")
@_count("--patch", 16, 4096, 32, "Training patch side (the network pools globally: any image size is embedded).")
@click.option("--widths", default=None, metavar="W1,W2,...",
              help="Channels of the network's stages (default: the default architecture's).")
@click.option("--stem", type=click.Choice(["conv", "unshuffle"]), default="conv", show_default=True,
              help="conv: the first stage at full resolution; unshuffle: a lossless space-to-depth by 2 "
                   "first, every stage at half resolution (faster).")
@_count("--decoder-fit-steps", 0, 100_000, 0, "Adam steps training every weight of each random decoder to "
        "reconstruct photos before use (0: random weights, only the output layer solved).")
@_count("--weight-draws", 1, 1000, 1, "Weight draws per random decoder: each class is an architecture whose "
        "images come from this many independent weight draws (as a model retrained from other seeds); 1: "
        "one decoder, one class.")
@_count("--siblings", 1, 4, 1, "Classes per random decoder: the decoder and its siblings, each the same "
        "weights with one design choice changed (up-sampling op, activation or normalisation), drawn into "
        "the same batches so that the embedding learns to tell them apart (as an unknown model beside a "
        "known one that differs in one choice); 1: no siblings.")
@click.option("--objective", type=click.Choice(["cosface", "arcface", "supcon"]), default="supcon",
              show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option("--real", "real_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder of real photos added to the bundled ones (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="Where the decoders and the network train: cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="Autocast dtype of the network (auto: fp16 on CUDA, fp32 on CPU; fp16 needs CUDA).")
@click.option("--quiet", "-q", is_flag=True)
@handle_errors
def pretrain_cmd(out, steps, classes, batch_classes, per_class, crop, patch, widths, stem, decoder_fit_steps,
                 weight_draws, siblings, objective, lr, real_dirs, seed, device, precision, quiet):
    """Pretrain the universal fingerprint embedding on random decoders; write OUT/universal.*.

    Each class is a random shallow decoder (random up-sampling, depth, widths, kernels,
    activations, normalisations, weights) applied to real photos, plus the photos themselves;
    batches are re-encoded and rescaled as images in the wild are. Same seed, same thread count:
    the same weights on CPU (a CUDA run is reproducible only statistically). The card
    (OUT/universal.json) records the recipe, the command, device, precision, the time and the
    few-shot accuracy on held-out random decoders.

    \b
    Example:
      fpfast pretrain my_universal/ --steps 2000 --seed 0
      fpfast pretrain my_universal/ --steps 60000 --device cuda   # fp16 autocast on a GPU
    """
    from ..embed.pretrain import pretrain

    def log(rec):
        if not quiet:
            click.echo(f"step {rec['step']:6d}/{rec['steps']}  loss {rec['loss']:.4f}  "
                       f"{rec['images_per_s']:.0f} images/s  {rec['seconds']:.0f}s", err=True)

    arch = {"stem": stem}
    if widths is not None:
        try:
            arch["widths"] = [int(w) for w in widths.split(",")]
        except ValueError:
            raise click.BadParameter(f"{widths!r} is not a comma-separated list of integers", param_hint="--widths")
        if min(arch["widths"]) < 1:
            raise click.BadParameter("every width must be >= 1", param_hint="--widths")
        arch["blocks"] = [1] * len(arch["widths"])
    card = pretrain(out, arch=arch, real_dirs=real_dirs, log=log, command="fpfast " + shlex.join(sys.argv[1:]),
                    steps=steps, classes=classes, batch_classes=batch_classes, per_class=per_class,
                    crop=crop, patch=patch, objective=objective, lr=lr, seed=seed, device=device,
                    precision=precision, decoder_fit_steps=decoder_fit_steps,
                    weight_draws=weight_draws, siblings=siblings)
    click.echo(json.dumps({"out": out, "identity": card["identity"], "seconds": card["seconds"],
                           "heldout": card["heldout"]}))

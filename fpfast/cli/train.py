import click

from ..errors import EXIT_ROW_ERRORS
from ..gallery.update import updating
from ..jobs.train import OPEN_SET_FROM, train_gallery
from ..progress import Stages
from ..gallery.normalize import METHODS as NORMALIZERS
from .options import GalleryDir, flips_option, handle_errors, stream_options


@click.command("train")
@click.argument("gallery", type=GalleryDir())
@click.option("--from-folders", "root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Training images, one sub-folder per enrolled model (the gallery keeps only vectors).")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None,
              help="Passes over the training images.  [default: about 4000 steps, 10-200 epochs]")
@click.option("--train-batch-size", type=click.IntRange(2, 4096), default=64, show_default=True,
              help="Images per training step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option("--dim", type=click.IntRange(2, 4096), default=None, help="Embedding size.  [default: 128]")
@click.option("--patch", type=click.IntRange(0, 65536), default=0, show_default=True,
              help="Train on random PATCH-px crops (about (size/PATCH)^2 times faster per image); queries "
                   "are still embedded whole. 0: whole images. Not with --handcrafted.")
@click.option("--handcrafted/--no-handcrafted", default=None,
              help="Concatenate the spec's handcrafted vector before the embedding head.  [default: no; "
                   "with --fine-tune: as the current embedding]")
@click.option("--fine-tune", is_flag=True,
              help="Start from the gallery's current embedding instead of from scratch (e.g. after "
                   "enrolling a new model with the frozen embedding); keeps its architecture.")
@click.option("--from-scratch", is_flag=True,
              help="A gallery enrolled with the universal embedding is fine-tuned from it by default; "
                   "train a new embedding from random weights instead.")
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.2, show_default=True,
              help="Fraction of each model's images kept apart (not trained on) for calibration.")
@click.option("--frr", type=click.FloatRange(0.001, 0.5), default=0.05, show_default=True,
              help="False-reject rate the re-enrolled gallery's open-set thresholds are calibrated to "
                   "(as `fpfast enroll --frr`).")
@click.option("--calibrate-on", type=click.Choice(["augmented", "clean"]), default="augmented", show_default=True,
              help="Open-set thresholds from the held-out images (clean) or also from one re-encoded / "
                   "down-scaled / cropped copy of each (augmented): augmented answers more re-encoded "
                   "images of known models right, and flags fewer images of unknown models "
                   "(benchmarks/results/embedding.md).")
@click.option("--keep-handcrafted/--network-alone", default=None,
              help="Fine-tuning a default (universal+handcrafted) gallery: keep the handcrafted "
                   "fingerprint behind the fine-tuned network's vectors, LDA-normalised as before "
                   "(steadier on JPEG and down-scaled queries), or the network's vectors alone "
                   "(benchmarks/results/embedding.md).  [default: keep, when fine-tuning such a gallery]")
@click.option("--open-set-from", type=click.Choice(list(OPEN_SET_FROM)), default=None,
              help="With the handcrafted fingerprint kept, decide `unknown` of clean-looking queries from: "
                   "gaussian = each model's own Gaussian (Ledoit-Wolf covariance) of the fine-tuned network's "
                   "vectors and of the handcrafted fingerprint, each scaled per model (a model with fewer than "
                   "2 enrolled images per dimension: the others' pooled covariance; the nearest sample when "
                   "no model has that many); ensemble = the nearest sample in the "
                   "fine-tuned network's vectors, the handcrafted fingerprint and the vectors of the network it "
                   "was fine-tuned from; network = the fine-tuned network's vectors alone; vector = the whole "
                   "vector. The network fine-tuning started from is kept in the gallery (one more pass per "
                   "image) with gaussian and ensemble. The model is named from the whole vector either way "
                   "(benchmarks/results/embedding.md).  [default: gaussian]")
@flips_option("Average the trained network's vector of an image", "4 when the handcrafted fingerprint is kept, else 1")
@click.option("--normalize", type=click.Choice(NORMALIZERS), default=None,
              help="Normalisation of the embedding gallery (the embedding is already unit-norm).  "
                   "[default: lda when the handcrafted fingerprint is kept, else none]")
@click.option("--causal", is_flag=True,
              help="Train the decoupled (causal) fingerprint: the generator's trace without the image's "
                   "content (needs the zoo's content table; see --content).")
@click.option("--content", "content", type=click.Path(exists=True), default=None,
              help="With --causal: the zoo's content.parquet or its root.  [default: the parent of "
                   "--from-folders]")
@click.option("--hsic", type=click.FloatRange(min=0), default=None,
              help="With --causal: weight of the content adversary (linear CKA with the content code of "
                   "P(x)).  [default: 1]")
@click.option("--pair", type=click.FloatRange(min=0), default=None,
              help="With --causal: weight of the counterfactual pair terms.  [default: 1]")
@click.option("--project-out", "project_out", type=click.IntRange(min=0), default=None,
              help="With --causal: after training, remove this many dimensions of content subspace "
                   "(spanned by the training contents' mean embeddings) from the embedding.  [default: 0]")
@click.option("--seed", type=int, default=0, show_default=True)
@stream_options
@handle_errors
def train_cmd(gallery, root, epochs, train_batch_size, lr, dim, patch, handcrafted, fine_tune, from_scratch, holdout, frr,
              calibrate_on, keep_handcrafted, open_set_from, flips, normalize, causal, content, hsic, pair, project_out, seed, opts):
    """Train a learned fingerprint embedding for GALLERY and re-enroll its models with it.

    A gallery enrolled with the universal embedding (`fpfast enroll`'s default, or --spec
    universal) is fine-tuned from it unless --from-scratch, --dim or --handcrafted asks for a new
    network; a default gallery's handcrafted fingerprint stays behind the fine-tuned network's
    vectors (LDA) unless --network-alone.

    The weights (safetensors) and config (JSON) are stored in the gallery; its spec records
    the embedding's sha256 identity, so handcrafted queries or another embedding's vectors are
    refused. attribute / eval / search / enroll then use the embedding automatically.

    \b
    Example:
      fpfast enroll my_gallery --from-folders zoo/train
      fpfast train my_gallery --from-folders zoo/train
      fpfast enroll my_gallery --model new_model samples/new_model/     # frozen embedding, >= 10 images
      fpfast train my_gallery --from-folders all_models/ --fine-tune --epochs 5 --lr 1e-3
      fpfast train my_gallery --from-folders zoo/train --causal      # content from zoo/content.parquet

    The embedding's (and the causal fingerprint's) input follows the gallery's spec: a gallery
    enrolled with a heavy projector (--spec autoencoder:DIR or diffusion:DIR) trains on its
    reconstruction residual x - P(x); --handcrafted adds the spec's handcrafted families (the
    multi-feature input).
    """
    if fine_tune and from_scratch:
        raise click.UsageError("--fine-tune and --from-scratch exclude each other")
    if not causal and (content, hsic, pair, project_out) != (None, None, None, None):
        raise click.UsageError("--content, --hsic, --pair and --project-out are for --causal training")
    spec_causal = None
    if causal:
        import os
        spec_causal = {"content": content or os.path.dirname(os.path.abspath(root)),
                       "hsic": 1.0 if hsic is None else hsic, "pair": 1.0 if pair is None else pair,
                       "project_out": project_out or 0}

    stages = Stages()
    with updating(gallery) as g:  # locked from load to save: no enrollment meanwhile is lost
        emb = g.embedder()  # issue 14: a universal-embedding gallery starts from the pretrained weights
        if emb is not None and emb.config.get("training", {}).get("kind") == "pretrain" and not from_scratch \
                and dim is None and not handcrafted and not causal:
            fine_tune = True
        g2, info = train_gallery(g, root, opts, epochs=epochs, holdout=holdout, frr=frr, seed=seed,
                                    handcrafted=handcrafted, normalize=normalize, fine_tune=fine_tune,
                                    calibrate_on=calibrate_on, keep_handcrafted=keep_handcrafted,
                                    open_set_from=open_set_from, flips=None if flips is None else int(flips),
                                    arch=None if dim is None else {"dim": dim},
                                    stages=stages, batch_size=train_batch_size, lr=lr, patch=patch,
                                    causal=spec_causal)
    click.echo(f"gallery {gallery}: embedding {info['identity'][:16]} ({info['dim']} dims) trained on "
               f"{info['trained_on']} images; {len(g2.models())} models, {len(g2)} samples re-enrolled"
               + ("; open-set thresholds calibrated" if info["calibrated"] else ""))
    stages.report(opts.quiet)
    if info["errors"]:
        raise SystemExit(EXIT_ROW_ERRORS)

import json

import click

from .options import handle_errors


@click.group("zoo")
def zoo_group():
    """GM-zoo: an offline ground-truth set of tiny generative models with design labels."""


@zoo_group.command("build")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--preset", type=click.Choice(["tiny", "small", "standard"]), default="tiny", show_default=True)
@click.option("--real", "real_dir", type=click.Path(exists=True, file_okay=False),
              help="A folder of real images that extends the bundled photos.")
@click.option("--replace-real", is_flag=True, help="Use only --real's images as the real class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the zoo in OUT (only the zoo's own files are removed).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or timing summary.")
@handle_errors
def zoo_build_cmd(out, preset, real_dir, replace_real, seed, device, overwrite, quiet):
    """Train the preset's generators and write OUT/<split>/<model>/* with model.json files.

    \b
    Example:
      fpfast zoo build zoo/ --preset small --seed 0
    """
    from ..progress import Stages
    from ..zoo import build_zoo

    if replace_real and not real_dir:
        raise click.UsageError("--replace-real needs --real DIR")
    stages = Stages()
    summary = build_zoo(out, preset=preset, seed=seed, real_dir=real_dir, device=device,
                        progress=not quiet, replace_real=replace_real, overwrite=overwrite, stages=stages)
    stages.report(quiet)
    click.echo(json.dumps({k: summary[k] for k in ("preset", "seed", "build_seconds") if k in summary}))

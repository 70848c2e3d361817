import click

from .options import handle_errors


@click.command("bench")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--sizes", default="64,256,512", show_default=True, help="Image sizes (square), comma-separated.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--no-compile", is_flag=True, help="Skip the torch.compile baseline (it compiles for minutes on a CPU).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Append the rows to this long-format CSV (and render a Markdown table beside it).")
@click.option("--note", default="", help="Free text stored with every row.")
@handle_errors
def bench_cmd(device, sizes, repeats, no_compile, csv_path, note):
    """Time the fused fingerprint op on every usable backend of this machine.

    Ratios in one run: vs the torch eager reference, vs torch.compile of it, and vs the memory
    floor (the time to merely read the same uint8 bytes).

    \b
    Example:
      fpfast bench --sizes 64,256 --csv bench/kernels.csv
    """
    import os

    from .. import bench
    from ..jobs.options import resolve_device

    dev = resolve_device(device)
    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"--sizes must be integers, got {sizes!r}") from None
    if not size_list or min(size_list) < 16:
        raise click.BadParameter(f"--sizes must be >= 16, got {sizes!r}")
    table = bench.GPU_BATCHES if dev == "cuda" else bench.CPU_BATCHES
    budget = (64 << 20) if dev == "cuda" else (4 << 20)  # bytes of uint8 input per call
    batches = {s: table.get(s) or max(1, budget // (3 * s * s)) for s in size_list}
    rows = bench.run(size_list, dev, batches=batches, repeats=repeats, compile=not no_compile, note=note,
                     log=lambda s: click.echo(s, err=True))
    click.echo(bench.render_markdown(rows))
    if csv_path:
        bench.append_csv(rows, csv_path)
        md = os.path.splitext(csv_path)[0] + ".md"
        bench.write_markdown(csv_path, md)
        click.echo(f"appended {len(rows)} rows to {csv_path}; table in {md}", err=True)

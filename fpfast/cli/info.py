import json

import click

from ..info import format_info, info


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def info_cmd(as_json: bool) -> None:
    """Version, compiled and usable backends, devices, faiss GPUs.

    \b
    Example:  fpfast info
    """
    d = info()
    click.echo(json.dumps(d, indent=2, default=str) if as_json else format_info(d))

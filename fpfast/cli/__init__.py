"""The `fpfast` command line. Commands live one per module; this file only assembles them.

Exit codes: 0 every row succeeded; 3 the run completed but some rows carry an error;
2 usage or configuration error (bad option, unreadable gallery, unknown backend) or a
file-system fault (read-only, full, locked), with one line that says what to do; 1 an
unexpected failure.
"""
from __future__ import annotations

import click

from .. import __version__
from .analyze import analyze_cmd
from .anonymize import anonymize_cmd
from .attribute import attribute_cmd
from .bench import bench_cmd
from .demo import DEMO_TIME, demo_cmd
from .enroll import enroll_cmd
from .evaluate import eval_cmd
from .extract import extract_cmd
from .info import info_cmd
from .leakage import leakage_cmd
from .manifold import manifold_group
from .pretrain import pretrain_cmd
from .search import search_cmd
from .train import train_cmd
from .zoo import zoo_group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=f"""fpfast: fingerprint images and name the generative model that made them.

    \b
    Start here:   fpfast demo            (offline, end to end, {DEMO_TIME})
    Then:         fpfast enroll G --from-folders models/
                  fpfast attribute images/ --gallery G --out results.parquet
    """)
@click.version_option(__version__, prog_name="fpfast")
def cli() -> None:
    pass


for _cmd in (demo_cmd, enroll_cmd, attribute_cmd, extract_cmd, search_cmd, eval_cmd, info_cmd, bench_cmd,
             zoo_group, manifold_group, train_cmd, pretrain_cmd, analyze_cmd,
             anonymize_cmd, leakage_cmd):
    cli.add_command(_cmd)


def main() -> None:
    cli(prog_name="fpfast")

"""Faults for tests/test_ray_engine.py: mapper recipes that kill their Ray worker process once, or
run slowly, and (run as a script) a driver to kill mid-run. Ray actors import this module (the
test module's Ray puts tests/ on their PYTHONPATH)."""
from __future__ import annotations

import functools
import os
import sys
import time


def dying_recipe(recipe, marker: str, key: str):
    """``recipe``'s mapper, except that the first batch holding ``key`` kills its process
    (``os._exit``), once: ``marker`` records that it happened."""
    return functools.partial(_dying, recipe, marker, key)


def _dying(recipe, marker, key):
    mapper = recipe()

    def m(images, keys):
        if key in keys and not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
            os._exit(1)
        return mapper(images, keys)
    return m


def slow_recipe(recipe, seconds: float):
    """``recipe``'s mapper, ``seconds`` slower per batch (so that a driver can be killed mid-run)."""
    return functools.partial(_slow, recipe, seconds)


def _slow(recipe, seconds):
    mapper = recipe()

    def m(images, keys):
        time.sleep(seconds)
        return mapper(images, keys)
    return m


def drive(out: str, gallery: str, address: str, shard_size: int, sources: list[str]) -> None:
    """What ``fpfast attribute SOURCES -g GALLERY -o OUT --engine ray --ray-address ADDRESS
    --shard-size N`` runs (same config, so the CLI can resume it), with a slow mapper."""
    import _ray_faults
    from fpfast.engines.ray_engine import RayOptions, precomputed, ray_decode_stage
    from fpfast.gallery import Gallery
    from fpfast.jobs.options import StreamOptions
    from fpfast.jobs.recipes import attribute_recipe
    from fpfast.cli.attribute import attribute_config
    from fpfast.jobs.schema import attribute_schema
    from fpfast.pipeline import run
    g = Gallery.load(gallery, with_digest=True)
    opts = StreamOptions(quiet=True)
    recipe = _ray_faults.slow_recipe(attribute_recipe(g.path, opts), 0.5)
    stage = ray_decode_stage(recipe, g.spec, RayOptions(address=address, block_rows=2))
    run(sources, precomputed, out, spec=g.spec, shard_size=shard_size, schema=attribute_schema(3),
        config=attribute_config(g), decode_stage=stage, quiet=True)


if __name__ == "__main__":
    out, gallery, address, shard_size, *sources = sys.argv[1:]
    drive(out, gallery, address, int(shard_size), sources)

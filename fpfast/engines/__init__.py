"""Where a streaming command runs: ``local`` (this process and its decode workers,
:func:`fpfast.pipeline.run_stream`) or ``ray`` (Ray Data actors, :mod:`fpfast.engines.ray_engine`).

Both feed the same runner: the same reader, resume checks, shard assembly and writer, so the
output layout does not depend on the engine. Nothing here imports Ray; :func:`require_ray` does,
and turns its absence into a usage error that says how to install it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..errors import UsageError

ENGINES = ("local", "ray")
DEFAULT_BLOCK_ROWS = 256   # inputs per Ray task: small enough to spread, large enough to batch
RAY_INSTALL_HINT = "pip install 'fpfast[ray]' (or: pip install 'ray[data]')"


def require_ray():
    """The ``ray`` module with Ray Data, or :class:`UsageError` (exit 2) naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401  (the engine needs Ray Data, not only Ray core)
    except ImportError as e:
        raise UsageError(f"--engine ray needs Ray Data, which is not installed ({e}); install it with "
                         f"{RAY_INSTALL_HINT}") from None
    return ray


@dataclass
class EngineOptions:
    """``--engine``, ``--ray-address``, ``--ray-actors``, ``--ray-block-rows``, ``--verbose``."""

    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int = 0          # 0: from the cluster's resources
    block_rows: int | None = None  # None: DEFAULT_BLOCK_ROWS
    verbose: bool = False

    def check(self) -> None:
        """Usage errors now, before anything runs: Ray missing, Ray options without the Ray engine."""
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; expected one of {ENGINES}")
        if self.engine == "ray":
            require_ray()
            return
        given = [flag for flag, value in (("--ray-address", self.ray_address), ("--ray-actors", self.ray_actors),
                                          ("--ray-block-rows", self.block_rows), ("--verbose", self.verbose))
                 if value]
        if given:
            raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray "
                             f"(the local engine has no Ray to set or show)")


def logs_aside(engine: EngineOptions):
    """A context for the run: with ``--engine ray`` and no ``--verbose``, Ray's own logs stay out
    of the terminal (:func:`fpfast.engines.ray_engine.ray_logs_aside`)."""
    if engine.engine != "ray":
        return contextlib.nullcontext()
    from .ray_engine import ray_logs_aside
    return ray_logs_aside(engine.verbose)


def ray_run_kw(engine: EngineOptions, recipe, spec, opts) -> dict:
    """The keywords of :func:`fpfast.pipeline.run` that run a command's stream (``opts``: its
    :class:`~fpfast.jobs.options.StreamOptions`) with its decode + map stage on Ray actors:
    ``recipe()`` builds the job's mapper in each actor (:mod:`fpfast.jobs.recipes`), and
    ``--decode`` is checked there, where the GPUs are."""
    from .ray_engine import RayOptions, precomputed, ray_decode_stage
    ray_opts = RayOptions(address=engine.ray_address, actors=engine.ray_actors, verbose=engine.verbose,
                          block_rows=engine.block_rows or DEFAULT_BLOCK_ROWS, gpus=opts.device != "cpu")
    stage = ray_decode_stage(recipe, spec, ray_opts, batch_size=opts.batch_size, max_pixels=opts.max_pixels,
                             decode_device=opts.decode)
    return {**opts.stream_kw(decode_here=False), "mapper": precomputed, "decode_stage": stage}

"""How images flow: the options every streaming command shares, and where they run."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..io.decode import DEFAULT_MAX_PIXELS


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from ..backends import BackendUnavailable
        raise BackendUnavailable("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    return device


@dataclass
class StreamOptions:
    """How images flow: the options every streaming command shares."""

    backend: str = "auto"
    device: str = "auto"
    batch_size: int = 64
    workers: int = 0
    quiet: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    precision: str = "auto"      # learned-embedding inference: auto (fp16 on CUDA) | fp32 | fp16 | bf16
    compile: bool = False        # torch.compile the learned embedding's network

    def stream_kw(self) -> dict:
        return {"batch_size": self.batch_size, "workers": self.workers, "quiet": self.quiet,
                "max_pixels": self.max_pixels}


def check_backend(opts: StreamOptions) -> str:
    """The device ``opts`` runs on, after checking that ``opts.backend`` can run there: a named
    backend that cannot is a usage error now, before any output is opened (not at the first batch)."""
    from ..backends import resolve
    device = resolve_device(opts.device)
    if opts.backend != "auto":
        resolve(opts.backend, device)
    return device

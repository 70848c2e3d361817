"""How images flow: the options every streaming command shares, and where they run."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..io.decode import DEFAULT_MAX_PIXELS
from ..io.limits import DEFAULT_MAX_BYTES


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
    decode: str = "cpu"          # where JPEGs are decoded: cpu | cuda (nvJPEG, fpfast.device_stage)
    max_bytes: int = DEFAULT_MAX_BYTES  # the read cap of every input

    def stream_kw(self, decode_here: bool = True) -> dict:
        """The keywords of :func:`fpfast.pipeline.run`; ``decode_here``: ``--decode`` is checked
        now (False: where the decoding runs, e.g. in Ray actors, which get ``decode`` themselves)."""
        kw = {"batch_size": self.batch_size, "workers": self.workers, "quiet": self.quiet,
              "max_pixels": self.max_pixels, "max_bytes": self.max_bytes}
        if decode_here:
            kw["decode_device"] = resolve_decode(self.decode)
        return kw


def resolve_decode(decode: str) -> str:
    """``--decode cuda`` needs a GPU torch sees and torchvision's nvJPEG decoder."""
    if decode == "cpu":
        return decode
    if not torch.cuda.is_available():
        from ..backends import BackendUnavailable
        raise BackendUnavailable("--decode cuda: torch sees no CUDA GPU here (use --decode cpu)")
    from ..io.device_decode import _torchvision_io
    try:
        _torchvision_io()
    except RuntimeError as e:
        from ..backends import BackendUnavailable
        raise BackendUnavailable(f"--decode cuda: {e}") from None
    return decode


def check_backend(opts: StreamOptions) -> str:
    """The device ``opts`` runs on, after checking that ``opts.backend`` can run there: a named
    backend that cannot is a usage error now, before any output is opened (not at the first batch)."""
    from ..backends import resolve
    device = resolve_device(opts.device)
    if opts.backend != "auto":
        resolve(opts.backend, device)
    return device


def check_decode(gallery, opts: StreamOptions) -> None:
    """Queries are decoded where the gallery's images were (``--decode``): nvJPEG's pixels are not
    libjpeg-turbo's, and a fingerprint measures exactly such differences (on an H200 the attributed
    model changed for most rows, ``benchmarks/results/e2e_gpu.md``). An empty gallery adopts the
    choice of its first enrollment."""
    if len(gallery) == 0:
        gallery.decode = opts.decode
    elif gallery.decode != opts.decode:
        from ..errors import ConfigError
        raise ConfigError(f"gallery {gallery.path} was enrolled with --decode {gallery.decode}; use "
                          f"--decode {gallery.decode} for it too (GPU and CPU JPEG decoders give "
                          f"different pixels, and so different fingerprints)")

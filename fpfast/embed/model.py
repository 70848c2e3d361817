"""A small residual CNN that embeds an image's residual into an L2-normalised vector.

Input: float [B, 3, H, W] in [0, 1] (any H, W >= 8: global pooling at the end). The network
first takes the residual of the spec's cheap operator (:func:`fpfast.reference.residual.residual`,
differentiable torch) - or, for a spec with a heavy projector (``arch.residual == "projector"``),
is given that projector's residual x - P(x), which :class:`Embedder` computes -, standardises it
with a BatchNorm, then runs ``len(widths)`` stages of basic residual blocks (the first at full
resolution, so that period-2 up-sampling traces are seen before any striding; or, with the optional
``stem: "unshuffle"``, after a lossless space-to-depth by 2 that keeps those traces as channel
patterns and runs every stage at half the resolution), global-average
pools, optionally concatenates the standardised handcrafted vector, and projects to ``dim``
unit-norm dimensions.

The architecture is a JSON-able dict (:data:`DEFAULT_ARCH`); the :class:`Embedder` bundles the
network with that dict, serialises both without pickle (safetensors + canonical JSON) and names
them by ``identity`` = sha256 of the JSON bytes, a NUL, and the safetensors bytes.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ..errors import ConfigError
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..reference.residual import residual as reference_residual

KIND = "rescnn"
PROJECTOR_INPUT = "projector"  # arch["residual"] of a network fed a heavy projector's residual
FORMAT_VERSION = 1
# Embedder config field (absent: a plain embedder): its vectors are the network's followed by the
# handcrafted fingerprint of its spec (issue 14: few-shot galleries gain from both).
APPEND_KEY = "append"
APPEND_HANDCRAFTED = "handcrafted"
# Embedder config field (absent: one pass): the network's vector is the mean of its vectors of the
# image and of its mirror images (2: left-right; 4: left-right, up-down and both), renormalised; the
# appended handcrafted fingerprint is the image's own. Why: benchmarks/results/embedding.md, "Issue 14,
# fifteenth session".
FLIPS_KEY = "flips"
FLIP_COUNTS = (1, 2, 4)
FLIP_DIMS = ((), (-1,), (-2,), (-2, -1))   # of [B, 3, H, W]: the image, then its mirror images
# Embedder config field (absent: none): the config of a second, plain network (its weights stored
# beside the network's under REFERENCE_PREFIX) whose one-pass vector of the image follows everything
# else: a fine-tuned gallery keeps the universal network it started from, for `unknown` (the
# fine-tune pulls an enrolled design's siblings onto it). Why: benchmarks/results/embedding.md,
# "Issue 14, sixteenth session".
REFERENCE_KEY = "reference"
REFERENCE_PREFIX = "reference."
DEFAULT_ARCH: dict[str, Any] = {
    "kind": KIND,
    "widths": [16, 32, 64],
    "blocks": [1, 1, 1],
    "dim": 128,
    "residual": "denoise",     # replaced by the spec's operator at training time ("projector": the
                               # input is already the spec's heavy projector's residual x - P(x))
    "sigma": 1.0,
    "handcrafted_dim": 0,      # > 0: the spec's handcrafted vector is concatenated before the head
}
# Optional fields: absent from a config means the default below, and a default value is not written
# into the resolved dict, so the configs (and identities) of networks made before a field existed
# stay byte-identical.
OPTIONAL_ARCH: dict[str, Any] = {
    "stem": "conv",            # "conv": 3x3 convolution at full resolution; "unshuffle": space-to-depth
                               # by 2 first (lossless: each 2x2 phase becomes a channel, so period-2
                               # traces stay visible) and the whole network at half resolution
}
STEMS = ("conv", "unshuffle")


class EmbedError(ConfigError):
    """An embedding's config or weights are malformed or do not match."""


def resolve_arch(arch: dict | None = None, **overrides) -> dict:
    a = json.loads(json.dumps({**DEFAULT_ARCH, **(arch or {}), **overrides}))
    unknown = sorted(set(a) - set(DEFAULT_ARCH) - set(OPTIONAL_ARCH))
    if unknown:
        raise EmbedError(f"unknown architecture fields {unknown}; expected {sorted({**DEFAULT_ARCH, **OPTIONAL_ARCH})}")
    if a.get("stem", "conv") not in STEMS:
        raise EmbedError(f"unknown stem {a['stem']!r}; expected one of {STEMS}")
    for k, v in OPTIONAL_ARCH.items():
        if a.get(k) == v:
            del a[k]
    if a["kind"] != KIND:
        raise EmbedError(f"unknown embedding kind {a['kind']!r}; this fpfast knows {KIND!r}")
    if not a["widths"] or len(a["widths"]) != len(a["blocks"]):
        raise EmbedError(f"widths {a['widths']} and blocks {a['blocks']} must be non-empty and of equal length")
    if int(a["dim"]) < 2:
        raise EmbedError(f"dim must be >= 2, got {a['dim']}")
    return a


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())
        # torch 2.13's CPU backward of a strided 1x1 convolution on a channels-last input with fewer
        # input channels than oneDNN's block (8 with AVX2, 16 with AVX-512) writes past its workspace
        # (oneDNN issue 6035; free(): invalid next size). Seen: cin 1-6 at 16 px on an earlier host;
        # cin 3-8 at 48-64 px, not at <= 32 px, on an AVX-512 host. Such a shortcut gets a
        # contiguous input: always below 8 channels (as since the first sighting, so that earlier
        # trainings keep their numbers), and below 16 while autograd records on inputs over 32 px
        # (fine-tuning the shipped 8-wide network on 64-px images crashed; tests/test_embed_inference.py)
        self._strided_cin = cin if stride != 1 else None

    def _short_input(self, x: torch.Tensor) -> torch.Tensor:
        c = self._strided_cin
        if c is not None and (c < 8 or (c < 16 and torch.is_grad_enabled() and x.shape[-1] * x.shape[-2] > 32 * 32)):
            return x.contiguous()
        return x

    def forward(self, x):
        short = self.short(self._short_input(x))
        if torch.is_grad_enabled():
            y = F.relu(self.b1(self.c1(x)))
            return F.relu(self.b2(self.c2(y)) + short)
        # inference: the same values, without a new tensor per ReLU and per sum
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        return F.relu(self.b2(self.c2(y)).add_(short), inplace=True)


class ResidualEmbedNet(nn.Module):
    """The network of :data:`DEFAULT_ARCH`; ``forward(x, hand=None)`` -> [B, dim] unit vectors."""

    def __init__(self, arch: dict | None = None):
        super().__init__()
        self.arch = resolve_arch(arch)
        a = self.arch
        w = [int(v) for v in a["widths"]]
        self.in_norm = nn.BatchNorm2d(3)
        self.unshuffle = a.get("stem", "conv") == "unshuffle"
        cin0 = 12 if self.unshuffle else 3
        self.stem = nn.Sequential(nn.Conv2d(cin0, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        layers, cin = [], w[0]
        for i, (cout, nb) in enumerate(zip(w, a["blocks"])):
            for j in range(int(nb)):
                layers.append(_Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.body = nn.Sequential(*layers)
        hd = int(a["handcrafted_dim"])
        self.hand_norm = nn.BatchNorm1d(hd, affine=False) if hd else None
        self.head = nn.Linear(cin + hd, int(a["dim"]))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input residual of images x: the cheap operator's, or x itself when the
        network takes a heavy projector's residual (``arch.residual == "projector"``)."""
        if self.arch["residual"] == PROJECTOR_INPUT:
            return x.float()
        with torch.autocast(x.device.type, enabled=False):  # the residual is a small difference: fp32
            return reference_residual(x.float(), self.arch["residual"], float(self.arch["sigma"]))

    def forward(self, x: torch.Tensor, hand: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed_residual(self.residual(x), hand)

    def embed_residual(self, r: torch.Tensor, hand: torch.Tensor | None = None) -> torch.Tensor:
        """[B, dim] unit vectors of residuals r [B, 3, H, W] (:meth:`residual`)."""
        r = self.in_norm(r)
        if self.unshuffle:  # odd sides lose their last row / column (space-to-depth needs even sides)
            h, w = r.shape[-2:]
            r = F.pixel_unshuffle(r[..., :h // 2 * 2, :w // 2 * 2], 2)
        f = self.body(self.stem(r)).mean(dim=(2, 3))
        if self.hand_norm is not None:
            if hand is None:
                raise EmbedError("this embedding concatenates handcrafted features: pass hand=")
            f = torch.cat([f, self.hand_norm(hand.float()).to(f.dtype)], 1)
        return F.normalize(self.head(f).float(), dim=1)


class _OnResidual(nn.Module):
    """The inference network from the residual on: the residual itself comes from the backend op
    (:func:`fpfast.ops.residual.residual`: on CPU the compiled kernel, far cheaper than the torch
    reference the network trains with; equal to it to float32 rounding; ``embedding_speed.md``)."""

    def __init__(self, net: "ResidualEmbedNet"):
        super().__init__()
        self.net = net

    def forward(self, r: torch.Tensor, hand: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.embed_residual(r, hand)


def fold_batchnorm(net: ResidualEmbedNet) -> ResidualEmbedNet:
    """An inference copy of ``net`` (in eval mode) with every convolution's BatchNorm folded into
    the convolution's weights and bias (the same function up to float rounding, one pass over the
    activations fewer per BatchNorm). The input BatchNorm stays: it precedes a zero-padded
    convolution, whose borders folding would change."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval
    out = copy.deepcopy(net).eval()

    def fold(seq_or_block, conv_name, bn_name):
        conv, bn = getattr(seq_or_block, conv_name), getattr(seq_or_block, bn_name)
        setattr(seq_or_block, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(seq_or_block, bn_name, nn.Identity())

    fold(out.stem, "0", "1")
    for blk in out.body:
        fold(blk, "c1", "b1")
        fold(blk, "c2", "b2")
        if isinstance(blk.short, nn.Sequential):
            fold(blk.short, "0", "1")
    return out


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def identity_of(config_bytes: bytes, weights_bytes: bytes) -> str:
    return hashlib.sha256(config_bytes + b"\0" + weights_bytes).hexdigest()


class Embedder:
    """A trained :class:`ResidualEmbedNet` with its config, ready to embed image batches.

    ``config``: {"format_version", "arch", "spec" (the handcrafted spec it was trained on, as a
    dict), "training" (options + log summary)}. The handcrafted spec decides the handcrafted
    features fed to the head (when ``arch.handcrafted_dim`` > 0).
    """

    def __init__(self, net: ResidualEmbedNet, config: dict, reference: "Embedder | None" = None):
        self.net = net.eval()
        self.config = json.loads(json.dumps(config))
        self.arch = net.arch
        self._bytes: tuple[bytes, bytes] | None = None
        self._dev_nets: dict = {}
        self._spec = None
        if (reference is None) != (REFERENCE_KEY not in self.config):
            raise EmbedError(f"embedding config {REFERENCE_KEY!r} and the reference network must come together")
        if reference is not None and reference.plain() is not reference:
            raise EmbedError("a reference network must be plain: no appended vectors, one pass, no reference")
        self.reference = reference
        if self.config.get(APPEND_KEY, APPEND_HANDCRAFTED) != APPEND_HANDCRAFTED:
            raise EmbedError(f"embedding config {APPEND_KEY!r} must be {APPEND_HANDCRAFTED!r} or absent, "
                             f"got {self.config[APPEND_KEY]!r}")
        if FLIPS_KEY in self.config and self.config[FLIPS_KEY] not in FLIP_COUNTS[1:]:
            raise EmbedError(f"embedding config {FLIPS_KEY!r} must be one of {list(FLIP_COUNTS[1:])} or absent, "
                             f"got {self.config[FLIPS_KEY]!r}")

    # ------------------------------------------------------------------ identity / bytes
    def to_bytes(self) -> tuple[bytes, bytes]:
        """(config JSON bytes, safetensors bytes): what a gallery stores."""
        if self._bytes is None:
            from safetensors.torch import save
            sd = {k: v.detach().cpu().contiguous() for k, v in sorted(self.net.state_dict().items())}
            if self.reference is not None:
                sd.update({REFERENCE_PREFIX + k: v.detach().cpu().contiguous()
                           for k, v in self.reference.net.state_dict().items()})
            cfg = _canonical({**self.config, "arch": self.arch, "format_version": FORMAT_VERSION})
            self._bytes = (cfg, save(sd))
        return self._bytes

    @property
    def identity(self) -> str:
        return identity_of(*self.to_bytes())

    @property
    def dim(self) -> int:
        """Size of its vectors: the network's ``arch.dim``, plus the handcrafted vector it appends,
        plus the reference network's vector."""
        return int(self.arch["dim"]) + self.appended_dim + self.reference_dim

    @property
    def reference_dim(self) -> int:
        """Size of the reference network's vector at the end (0 without one)."""
        return 0 if self.reference is None else self.reference.dim

    @property
    def appended_dim(self) -> int:
        """Size of the handcrafted vector appended to the network's (0 for a plain embedder)."""
        return self.handcrafted_spec().handcrafted_dim if APPEND_KEY in self.config else 0

    def with_handcrafted(self) -> "Embedder":
        """This network, its vectors followed by the handcrafted fingerprint of the spec it was
        trained on (raw: a gallery of such vectors needs a fitted normaliser, e.g. ``lda``). Its
        config, and so its identity, differ from the plain embedder's; the weights are shared."""
        return Embedder(self.net, {**self.config, APPEND_KEY: APPEND_HANDCRAFTED}, self.reference)

    def plain(self) -> "Embedder":
        """The network's own vectors of the image alone: no appended handcrafted fingerprint, no
        mirror images, no reference network (what fine-tuning starts from)."""
        extra = (APPEND_KEY, FLIPS_KEY, REFERENCE_KEY)
        if not any(k in self.config for k in extra):
            return self
        return Embedder(self.net, {k: v for k, v in self.config.items() if k not in extra})

    def with_reference(self, reference: "Embedder") -> "Embedder":
        """This embedder, its vectors followed by ``reference``'s vector of the image (one pass; a
        plain embedder: :meth:`plain` of it is taken). Its config and weights, and so its identity,
        carry the reference network's."""
        ref = reference.plain()
        cfg = {**self.config, REFERENCE_KEY: json.loads(ref.to_bytes()[0])}
        return Embedder(self.net, cfg, ref)

    @property
    def flips(self) -> int:
        """How many mirror images (the image included) the network's vector averages: 1, 2 or 4."""
        return int(self.config.get(FLIPS_KEY, 1))

    def with_flips(self, n: int) -> "Embedder":
        """This embedder, its network vector averaged over ``n`` mirror images (:data:`FLIP_COUNTS`:
        1 the image alone, 2 with its left-right mirror, 4 with the up-down and both); ``n`` times
        the network's inference. Its config, and so its identity, differ; the weights are shared."""
        if n not in FLIP_COUNTS:
            raise EmbedError(f"flips must be one of {list(FLIP_COUNTS)}, got {n!r}")
        cfg = {k: v for k, v in self.config.items() if k != FLIPS_KEY}
        return Embedder(self.net, cfg if n == 1 else {**cfg, FLIPS_KEY: n}, self.reference)

    def spec_record(self) -> dict:
        """The spec's ``embedding`` field for vectors of this embedder."""
        rec = {"kind": KIND, "identity": self.identity, "dim": self.dim}
        after = self.appended_dim + self.reference_dim   # the dimensions after the network's own
        return {**rec, "appended": after} if after else rec

    @classmethod
    def from_bytes(cls, config_bytes: bytes, weights_bytes: bytes) -> "Embedder":
        from safetensors.torch import load
        try:
            config = json.loads(config_bytes.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EmbedError(f"embedding config is not valid JSON: {e}") from None
        if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
            raise EmbedError(f"embedding config format_version {config.get('format_version')!r} "
                             f"is not supported (this fpfast reads {FORMAT_VERSION})")
        net = ResidualEmbedNet(config.get("arch"))
        try:
            sd = load(weights_bytes)
        except Exception as e:  # safetensors raises its own error types
            raise EmbedError(f"embedding weights are not a readable safetensors file: {e}") from None
        ref = None
        if REFERENCE_KEY in config:
            rcfg = config[REFERENCE_KEY]   # a plain one: checked when the embedder is built below
            if not isinstance(rcfg, dict):
                raise EmbedError(f"embedding config {REFERENCE_KEY!r} must be an embedding's config")
            rnet = ResidualEmbedNet(rcfg.get("arch"))
            rsd = {k[len(REFERENCE_PREFIX):]: sd.pop(k) for k in [k for k in sd if k.startswith(REFERENCE_PREFIX)]}
            try:
                rnet.load_state_dict(rsd, strict=True)
            except RuntimeError as e:
                raise EmbedError(f"embedding reference weights do not fit its architecture: {e}") from None
            ref = cls(rnet, rcfg)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise EmbedError(f"embedding weights do not fit its architecture: {e}") from None
        emb = cls(net, config, ref)
        emb._bytes = (config_bytes, weights_bytes)
        return emb

    # ------------------------------------------------------------------ inference
    def handcrafted_spec(self):
        """The handcrafted spec it was trained on (parsed once: ``embed`` asks for it per batch)."""
        if self._spec is None:
            from ..spec import FingerprintSpec
            self._spec = FingerprintSpec.from_dict(self.config["spec"])
        return self._spec

    def _net_on(self, device: torch.device, precision: str, compile: bool):
        """A copy of the network prepared for (device, precision, compile), built once and cached:
        BatchNorms folded into the convolutions (:func:`fold_batchnorm`), channels-last
        (cuDNN's NHWC convolutions on CUDA; no faster nor slower on this project's CPU), optionally
        ``torch.compile``d; figures in ``benchmarks/results/embedding_speed.md``."""
        key = (str(device), precision, bool(compile))
        if key not in self._dev_nets:
            net = _OnResidual(fold_batchnorm(self.net)).to(device).to(memory_format=torch.channels_last)
            if compile:
                net = torch.compile(net, dynamic=False)
            self._dev_nets[key] = net
        return self._dev_nets[key]

    def projector(self, device: str | torch.device = "cpu"):
        """The heavy projector whose residual the network takes (``arch.residual == "projector"``;
        loaded once per device from the spec it was trained on, its identity checked), else None."""
        if self.arch["residual"] != PROJECTOR_INPUT:
            return None
        key = ("projector", str(device))
        if key not in self._dev_nets:
            from ..projectors import load_projector
            desc = self.handcrafted_spec().projector
            if desc is None:
                raise EmbedError("this embedding takes a projector's residual but its spec records no projector")
            self._dev_nets[key] = load_projector(desc, device=torch.device(device))
        return self._dev_nets[key]

    def embed_tensor(self, images: torch.Tensor, device: str | torch.device = "cpu", backend: str = "auto",
              layout: str = "auto", batch_size: int = 256, precision: str = "auto",
              compile: bool = False) -> torch.Tensor:
        """Embeddings [B, dim] float32, on ``device``, of uint8/float images [B,H,W,3] or [B,3,H,W] (already in
        the spec's geometry, as the pipeline's batches are).

        ``precision``: ``auto`` (fp16 on CUDA, fp32 on CPU), ``fp32``, ``fp16`` (CUDA only) or
        ``bf16``: the network runs under autocast at that precision; the residual, the
        normalisation and the output stay fp32 (``fp32`` is full float32: no TF32). ``compile``: ``torch.compile`` the network (once
        per device and precision; pays on long GPU runs, costs a compile up front).
        """
        import contextlib

        from ..ops.residual import IMPLEMENTED as residual_backends
        from ..ops.residual import residual as residual_op
        from ..prepare import as_chw, as_float_chw
        from ..search import full_fp32
        dev = torch.device(device)
        dtype = resolve_precision(precision, dev)
        net = self._net_on(dev, precision, compile)
        out = []
        proj = self.projector(dev)
        with torch.inference_mode():
            for s in range(0, images.shape[0], batch_size):
                xb = images[s:s + batch_size].to(dev)
                z = hand = None
                for dims in FLIP_DIMS[:self.flips]:   # the image, then its mirror images
                    xf, lay = (xb, layout) if not dims else (torch.flip(as_chw(xb, layout), dims), "chw")
                    x = as_float_chw(xf, lay).float()
                    if proj is not None:  # the network takes the heavy projector's residual x - P(x)
                        r = proj.residual(x).to(dev)
                    else:  # the residual op has torch and cpp backends: a backend it lacks (triton, cuda)
                        # names the handcrafted op's kernels, and the residual takes the device's best
                        r = residual_op(x, self.arch["residual"], float(self.arch["sigma"]), layout="chw",
                                        backend=backend if backend in residual_backends else "auto")
                    h = (handcrafted_input(xf, r, self.handcrafted_spec(), proj is not None, backend, lay)
                         if self.arch["handcrafted_dim"] or (self.appended_dim and not dims) else None)
                    hand = h if not dims else hand   # the appended fingerprint: the image's own
                    r = r.contiguous(memory_format=torch.channels_last)
                    exact = full_fp32() if dtype == torch.float32 else contextlib.nullcontext()
                    with exact, torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                        zf = net(r, h if self.arch["handcrafted_dim"] else None).float()
                    z = zf if z is None else z + zf
                if self.flips > 1:
                    z = F.normalize(z, dim=1)
                parts = [z] + ([hand.float()] if self.appended_dim else [])
                if self.reference is not None:
                    parts.append(self.reference.embed_tensor(xb, dev, backend, layout, batch_size, precision, compile))
                out.append(torch.cat(parts, 1) if len(parts) > 1 else z)
        return torch.cat(out) if out else torch.zeros((0, self.dim), dtype=torch.float32, device=dev)

    def embed(self, images: torch.Tensor, device: str | torch.device = "cpu", **kw) -> np.ndarray:
        """:meth:`embed_tensor` copied to the host as numpy (training, calibration, benchmarks)."""
        return self.embed_tensor(images, device, **kw).cpu().numpy()


def handcrafted_input(images: torch.Tensor, r: torch.Tensor, spec, projected: bool, backend: str = "auto",
                      layout: str = "auto") -> torch.Tensor:
    """The spec's handcrafted vector that the head concatenates (``arch.handcrafted_dim`` > 0): of
    the heavy projector's residual ``r`` when the network takes one (``projected``), else of the
    ``images`` (the fused op computes its own cheap residual)."""
    from ..ops.features import fingerprint_features
    if projected:
        return fingerprint_features(r, spec, backend=backend, is_residual=True)
    return fingerprint_features(images, spec, backend=backend, layout=layout)


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of ``precision`` on ``device`` (see :meth:`Embedder.embed`)."""
    if precision not in PRECISIONS:
        raise EmbedError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise EmbedError("fp16 embedding inference needs a CUDA device; on CPU use fp32 or bf16")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

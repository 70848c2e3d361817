"""An unbounded family of random shallow decoders: the synthetic generators the universal
embedding is pretrained on (issue 14; after Yang et al., "Model synthesis for zero-shot model
attribution": thousands of shallow synthetic models whose up-sampling, depth, widths, kernels,
activations and normalisations vary, so that a fingerprint extractor trained to tell them apart
transfers to real generators it never saw).

Decoder ``i`` of a family with seed ``s`` is a pure function of ``(s, i)``: its design is drawn
from ``numpy.random.default_rng([s, i])`` and its weights from a ``torch.Generator`` seeded from
the same stream, so the same id gives the same generator on every machine. Class 0 is the real
photographs themselves (the identity decoder).

A decoder maps a real photo crop ``x`` (float [B, 3, H, W] in [0, 1], H and W divisible by 4) to an
image of the same size: ``x`` is average-pooled by ``2 ** n_up`` (the "latent"), passed through a
random input convolution and ``depth`` stages (the first ``n_up`` of which up-sample by 2 with
the decoder's up-sampling op), each a random convolution, a normalisation and an activation,
then a 1x1 output convolution over the last hidden layer and a skip path (the latent brought back
to full size by the decoder's interpolation, nearest for the learned up-sampling ops). The output
convolution is *briefly fitted*: a ridge regression of the photo on those channels over a fixed
batch of crops, so the decoder reconstructs the photo's content and leaves the trace of its random
architecture and weights, as a trained generator does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

UPSAMPLING = ("tconv3", "tconv4", "nearest", "bilinear", "bicubic", "pixelshuffle", "none")
ACTIVATIONS = ("relu", "leaky_relu", "silu", "gelu", "tanh", "elu")
NORMALIZATIONS = ("none", "instance", "group", "layer")
WIDTHS = (8, 12, 16)
KERNELS = (1, 3, 3, 5)
REAL = 0  # class id of the real photographs (no decoder)

_ACT = {"relu": F.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "silu": F.silu, "gelu": F.gelu,
        "tanh": torch.tanh, "elu": F.elu}


def design(family_seed: int, i: int, draw: int = 0, sibling: int = 0) -> dict:
    """The architecture of decoder ``i`` (``i`` >= 1) as a JSON-able dict. ``draw`` > 0: the same
    architecture with another draw of its weights (``weight_seed`` from ``(family_seed, i, draw)``),
    as a real model retrained from another seed is. ``sibling`` > 0: the design with one knob
    changed (:func:`sibling_changes`), the same weight seed."""
    if i < 1:
        raise ValueError(f"decoder ids start at 1 (0 is the real class), got {i}")
    rng = np.random.default_rng([int(family_seed), int(i)])
    up = UPSAMPLING[int(rng.integers(len(UPSAMPLING)))]
    n_up = 0 if up == "none" else int(rng.integers(1, 3))
    depth = int(rng.integers(max(1, n_up), 5))
    d = {"up": up, "n_up": n_up, "depth": depth,
         "width": int(rng.choice(WIDTHS)),
         "kernels": [int(rng.choice(KERNELS)) for _ in range(depth)],
         "act": ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))],
         "norm": NORMALIZATIONS[int(rng.integers(len(NORMALIZATIONS)))],
         "weight_seed": int(rng.integers(2 ** 62))}
    if draw:
        d["weight_seed"] = int(np.random.default_rng([int(family_seed), int(i), int(draw)]).integers(2 ** 62))
    if sibling:
        changes = sibling_changes(family_seed, i, d)
        if sibling > len(changes):
            raise ValueError(f"decoder {i} has {len(changes)} siblings, asked for sibling {sibling}")
        knob, value = changes[sibling - 1]
        d[knob] = value
    return d


# up-sampling ops a sibling may swap between: the same weights serve every op of a group
_UP_GROUPS = (("nearest", "bilinear", "bicubic"), ("tconv3", "tconv4"))


def sibling_changes(family_seed: int, i: int, d: dict) -> list[tuple[str, str]]:
    """The one-knob changes that make decoder ``i``'s siblings, in sibling order: each a design that
    differs from ``d`` in its up-sampling op (to another of its group: interpolations among
    themselves, transposed convolutions among themselves), its activation or its normalisation;
    the order draws a knob uniformly among those ``d`` can change, then a value, without repeats
    (as a real model's siblings differ from it in one design choice)."""
    rng = np.random.default_rng([int(family_seed), int(i), 0x51B])
    options = {"act": [a for a in ACTIVATIONS if a != d["act"]],
               "norm": [n for n in NORMALIZATIONS if n != d["norm"]],
               "up": next(([u for u in g if u != d["up"]] for g in _UP_GROUPS if d["up"] in g), [])}
    options = {k: [v for v in rng.permutation(vals)] for k, vals in options.items() if vals}
    out = []
    while options:
        knob = sorted(options)[int(rng.integers(len(options)))]
        out.append((knob, str(options[knob].pop(0))))
        if not options[knob]:
            del options[knob]
    return out


def _normalize(h: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "instance":
        return F.instance_norm(h)
    if kind == "group":
        return F.group_norm(h, 4 if h.shape[1] % 4 == 0 else 1)
    if kind == "layer":
        return F.group_norm(h, 1)
    return h


class RandomDecoder(nn.Module):
    """One random decoder of :func:`design` ``d`` (weights from ``d["weight_seed"]``)."""

    def __init__(self, d: dict):
        super().__init__()
        self.d = d
        g = torch.Generator().manual_seed(int(d["weight_seed"]))
        w = int(d["width"])

        def conv_w(cout, cin, k, gain=2.0):
            return torch.randn(cout, cin, k, k, generator=g) * (gain / (cin * k * k)) ** 0.5

        self.w_in = nn.Parameter(conv_w(w, 3, 3), requires_grad=False)
        self.ws = nn.ParameterList()
        self.bs = nn.ParameterList()
        self.ups = nn.ParameterList()
        for s, k in enumerate(d["kernels"]):
            self.ws.append(nn.Parameter(conv_w(w, w, k), requires_grad=False))
            self.bs.append(nn.Parameter(torch.randn(w, generator=g) * 0.1, requires_grad=False))
            if s < d["n_up"]:
                if d["up"] in ("tconv3", "tconv4"):
                    k_up = 3 if d["up"] == "tconv3" else 4
                    self.ups.append(nn.Parameter(conv_w(w, w, k_up, gain=8.0), requires_grad=False))
                elif d["up"] == "pixelshuffle":
                    self.ups.append(nn.Parameter(conv_w(4 * w, w, 3), requires_grad=False))
        # fitted: [3, width + 3 skip channels + bias]
        self.w_out = nn.Parameter(torch.zeros(3, w + 4), requires_grad=False)

    def _upsample(self, h: torch.Tensor, s: int) -> torch.Tensor:
        up = self.d["up"]
        if up == "tconv3":
            return F.conv_transpose2d(h, self.ups[s], stride=2, padding=1, output_padding=1)
        if up == "tconv4":
            return F.conv_transpose2d(h, self.ups[s], stride=2, padding=1)
        if up == "pixelshuffle":
            return F.pixel_shuffle(F.conv2d(h, self.ups[s], padding=1), 2)
        return F.interpolate(h, scale_factor=2, mode=up,
                             align_corners=False if up in ("bilinear", "bicubic") else None)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """[B, width + 3, H, W]: the last hidden layer and the skip path."""
        d = self.d
        f = 2 ** int(d["n_up"])
        lat = F.avg_pool2d(x, f) if f > 1 else x
        mode = d["up"] if d["up"] in ("nearest", "bilinear", "bicubic") else "nearest"
        skip = (F.interpolate(lat, scale_factor=f, mode=mode,
                              align_corners=None if mode == "nearest" else False) if f > 1 else lat)
        h = F.conv2d(lat * 2 - 1, self.w_in, padding=1)
        act = _ACT[d["act"]]
        for s, (wt, b) in enumerate(zip(self.ws, self.bs)):
            if s < d["n_up"]:
                h = self._upsample(h, s)
            h = act(_normalize(F.conv2d(h, wt, b, padding=wt.shape[-1] // 2), d["norm"]))
        return torch.cat([h, skip], 1)

    def fit(self, x: torch.Tensor, ridge: float = 1e-3, steps: int = 0, lr: float = 1e-2) -> "RandomDecoder":
        """Fit the 1x1 output layer so that the decoder reconstructs ``x`` (least squares, float64);
        with ``steps`` > 0, then train every weight for ``steps`` Adam steps on the reconstruction
        error of ``x`` and solve the output layer again. Deterministic on CPU."""
        self._solve_out(x, ridge)
        if steps > 0:
            params = list(self.parameters())
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=lr)
            with torch.enable_grad():
                for _ in range(int(steps)):
                    loss = F.mse_loss(self._linear_out(self.hidden(x)), x)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            for p in params:
                p.requires_grad_(False)
            self._solve_out(x, ridge)
        return self

    def _solve_out(self, x: torch.Tensor, ridge: float) -> None:
        with torch.no_grad():
            h = self.hidden(x).double()
            feats = torch.cat([h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]),
                               torch.ones(h.shape[0] * h.shape[2] * h.shape[3], 1, dtype=torch.float64)], 1)
            tgt = x.double().permute(0, 2, 3, 1).reshape(-1, 3)
            a = feats.t() @ feats
            a += ridge * torch.trace(a) / a.shape[0] * torch.eye(a.shape[0], dtype=torch.float64)
            self.w_out.copy_(torch.linalg.solve(a, feats.t() @ tgt).t().float())

    def _linear_out(self, h: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,oc->bohw", h, self.w_out[:, :-1]) + self.w_out[:, -1].view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._linear_out(self.hidden(x)).clamp(0, 1)


def make_decoder(family_seed: int, i: int, fit_batch: torch.Tensor, fit_steps: int = 0,
                 draw: int = 0, sibling: int = 0) -> RandomDecoder:
    """Decoder ``i`` of the family (weights of draw ``draw``; its sibling ``sibling``), fitted on
    ``fit_batch`` (float [B,3,H,W]): its output layer, and with ``fit_steps`` > 0 every weight
    briefly trained first (:meth:`RandomDecoder.fit`)."""
    return RandomDecoder(design(family_seed, i, draw, sibling)).fit(fit_batch, steps=fit_steps).eval()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [B,3,H,W] in [0,1] (any device) -> uint8 [B,H,W,3] on the host (round to nearest, as an
    image file stores it)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()

"""An embedder followed by a reference network's vector (``Embedder.with_reference``; issue 14,
sixteenth session: a fine-tuned gallery keeps the universal network it started from, for
`unknown`): the vector is the embedder's followed by the reference's one-pass vector of the image;
the reference's config and weights are part of the embedder's bytes and identity and survive a
round trip; ``plain()`` drops it, ``with_flips`` / ``with_handcrafted`` keep it; damaged
configs and weights are refused."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from fpfast.embed.model import REFERENCE_PREFIX, EmbedError, Embedder, ResidualEmbedNet, resolve_arch
from fpfast.embed.universal import HYBRID, load_universal, shipped_embedder


def _images(n=5, side=36, seed=2):
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _other(seed=1):
    """A small plain embedder of another architecture (the reference need not share one)."""
    torch.manual_seed(seed)
    net = ResidualEmbedNet(resolve_arch(widths=[4, 8], blocks=[1, 1], dim=6))
    return Embedder(net, {"spec": load_universal().config["spec"], "training": {}})


def test_vector_is_the_embedder_s_followed_by_the_reference_s():
    hyb, ref = shipped_embedder(HYBRID).with_flips(2), _other()
    e = hyb.with_reference(ref)
    x = _images()
    v = e.embed(x, layout="hwc")
    assert e.dim == hyb.dim + ref.dim == v.shape[1] and e.reference_dim == ref.dim
    np.testing.assert_array_equal(v[:, :hyb.dim], hyb.embed(x, layout="hwc"))
    np.testing.assert_allclose(v[:, hyb.dim:], ref.embed(x, layout="hwc"), rtol=1e-6, atol=1e-7)
    assert e.spec_record()["appended"] == hyb.appended_dim + ref.dim   # everything after the network's own
    # the reference is one pass of a plain network: a flipped / appended one is taken plain
    assert hyb.with_reference(ref.with_flips(4)).identity == e.identity


def test_the_reference_is_part_of_the_bytes_and_identity():
    hyb, ref = shipped_embedder(HYBRID), _other()
    e = hyb.with_reference(ref)
    assert e.identity != hyb.identity and e.identity != hyb.with_reference(_other(seed=2)).identity
    back = Embedder.from_bytes(*e.to_bytes())
    assert back.identity == e.identity and back.reference.identity == ref.identity
    x = _images(seed=4)
    np.testing.assert_array_equal(back.embed(x, layout="hwc"), e.embed(x, layout="hwc"))
    assert e.plain().identity == hyb.plain().identity and e.plain().reference is None
    assert e.with_flips(4).reference is e.reference and e.with_flips(4).with_flips(1).identity == e.identity
    assert e.with_flips(4).dim == e.dim


def test_damaged_references_are_refused():
    hyb, ref = shipped_embedder(HYBRID), _other()
    cfg, w = hyb.with_reference(ref).to_bytes()
    sd = load(w)
    missing = save({k: v for k, v in sd.items() if not k.startswith(REFERENCE_PREFIX)})
    with pytest.raises(EmbedError, match="reference weights"):
        Embedder.from_bytes(cfg, missing)
    c = json.loads(cfg)
    c["reference"]["flips"] = 4
    with pytest.raises(EmbedError, match="plain"):
        Embedder.from_bytes(json.dumps(c).encode(), w)
    tampered = dict(sd)
    k = next(k for k in sd if k.startswith(REFERENCE_PREFIX) and sd[k].dtype == torch.float32)
    tampered[k] = sd[k] + 1e-3
    assert Embedder.from_bytes(cfg, save(tampered)).identity != Embedder.from_bytes(cfg, w).identity
    with pytest.raises(EmbedError, match="together"):
        Embedder(hyb.net, {**hyb.config, "reference": c["reference"]})
    with pytest.raises(EmbedError, match="together"):
        Embedder(hyb.net, hyb.config, ref)

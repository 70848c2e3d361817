"""An embedder's network vector averaged over mirror images (``flips``; issue 14, fifteenth session):
equal to the mean of the one-pass vectors of the flipped images (numpy flips), renormalised, with the
image's own handcrafted half; the same for an image and its mirror images; ``flips`` 1 is the plain
embedder, byte for byte; the setting is part of the config and identity, survives a round trip, and
bad values are refused."""
import json
import os

import numpy as np
import pytest
import torch

from fpfast.embed.model import EmbedError, Embedder
from fpfast.embed.universal import HYBRID, load_universal, shipped_embedder


def _images(n=6, side=40, seed=5):
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", [2, 4])
def test_vector_is_the_renormalised_mean_over_mirror_images(n):
    hyb = shipped_embedder(HYBRID)
    plain = hyb.plain()
    x = _images()
    mirrors = [lambda a: a, lambda a: a[:, :, ::-1], lambda a: a[:, ::-1], lambda a: a[:, ::-1, ::-1]][:n]
    xs = x.numpy()
    acc = sum(plain.embed(torch.from_numpy(np.ascontiguousarray(f(xs))), layout="hwc").astype(np.float64)
              for f in mirrors)
    ref = acc / np.linalg.norm(acc, axis=1, keepdims=True)
    v = hyb.with_flips(n).embed(x, layout="hwc")
    d = plain.dim
    # fp32 on CPU: the same network per mirror image; float32 rounding of the sum and its norm
    np.testing.assert_allclose(v[:, :d], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(v[:, d:], hyb.embed(x, layout="hwc")[:, d:])   # the image's own fingerprint
    # CHW input gives the same vectors
    np.testing.assert_allclose(hyb.with_flips(n).embed(x.permute(0, 3, 1, 2).contiguous(), layout="chw"), v,
                               rtol=1e-6, atol=1e-7)


def test_the_network_vector_is_the_same_for_an_image_and_its_mirror_images():
    e4, e2 = load_universal().with_flips(4), load_universal().with_flips(2)
    x = _images(seed=9)
    v4, v2 = e4.embed(x, layout="hwc"), e2.embed(x, layout="hwc")
    for dims in ((2,), (1,), (1, 2)):
        np.testing.assert_allclose(e4.embed(torch.flip(x, dims), layout="hwc"), v4, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e2.embed(torch.flip(x, (2,)), layout="hwc"), v2, rtol=1e-4, atol=1e-5)
    one = load_universal().embed(x, layout="hwc")   # and the one-pass vector is not (the test can tell)
    assert np.abs(load_universal().embed(torch.flip(x, (2,)), layout="hwc") - one).max() > 1e-3


def test_flips_are_part_of_the_config_and_identity():
    hyb = shipped_embedder(HYBRID)
    assert hyb.flips == 1
    assert hyb.with_flips(1).to_bytes() == hyb.to_bytes()   # one pass: the embedder as it was
    e4 = hyb.with_flips(4)
    assert e4.flips == 4 and e4.identity != hyb.identity and e4.identity != hyb.with_flips(2).identity
    assert e4.dim == hyb.dim and e4.spec_record()["identity"] == e4.identity
    assert e4.plain().identity == hyb.plain().identity and e4.plain().flips == 1
    assert e4.with_flips(1).identity == hyb.identity
    back = Embedder.from_bytes(*e4.to_bytes())
    assert back.identity == e4.identity and back.flips == 4 and back.appended_dim == hyb.appended_dim
    for bad in (3, 0, "4", True, 1):
        with pytest.raises(EmbedError, match="flips"):
            cfg = json.loads(e4.to_bytes()[0])
            cfg["flips"] = bad
            Embedder(e4.net, cfg)
    with pytest.raises(EmbedError, match="flips"):
        hyb.with_flips(3)


def test_enroll_flips_a_new_universal_gallery_and_refuses_what_it_cannot(tmp_path):
    from cli_helpers import MODELS, invoke, make_folders
    from fpfast.gallery import Gallery
    root = make_folders(tmp_path / "train", 6)
    r = invoke("enroll", tmp_path / "g", "--from-folders", root, "--flips", "2", "--views", "none", "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    e = g.embedder()
    assert e.flips == 2 and e.identity == shipped_embedder(HYBRID).with_flips(2).identity
    assert g.spec.embedding["identity"] == e.identity and len(g.models()) == len(MODELS)
    r = invoke("info", "--gallery", tmp_path / "g")
    assert "averaged over 2 mirror images" in r.output, r.output
    # later enrollments keep it; another count, or flips of a handcrafted gallery, are refused
    new = make_folders(tmp_path / "more", 6, seed=2)
    first = sorted(os.listdir(new))[0]
    r = invoke("enroll", tmp_path / "g", "--model", "extra", os.path.join(new, first), "-q")
    assert r.exit_code == 0 and Gallery.load(str(tmp_path / "g")).embedder().flips == 2, r.output
    r = invoke("enroll", tmp_path / "g", "--model", "extra2", os.path.join(new, first), "--flips", "4", "-q")
    assert r.exit_code == 2 and "fixed when a gallery is created" in r.output, r.output
    r = invoke("enroll", tmp_path / "h", "--model", "a", os.path.join(new, first), "--spec", "default",
               "--flips", "2", "-q")
    assert r.exit_code == 2 and "handcrafted" in r.output and not os.path.exists(tmp_path / "h" / "gallery.json"), r.output

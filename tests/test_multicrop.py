"""Multi-crop fingerprints (issue 14, any resolution): the spec knob and its id, the crop layouts,
vectors = the mean of independently computed per-crop vectors (handcrafted and learned), the
decoder keeping the whole image, and galleries refusing queries of another crop budget."""
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import fpfast

from fpfast.gallery import Gallery
from fpfast.io.decode import decode_image
from fpfast.jobs.mappers import embed_images
from fpfast.ops.features import fingerprint_features
from fpfast.prepare import crop_boxes
from fpfast.spec import FingerprintSpec, SpecError, parse_crops

from cli_helpers import invoke, make_folders


def _img(h, w, b=2, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8))


def test_spec_crops_field_id_and_checks():
    plain, four = FingerprintSpec(), FingerprintSpec(crops=parse_crops("4"))
    assert "crops" not in plain.to_dict() and plain.single_crop() is plain and plain.n_crops == 1
    assert four.id != plain.id and four.single_crop() == plain and four.n_crops == 4
    assert FingerprintSpec.from_json(four.to_json()) == four
    assert any(d.startswith("crops") for d in four.diff(plain))
    with pytest.raises(SpecError, match="crops"):
        four.require_same(plain)
    assert parse_crops("1") is None and parse_crops("4:grid") == parse_crops("4")
    assert parse_crops("4:random:1") != parse_crops("4:random:2")
    assert FingerprintSpec(crops={"n": 4, "layout": "grid", "seed": 5}) == four  # a grid draws nothing
    for bad in ("x", "4:spiral", "0", "4:random:-1:2"):
        with pytest.raises(SpecError):
            parse_crops(bad)
    with pytest.raises(SpecError, match="n"):
        FingerprintSpec(crops={"n": 1})
    with pytest.raises(SpecError, match="'crop' geometry"):
        FingerprintSpec(geometry="resize", crops={"n": 4})


@pytest.mark.parametrize("crops", ["4", "5", "9", "3:random:7"])
def test_crop_boxes_lie_inside_and_are_deterministic(crops):
    spec = FingerprintSpec(crops=parse_crops(crops))
    for h, w in ((256, 256), (97, 300), (40, 64)):
        boxes = crop_boxes(h, w, spec)
        assert len(boxes) == spec.n_crops and boxes == crop_boxes(h, w, spec)
        for t, l, ch, cw in boxes:
            assert (ch, cw) == (min(h, 64), min(w, 64)) and 0 <= t <= h - ch and 0 <= l <= w - cw
    if "random" not in crops:  # a grid covers both corners
        b = crop_boxes(256, 256, spec)
        assert b[0][:2] == (0, 0) and b[-1][:2] == (192, 192)
    else:
        assert crop_boxes(256, 256, spec) != crop_boxes(256, 256, FingerprintSpec(crops=parse_crops("3:random:8")))


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_multicrop_vector_is_the_mean_of_per_crop_vectors(backend):
    if backend == "cpp" and "feature_sums" not in fpfast.build_config().get("cpu_kernels", []):
        pytest.skip("cpp backend not built")
    spec = FingerprintSpec(crops=parse_crops("5"))
    x = _img(150, 203)
    v = fingerprint_features(x, spec, backend=backend)
    # oracle: each box cut with numpy slicing and fingerprinted on its own with the plain spec
    per = [fingerprint_features(x[:, t:t + h, l:l + w].contiguous(), FingerprintSpec(), backend="torch")
           for t, l, h, w in crop_boxes(150, 203, spec)]
    ref = torch.stack(per, 1).mean(1)
    # float32 features summed over 5 crops: the cpp backend's sums differ from torch's by ~1e-6 relative
    assert v.shape == (2, spec.dim) and torch.allclose(v, ref, rtol=1e-4, atol=1e-5)
    small = _img(40, 48)  # smaller than the crop: every crop is the whole image, the mean is the plain vector
    assert torch.allclose(fingerprint_features(small, spec, backend=backend),
                          fingerprint_features(small, FingerprintSpec(), backend=backend), rtol=1e-5, atol=1e-6)


def test_multicrop_embedding_is_the_normalised_mean_of_crop_embeddings():
    from fpfast.embed.model import Embedder, ResidualEmbedNet
    torch.manual_seed(0)
    emb = Embedder(ResidualEmbedNet({"widths": [4, 8], "blocks": [1, 1], "dim": 8}), {"spec": FingerprintSpec().to_dict()})
    spec = FingerprintSpec(crops=parse_crops("4:random:3"), embedding=emb.spec_record())
    x = _img(120, 90, b=3)
    v = embed_images(emb, x, spec)
    per = torch.stack([emb.embed_tensor(x[:, t:t + h, l:l + w], layout="hwc")
                       for t, l, h, w in crop_boxes(120, 90, spec)], 1).mean(1)
    # float32 network on the same crops: equal up to summation order
    assert torch.allclose(v, torch.nn.functional.normalize(per, dim=1), atol=1e-5)
    assert torch.allclose(v.norm(dim=1), torch.ones(3))
    # a single-crop spec takes the centre crop of an in-memory image, as the decoder does
    one = FingerprintSpec(embedding=emb.spec_record())
    t, l, h, w = crop_boxes(120, 90, one)[0]
    assert torch.allclose(embed_images(emb, x, one), emb.embed_tensor(x[:, t:t + h, l:l + w], layout="hwc"), atol=1e-6)


def test_decoder_keeps_the_whole_image_for_a_multicrop_spec():
    buf = io.BytesIO()
    Image.fromarray(_img(100, 130, b=1)[0].numpy()).save(buf, format="PNG")
    a, _ = decode_image(buf.getvalue(), FingerprintSpec(crops=parse_crops("4")))
    b, _ = decode_image(buf.getvalue(), FingerprintSpec())
    assert a.shape == (100, 130, 3) and b.shape == (64, 64, 3)


def test_multicrop_gallery_through_the_cli(tmp_path):
    root = make_folders(tmp_path / "f", 6)
    g = tmp_path / "g"
    r = invoke("enroll", g, "--from-folders", root, "--crops", "4", "-q")
    assert r.exit_code == 0, r.output
    spec = Gallery.load(str(g)).spec
    assert spec.n_crops == 4
    r = invoke("info", "--gallery", g)
    assert "crops per image: 4 (grid, mean of the vectors)" in r.output, r.output
    with pytest.raises(SpecError, match="crops"):
        Gallery.load(str(g), FingerprintSpec())  # a single-crop query spec is refused
    r = invoke("attribute", "-g", g, os.path.join(root, "alpha"), "--out", tmp_path / "a.parquet", "-q")
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq
    assert set(pq.read_table(tmp_path / "a.parquet").to_pydict()["predicted"]) == {"alpha"}
    r = invoke("enroll", g, "--model", "delta", os.path.join(root, "beta"), "--crops", "9", "-q")
    assert r.exit_code == 2 and "crops are fixed" in r.output, r.output
    r = invoke("enroll", tmp_path / "u", "--from-folders", root, "--spec", "universal", "--crops", "2:random:1", "-q")
    assert r.exit_code == 0, r.output
    s = Gallery.load(str(tmp_path / "u")).spec
    assert s.embedding is not None and s.crops == {"n": 2, "layout": "random", "seed": 1, "aggregate": "mean"}

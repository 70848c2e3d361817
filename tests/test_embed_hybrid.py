"""The universal embedding followed by the handcrafted fingerprint (issue 14, ``--spec
universal+handcrafted``): the vector is exactly the two computed apart, its identity and spec
record are its own, a plain embedder's are unchanged, multi-crop aggregation normalises only the
network's part, and a gallery of it enrolls, attributes, refuses other vectors and the anonymizer's
gradient, and, fine-tuned, keeps the handcrafted half behind its network (or, asked, the network alone)."""
import json
import os

import numpy as np
import pytest
import torch

from fpfast.embed.model import EmbedError, Embedder
from fpfast.embed.universal import HYBRID, load_universal, shipped_embedder
from fpfast.ops.features import fingerprint_features
from fpfast.prepare import aggregate_crops
from fpfast.spec import FingerprintSpec, SpecError, load_spec


def test_vector_is_the_embedding_then_the_handcrafted_fingerprint():
    plain = load_universal()
    hyb = shipped_embedder(HYBRID)
    spec = plain.handcrafted_spec()
    x = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    v = hyb.embed(x, layout="hwc")
    assert v.shape == (5, plain.dim + spec.handcrafted_dim) and hyb.dim == v.shape[1]
    assert hyb.appended_dim == spec.handcrafted_dim and plain.appended_dim == 0
    # fp32 on CPU: the same network and the same handcrafted op, so equal up to float32 rounding
    np.testing.assert_allclose(v[:, :plain.dim], plain.embed(x, layout="hwc"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v[:, plain.dim:], fingerprint_features(x, spec).numpy(), rtol=1e-5, atol=1e-6)
    assert hyb.identity != plain.identity and hyb.plain().identity == plain.identity
    assert hyb.spec_record() == {"kind": "rescnn", "identity": hyb.identity, "dim": hyb.dim,
                                 "appended": spec.handcrafted_dim}
    assert "appended" not in plain.spec_record()
    back = Embedder.from_bytes(*hyb.to_bytes())
    assert back.identity == hyb.identity and back.appended_dim == hyb.appended_dim
    cfg = json.loads(hyb.to_bytes()[0])
    cfg["append"] = "something else"
    with pytest.raises(EmbedError, match="append"):
        Embedder(hyb.net, cfg)


def test_spec_record_of_appended_dims_is_checked():
    base = load_spec("default")
    rec = {"kind": "rescnn", "identity": "a" * 64, "dim": 128}
    plain = base.replace(embedding=rec)
    hyb = base.replace(embedding={**rec, "dim": 128 + 40, "appended": 40})
    assert plain.id != hyb.id and hyb.dim == 168 and "appended" not in plain.embedding
    assert FingerprintSpec.from_dict(hyb.to_dict()) == hyb
    for bad in (0, 168, True, "40"):
        with pytest.raises(SpecError, match="appended"):
            base.replace(embedding={**rec, "dim": 168, "appended": bad})


def test_multicrop_mean_renormalises_only_the_network_part():
    spec = load_spec("default").replace(embedding={"kind": "rescnn", "identity": "a" * 64, "dim": 5, "appended": 2},
                                        crops={"n": 2})
    v = torch.tensor([[3.0, 0, 0, 10, 20], [0, 4.0, 0, 30, 40]])
    out = aggregate_crops(v, spec)
    np.testing.assert_allclose(out.numpy(), [[1.5 / 2.5, 2 / 2.5, 0, 20, 30]], rtol=1e-6)


def test_enroll_attribute_and_fine_tune_a_universal_plus_handcrafted_gallery(tmp_path):
    from cli_helpers import MODELS, invoke, make_folders
    from fpfast.gallery import Gallery
    root = make_folders(tmp_path / "train", 10)
    first, *rest = MODELS
    # one model first: LDA has nothing to separate yet, so it standardises; the next enrollment refits it
    r = invoke("enroll", tmp_path / "g", "--model", first, os.path.join(root, first), "--spec", HYBRID, "-q")
    assert r.exit_code == 0, r.output
    for m in rest:
        r = invoke("enroll", tmp_path / "g", "--model", m, os.path.join(root, m), "-q")
        assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    hyb = shipped_embedder(HYBRID)
    assert g.normalize == "lda" and g._normalizer.projection is not None
    assert g.spec.embedding == hyb.spec_record() and g.embedder().identity == hyb.identity
    assert g.spec.dim == hyb.dim and g.calibration
    test = make_folders(tmp_path / "test", 4, seed=1)
    r = invoke("attribute", test, "--gallery", tmp_path / "g", "--out", tmp_path / "a.parquet", "-q")
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "a.parquet").to_pydict()
    truth = [p.split(os.sep)[-2] for p in t["path"]]
    assert len(truth) == 4 * len(MODELS) and np.mean(np.array(t["predicted"]) == np.array(truth)) > 0.9
    from fpfast.causal.anonymize import Anonymizer
    from fpfast.errors import UsageError
    with pytest.raises(UsageError, match="universal"):  # its gradient would skip the handcrafted half
        Anonymizer(g, target=first, steps=1)
    r = invoke("info", "--gallery", tmp_path / "g")
    assert r.exit_code == 0 and f"followed by the {hyb.appended_dim}-dim handcrafted fingerprint" in r.output, r.output
    r = invoke("enroll", tmp_path / "g", "--model", "delta", os.path.join(test, first), "--spec", "universal", "-q")
    assert r.exit_code == 2 and "already holds other vectors" in r.output, r.output
    # fpfast train fine-tunes its network; the handcrafted fingerprint stays behind it, LDA
    import shutil
    shutil.copytree(tmp_path / "g", tmp_path / "gk")
    r = invoke("train", tmp_path / "gk", "--from-folders", root, "--epochs", "1", "--patch", "16", "-q")
    assert r.exit_code == 0, r.output
    gk = Gallery.load(str(tmp_path / "gk"))
    ek = gk.embedder()
    assert ek.appended_dim == hyb.appended_dim and ek.plain().identity != load_universal().identity
    assert ek.config["training"]["init"] == load_universal().identity and gk.normalize == "lda"
    # ... followed by the universal network it started from (one pass), kept for `unknown`
    uni = load_universal()
    assert ek.reference.identity == uni.identity and ek.reference_dim == uni.dim
    assert gk.spec.dim == ek.dim == hyb.dim + uni.dim and gk.calibration and gk.views
    imgs = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    np.testing.assert_allclose(ek.embed(imgs)[:, hyb.dim:], uni.embed(imgs), rtol=1e-5, atol=1e-6)
    # ... and `unknown` is decided on each model's Gaussian of the fine-tuned network's dimensions and of
    # the handcrafted fingerprint, each scaled per model (the name on the whole vector; here every model
    # has too few images for a Gaussian: their nearest samples)
    net = ek.arch["dim"]
    assert gk.openset_blocks == [(0, net, False, "gauss"), (net, hyb.dim, True, "gauss")]
    assert "openset" in gk.calibration["knn"] and set(gk.openset_scales) == {"knn", "centroid"}
    assert all(v.openset_blocks is None for v in gk.views.values())   # processed queries: the whole vector
    # ... and the network's vector of an image is averaged over its 4 mirror images
    assert ek.flips == 4 and gk.spec.embedding["identity"] == ek.identity
    r = invoke("info", "--gallery", tmp_path / "gk")
    assert ("queries that look clean: per model, the geometric mean of its distances (nearest sample, or "
            "Mahalanobis under the model's own Gaussian) in the fine-tuned network's vector (raw, "
            f"{net} dims, its own Gaussian)") in r.output, r.output
    assert "averaged over 4 mirror images" in r.output and f"then the {uni.dim}-dim vector" in r.output, r.output
    # fine-tuned again: the reference stays the universal network it first started from
    shutil.copytree(tmp_path / "gk", tmp_path / "gk2")
    r = invoke("train", tmp_path / "gk2", "--from-folders", root, "--epochs", "1", "--patch", "16", "--fine-tune", "-q")
    assert r.exit_code == 0, r.output
    e2 = Gallery.load(str(tmp_path / "gk2")).embedder()
    assert e2.reference.identity == uni.identity and e2.config["training"]["init"] == ek.plain().identity
    # a new model enrolled with the frozen embedding joins the open-set space (its scale: the pooled one)
    new = make_folders(tmp_path / "new", 10, seed=2)
    r = invoke("enroll", tmp_path / "gk", "--model", "newcomer", os.path.join(new, first), "-q")
    assert r.exit_code == 0, r.output
    gk = Gallery.load(str(tmp_path / "gk"))
    assert "newcomer" in gk.models() and "newcomer" not in gk.openset_scales["knn"]["per_model"]
    assert np.isfinite(gk.stat_distances(gk._vectors[:3], openset=True)).all()
    shutil.copytree(tmp_path / "g", tmp_path / "gn")
    r = invoke("train", tmp_path / "gn", "--from-folders", root, "--epochs", "1", "--patch", "16",
               "--open-set-from", "network", "-q")
    assert r.exit_code == 0, r.output
    gn = Gallery.load(str(tmp_path / "gn"))
    assert gn.openset_blocks == [(0, net, False)] and gn.embedder().reference is None and gn.spec.dim == hyb.dim
    r = invoke("info", "--gallery", tmp_path / "gn")
    assert f"queries that look clean: the first {net} dimensions" in r.output, r.output
    shutil.copytree(tmp_path / "g", tmp_path / "ge")   # the sixteenth session's three spaces, nearest samples
    r = invoke("train", tmp_path / "ge", "--from-folders", root, "--epochs", "1", "--patch", "16",
               "--open-set-from", "ensemble", "-q")
    assert r.exit_code == 0, r.output
    ge = Gallery.load(str(tmp_path / "ge"))
    assert ge.openset_blocks == [(0, net, False), (net, hyb.dim, True), (hyb.dim, ek.dim, False)]
    assert ge.embedder().identity == ek.identity
    shutil.copytree(tmp_path / "g", tmp_path / "gv")
    r = invoke("train", tmp_path / "gv", "--from-folders", root, "--epochs", "1", "--patch", "16",
               "--open-set-from", "vector", "--flips", "1", "-q")
    assert r.exit_code == 0, r.output
    gv = Gallery.load(str(tmp_path / "gv"))
    assert gv.openset_blocks is None and "openset" not in gv.calibration["knn"]
    # the same training: only the open-set space, the reference network and the mirror images differ
    assert gv.embedder().flips == 1 and gv.embedder().identity == gn.embedder().with_flips(1).identity
    # --network-alone: the fine-tuned network's vectors alone
    r = invoke("train", tmp_path / "g", "--from-folders", root, "--epochs", "1", "--patch", "16", "--network-alone",
               "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    emb = g.embedder()
    assert emb.config["training"]["init"] == load_universal().identity and emb.arch == load_universal().arch
    assert emb.appended_dim == 0 and g.spec.dim == emb.dim == load_universal().dim and g.normalize == "none"
    assert g.openset_blocks is None and emb.flips == 1 and emb.reference is None
    r = invoke("train", tmp_path / "g", "--from-folders", root, "--epochs", "1", "--fine-tune", "--keep-handcrafted")
    assert r.exit_code == 2 and "--keep-handcrafted" in r.output, r.output

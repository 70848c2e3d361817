"""Learned embedding (fpfast.embed): training, determinism, gallery storage and integrity.

Synthetic up-sampling classes (tests/_embed_synth.py); everything runs on CPU in seconds and
nothing is downloaded.
"""
import os

import numpy as np
import pytest
import torch

from _embed_synth import FAST, SIZE, SPEC, TINY, save_folders
from fpfast.embed import Embedder, train_embedding
from fpfast.gallery import Gallery, GalleryError
from fpfast.gallery.conditions import COPIES, is_copy
from fpfast.spec import FingerprintSpec, SpecError
from fpfast.jobs import collect, enroll, mappers, train
from fpfast.jobs.options import StreamOptions


def _knn_acc(emb: Embedder, train, test) -> float:
    g = emb.embed(torch.from_numpy(np.stack(train[0])))
    q = emb.embed(torch.from_numpy(np.stack(test[0])))
    pred = np.array(train[1])[(q @ g.T).argmax(1)]
    return float((pred == np.array(test[1])).mean())


def test_training_learns_upsampling_traces(embed_data, embed_trained):
    emb, log = embed_trained
    assert len(log) == FAST["epochs"] and log[-1]["loss"] < log[0]["loss"]
    z = emb.embed(torch.from_numpy(np.stack(embed_data[1][0])))
    assert z.shape == (30, 16) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)  # unit vectors
    assert _knn_acc(emb, *embed_data) >= 0.8  # chance is 1/3


def test_training_is_deterministic_for_a_seed(embed_data, embed_trained):
    (x, y), _ = embed_data
    torch.set_num_threads(1)
    again, log = train_embedding(x, y, SPEC, arch=TINY, seed=3, **FAST)
    assert again.identity == embed_trained[0].identity
    assert [r["loss"] for r in log] == [r["loss"] for r in embed_trained[1]]
    other, _ = train_embedding(x, y, SPEC, arch=TINY, seed=4, **{**FAST, "epochs": 1})
    assert other.identity != again.identity


def test_augmentations_and_handcrafted_head_run(embed_data):
    (x, y), _ = embed_data
    emb, log = train_embedding(x, y, SPEC, arch=TINY, handcrafted=True, seed=0,
                               **{**FAST, "epochs": 2, "p_jpeg": 1.0, "p_rescale": 1.0})
    assert emb.arch["handcrafted_dim"] == SPEC.dim and np.isfinite(log[-1]["loss"])
    z = emb.embed(torch.from_numpy(np.stack(x[:5])))
    assert z.shape == (5, 16) and np.isfinite(z).all()
    back = Embedder.from_bytes(*emb.to_bytes())
    np.testing.assert_array_equal(back.embed(torch.from_numpy(np.stack(x[:5]))), z)


def test_spec_records_embedding_identity(embed_trained):
    emb = embed_trained[0]
    spec = SPEC.replace(embedding=emb.spec_record())
    assert spec.dim == 16 and spec.handcrafted() == SPEC and spec != SPEC and spec.id != SPEC.id
    assert FingerprintSpec.from_json(spec.to_json()) == spec
    assert "embedding" not in SPEC.to_dict()  # handcrafted specs keep their old JSON and id
    with pytest.raises(SpecError, match="embedding"):
        spec.require_same(SPEC)
    with pytest.raises(SpecError, match="identity"):
        SPEC.replace(embedding={"kind": "rescnn", "identity": "x", "dim": 16})
    from fpfast.ops.features import fingerprint_features
    with pytest.raises(ValueError, match="learned embedding"):
        fingerprint_features(torch.zeros(1, SIZE, SIZE, 3, dtype=torch.uint8), spec)


def _embedding_gallery(tmp_path, emb, embed_data):
    (x, y), _ = embed_data
    g = Gallery.create(str(tmp_path / "g"), SPEC, normalize="none").with_embedding(emb)
    z = emb.embed(torch.from_numpy(np.stack(x)))
    for m in sorted(set(y)):
        sel = [i for i, v in enumerate(y) if v == m]
        g.add(m, z[sel[:-4]], [f"{m}/{i}" for i in sel[:-4]])
        g.add_holdout(m, z[sel[-4:]])
    g.fit()
    g.recalibrate(0.1, min_per_model=2)
    g.save()
    return g


def test_gallery_with_embedding_saves_loads_and_answers_identically(tmp_path, embed_trained, embed_data):
    emb = embed_trained[0]
    g = _embedding_gallery(tmp_path, emb, embed_data)
    assert g.spec.embedding["identity"] == emb.identity
    q = emb.embed(torch.from_numpy(np.stack(embed_data[1][0])))
    a1 = g.attribute(q, k=5)
    g2 = Gallery.load(g.path)
    assert g2.spec == g.spec and g2.embedder().identity == emb.identity
    q2 = g2.embedder().embed(torch.from_numpy(np.stack(embed_data[1][0])))
    np.testing.assert_array_equal(q2, q)
    a2 = g2.attribute(q2, k=5)
    assert list(a1.model) == list(a2.model) and list(a1.predicted) == list(a2.predicted)
    np.testing.assert_array_equal(a1.distance, a2.distance)
    assert np.mean(np.array(a2.predicted) == np.array(embed_data[1][1])) >= 0.8
    # a handcrafted vector or the other spec is refused, not silently compared
    with pytest.raises(ValueError, match=r"\[B, 16\]|\[Q, 16\]"):
        g2.search(np.zeros((1, SPEC.dim), np.float32))
    with pytest.raises(SpecError):
        Gallery.load(g.path, SPEC)
    with pytest.raises(ValueError, match="learned embedding"):
        mappers.vector_mapper(g2.spec, StreamOptions(device="cpu"))


def test_altered_embedding_weights_are_refused(tmp_path, embed_trained, embed_data):
    g = _embedding_gallery(tmp_path, embed_trained[0], embed_data)
    p = os.path.join(g.path, "embedding.safetensors")
    raw = bytearray(open(p, "rb").read())
    raw[-3] ^= 0x40  # one weight changed, same size
    open(p, "wb").write(bytes(raw))
    for verify in (True, False):
        with pytest.raises(GalleryError, match="hash mismatch"):
            Gallery.load(g.path, verify=verify)


def test_train_gallery_from_folders_then_attribute(tmp_path, embed_data):
    (x, y), (xt, yt) = embed_data
    root = tmp_path / "train"
    save_folders(root, x, y)
    opts = StreamOptions(device="cpu", quiet=True)
    g = enroll.open_or_create(str(tmp_path / "g"), SPEC, "standardize", "flat")
    for m, folder in enroll.model_folders(str(root)).items():
        enroll.enroll(g, m, collect.fingerprint_sources([folder], g.spec, opts))
    enroll.finish_enrollment(g, None, 0.1)
    torch.set_num_threads(1)
    g2, info = train.train_gallery(g, str(root), opts, arch=TINY, calibrate_on="clean", **{**FAST, "epochs": 4})
    held = sum(g2.holdout_counts().values())
    assert info["trained_on"] < len(x) and len(g2) + held == len(x) and info["calibrated"]
    thr_clean = g2.calibration["knn"]
    g2, _ = train.train_gallery(g, str(root), opts, arch=TINY, **{**FAST, "epochs": 4})  # augmented: the default
    # each held-out image with its processed copies (the 0.5x one of a 24-px image is under the 16-px minimum)
    assert sum(g2.holdout_counts().values()) == held * len(COPIES) and x[0].shape[0] == 24
    assert sum(is_copy(k) for k in g2.hold_keys) == held * (len(COPIES) - 1)
    assert g2.calibration["knn"] != thr_clean
    g3 = Gallery.load(g2.path)
    assert g3.spec.embedding["identity"] == info["identity"] and g3.normalize == "none"
    fp = collect.gallery_fingerprints(g3, [str(root / "m0")], opts)
    assert fp.vectors.shape == (24, 16)
    cols = mappers.attribute_mapper(g3, opts, k=3)(torch.from_numpy(np.stack(xt[:4])), list("abcd"))
    assert len(cols["predicted"]) == 4 and set(cols["predicted"]) <= {"m0", "m1", "m2"}
    # the condition detector of a plain embedding reads the handcrafted vectors kept beside it,
    # saved with the held-out samples; the stream computes them for each query
    assert g3.calibration["knn"]["detector"]["input"] == "handcrafted"
    assert os.path.exists(os.path.join(g3.path, "holdout_condition.npy"))
    assert set(cols["condition"]) <= {"clean", "processed"} and len(cols["condition"]) == 4
    assert g3.attribute(fp.vectors[:3]).condition is None    # without them: the pooled thresholds
    hand = collect.fingerprint_sources([str(root / "m0")], SPEC, opts).vectors
    assert g3.attribute(fp.vectors, condition=hand).condition.count("clean") > len(hand) // 2
    # a gallery from before (no holdout_condition.npy) loads, and recalibrates without a detector
    import json
    meta_p = os.path.join(g3.path, "gallery.json")
    meta = json.load(open(meta_p))
    del meta["files"]["holdout_condition.npy"]
    json.dump(meta, open(meta_p, "w"))
    os.remove(os.path.join(g3.path, "holdout_condition.npy"))
    old = Gallery.load(g3.path)
    assert "detector" not in old.recalibrate()["knn"] and old.attribute(fp.vectors, condition=hand).condition is None


def test_cli_enroll_train_attribute(tmp_path, embed_data):
    from click.testing import CliRunner
    from PIL import Image
    from fpfast.cli import cli
    (x, y), (xt, yt) = embed_data
    root, q = tmp_path / "train", tmp_path / "q"
    q.mkdir()
    save_folders(root, x, y)
    for i, img in enumerate(xt[::10]):
        Image.fromarray(img).save(q / f"{i}.png")
    g = str(tmp_path / "g")
    r = CliRunner()
    common = ["--device", "cpu", "-q"]
    res = r.invoke(cli, ["enroll", g, "--from-folders", str(root), "--spec", SPEC.to_json()] + common)
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["train", g, "--from-folders", str(root), "--epochs", "1", "--dim", "16"] + common)
    assert res.exit_code == 0, res.output
    assert "embedding" in res.output and Gallery.load(g).spec.dim == 16
    out = str(tmp_path / "rows.csv")
    res = r.invoke(cli, ["attribute", str(q), "--gallery", g, "--out", out, "-k", "3"] + common)
    assert res.exit_code == 0, res.output
    assert len(open(out).read().strip().splitlines()) == 1 + len(xt[::10])
    res = r.invoke(cli, ["search", str(q / "0.png"), "--gallery", g, "-k", "2"] + common)
    assert res.exit_code == 0 and "models:" in res.output, res.output


def test_automatic_epoch_count():
    from fpfast.embed.train import AUTO_EPOCHS, auto_epochs
    assert auto_epochs(40) == 100  # 4000 steps
    assert auto_epochs(1) == AUTO_EPOCHS[1] and auto_epochs(10_000) == AUTO_EPOCHS[0]


def test_patch_training_refuses_handcrafted_features(embed_data):
    from fpfast.embed import EmbedError
    (x, y), _ = embed_data
    with pytest.raises(EmbedError, match="patch"):
        train_embedding(x, y, SPEC, arch=TINY, handcrafted=True, patch=16, epochs=1)
    emb, _ = train_embedding(x, y, SPEC, arch=TINY, patch=16, epochs=1, batch_size=24)
    assert emb.embed(torch.from_numpy(np.stack(x[:2]))).shape == (2, TINY["dim"])  # whole 24-px images

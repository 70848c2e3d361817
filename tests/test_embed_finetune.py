"""Enrolling a new model into an embedding gallery: frozen (few-shot) and fine-tuned."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from _embed_synth import FAST, SPEC, TINY, make, save_folders
from fpfast.embed import EmbedError, train_embedding
from fpfast.gallery import Gallery


def _gallery(tmp_path, emb, x, y) -> Gallery:
    g = Gallery.create(str(tmp_path / "g"), SPEC, normalize="none").with_embedding(emb)
    z = emb.embed(torch.from_numpy(np.stack(x)))
    for m in sorted(set(y)):
        g.add(m, z[[i for i, v in enumerate(y) if v == m]])
    g.fit()
    return g


def test_few_shot_enrollment_with_the_frozen_embedding(tmp_path, embed_trained, embed_data):
    """Ten samples of a model the embedding never saw are enough to attribute it, and the old
    models keep their answers: the embedding (and every enrolled vector) is unchanged."""
    emb = embed_trained[0]
    (x, y), (xt, yt) = embed_data
    g = _gallery(tmp_path, emb, x, y)
    before = g.attribute(emb.embed(torch.from_numpy(np.stack(xt)))).predicted
    nx, ny = make(10, 7, classes=(3,))
    g.add("m3", emb.embed(torch.from_numpy(np.stack(nx))))
    g.fit()
    assert g.embedder().identity == emb.identity
    qx, qy = make(10, 8, classes=(3,))
    got = g.attribute(emb.embed(torch.from_numpy(np.stack(qx))), k=5).predicted
    assert np.mean(np.array(got) == "m3") >= 0.8, got  # 4 models: chance is 1/4
    after = g.attribute(emb.embed(torch.from_numpy(np.stack(xt)))).predicted
    assert np.mean(np.array(after) == np.array(before)) >= 0.9


def test_fine_tune_starts_from_the_embedding(embed_trained, embed_data):
    emb = embed_trained[0]
    (x, y), _ = embed_data
    nx, ny = make(10, 7, classes=(3,))
    xs, ys = list(x) + nx, list(y) + ny
    torch.set_num_threads(1)
    opts = {**FAST, "epochs": 1, "lr": 1e-4}
    tuned, log = train_embedding(xs, ys, SPEC, init=emb, seed=0, **opts)
    fresh, log0 = train_embedding(xs, ys, SPEC, arch=TINY, seed=0, **opts)
    assert tuned.arch == emb.arch and tuned.identity != emb.identity
    assert json.loads(tuned.to_bytes()[0])["training"]["init"] == emb.identity
    # warm start: the first epoch's loss is far below a fresh network's (random head, random weights)
    assert log[0]["loss"] < 0.7 * log0[0]["loss"], (log, log0)
    again, _ = train_embedding(xs, ys, SPEC, init=emb, seed=0, **opts)
    assert again.identity == tuned.identity  # deterministic for a seed
    with pytest.raises(EmbedError, match="architecture"):
        train_embedding(xs, ys, SPEC, init=emb, arch={"dim": 8}, **opts)
    with pytest.raises(EmbedError, match="handcrafted"):
        train_embedding(xs, ys, SPEC, init=emb, handcrafted=True, **opts)


def test_cli_enroll_new_model_then_fine_tune(tmp_path, embed_data):
    from click.testing import CliRunner
    from fpfast.cli import cli
    (x, y), _ = embed_data
    root = tmp_path / "train"
    save_folders(root, x, y)
    g, common, r = str(tmp_path / "g"), ["--device", "cpu", "-q"], CliRunner()
    res = r.invoke(cli, ["train", g, "--from-folders", str(root), "--fine-tune"] + common)
    assert res.exit_code == 2 and "does not exist" in res.output, res.output  # no gallery yet
    assert r.invoke(cli, ["enroll", g, "--from-folders", str(root), "--spec", SPEC.to_json()] + common).exit_code == 0
    res = r.invoke(cli, ["train", g, "--from-folders", str(root), "--fine-tune"] + common)
    assert res.exit_code == 2 and "already has a learned embedding" in res.output, res.output
    res = r.invoke(cli, ["train", g, "--from-folders", str(root), "--epochs", "1", "--dim", "16", "--patch", "16"] + common)
    assert res.exit_code == 0, res.output
    first = Gallery.load(g).spec.embedding["identity"]
    nx, ny = make(12, 7, classes=(3,))
    save_folders(root, nx, ny)  # the new model's folder joins the others
    res = r.invoke(cli, ["enroll", g, "--model", "m3", str(root / "m3")] + common)
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    few = str(tmp_path / "g_few")
    shutil.copytree(g, few)
    res = r.invoke(cli, ["enroll", few, "--model", "m3_few", str(root / "m3" / "000.png"),
                         str(root / "m3" / "001.png")] + common)
    assert res.exit_code == 0 and "fewer than 10" in res.output, res.output
    g1 = Gallery.load(g)
    assert g1.spec.embedding["identity"] == first and "m3" in g1.models()  # frozen embedding
    res = r.invoke(cli, ["train", g, "--from-folders", str(root), "--fine-tune", "--epochs", "1",
                         "--lr", "1e-4"] + common)
    assert res.exit_code == 0, res.output
    g2 = Gallery.load(g)
    assert g2.spec.embedding["identity"] != first and g2.spec.dim == 16
    assert sorted(g2.models()) == ["m0", "m1", "m2", "m3"]
    # the same in one step from enroll: a fifth model, then fine-tuning on all folders
    nx, _ = make(12, 9, classes=(3,))
    save_folders(root, nx, ["m4"] * len(nx))
    res = r.invoke(cli, ["enroll", g, "--model", "m4", str(root / "m4"), "--epochs", "2"] + common)
    assert res.exit_code == 2 and "--fine-tune-from" in res.output, res.output  # --epochs alone trains nothing
    res = r.invoke(cli, ["enroll", g, "--model", "m4", str(root / "m4"), "--fine-tune-from", str(root),
                         "--epochs", "2"] + common)
    assert res.exit_code == 0 and "fine-tuned" in res.output, res.output
    g3 = Gallery.load(g)
    assert g3.embedder().config["training"]["epochs"] == 2
    assert g3.spec.embedding["identity"] != g2.spec.embedding["identity"] and "m4" in g3.models()
    hand = str(tmp_path / "hand")  # a handcrafted gallery has nothing to fine-tune: refused, nothing left
    res = r.invoke(cli, ["enroll", hand, "--model", "m4", str(root / "m4"), "--fine-tune-from", str(root),
                         "--spec", "default"] + common)
    assert res.exit_code == 2 and "learned embedding" in res.output and not os.path.exists(hand), res.output
    res = r.invoke(cli, ["info", "--gallery", g])
    assert res.exit_code == 0 and "learned embedding" in res.output and "fine-tuned from" in res.output, res.output
    assert "m3 " in res.output

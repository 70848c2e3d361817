"""Pretraining on random decoders (issue 14): determinism, the card and its identity check, the
shipped weights (load, identity, size, above chance on held-out random decoders), enrolling with
the universal embedding by default."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from fpfast.embed.pretrain import (DEFAULT_PRETRAIN, HELDOUT_BASE, heldout_eval, photo_bank, pretrain,
                                   pretrain_embedding)
from fpfast.embed.synth import ACTIVATIONS, NORMALIZATIONS, design, make_decoder, sibling_changes
from fpfast.embed.universal import CARD, SHIPPED_DIR, WEIGHTS, load_card, load_universal
from fpfast.embed.model import EmbedError

TINY = dict(steps=3, classes=6, batch_classes=3, per_class=2, crop=32, patch=16, bank=24, heldout=4,
            heldout_enroll=3, heldout_query=2)


def test_decoders_are_a_pure_function_of_family_seed_and_id():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert design(0, 5) == design(0, 5) and design(0, 5) != design(1, 5)
    a, b = make_decoder(0, 5, x[:2])(x[2:]), make_decoder(0, 5, x[:2])(x[2:])
    assert torch.equal(a, b) and a.shape == x[2:].shape and 0 <= float(a.min()) <= float(a.max()) <= 1
    assert not torch.equal(a, make_decoder(0, 6, x[:2])(x[2:]))
    with pytest.raises(ValueError, match="real class"):
        design(0, 0)


def test_briefly_fitted_decoders_are_deterministic_and_trained():
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    raw, fit = make_decoder(0, 5, x[:4]), make_decoder(0, 5, x[:4], fit_steps=5)
    again = make_decoder(0, 5, x[:4], fit_steps=5)
    assert all(torch.equal(p, q) for p, q in zip(fit.parameters(), again.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(raw.parameters(), fit.parameters()))  # weights moved
    assert not any(p.requires_grad for p in fit.parameters())
    assert torch.equal(fit(x[4:]), again(x[4:]))


def test_decoder_fit_steps_is_recorded_only_when_used():
    e0, _, _ = pretrain_embedding(seed=0, **TINY)
    e1, _, _ = pretrain_embedding(seed=0, decoder_fit_steps=2, **TINY)
    assert "decoder_fit_steps" not in e0.config["training"]  # recipes from before the option keep their identity
    assert e1.config["training"]["decoder_fit_steps"] == 2 and e1.identity != e0.identity


def test_weight_draws_keep_the_architecture_and_change_the_weights():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    d0, d1 = design(0, 5), design(0, 5, draw=1)
    assert {k: v for k, v in d0.items() if k != "weight_seed"} == {k: v for k, v in d1.items() if k != "weight_seed"}
    assert d0["weight_seed"] != d1["weight_seed"] and design(0, 5, draw=1) == d1 and design(0, 5, draw=0) == d0
    assert not torch.equal(make_decoder(0, 5, x[:2])(x[2:]), make_decoder(0, 5, x[:2], draw=1)(x[2:]))


def test_weight_draws_are_recorded_only_when_used_and_deterministic():
    e0, _, v0 = pretrain_embedding(seed=0, **TINY)
    e1, _, v1 = pretrain_embedding(seed=0, weight_draws=3, **TINY)
    e2, _, v2 = pretrain_embedding(seed=0, weight_draws=3, **TINY)
    assert "weight_draws" not in e0.config["training"]  # recipes from before the option keep their identity
    assert e1.config["training"]["weight_draws"] == 3 and e1.identity != e0.identity
    assert e1.identity == e2.identity and v1 == v2
    with pytest.raises(EmbedError, match="weight_draws"):
        pretrain_embedding(seed=0, weight_draws=0, **TINY)


def test_siblings_change_one_design_choice_and_keep_the_weights():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for i in range(1, 40):
        d = design(0, i)
        changes = sibling_changes(0, i, d)
        assert len(changes) >= len(ACTIVATIONS) - 1 + len(NORMALIZATIONS) - 1 and len(set(changes)) == len(changes)
        for s, (knob, value) in enumerate(changes[:4], 1):
            sib = design(0, i, sibling=s)
            assert {k for k in d if d[k] != sib[k]} == {knob} and sib[knob] == value
            if knob == "up":  # among interpolations, or among transposed convolutions: the same weights' shapes
                assert {d["up"], value} <= {"nearest", "bilinear", "bicubic"} or {d["up"], value} <= {"tconv3", "tconv4"}
        assert design(0, i, draw=1, sibling=1)["weight_seed"] == design(0, i, draw=1)["weight_seed"]
    with pytest.raises(ValueError, match="siblings"):
        design(0, 5, sibling=99)
    a, b = make_decoder(0, 5, x[:2])(x[2:]), make_decoder(0, 5, x[:2], sibling=1)(x[2:])
    assert a.shape == b.shape and not torch.equal(a, b)


def test_sibling_classes_come_in_whole_groups_and_are_recorded_only_when_used():
    from fpfast.embed.pretrain import class_decoder, draw_classes
    rng = np.random.default_rng(0)
    for _ in range(20):
        cls = draw_classes(rng, 10, 6, 3)   # decoders 1..3 with siblings 0..2 (the third: one class), real 0
        assert len(set(cls.tolist())) == 6 and cls.max() < 10
        groups: dict = {}   # decoder -> its siblings drawn, in the order the decoders come
        for i, sib in (class_decoder(int(c), 3) for c in cls):
            groups.setdefault(i, []).append(sib)
        # every decoder drawn with all its siblings, in order; only the last group may be cut by the batch size
        *whole, last = groups.items()
        assert all(sibs == ([0] if i == 0 else [0, 1, 2]) for i, sibs in whole), groups
        assert last[1] == ([0] if last[0] == 0 else [0, 1, 2][:len(last[1])]), groups
    assert [class_decoder(c, 3) for c in (0, 1, 2, 3, 4)] == [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert class_decoder(7, 1) == (7, 0)
    e0, _, _ = pretrain_embedding(seed=0, **TINY)
    e1, _, v1 = pretrain_embedding(seed=0, siblings=3, **TINY)
    e2, _, v2 = pretrain_embedding(seed=0, siblings=3, **TINY)
    assert "siblings" not in e0.config["training"] and e1.config["training"]["siblings"] == 3
    assert e1.identity != e0.identity and e1.identity == e2.identity and v1 == v2 and 0 <= v1["auroc_siblings"] <= 1
    with pytest.raises(EmbedError, match="siblings"):
        pretrain_embedding(seed=0, siblings=4, **TINY)   # more than batch_classes (3)


class _CodedPool:
    """A stand-in for the decoder pool: decoder ``i`` (draw ``draw``) paints every pixel with a code
    of its architecture (and of its draw, with ``by_draw``), which :class:`_CodeEmbedder` reads."""

    def __init__(self, by_draw, by_sibling=False):
        self.by_draw, self.by_sibling = by_draw, by_sibling

    def __call__(self, *args, **kw):
        return self

    def generate(self, i, x, draw=0, sibling=0):
        code = 10 * (i - HELDOUT_BASE + 1) + (5 * draw if self.by_draw else 0) + (3 * sibling if self.by_sibling else 0)
        return torch.full_like(x, code / 255.0)


class _CodeEmbedder:
    """One-hot of an image's mean pixel value: the same code, the same vector; another, orthogonal."""

    def embed(self, x, layout="hwc"):
        codes = torch.as_tensor(x).float().mean((1, 2, 3)).round().long()
        return torch.nn.functional.one_hot(codes, 256).float().numpy()


def test_heldout_new_weights_are_other_draws_of_the_enrolled_architectures(monkeypatch):
    """acc_new_weights queries draw 1 of each known architecture against the centroids of draw 0:
    an embedding that sees only the architecture names all of them (1.0); one that tells the
    draws apart names none but by its tie rule (the first centroid: 1 / known)."""
    import fpfast.embed.pretrain as pt
    opts = {**DEFAULT_PRETRAIN, "seed": 0, "patch": 16, "crop": 16, "heldout": 8, "heldout_enroll": 3,
            "heldout_query": 2}
    bank = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for by_draw, expect in ((False, 1.0), (True, 1 / 4)):
        monkeypatch.setattr(pt, "DecoderPool", _CodedPool(by_draw))
        ev = heldout_eval(_CodeEmbedder(), opts, bank)
        assert ev["known"] == 4 and ev["acc_clean"] == 1.0 and ev["auroc"] == 1.0
        assert ev["acc_new_weights"] == expect, (by_draw, ev)
        assert ev["auroc_siblings"] == 0.5   # a sibling paints its decoder's code: no embedding tells them apart
    monkeypatch.setattr(pt, "DecoderPool", _CodedPool(False, by_sibling=True))
    assert heldout_eval(_CodeEmbedder(), opts, bank)["auroc_siblings"] == 1.0   # siblings far from every centroid


def test_pretraining_is_deterministic_for_a_seed():
    e1, h1, v1 = pretrain_embedding(seed=0, **TINY)
    e2, h2, v2 = pretrain_embedding(seed=0, **TINY)
    e3, _, _ = pretrain_embedding(seed=1, **TINY)
    assert e1.identity == e2.identity and v1 == v2 and h1[-1]["loss"] == h2[-1]["loss"]
    assert e3.identity != e1.identity
    with pytest.raises(EmbedError, match="unknown objective"):
        pretrain_embedding(objective="triplet", **TINY)


@pytest.mark.parametrize("objective", ["arcface", "cosface"])
def test_other_objectives_train(objective):
    _, hist, ev = pretrain_embedding(objective=objective, **TINY)
    assert np.isfinite(hist[-1]["loss"]) and 0 <= ev["acc_clean"] <= 1


def test_pretrain_card_and_tampering(tmp_path):
    out = tmp_path / "u"
    card = pretrain(str(out), command="test", **TINY)
    emb, card2 = load_card(out)
    assert emb.identity == card["identity"] == card2["identity"] and card2["steps"] == TINY["steps"]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    w = bytearray((bad / WEIGHTS).read_bytes())
    w[-5] ^= 0xFF  # one flipped bit-pattern in the last tensor's data
    (bad / WEIGHTS).write_bytes(bytes(w))
    with pytest.raises(EmbedError, match="does not match its card"):
        load_card(bad)
    shutil.copy(out / WEIGHTS, bad / WEIGHTS)
    c = json.loads((bad / CARD).read_text())
    c["config"]["training"]["steps"] = 999  # the config is part of the identity too
    (bad / CARD).write_text(json.dumps(c))
    with pytest.raises(EmbedError, match="does not match its card"):
        load_card(bad)
    os.remove(bad / WEIGHTS)
    with pytest.raises(EmbedError, match="missing"):
        load_card(bad)
    with pytest.raises(EmbedError, match="other files"):
        pretrain(str(tmp_path), **TINY)  # a directory holding other files is not written into


def test_enroll_takes_a_pretrained_universal_embedding_from_its_folder(tmp_path):
    """`fpfast enroll --universal DIR`: a `fpfast pretrain` output instead of the shipped weights,
    checked against its card; refused for other specs, existing galleries and tampered folders."""
    from cli_helpers import invoke, make_folders
    from fpfast.gallery import Gallery
    out = tmp_path / "mine"
    card = pretrain(str(out), command="test", **TINY)
    root = make_folders(tmp_path / "train", 10)
    r = invoke("enroll", tmp_path / "g", "--from-folders", root, "--universal", out, "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    assert g.embedder().identity == load_card(out)[0].with_handcrafted().identity != load_universal().with_handcrafted().identity
    assert g.spec.embedding["identity"] == g.embedder().identity and card["identity"] != load_universal().identity
    r = invoke("enroll", tmp_path / "u", "--from-folders", root, "--spec", "universal", "--universal", out, "-q")
    assert r.exit_code == 0 and Gallery.load(str(tmp_path / "u")).embedder().identity == card["identity"], r.output
    for args, why in (([tmp_path / "h", "--from-folders", root, "--spec", "default"], "--spec universal"),
                      ([tmp_path / "g", "--model", "x", os.path.join(root, "alpha")], "already has its vectors")):
        r = invoke("enroll", *args, "--universal", out, "-q")
        assert r.exit_code == 2 and why in r.output, r.output
    w = bytearray((out / WEIGHTS).read_bytes())
    w[-5] ^= 0xFF
    (out / WEIGHTS).write_bytes(bytes(w))
    r = invoke("enroll", tmp_path / "t", "--from-folders", root, "--universal", out, "-q")
    assert r.exit_code == 2 and "does not match its card" in r.output and "Traceback" not in r.output, r.output
    assert not os.path.exists(tmp_path / "t" / "gallery.json")


def test_shipped_weights_load_and_beat_chance_on_heldout_decoders():
    assert os.path.getsize(SHIPPED_DIR / WEIGHTS) <= 5 * 2 ** 20
    emb, card = load_card()
    assert emb.identity == card["identity"] and load_universal() is load_universal()
    for k in ("recipe", "seed", "steps", "data", "date", "command", "seconds", "heldout"):
        assert k in card, k
    # re-measure on held-out random decoders (ids never drawn in training): the card's figures again
    opts = {**DEFAULT_PRETRAIN, **{k: v for k, v in card["config"]["training"].items() if k in DEFAULT_PRETRAIN}}
    ev = heldout_eval(emb, opts, photo_bank(opts["bank"], opts["crop"], opts["seed"]))
    assert set(ev) == set(card["heldout"]) and ev == pytest.approx(card["heldout"], abs=1e-6)
    assert ev["acc_clean"] >= 2 * ev["chance"], ev


def test_enroll_with_the_universal_embedding_needs_no_training(tmp_path):
    from cli_helpers import invoke, make_folders
    from fpfast.gallery import Gallery
    root = make_folders(tmp_path / "train", 10)
    r = invoke("enroll", tmp_path / "g", "--from-folders", root, "--spec", "universal", "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    assert g.spec.embedding["identity"] == load_universal().identity and g.embedder().identity == load_universal().identity
    test = make_folders(tmp_path / "test", 4, seed=1)  # other images of the same three "models"
    r = invoke("attribute", test, "--gallery", tmp_path / "g", "--out", tmp_path / "a.parquet", "-q")
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "a.parquet").to_pydict()
    truth = [p.split(os.sep)[-2] for p in t["path"]]
    assert len(truth) == 12 and np.mean(np.array(t["predicted"]) == np.array(truth)) > 0.9
    r = invoke("enroll", tmp_path / "u", "--model", "delta", os.path.join(test, "alpha"), "--spec", "universal", "-q")
    assert r.exit_code == 0 and Gallery.load(str(tmp_path / "u")).spec.embedding == g.spec.embedding, r.output
    for name in ("default", "handcrafted"):  # the speed mode: the handcrafted fingerprint alone
        r = invoke("enroll", tmp_path / name, "--from-folders", root, "--spec", name, "-q")
        assert r.exit_code == 0 and Gallery.load(str(tmp_path / name)).spec.embedding is None, r.output
    r = invoke("enroll", tmp_path / "default", "--model", "delta", os.path.join(test, "alpha"), "--spec", "universal",
               "-q")
    assert r.exit_code == 2 and "already holds other vectors" in r.output, r.output
    r = invoke("info", "--gallery", tmp_path / "g")
    assert "universal" in r.output, r.output
    # fpfast train on a universal gallery fine-tunes the pretrained weights (keeps the architecture)
    r = invoke("train", tmp_path / "g", "--from-folders", root, "--epochs", "1", "--patch", "16", "-q")
    assert r.exit_code == 0, r.output
    emb = Gallery.load(str(tmp_path / "g")).embedder()
    assert emb.config["training"]["init"] == load_universal().identity and emb.arch == load_universal().arch
    r = invoke("train", tmp_path / "g", "--from-folders", root, "--fine-tune", "--from-scratch", "-q")
    assert r.exit_code == 2 and "exclude" in r.output


def test_enroll_default_is_the_universal_embedding_with_no_network_and_no_training(tmp_path, monkeypatch):
    import socket

    from cli_helpers import invoke, make_folders
    from fpfast.gallery import Gallery

    def refuse(*a, **k):
        raise AssertionError("fpfast enroll opened a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    root = make_folders(tmp_path / "train", 10)
    r = invoke("enroll", tmp_path / "g", "--from-folders", root, "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    hybrid = load_universal().with_handcrafted()
    assert g.spec.embedding["identity"] == hybrid.identity and g.embedder().identity == hybrid.identity
    assert g.normalize == "lda" and g.embedder().config.get("training", {}).get("init") is None  # not trained
    r = invoke("info", "--gallery", tmp_path / "g")
    assert r.exit_code == 0 and "universal" in r.output, r.output
    test = make_folders(tmp_path / "test", 4, seed=1)
    r = invoke("attribute", test, "--gallery", tmp_path / "g", "--out", tmp_path / "a.parquet", "-q")
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "a.parquet").to_pydict()
    truth = [p.split(os.sep)[-2] for p in t["path"]]
    assert len(truth) == 12 and np.mean(np.array(t["predicted"]) == np.array(truth)) > 0.9
    # an existing gallery keeps its own vectors: enrolling a model without --spec adds to it as it is
    r = invoke("enroll", tmp_path / "g", "--model", "delta", os.path.join(test, "alpha"), "-q")
    assert r.exit_code == 0 and Gallery.load(str(tmp_path / "g")).spec.embedding == g.spec.embedding, r.output


def test_pretraining_precision_and_device_are_recorded_and_checked(tmp_path):
    emb, hist, _ = pretrain_embedding(seed=0, precision="bf16", **TINY)
    assert np.isfinite(hist[-1]["loss"])
    assert emb.config["training"]["precision"] == "bf16" and emb.config["training"]["device"] == "cpu"
    e32, _, _ = pretrain_embedding(seed=0, **TINY)
    assert "device" not in e32.config["training"]  # a CPU fp32 run keeps the identity it always had
    with pytest.raises(EmbedError, match="fp16"):
        pretrain_embedding(precision="fp16", **TINY)  # fp16 autocast is CUDA-only
    if not torch.cuda.is_available():
        with pytest.raises(EmbedError, match="no CUDA device"):
            pretrain_embedding(device="cuda", **TINY)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pretraining_on_cuda_with_fp16_autocast(tmp_path):
    card = pretrain(str(tmp_path / "u"), device="cuda", **TINY)
    emb, card2 = load_card(tmp_path / "u")
    assert card2["precision"] == "auto" and card2["device"] != "cpu"
    assert emb.config["training"]["device"] == "cuda" and np.isfinite(card["final_loss"])
    assert 0 <= card["heldout"]["acc_clean"] <= 1


def test_pretrain_cli_takes_the_architecture(tmp_path):
    from cli_helpers import invoke
    tiny = ["--steps", "2", "--classes", "4", "--batch-classes", "2", "--per-class", "2", "--crop", "32",
            "--patch", "16"]
    r = invoke("pretrain", tmp_path / "u", *tiny, "--stem", "unshuffle", "--widths", "4,8", "-q")
    assert r.exit_code == 0, r.output
    emb, _ = load_card(tmp_path / "u")
    assert emb.arch["stem"] == "unshuffle" and emb.arch["widths"] == [4, 8] and emb.arch["blocks"] == [1, 1]
    for bad in ("4,x", "0,8"):
        r = invoke("pretrain", tmp_path / "v", *tiny, "--widths", bad, "-q")
        assert r.exit_code == 2 and "--widths" in r.output, r.output

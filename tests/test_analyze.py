"""`fpfast analyze`: NMI / ARI against scikit-learn, leave-one-model-out never sees the held-out
model, the files an analysis promises, and design-table mismatches as usage errors."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, model_image
from fpfast.analyze import ari, leave_one_model_out, nmi

# a synthetic zoo: 6 models; the grid period is set by 'upsampling', the loss changes nothing
ZOO = {"m_a": ("tconv", "l1", 2), "m_b": ("tconv", "l2", 2), "m_c": ("nearest", "l1", 4),
       "m_d": ("nearest", "l2", 4), "m_e": ("bilinear", "l1", 3), "m_f": ("bilinear", "l2", 3)}


def make_zoo(root, n=8, with_zoo_json=True) -> str:
    for k, (m, (up, loss, period)) in enumerate(ZOO.items()):
        d = os.path.join(root, "test", m)
        os.makedirs(d)
        for i in range(n):
            Image.fromarray(model_image(period, 1000 * k + i)).save(os.path.join(d, f"{i:03d}.png"))
        meta = {"name": m, "family": "autoencoder", "upsampling": up, "loss": loss, "activation": "relu",
                "normalization": None, "sampler": None}
        with open(os.path.join(d, "model.json"), "w") as fh:
            json.dump(meta, fh)
    real = os.path.join(root, "test", "real")
    os.makedirs(real)
    Image.fromarray(model_image(7, 99)).save(os.path.join(real, "0.png"))
    with open(os.path.join(real, "model.json"), "w") as fh:
        json.dump({"name": "real", "family": "real"}, fh)
    if with_zoo_json:
        with open(os.path.join(root, "zoo.json"), "w") as fh:
            json.dump({"preset": "synthetic"}, fh)
    return str(root)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_ari_match_sklearn(seed):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    rng = np.random.default_rng(seed)
    a = rng.choice(["x", "y", "z"], 200)
    b = np.where(rng.random(200) < 0.6, a, rng.choice(["x", "y", "z", "w"], 200))
    # both are sums of a few hundred float64 terms: agreement to 1e-12
    assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_nmi_ari_fixed_labels():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    a = [0, 0, 0, 1, 1, 1, 2, 2]
    b = [1, 1, 0, 0, 2, 2, 2, 2]
    assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert nmi(a, [5, 5, 5, 7, 7, 7, 9, 9]) == pytest.approx(1.0)   # a relabelling is a perfect match
    assert ari(a, [5, 5, 5, 7, 7, 7, 9, 9]) == pytest.approx(1.0)


def test_lomo_never_trains_on_the_held_out_model():
    """Each model's rows carry a feature that names the model itself (a one-hot): a probe that saw
    the held-out model's rows would score 100 %. The values are assigned so that the other models
    of the same value share nothing with it: held out, the probe can only guess."""
    models = np.repeat([f"m{i}" for i in range(6)], 10)
    values = np.repeat(["u", "v", "u", "v", "u", "v"], 10)
    X = np.zeros((60, 6))
    X[np.arange(60), np.repeat(np.arange(6), 10)] = 1.0
    seen = []

    def fit(Xtr, ytr):
        seen.append(Xtr[:, :].sum(0))
        from sklearn.linear_model import LogisticRegression
        clf = LogisticRegression().fit(Xtr, ytr)
        return clf.predict

    res = leave_one_model_out(X, values, models, fit=fit)
    # every training set lacks exactly the held-out model's one-hot column
    for k, s in enumerate(seen):
        assert s[k] == 0 and (np.delete(s, k) == 10).all()
    assert res.accuracy < 1.0          # leaking would give 1.0
    # and the default probe: same construction
    assert leave_one_model_out(X, values, models).accuracy < 1.0


def test_lomo_skips_unique_values_and_reports_chance():
    models = np.repeat(["a", "b", "c", "d"], 5)
    values = np.repeat(["x", "x", "y", "z"], 5)
    X = np.random.default_rng(0).normal(size=(20, 3))
    res = leave_one_model_out(X, values, models)
    assert res.scored == ["a", "b"] and res.skipped == ["c", "d"]
    assert res.chance == 1.0           # the training majority (x) is the held-out value for a and b


def _png_size(path):
    with Image.open(path) as im:
        im.load()
        return im.size


def test_analyze_writes_every_promised_file(tmp_path):
    src = make_zoo(tmp_path / "zoo")
    with open(os.path.join(src, "test", "m_a", "broken.png"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "report"
    r = invoke("analyze", src, "--out", out, "--max-points", 40, "-q")
    assert r.exit_code == 3, r.output           # one unreadable image: exit 3, the rest analysed
    man = json.loads((out / "manifest.json").read_text())
    assert man["models"] == list(ZOO)           # the real class is left out
    for f in man["files"] + ["manifest.json"]:
        assert (out / f).stat().st_size > 0, f
    for f in ("design.md", "design.csv", "errors.csv", "spectra.png", "map_pca_spec.png", "map_tsne_spec.png",
              "distance_spec.png"):
        assert f in man["files"] + ["manifest.json"], f
    for f, (w, h) in man["pngs"].items():
        assert _png_size(out / f) == (w, h), f
        with Image.open(out / f) as im:
            assert np.asarray(im.convert("L")).std() > 5, f   # not a blank image
    errors = list(csv.DictReader(open(out / "errors.csv")))
    assert [e["path"].endswith("broken.png") for e in errors] == [True]
    rows = list(csv.DictReader(open(out / "design.csv")))
    up = next(r for r in rows if r["space"] == "spec" and r["attribute"] == "upsampling")
    assert float(up["nmi"]) > 0.9 and float(up["lomo_accuracy"]) > 0.9   # the period separates cleanly
    assert {r["attribute"] for r in rows} == {"upsampling", "loss"}     # one-valued attributes have no row


def test_analyze_with_refset_and_tiny_encoder(tmp_path):
    from safetensors.torch import save_file

    from fpfast.analyze.encoders import TinyEncoder
    from fpfast.projectors import build_manifold
    src = make_zoo(tmp_path / "zoo", n=6)
    refs = np.stack([model_image(7, 500 + i) for i in range(12)])
    build_manifold(refs, tmp_path / "ref", 32)
    import torch
    torch.manual_seed(0)
    save_file(TinyEncoder().state_dict(), str(tmp_path / "enc.safetensors"))
    out = tmp_path / "report"
    r = invoke("analyze", src, "--out", out, "--refset", tmp_path / "ref", "--encoder", tmp_path / "enc.safetensors",
               "--encoder-arch", "tiny", "--no-tsne", "--reduce", "whiten", "-q")
    assert r.exit_code == 0, r.output
    spaces = {row["space"] for row in csv.DictReader(open(out / "design.csv"))}
    assert spaces == {"spec", "spectrum", "manifold-rgb", "manifold-freq", "encoder"}
    for s in spaces:
        assert (out / f"map_pca_{s}.png").stat().st_size > 0
        assert not (out / f"map_tsne_{s}.png").exists()


def _folders_and_csv(tmp_path, rows):
    src = make_zoo(tmp_path / "zoo", n=3, with_zoo_json=False)
    root = os.path.join(src, "test")
    import shutil
    shutil.rmtree(os.path.join(root, "real"))
    with open(tmp_path / "design.csv", "w") as fh:
        fh.write("model,upsampling\n" + "".join(f"{m},{v}\n" for m, v in rows))
    return root, tmp_path / "design.csv"


def test_design_csv_naming_a_model_without_folder_is_a_usage_error(tmp_path):
    root, d = _folders_and_csv(tmp_path, [(m, ZOO[m][0]) for m in ZOO] + [("ghost", "tconv")])
    r = invoke("analyze", root, "--design", d, "--out", tmp_path / "o", "-q")
    assert r.exit_code == 2
    assert "ghost" in r.output and "no folder" in r.output
    assert not (tmp_path / "o").exists()


def test_folder_without_design_row_is_a_usage_error(tmp_path):
    root, d = _folders_and_csv(tmp_path, [(m, ZOO[m][0]) for m in list(ZOO)[:-1]])
    r = invoke("analyze", root, "--design", d, "--out", tmp_path / "o", "-q")
    assert r.exit_code == 2
    assert "m_f" in r.output and "no row" in r.output


def test_design_csv_analysis_runs(tmp_path):
    root, d = _folders_and_csv(tmp_path, [(m, ZOO[m][0]) for m in ZOO])
    r = invoke("analyze", root, "--design", d, "--out", tmp_path / "o", "--no-tsne", "-q")
    assert r.exit_code == 0, r.output
    assert "upsampling" in (tmp_path / "o" / "design.md").read_text()


def test_out_holding_other_files_is_refused(tmp_path):
    src = make_zoo(tmp_path / "zoo", n=3)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    r = invoke("analyze", src, "--out", tmp_path / "o", "-q")
    assert r.exit_code == 2 and "not empty" in r.output
    assert (tmp_path / "o" / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_only_what_the_earlier_analysis_wrote(tmp_path):
    src = make_zoo(tmp_path / "zoo", n=3)
    out = tmp_path / "o"
    assert invoke("analyze", src, "--out", out, "-q", "--max-points", 20).exit_code == 0
    (out / "notes.txt").write_text("mine")
    assert invoke("analyze", src, "--out", out, "-q").exit_code == 2          # not without --overwrite
    r = invoke("analyze", src, "--out", out, "-q", "--no-tsne", "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (out / "map_tsne_spec.png").exists()    # the earlier run's file, not made this time
    assert (out / "notes.txt").read_text() == "mine"


def test_analyze_with_a_gallery_adds_its_space(tmp_path):
    src = make_zoo(tmp_path / "zoo", n=4)
    r = invoke("enroll", tmp_path / "g", "--from-folders", os.path.join(src, "test"), "-q")
    assert r.exit_code == 0, r.output
    out = tmp_path / "o"
    r = invoke("analyze", src, "--out", out, "--gallery", tmp_path / "g", "--no-tsne", "-q")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(out / "design.csv")))
    assert {"spec", "spectrum", "gallery"} == {r["space"] for r in rows}
    assert (out / "distance_gallery.png").stat().st_size > 0


def test_within_scores_an_attribute_inside_each_stratum_only():
    """Up-sampling is planted in one feature; the family in two. Over all models
    k-means splits by family (NMI of up-sampling ~0); inside one family the weak feature is all that
    varies, so the stratified rows find up-sampling, and each is scored on its own family's models."""
    from fpfast.analyze.design import Design
    from fpfast.analyze.run import score
    rng = np.random.default_rng(0)
    labels = {}
    for fam in ("A", "B"):
        for i, up in enumerate(("u", "u", "v", "v")):
            labels[f"{fam}{i}"] = {"family": fam, "upsampling": up}
    design = Design(folders={m: None for m in labels}, labels=labels, attributes=["family", "upsampling"])
    models, X = [], []
    for m, lab in labels.items():
        base = np.zeros(3)
        base[1:] = 10.0 if lab["family"] == "A" else -10.0
        base[0] = 1.0 if lab["upsampling"] == "u" else -1.0
        X.append(base + 0.1 * rng.normal(size=(20, 3)))
        models += [m] * 20
    X = np.concatenate(X)
    rows = {r["attribute"]: r for r in score(X, models, design, within="family")}
    assert set(rows) == {"family", "upsampling", "upsampling within family=A", "upsampling within family=B"}
    assert rows["upsampling"]["nmi"] < 0.1                      # confounded: clusters are the families
    for fam in "AB":
        r = rows[f"upsampling within family={fam}"]
        assert r["models"] == 4 and r["images"] == 80
        assert set(r["lomo_models"].split(";")) == {f"{fam}{i}" for i in range(4)}
        assert r["nmi"] > 0.9 and r["lomo_accuracy"] > 0.9


def test_within_an_unknown_attribute_is_a_usage_error(tmp_path):
    src = make_zoo(tmp_path / "zoo", n=3)
    r = invoke("analyze", src, "--out", tmp_path / "o", "--within", "colour", "-q")
    assert r.exit_code == 2 and "--within colour" in r.output
    assert not (tmp_path / "o").exists()

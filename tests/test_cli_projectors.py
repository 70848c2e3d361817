"""Heavy projectors from the CLI: `--spec KIND:PATH` enrolls, attributes and extracts through them,
and a gallery records the projector's identity so another model is refused."""
import json
import os

import numpy as np
import pytest
import torch

from cli_helpers import invoke, make_folders
from fpfast.io.writers import read_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")


def _vae_dir(path, seed):
    torch.manual_seed(seed)
    diffusers.AutoencoderKL(block_out_channels=(32,), norm_num_groups=8, latent_channels=4,
                            sample_size=32).eval().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    return {"models": make_folders(root / "models", n=6), "vae0": _vae_dir(root / "vae0", 0),
            "vae1": _vae_dir(root / "vae1", 1), "root": root}


def test_autoencoder_spec_enroll_attribute_and_identity(data, tmp_path):
    g = tmp_path / "g"
    r = invoke("enroll", g, "--from-folders", data["models"], "--spec", f"autoencoder:{data['vae0']}",
               "--holdout", "0", "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    meta = json.loads((g / "gallery.json").read_text())
    proj = meta["spec"]["projector"]
    assert proj["kind"] == "autoencoder" and len(proj["identity"]) == 64

    out = tmp_path / "a.parquet"
    r = invoke("attribute", os.path.join(data["models"], "alpha"), "--gallery", g, "--out", out,
               "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rows = read_rows(str(out))
    assert len(rows) == 6 and all(not row["error"] for row in rows)

    # a gallery built with one autoencoder refuses to take samples fingerprinted by another
    r = invoke("enroll", g, "--model", "delta", os.path.join(data["models"], "beta"),
               "--spec", f"autoencoder:{data['vae1']}", "--quiet", "--device", "cpu")
    assert r.exit_code == 2 and "projector" in r.output


def test_manifold_build_then_extract_with_it(data, tmp_path):
    ref = tmp_path / "ref"
    r = invoke("manifold", "build", os.path.join(data["models"], "gamma"), "--out", ref, "--size", "32")
    assert r.exit_code == 0, r.output
    out = tmp_path / "x"
    r = invoke("extract", os.path.join(data["models"], "gamma"), "--out", out, "--spec", f"manifold:{ref}",
               "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    vecs = np.concatenate([np.load(os.path.join(out, "embeddings", f)) for f in sorted(os.listdir(out / "embeddings"))])
    assert vecs.shape[0] == 6
    # every image is its own nearest real image: a zero artifact, so moments are exactly 0
    assert np.abs(vecs[:, :12]).max() == 0.0


def test_augmented_enrollment_through_a_heavy_projector(data, tmp_path):
    """Down-scaled copies are cut to the projector's multiple of 8, as its training crops are."""
    torch.manual_seed(0)
    vae = tmp_path / "vae2"  # down-samples by 2: odd sides are refused
    diffusers.AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8,
                            latent_channels=4).eval().save_pretrained(vae)
    g = tmp_path / "g"
    r = invoke("enroll", g, "--from-folders", data["models"], "--spec", f"autoencoder:{vae}",
               "--holdout", "0", "--augment", "2", "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    meta = json.loads((g / "gallery.json").read_text())
    assert meta["augment"] == 2 and meta["count"] == 3 * 6 * 3

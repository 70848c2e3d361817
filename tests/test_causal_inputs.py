"""The causal fingerprint's input, selected by the spec (issue 15, item 2(c)): a heavy
projector's reconstruction residual x - P(x), or the multi-feature input (handcrafted families
concatenated with the learned features); and the post-hoc content-subspace projection."""
import os

import numpy as np
import pytest
import torch

from fpfast.causal.objective import CausalObjective
from fpfast.causal.project import content_subspace, fold_projection
from fpfast.embed import train_embedding
from fpfast.embed.model import Embedder
from fpfast.spec import FingerprintSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SIZE = 24
ARCH = {"widths": [8], "blocks": [1], "dim": 8}
FAST = dict(epochs=2, batch_size=12, lr=5e-3, p_jpeg=0.0, p_rescale=0.0)


def _images(n=6, seed=0):
    """Two generators (nearest / bilinear up-sampling) of the same ``n`` random contents."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, SIZE // 2, SIZE // 2, generator=g)
    imgs, labels, content = [], [], []
    for cls, mode in enumerate(("nearest", "bilinear")):
        x = torch.nn.functional.interpolate(low, scale_factor=2, mode=mode)
        imgs += list((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        labels += [f"m{cls}"] * n
        content += list(range(n))
    return imgs, labels, content


@pytest.fixture(scope="module")
def vae_spec(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    d = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    diffusers.AutoencoderKL(block_out_channels=(32,), norm_num_groups=8, latent_channels=4,
                            sample_size=32).eval().save_pretrained(d)
    from fpfast.projectors import AutoencoderProjector
    return AutoencoderProjector(str(d)).spec(FingerprintSpec(size=SIZE))


def _train(spec, seed=0, handcrafted=False, project_out=0):
    imgs, labels, content = _images()
    obj = CausalObjective([int(v[1]) for v in labels], content, spec.residual, spec.sigma, project_out=project_out)
    torch.set_num_threads(1)
    emb, _ = train_embedding(imgs, labels, spec, arch=ARCH, objective=obj, seed=seed, handcrafted=handcrafted, **FAST)
    return emb, imgs


def test_projector_input_round_trips_and_changes_the_identity(vae_spec):
    emb, imgs = _train(vae_spec)
    assert emb.arch["residual"] == "projector"
    assert FingerprintSpec.from_dict(emb.config["spec"]) == vae_spec  # the projector is in the spec it records
    x = torch.from_numpy(np.stack(imgs))
    again = Embedder.from_bytes(*emb.to_bytes())   # as a gallery loads it: the projector from its source
    assert again.identity == emb.identity
    np.testing.assert_array_equal(again.embed(x, layout="hwc"), emb.embed(x, layout="hwc"))
    # the network's input is the projector's residual: the same vectors from it by hand
    proj = emb.projector("cpu")
    r = proj.residual(x.permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        want = emb.net.embed_residual(r).numpy()
    np.testing.assert_allclose(emb.embed(x, layout="hwc"), want, atol=1e-5)  # folded BatchNorm: fp32 rounding
    cheap, _ = _train(FingerprintSpec(size=SIZE))
    multi, _ = _train(FingerprintSpec(size=SIZE), handcrafted=True)
    assert cheap.arch["residual"] == "denoise" and multi.arch["handcrafted_dim"] > 0
    ids = {e.identity for e in (emb, cheap, multi)}
    specs = {vae_spec.handcrafted().replace(embedding=emb.spec_record()).id,
             FingerprintSpec(size=SIZE).replace(embedding=cheap.spec_record()).id,
             FingerprintSpec(size=SIZE).replace(embedding=multi.spec_record()).id}
    assert len(ids) == 3 and len(specs) == 3   # each input choice is another gallery identity


def test_projector_and_multi_feature_training_is_deterministic_per_seed(vae_spec):
    a, _ = _train(vae_spec, seed=3)
    b, _ = _train(vae_spec, seed=3)
    c, _ = _train(vae_spec, seed=4)
    assert a.identity == b.identity != c.identity
    m1, _ = _train(FingerprintSpec(size=SIZE), seed=3, handcrafted=True)
    m2, _ = _train(FingerprintSpec(size=SIZE), seed=3, handcrafted=True)
    assert m1.identity == m2.identity


def test_content_subspace_matches_numpy_and_the_fold_removes_it():
    rng = np.random.default_rng(0)
    n_c, n_g, d = 10, 3, 12
    gen, cont = rng.normal(size=(n_g, d)), rng.normal(size=(n_c, 3)) @ rng.normal(size=(3, d))  # content: rank 3
    z = np.array([gen[g] + cont[c] + 0.01 * rng.normal(size=d) for g in range(n_g) for c in range(n_c)])
    labels = np.repeat(np.arange(n_g), n_c)
    content = np.tile(np.arange(n_c), n_g)
    content[0] = -1                                     # an image without content id: ignored
    u = content_subspace(z, content, labels, rank=3).numpy()
    # numpy: per-generator centring, per-content means, top right singular vectors
    zc = z.copy()
    for g in range(n_g):
        zc[labels == g] -= zc[labels == g].mean(0)
    m = np.stack([zc[content == c].mean(0) for c in range(n_c) if (content == c).sum() >= 2])
    v = np.linalg.svd(m, full_matrices=False)[2][:3].T
    np.testing.assert_allclose(u @ u.T, v @ v.T, atol=1e-9)  # the same subspace (signs may differ); float64
    lin = torch.nn.Linear(5, d).double()
    fold_projection(lin, torch.from_numpy(u))
    out = lin(torch.randn(7, 5, dtype=torch.float64)).detach().numpy()
    assert np.abs(out @ u).max() < 1e-9                 # nothing left along the content subspace




def test_project_out_without_causal_is_refused(tmp_path):
    from cli_helpers import invoke
    (tmp_path / "g").mkdir()
    (tmp_path / "train").mkdir()
    r = invoke("train", tmp_path / "g", "--from-folders", tmp_path / "train", "--project-out", "8")
    assert r.exit_code == 2 and "--causal" in r.output

"""Causal fingerprints (issue 15): leakage measures vs brute-force numpy, the decoupling
objective (deterministic, lowers leakage on a planted example), quality metrics."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fpfast.causal import content_probe, content_regression, fisher_ratio, linear_cka
from fpfast.causal.objective import CausalObjective, content_code, pair_loss
from fpfast.causal.pairs import grouped_order
from fpfast.causal.quality import psnr, ssim


# ----------------------------------------------------------------------------- brute force (numpy)
def _np_ridge(x, y, lam):
    """Ridge with a penalised bias, as an augmented least-squares problem (no normal equations)."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    a = np.vstack([xa, np.sqrt(lam) * np.eye(xa.shape[1])])
    b = np.vstack([y, np.zeros((xa.shape[1], y.shape[1]))])
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    return lambda q: np.hstack([q, np.ones((len(q), 1))]) @ w


def _np_probe(z, content, groups, lam=1e-3):
    ids = sorted({c for c in content if len({g for g, cc in zip(groups, content) if cc == c}) >= 2})
    correct = total = 0
    for g in sorted(set(groups)):
        tr = [i for i in range(len(z)) if groups[i] != g and content[i] in ids]
        te = [i for i in range(len(z)) if groups[i] == g and content[i] in ids
              and content[i] in {content[j] for j in tr}]
        if not te:
            continue
        y = np.array([[1.0 if content[i] == c else 0.0 for c in ids] for i in tr])
        pred = _np_ridge(z[tr], y, lam)(z[te]).argmax(1)
        correct += sum(ids[p] == content[i] for p, i in zip(pred, te))
        total += len(te)
    return correct / total, 1 / len(ids)


def _np_fdr(z, labels):
    mu = z.mean(0)
    per, sb, sw = {}, np.zeros((z.shape[1],) * 2), np.zeros((z.shape[1],) * 2)
    for c in sorted(set(labels)):
        zc = z[[i for i, l in enumerate(labels) if l == c]]
        mc = zc.mean(0)
        per[c] = np.sum((mc - mu) ** 2) / np.mean([np.sum((v - mc) ** 2) for v in zc])
        sb += len(zc) * np.outer(mc - mu, mc - mu)
        sw += sum(np.outer(v - mc, v - mc) for v in zc)
    return per, np.trace(sb) / np.trace(sw)


def _planted(content_strength, seed=0, n_content=12, n_gen=4, d=32):
    """Vectors = generator direction + (content_strength x) a content direction + noise."""
    rng = np.random.default_rng(seed)
    gen_dirs, cont_dirs = rng.normal(size=(n_gen, d)), rng.normal(size=(n_content, d))
    z, content, groups = [], [], []
    for g in range(n_gen):
        for c in range(n_content):
            z.append(gen_dirs[g] + content_strength * cont_dirs[c] + 0.1 * rng.normal(size=d))
            content.append(f"c{c}")
            groups.append(f"g{g}")
    return np.array(z), content, groups


# ----------------------------------------------------------------------------- leakage
@pytest.mark.parametrize("strength", [0.0, 3.0])
def test_content_probe_matches_numpy_and_finds_the_planted_content(strength):
    z, content, groups = _planted(strength)
    got = content_probe(z, content, groups)
    acc, chance = _np_probe(z, content, groups)
    assert got["accuracy"] == pytest.approx(acc, abs=1e-12)  # same predictions: exact counts
    assert got["chance"] == pytest.approx(chance) and got["n_contents"] == 12 and got["n"] == 48
    if strength:
        assert got["accuracy"] > 0.9          # content planted: the probe reads it
    else:
        assert got["accuracy"] < 4 * chance   # none planted: near chance (1/12)


def test_content_probe_ignores_contents_of_one_generator_and_missing_ids():
    z, content, groups = _planted(1.0)
    content = list(content)
    content[0] = None           # no content id (a prior sample)
    z = np.vstack([z, z[:1]])
    content.append("only_once")  # a content seen by one generator cannot be probed
    groups = list(groups) + ["g0"]
    got = content_probe(z, content, groups)
    acc, _ = _np_probe(z[1:], content[1:], groups[1:])
    assert got["n_contents"] == 12 and got["n"] == 47 and got["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_content_regression_matches_numpy():
    z, content, groups = _planted(1.0, d=6)
    rng = np.random.default_rng(3)
    code = z @ rng.normal(size=(6, 4)) + 0.05 * rng.normal(size=(len(z), 4))
    pred = np.empty_like(code)
    for g in sorted(set(groups)):
        tr = np.array(groups) != g
        pred[~tr] = _np_ridge(z[tr], code[tr], 1e-3)(z[~tr])
    r2 = 1 - ((code - pred) ** 2).sum() / ((code - code.mean(0)) ** 2).sum()
    assert content_regression(z, code, groups, lam=1e-3) == pytest.approx(r2, rel=1e-9, abs=1e-12)  # float64 both
    assert r2 > 0.9


def test_fisher_ratio_matches_numpy_scatter_matrices():
    z, _, groups = _planted(0.5, d=5)
    per, overall = _np_fdr(z, groups)
    got = fisher_ratio(z, groups)
    assert got["overall"] == pytest.approx(overall, rel=1e-9)  # float64 sums in another order
    for k, v in per.items():
        assert got["per_class"][k] == pytest.approx(v, rel=1e-9)


def test_linear_cka_matches_its_formula_and_is_invariant_to_scale():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 3))
    ac, bc = a - a.mean(0), b - b.mean(0)
    want = np.linalg.norm(ac.T @ bc) ** 2 / (np.linalg.norm(ac.T @ ac) * np.linalg.norm(bc.T @ bc))
    got = float(linear_cka(torch.from_numpy(a), torch.from_numpy(b)))
    assert got == pytest.approx(want, rel=1e-9)
    assert float(linear_cka(torch.from_numpy(3 * a), torch.from_numpy(b))) == pytest.approx(want, rel=1e-9)
    assert float(linear_cka(torch.from_numpy(a), torch.from_numpy(a))) == pytest.approx(1.0)


def test_pair_loss_and_grouped_order():
    z = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), dim=1)
    labels, content = torch.tensor([0, 1, 0, 0]), torch.tensor([5, 5, 6, -1])
    # far pair (0, 1): same content, other label, cos 1 -> relu 1; near pair (0, 2): cos 0 -> 1
    assert float(pair_loss(z, labels, content)) == pytest.approx(2.0)
    order = grouped_order(np.array([3, -1, 3, 7, 7, -1]), np.random.default_rng(0))
    assert sorted(order) == list(range(6))
    pos = {i: k for k, i in enumerate(order)}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[3] - pos[4]) == 1


# ----------------------------------------------------------------------------- decoupling training
SIZE = 24
ARCH = {"widths": [8, 16], "blocks": [1, 1], "dim": 16}
FAST = dict(epochs=30, batch_size=24, lr=5e-3, p_jpeg=0.0, p_rescale=0.0)


def _planted_images(n_content=16, seed=0):
    """Three generators (nearest / bilinear / nearest + checkerboard up-sampling) of the same
    contents: noise whose brightness and contrast vary together per content (the planted
    content: the residual sees the contrast, the content code of P(x) the brightness)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n_content, 1, 1, 1, generator=g) * 0.5 + 0.25
    amp = 0.05 + 1.2 * (base - 0.25)
    low = (base + amp * (torch.rand(n_content, 3, SIZE // 2, SIZE // 2, generator=g) - 0.5)).clamp(0, 1)
    imgs, labels, content = [], [], []
    for cls in range(3):
        x = F.interpolate(low, scale_factor=2, mode="bilinear" if cls == 1 else "nearest",
                          **({"align_corners": False} if cls == 1 else {}))
        if cls == 2:
            x = x + 0.04 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(SIZE // 2, SIZE // 2)
        imgs += list((x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        labels += [f"m{cls}"] * n_content
        content += list(range(n_content))
    return imgs, labels, content


def _train(imgs, labels, content, causal: bool, seed=0):
    from fpfast.embed import train_embedding
    from fpfast.spec import FingerprintSpec
    spec = FingerprintSpec(size=SIZE)
    obj = None
    if causal:
        classes = sorted(set(labels))
        obj = CausalObjective([classes.index(v) for v in labels], content, spec.residual, spec.sigma,
                              hsic=4.0, pair=1.0)
    torch.set_num_threads(1)
    emb, _ = train_embedding(imgs, labels, spec, arch=ARCH, objective=obj, seed=seed, **FAST)
    return emb


def test_causal_training_is_deterministic_per_seed_and_lowers_leakage():
    imgs, labels, content = _planted_images()
    plain = _train(imgs, labels, content, causal=False)
    a = _train(imgs, labels, content, causal=True)
    b = _train(imgs, labels, content, causal=True)
    assert a.identity == b.identity                 # same seed, same bytes
    assert a.config["training"]["objective"]["kind"] == "causal"
    x = torch.from_numpy(np.stack(imgs))
    code = content_code(x.permute(0, 3, 1, 2).float() / 255).numpy()
    z = {"plain": plain.embed(x, layout="hwc"), "causal": a.embed(x, layout="hwc")}
    cka = {n: float(linear_cka(torch.from_numpy(v).double(), torch.from_numpy(code).double())) for n, v in z.items()}
    probe = {n: content_probe(v, content, labels)["accuracy"] for n, v in z.items()}
    assert cka["causal"] < 0.5 * cka["plain"], (cka, probe)  # measured 0.011 vs 0.056 (seed 1: 0.026 vs 0.096)
    # (the content-id probe is near chance for both on these images; see the planted-leak test below)


def _grating_images(n_content=8, seed=0):
    """Three generators that differ only by a faint period-2 pattern (none / checkerboard /
    stripes, +-0.03) added to the same nearest-up-sampled contents: oriented gratings of random
    orientation, frequency and phase. The content dominates the residual, so an embedding trained
    to tell the generators apart still carries it (the planted leak)."""
    g = torch.Generator().manual_seed(seed)
    h = SIZE // 2
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(h).float(), indexing="ij")
    th = torch.rand(n_content, generator=g) * torch.pi
    fr = 0.08 + 0.3 * torch.rand(n_content, generator=g)
    ph = torch.rand(n_content, generator=g) * 2 * torch.pi
    wave = torch.sin(2 * torch.pi * fr[:, None, None] * (xx * th.cos()[:, None, None] + yy * th.sin()[:, None, None])
                     + ph[:, None, None])
    low = (0.5 + 0.3 * wave[:, None] * torch.tensor([1.0, 0.8, 0.6])[None, :, None, None]
           + 0.05 * (torch.rand(n_content, 3, h, h, generator=g) - 0.5)).clamp(0, 1)
    pats = [[[0.0, 0.0], [0.0, 0.0]], [[1.0, -1.0], [-1.0, 1.0]], [[1.0, -1.0], [1.0, -1.0]]]
    imgs, labels, content = [], [], []
    for cls, pat in enumerate(pats):
        x = F.interpolate(low, scale_factor=2, mode="nearest") + 0.03 * torch.tensor(pat).repeat(h, h)
        imgs += list((x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        labels += [f"m{cls}"] * n_content
        content += list(range(n_content))
    return imgs, labels, content


def test_decoupling_removes_a_planted_content_leak():
    """The plain embedding reads the planted content far above chance; the decoupled one
    (content subspace projected out after training) must not: this fails if decoupling does nothing."""
    from fpfast.embed import train_embedding
    from fpfast.spec import FingerprintSpec
    imgs, labels, content = _grating_images()
    spec = FingerprintSpec(size=SIZE)
    torch.set_num_threads(1)
    fast = {**FAST, "epochs": 15}
    plain, _ = train_embedding(imgs, labels, spec, arch=ARCH, seed=0, **fast)
    obj = CausalObjective([int(v[1]) for v in labels], content, spec.residual, spec.sigma, hsic=4.0, pair=1.0,
                          project_out=4)
    causal, _ = train_embedding(imgs, labels, spec, arch=ARCH, objective=obj, seed=0, **fast)
    x = torch.from_numpy(np.stack(imgs))
    probe = {n: content_probe(e.embed(x, layout="hwc"), content, labels) for n, e in
             (("plain", plain), ("causal", causal))}
    chance = probe["plain"]["chance"]                     # 1/8
    assert probe["plain"]["accuracy"] >= 3 * chance, probe  # measured 0.5 (4x chance)
    assert probe["causal"]["accuracy"] <= 1.5 * chance, probe  # measured 0.125 (chance)


# ----------------------------------------------------------------------------- quality
def test_psnr_and_ssim_against_independent_computations():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(2, 23, 31, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-6, 7, size=a.shape), 0, 255).astype(np.uint8)
    got_p = psnr(torch.from_numpy(b), torch.from_numpy(a)).numpy()
    got_s = ssim(torch.from_numpy(b), torch.from_numpy(a)).numpy()
    for i in range(2):
        assert got_p[i] == pytest.approx(skm.peak_signal_noise_ratio(a[i], b[i], data_range=255), rel=1e-9)
        want = skm.structural_similarity(a[i], b[i], data_range=255, channel_axis=2, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
        assert got_s[i] == pytest.approx(want, abs=1e-6)  # skimage filters in float32 internally? keep 1e-6


# ----------------------------------------------------------------------------- anonymize: what attribution sees
class _FakeGallery:
    """What :class:`Anonymizer` reads of a gallery: models, embedder, spec, centroids, transform."""

    def __init__(self, emb, spec, centroids):
        self.emb, self.spec, self._c = emb, spec, centroids

    def models(self):
        return {"a": 1, "b": 1}

    def embedder(self):
        return self.emb

    def centroids(self):
        return self._c

    def transform(self, v):
        return v


def test_anonymizer_optimises_the_view_attribution_takes():
    """A 40 px image under a 24 px centre-crop gallery: the optimisation moves only the crop that
    attribution reads (the pixels outside are the input's), and lowers the source's margin there."""
    from fpfast.causal.anonymize import Anonymizer
    from fpfast.embed.model import Embedder, ResidualEmbedNet
    from fpfast.prepare import apply_geometry
    from fpfast.spec import FingerprintSpec
    torch.manual_seed(0)
    spec = FingerprintSpec(size=SIZE)
    emb = Embedder(ResidualEmbedNet({**ARCH, "residual": spec.residual}), {"spec": spec.to_dict()})
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = emb.net(apply_geometry(x, spec))
    centroids = np.stack([z[0].numpy(), -z[0].numpy()])     # source "a" = image 0's own direction
    anon = Anonymizer(_FakeGallery(emb, spec, centroids), target="b", eps=4, steps=5)
    out = anon(x, np.array([0, 0]))
    inside = torch.zeros(40, 40, dtype=torch.bool)
    inside[8:32, 8:32] = True                               # the 24 px centre crop of 40 px
    xq = (x * 255).round() / 255
    assert torch.equal(out[..., ~inside], xq[..., ~inside])  # outside the crop: the input (8-bit)
    assert (out[..., inside] != xq[..., inside]).float().mean() > 0.5
    before, after = anon._dist(x), anon._dist(out)
    assert float(after[0, 1] - after[0, 0]) < float(before[0, 1] - before[0, 0])  # nearer the target


def test_anonymizer_measures_an_embedding_averaged_over_mirror_images_as_attribution_does():
    """A gallery whose embedding averages mirror images (``flips``): the anonymizer's distances are
    those of the vectors the embedder gives (the one-pass network's would not be)."""
    from fpfast.causal.anonymize import Anonymizer
    from fpfast.embed.model import Embedder, ResidualEmbedNet
    from fpfast.spec import FingerprintSpec
    torch.manual_seed(0)
    spec = FingerprintSpec(size=SIZE)
    one = Embedder(ResidualEmbedNet({**ARCH, "residual": spec.residual}), {"spec": spec.to_dict()})
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    centroids = np.random.default_rng(0).normal(size=(2, one.dim)).astype(np.float32)
    for n in (1, 4):
        emb = one.with_flips(n)
        anon = Anonymizer(_FakeGallery(emb, spec, centroids), target="b", eps=4, steps=1)
        z = emb.embed(x, layout="chw", precision="fp32")
        want = ((z[:, None, :] - centroids[None]) ** 2).sum(-1)
        with torch.no_grad():
            got = anon._dist(x).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.abs(one.embed(x, layout="chw") - one.with_flips(4).embed(x, layout="chw")).max() > 1e-3

"""Manifold (ManiFPT) projector: exact search equals numpy brute force; in-set images have zero artifact."""
import json

import numpy as np
import pytest
import torch

from fpfast import FingerprintSpec
from fpfast.projectors import ProjectorError, load_projector
from fpfast.projectors.manifold import ManifoldProjector, build_manifold
from fpfast.projectors.spaces import freq_image

S = 16


@pytest.fixture(scope="module")
def ref_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, S, S, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def refdir(tmp_path_factory, ref_images):
    d = tmp_path_factory.mktemp("ref")
    build_manifold(ref_images, d, S, spaces=("rgb", "freq"), modes=("exact", "ivfpq", "hnsw"))
    return d


def _queries(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, S, S, generator=g)


def _brute(x, ref_images, space, k):
    """numpy float64 brute force over the whole reference set in the space."""
    ref = ref_images.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    q = x.double().numpy()
    if space == "freq":
        ref, q = freq_image(torch.from_numpy(ref)).numpy(), freq_image(torch.from_numpy(q)).numpy()
    d = ((q.reshape(len(q), 1, -1) - ref.reshape(1, len(ref), -1)) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


@pytest.mark.parametrize("engine", ["faiss", "torch", "bound"])
@pytest.mark.parametrize("space", ["rgb", "freq"])
@pytest.mark.parametrize("k", [1, 3])
def test_exact_equals_brute_force(refdir, ref_images, engine, space, k):
    x = _queries()
    p = ManifoldProjector(refdir, space=space, k=k, engine=engine, batch_size=4)
    dist, idx = p.search(x)
    want_i, want_d = _brute(x, ref_images, space, k)
    assert (idx.numpy() == want_i).all()
    # float64 both ways; the 255 scale of rgb only multiplies distances by 255^2
    scale = 255.0 ** 2 if space == "rgb" else 1.0
    np.testing.assert_allclose(dist.numpy(), want_d * scale, rtol=1e-9)


@pytest.mark.parametrize("engine", ["faiss", "torch", "bound"])
@pytest.mark.parametrize("space", ["rgb", "freq"])
def test_exact_search_is_exact_among_many_duplicates(tmp_path, engine, space):
    """Flat patches, 30 exact copies of each of a few levels: float32 distances to the copies tie
    (all ~0, in any order), so the k + rerank float32 candidates are an arbitrary few of them;
    brute force's answer is the lowest index among all copies. Exact mode must still return it."""
    levels = np.repeat(np.array([96, 99, 100, 101, 104], dtype=np.uint8), 30)
    order = np.random.default_rng(3).permutation(len(levels))
    refs = np.broadcast_to(levels[order][:, None, None, None], (len(levels), S, S, 3)).copy()
    refs[::7, 0, 0, 0] ^= 1                      # near-duplicates one level off in one pixel
    build_manifold(refs, tmp_path, S, spaces=(space,), modes=("exact",))
    x = torch.from_numpy(np.stack([np.full((3, S, S), v, np.float32) / 255.0 for v in (100, 99, 101)]))
    p = ManifoldProjector(tmp_path, space=space, k=2, engine=engine)
    dist, idx = p.search(x)
    want_i, want_d = _brute(x, refs, space, 2)
    assert (idx.numpy() == want_i).all()
    scale = 255.0 ** 2 if space == "rgb" else 1.0
    np.testing.assert_allclose(dist.numpy(), want_d * scale, rtol=1e-9, atol=1e-9)


def test_bound_engine_falls_back_past_its_cap(refdir, ref_images, monkeypatch):
    """Queries the bound cannot prune (cap 0 here) are searched by the matrix product, still exactly."""
    import functools

    import fpfast.projectors.manifold as manifold
    monkeypatch.setattr(manifold, "bounded_knn", functools.partial(manifold.bounded_knn, cap=0))
    x = _queries()
    dist, idx = ManifoldProjector(refdir, k=2, engine="bound").search(x)
    want_i, want_d = _brute(x, ref_images, "rgb", 2)
    assert (idx.numpy() == want_i).all()
    np.testing.assert_allclose(dist.numpy(), want_d * 255.0 ** 2, rtol=1e-9)


@pytest.mark.parametrize("space", ["rgb", "freq"])
@pytest.mark.parametrize("mode", ["exact", "ivfpq", "hnsw"])
def test_image_in_reference_set_has_zero_artifact(refdir, ref_images, space, mode):
    x = torch.from_numpy(ref_images[[0, 5, 39]]).permute(0, 3, 1, 2).float() / 255.0  # as fpfast.prepare
    p = ManifoldProjector(refdir, space=space, mode=mode)
    _, idx = p.search(x)
    assert idx[:, 0].tolist() == [0, 5, 39]
    r = p.residual(x)
    assert r.shape == x.shape and torch.count_nonzero(r) == 0  # exactly zero


def test_artifact_is_x_minus_mean_of_k_nearest(refdir, ref_images):
    x = _queries(3)
    p = ManifoldProjector(refdir, k=3)
    a = p.artifacts(x)
    nb = torch.from_numpy(ref_images[a["index"].numpy()]).permute(0, 1, 4, 2, 3).float() / 255.0
    torch.testing.assert_close(a["rgb"], x - nb.mean(1), rtol=0, atol=1e-6)
    torch.testing.assert_close(p.project(x), nb.mean(1), rtol=0, atol=1e-6)


def test_freq_space_subtraction(refdir, ref_images):
    x = _queries(3)
    p = ManifoldProjector(refdir, space="freq", subtract="space")
    a = p.artifacts(x)
    nb = torch.from_numpy(ref_images[a["index"][:, 0].numpy()]).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(p.residual(x), freq_image(x) - freq_image(nb), rtol=0, atol=1e-5)
    torch.testing.assert_close(a["rgb"], x - nb, rtol=0, atol=1e-6)  # the RGB artifact of that neighbour


def test_approximate_modes_find_near_duplicates(refdir, ref_images):
    # queries near a reference image (a real photo re-generated, re-encoded ...): uniform random
    # queries are near-equidistant from everything in 768 dims, no test of an approximate index
    src = [3, 11, 17, 29]
    g = torch.Generator().manual_seed(2)
    x = (torch.from_numpy(ref_images[src]).permute(0, 3, 1, 2).float() / 255
         + 0.05 * torch.randn(4, 3, S, S, generator=g)).clamp(0, 1)
    want, _ = _brute(x, ref_images, "rgb", 1)
    assert want[:, 0].tolist() == src
    for mode in ("ivfpq", "hnsw"):
        _, idx = ManifoldProjector(refdir, mode=mode, nprobe=64).search(x)
        assert idx[:, 0].tolist() == src, mode


def test_embed_space(tmp_path, ref_images):
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Flatten())
    build_manifold(ref_images, tmp_path, S, spaces=("embed",), encoder=enc)
    x = _queries(4)
    p = ManifoldProjector(tmp_path, space="embed", encoder=enc, k=2)
    _, idx = p.search(x)
    ref = torch.from_numpy(ref_images).permute(0, 3, 1, 2).double() / 255.0
    with torch.no_grad():
        e = enc.double()(ref)
        q = enc(x.double())
    enc.float()
    want = torch.cdist(q, e).argsort(1)[:, :2]
    assert (idx == want).all()
    assert p.artifacts(x)["space"].shape == (4, e.shape[1])
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Flatten())
    with pytest.raises(ProjectorError, match="not the one"):
        ManifoldProjector(tmp_path, space="embed", encoder=other)


def test_wrong_working_size_and_missing_index(refdir):
    p = ManifoldProjector(refdir)
    with pytest.raises(ProjectorError, match="working size 16x16.*32x32"):
        p.residual(torch.rand(1, 3, 32, 32))
    with pytest.raises(ProjectorError, match="no .* index for the embed space"):
        ManifoldProjector(refdir, space="embed", encoder=torch.nn.Flatten())
    with pytest.raises(ProjectorError, match="not a manifold reference set"):
        ManifoldProjector(refdir / "nope")


def test_directory_has_no_pickle_and_loads_from_spec(refdir):
    files = sorted(f.name for f in refdir.iterdir())
    assert "manifest.json" in files and "images.npy" in files
    assert not any(f.endswith((".pkl", ".pickle", ".pt")) for f in files)
    np.load(refdir / "images.npy", allow_pickle=False)
    m = json.loads((refdir / "manifest.json").read_text())
    assert m["size"] == S and m["count"] == 40
    spec = ManifoldProjector(refdir, k=2).spec(FingerprintSpec(size=S))
    spec2 = FingerprintSpec.from_json(spec.to_json())
    assert spec2 == spec and spec2.id == spec.id
    p = load_projector(spec2.projector)
    assert p.k == 2 and p.to_spec_dict() == spec.projector


def test_cli_build_from_image_folder(tmp_path, ref_images):
    from PIL import Image
    src = tmp_path / "real"
    src.mkdir()
    for i in range(5):
        big = np.zeros((S + 4, S + 6, 3), np.uint8)
        big[2:2 + S, 3:3 + S] = ref_images[i]
        Image.fromarray(big).save(src / f"{i}.png")
    Image.fromarray(ref_images[0][:8, :8]).save(src / "small.png")
    (src / "broken.png").write_bytes(b"not a png")
    from click.testing import CliRunner
    from fpfast.cli import cli
    argv = ["manifold", "build", str(src), "--out", str(tmp_path / "out"), "--size", str(S)]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 0, r.output
    p = ManifoldProjector(tmp_path / "out")
    assert p.ref.manifest["n_skipped"] == 2
    x = torch.from_numpy(ref_images[:5]).permute(0, 3, 1, 2).float() / 255
    assert torch.count_nonzero(p.residual(x)) == 0
    assert CliRunner().invoke(cli, argv).exit_code == 2  # exists


def test_reference_image_with_exif_rotation_matches_its_query(tmp_path, ref_images):
    """The reference set decodes like the stream (EXIF rotation applied): the upright query of a
    rotated-on-disk reference image is its own nearest neighbour (zero residual)."""
    import io as _io

    from PIL import Image

    from fpfast.io.decode import decode_image
    src = tmp_path / "real"
    src.mkdir()
    upright = np.random.default_rng(5).integers(0, 256, (S, S + 8, 3), dtype=np.uint8)  # not square
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))  # what the camera wrote
    exif = stored.getexif()
    exif[0x0112] = 6  # display: rotate 90 clockwise -> upright
    stored.save(src / "rot.png", exif=exif)
    for i in range(1, 4):
        Image.fromarray(ref_images[i]).save(src / f"{i}.png")
    shown, note = decode_image((src / "rot.png").read_bytes())
    np.testing.assert_array_equal(shown, upright)  # the stream shows the query upright
    ref = build_manifold([str(src)], tmp_path / "out", S)
    query = upright[:, 4:S + 4]  # the centre crop of the S x (S + 8) upright image
    x = torch.from_numpy(query[None].copy()).permute(0, 3, 1, 2).float() / 255
    assert torch.count_nonzero(ManifoldProjector(ref.dir).residual(x)) == 0


def test_non_finite_query_and_negative_rerank_are_refused(refdir):
    """A NaN pixel has no nearest neighbour (it used to loop forever in exact mode's second pass)."""
    x = _queries(2)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ProjectorError, match="NaN"):
        ManifoldProjector(refdir, engine="torch").search(x)
    with pytest.raises(ProjectorError, match="rerank"):
        ManifoldProjector(refdir, rerank=-1)

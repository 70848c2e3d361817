"""GPU paths: collected everywhere, skipped without CUDA. Needs no faiss (the lent GPU machines
have none): the gallery then searches through torch, and brute force numpy is the oracle."""
import numpy as np
import pytest
import torch

from fpfast.search import faiss_search
from fpfast.gallery import Gallery, GalleryError, torch_knn
from fpfast.gallery import index as fidx

from _gallery_synth import Clusters, assert_knn_exact

def cuda(obj):
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(obj))


@cuda
class TestGalleryCuda:
    def test_torch_search_on_gpu_equals_brute_force(self):
        rng = np.random.default_rng(41)
        x = rng.normal(size=(5000, 179)).astype(np.float32)
        q = rng.normal(size=(300, 179)).astype(np.float32)
        d, i = torch_knn(torch.from_numpy(q).cuda(), torch.from_numpy(x).cuda(), 10,
                         query_chunk=128, base_chunk=1024)
        assert d.is_cuda and i.is_cuda
        assert_knn_exact(d.cpu().numpy(), i.cpu().numpy(), x, q, 10)
        cd, ci = torch_knn(torch.from_numpy(q), torch.from_numpy(x), 10)
        assert (ci.numpy() == i.cpu().numpy()).mean() > 0.999

    def test_tf32_does_not_leak_into_search(self):
        rng = np.random.default_rng(42)
        x = rng.normal(size=(2000, 179)).astype(np.float32) * 10
        q = rng.normal(size=(100, 179)).astype(np.float32) * 10
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")          # TF32 allowed by the caller
        try:
            d, i = torch_knn(torch.from_numpy(q).cuda(), torch.from_numpy(x).cuda(), 5)
        finally:
            torch.set_float32_matmul_precision(old)
        assert_knn_exact(d.cpu().numpy(), i.cpu().numpy(), x, q, 5)

    def test_gallery_with_cuda_queries_answers_like_numpy(self, tmp_path):
        c = Clusters(n_models=4, seed=43, sep=2.0)
        g = Gallery.create(tmp_path / "g")
        c.enroll(g, range(4), 100)
        q, y = c.batch(range(4), 25)
        ref = g.search(q, 8)
        got = g.search(torch.from_numpy(q).cuda(), 8)
        assert (ref.ids == got.ids).mean() > 0.999
        np.testing.assert_allclose(ref.distances, got.distances, rtol=1e-4, atol=1e-3)
        a_cpu = g.attribute(q, k=8)
        a_gpu = g.attribute(torch.from_numpy(q).cuda(), k=8)
        assert np.mean(np.array(a_cpu.model) == np.array(a_gpu.model)) > 0.99
        np.testing.assert_allclose(a_cpu.ratio, a_gpu.ratio, rtol=1e-3, atol=1e-4)   # model_distances on the GPU
        a_c = g.attribute(torch.from_numpy(q).cuda(), method="centroid")
        assert np.mean(np.array(a_c.model) == np.array(y)) > 0.9

    @pytest.mark.skipif(fidx.num_gpus() == 0, reason="needs faiss with GPUs (faiss-gpu)")
    def test_faiss_gpu_index_answers_like_cpu(self, tmp_path):
        c = Clusters(n_models=3, seed=44)
        g = Gallery.create(tmp_path / "g")
        c.enroll(g, range(3), 100)
        q, _ = c.batch(range(3), 20)
        res = g.search(q, 5)
        assert "Gpu" in type(g._index).__name__
        cpu = fidx.build("flat", {}, g.transform(g._vectors))
        _, ids = faiss_search(cpu, g.transform(q), 5)
        assert (ids == res.ids).mean() > 0.999
        g.save()
        np.testing.assert_array_equal(Gallery.load(tmp_path / "g").search(q, 5).ids, res.ids)


def test_gallery_without_faiss_searches_through_torch(tmp_path, monkeypatch):
    """The GPU machines have no faiss: a flat gallery must still load, search and save."""
    pytest.importorskip("faiss")
    c = Clusters(n_models=3, seed=45)
    g = Gallery.create(tmp_path / "g")
    c.enroll(g, range(3), 40)
    q, _ = c.batch(range(3), 10)
    ref = g.search(q, 5)
    g.save()
    ivf = Gallery.create(tmp_path / "ivf", index="ivf")
    ivf.add("a", c.sample(0, 50))
    ivf.search(q)
    ivf.save()
    monkeypatch.setattr(fidx, "faiss_module", lambda: None)
    h = Gallery.load(tmp_path / "g")
    assert h._index is None
    got = h.search(torch.from_numpy(q), 5)
    assert (got.ids == ref.ids).mean() > 0.999
    h.add("more", c.sample(0, 12))
    h.save()                                       # no faiss: saved without an index file
    assert not (tmp_path / "g" / "index.faiss").exists()
    with pytest.raises(GalleryError, match="faiss is not installed"):
        Gallery.load(tmp_path / "ivf")
    monkeypatch.undo()
    k = Gallery.load(tmp_path / "g")              # faiss back: the index is built on demand
    assert k.models()["more"] == 12
    np.testing.assert_array_equal(k.search(q, 5).ids[:, 0], h.search(q, 5).ids[:, 0])

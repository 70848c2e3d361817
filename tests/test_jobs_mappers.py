"""Mappers hand columns (tensors on the batch's device) to the search, never per-image dicts."""
import numpy as np
import pytest
import torch

from fpfast.gallery import Gallery
from fpfast.gallery import gallery as gallery_module
from fpfast.jobs.mappers import attribute_mapper, fingerprint_mapper
from fpfast.jobs.options import StreamOptions
from fpfast.spec import FingerprintSpec

SPEC = FingerprintSpec()
B = 6


def _images(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, SPEC.size, SPEC.size, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    g = Gallery.create(str(tmp_path_factory.mktemp("g") / "g"), SPEC)
    fp = fingerprint_mapper(SPEC)
    for j, name in enumerate(("a", "b")):
        g.add(name, fp(_images(j, 8), [""] * 8)["vector"].numpy())
    g.fit()
    return g


def _spy(monkeypatch, gallery):
    """Record what reaches Gallery.attribute and the search functions the gallery calls."""
    seen = {"attribute": [], "search": []}
    attribute = gallery.attribute

    def spy_attribute(q, **kw):
        seen["attribute"].append(q)
        return attribute(q, **kw)
    monkeypatch.setattr(gallery, "attribute", spy_attribute)
    for name in ("torch_knn", "faiss_search"):
        fn = getattr(gallery_module, name)
        # torch_knn(queries, base, k); faiss_search(index, queries, k)
        pos = 0 if name == "torch_knn" else 1

        def spy(*a, _fn=fn, _pos=pos, **kw):
            seen["search"].append(a[_pos])
            return _fn(*a, **kw)
        monkeypatch.setattr(gallery_module, name, spy)
    return seen


def test_fingerprint_mapper_returns_a_tensor_column():
    cols = fingerprint_mapper(SPEC)(_images(3, B), list("abcdef"))
    assert set(cols) == {"vector"}
    v = cols["vector"]
    assert isinstance(v, torch.Tensor) and v.shape == (B, SPEC.dim) and v.dtype == torch.float32


def test_attribute_mapper_hands_a_tensor_to_the_search(gallery, monkeypatch):
    seen = _spy(monkeypatch, gallery)
    cols = attribute_mapper(gallery, StreamOptions(device="cpu"), k=3)(_images(4, B), list("abcdef"))
    (q,) = seen["attribute"]
    assert isinstance(q, torch.Tensor) and q.shape == (B, SPEC.dim)  # one tensor, not B dicts
    assert seen["search"], "the gallery searched nothing"
    assert all(len(c) == B for c in cols.values()) and set(cols["predicted"]) <= {"a", "b"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batch_reaches_the_gallery_and_is_searched_on_the_gpu(gallery, monkeypatch):
    seen = _spy(monkeypatch, gallery)
    batch = _images(4, B).cuda()
    cols = attribute_mapper(gallery, StreamOptions(device="cuda"), k=3)(batch, list("abcdef"))
    (q,) = seen["attribute"]
    assert isinstance(q, torch.Tensor) and q.is_cuda
    assert seen["search"] and all(isinstance(s, torch.Tensor) and s.is_cuda for s in seen["search"])
    cpu = attribute_mapper(gallery, StreamOptions(device="cpu"), k=3)(batch.cpu(), list("abcdef"))
    assert cols["predicted"] == cpu["predicted"]
    np.testing.assert_allclose(cols["distance"], cpu["distance"], rtol=1e-3, atol=1e-3)  # GPU vs CPU float32 sums

"""The zoo's large split (issue 14): the zoo's autoencoders applied to larger photo crops."""
import numpy as np
import pytest

from fpfast.zoo import build_zoo, load_zoo_split
from fpfast.zoo.large import build_large


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "z"
    build_zoo(out, preset="tiny", seed=0, device="cpu", progress=False, only=["ae_tconv", "ae_bicubic"])
    return out


@pytest.mark.slow  # builds a zoo of two autoencoders first
def test_large_split_layout_labels_and_determinism(small_zoo, tmp_path):
    s = build_large(small_zoo, tmp_path / "a", size=64, n_train=3, n_test=2, progress=False)
    assert s["splits"]["train"] == {"real": 3, "ae_tconv": 3} and s["splits"]["open_set"] == {"ae_bicubic": 2}
    imgs, labels, _ = load_zoo_split(tmp_path / "a", "test")
    assert {im.shape for im in imgs} == {(64, 64, 3)} and sorted(set(labels)) == ["ae_tconv", "real"]
    assert set(load_zoo_split(tmp_path / "a", "open_set")[1]) == {"unknown"}
    assert {im.shape for im in load_zoo_split(tmp_path / "a", "test_resize")[0]} == {(32, 32, 3)}
    again = build_large(small_zoo, tmp_path / "b", size=64, n_train=3, n_test=2, progress=False, only=["ae_tconv"])
    a, b = load_zoo_split(tmp_path / "a", "train")[0], load_zoo_split(tmp_path / "b", "train")[0]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and "open_set" not in again["splits"]
    # an autoencoder's output differs from the photo it reconstructs (it is a generator's image)
    assert not np.array_equal(a[0], a[3])

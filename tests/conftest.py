"""Shared fixtures: the synthetic learned-embedding data set and one embedder trained on it."""
import pytest
import torch

from _embed_synth import FAST, SPEC, TINY, make


@pytest.fixture(scope="session")
def embed_data():
    """(train, test) of the three synthetic up-sampling classes: 24 and 10 images per class."""
    return make(24, 0), make(10, 1)


@pytest.fixture(scope="session")
def embed_trained(embed_data):
    """(embedder, per-epoch log) of the tiny network trained on ``embed_data`` (seed 3, one thread)."""
    from fpfast.embed import train_embedding
    (x, y), _ = embed_data
    torch.set_num_threads(1)
    return train_embedding(x, y, SPEC, arch=TINY, seed=3, **FAST)

"""Learned fingerprint embeddings: a small residual CNN trained on artifacts (issue 8).

    from fpfast.embed import train_embedding
    emb, log = train_embedding(images, labels, spec, epochs=30)     # uint8 HxWx3 + labels
    vecs = emb.embed(torch.from_numpy(np.stack(images)))             # [B, D_e] unit vectors

A gallery stores an embedder through :meth:`fpfast.gallery.Gallery.with_embedding`; see
:mod:`fpfast.embed.model` for the network and serialisation, :mod:`fpfast.embed.train` for the
objective and augmentations.
"""
from .model import DEFAULT_ARCH, Embedder, EmbedError, ResidualEmbedNet, identity_of
from .train import DEFAULT_TRAIN, train_embedding

__all__ = ["DEFAULT_ARCH", "DEFAULT_TRAIN", "Embedder", "EmbedError", "ResidualEmbedNet",
           "identity_of", "train_embedding"]

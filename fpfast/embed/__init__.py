"""Learned fingerprint embeddings: a small residual CNN trained on artifacts (issue 8).

    from fpfast.embed import train_embedding
    emb, log = train_embedding(images, labels, spec, epochs=30)     # uint8 HxWx3 + labels
    vecs = emb.embed(torch.from_numpy(np.stack(images)))             # [B, D_e] unit vectors

Where it lives and how mixing is prevented: an embedding gallery is an ordinary gallery whose
``FingerprintSpec`` carries ``embedding = {"kind", "identity", "dim"}`` (``identity`` = sha256 of
``embedding.json`` + NUL + ``embedding.safetensors``, both stored in the gallery directory and
listed with their sha256 in ``gallery.json``). The spec's ``dim`` becomes the embedding's and its
id changes, so handcrafted vectors (wrong shape), a handcrafted spec (``require_same`` names the
``embedding`` difference) or another embedding's queries (other identity) are refused, never
compared. ``Gallery.load`` recomputes the identity from the two files, even with ``verify=False``,
and refuses the gallery on a mismatch. The gallery's vectors are the embeddings of the enrolled
images; ``fpfast train`` re-embeds them from the labelled folders (the gallery keeps no pixels),
and ``enroll`` / ``attribute`` / ``eval`` / ``search`` embed queries with ``Gallery.embedder()``
(``fpfast.jobs.mappers.vector_mapper``). Enrolling a new model later uses the frozen embedding.

A gallery stores an embedder through :meth:`fpfast.gallery.Gallery.with_embedding`; see
:mod:`fpfast.embed.model` for the network and serialisation, :mod:`fpfast.embed.train` for the
objective and augmentations.
"""
from .model import DEFAULT_ARCH, Embedder, EmbedError, ResidualEmbedNet, identity_of
from .train import DEFAULT_TRAIN, train_embedding

__all__ = ["DEFAULT_ARCH", "DEFAULT_TRAIN", "Embedder", "EmbedError", "ResidualEmbedNet",
           "identity_of", "train_embedding"]

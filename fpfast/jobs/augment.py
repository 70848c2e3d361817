"""Augmented enrollment (``fpfast enroll --augment K``): each enrolled image is also enrolled as
K copies re-encoded the way images are in the wild, so that a JPEG-compressed or down-scaled
query of a known model finds samples of that model that went through the same.

The copies are drawn from the learned embedding's training augmentations
(:func:`fpfast.embed.train.augment_batch`: flips; with probability 0.4 a down-scale by 0.5 or a
factor in (0.5, 1) with a Pillow filter among bilinear / bicubic / Lanczos / box; with probability
0.5 a JPEG round trip at quality 60-100; a crop of a few pixels), one image at a time from a
generator seeded by the gallery's seed and the image's pixels, so a copy does not depend on which
other images are enrolled with it nor on where its file lies. They are made from the image as the
pipeline decodes it, in the spec's geometry (the centre crop of a large image: the copies
re-encode that crop), and for a heavy projector cut to sides that are multiples of 8 as its
training crops are. Held-out
images (calibration) are not augmented; they get fixed processed copies instead
(:func:`add_calibration_copies`, :mod:`fpfast.gallery.conditions`). The measured effect:
``benchmarks/results/accuracy.md``, "Augmented enrollment".
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..gallery.conditions import aug_key
from ..prepare import map_images


def augmented_copies(image: np.ndarray, k: int, min_size: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` augmented uint8 copies of one HxWx3 ``image``, deterministic for (its pixels, ``seed``)."""
    from ..embed.train import DEFAULT_TRAIN, augment_batch
    from ..gallery.views import pixel_seed
    opts = {**DEFAULT_TRAIN, "patch": 0}
    rng = np.random.default_rng([int(seed), pixel_seed(image, "augment")])
    base = min(image.shape[:2])
    return [augment_batch([image], base, min_size, rng, opts)[0] for _ in range(k)]


def add_augmented(gallery, model: str, images: Sequence[np.ndarray], keys: Sequence[str],
                  vectorize: Callable, k: int, seed: int = 0) -> int:
    """Enroll ``k`` augmented copies of each of ``model``'s ``images`` (keyed ``keys``) into
    ``gallery``; ``vectorize``: a uint8 batch [B, H, W, 3] -> vectors [B, D] in the gallery's
    space. Copies already enrolled (same key) are skipped. Returns how many were added."""
    if k <= 0 or not len(images):
        return 0
    from ..embed.train import projector_crop
    copies, ckeys = [], []
    for im, key in zip(images, keys):
        made = augmented_copies(np.asarray(im, np.uint8), k, gallery.spec.min_size, seed)
        if gallery.spec.projector is not None:  # cut as training cuts a heavy projector's input
            made = [projector_crop(c[None])[0] for c in made]
        copies += made
        ckeys += [aug_key(key, j + 1) for j in range(k)]
    return gallery.add(model, map_images(copies, vectorize), ckeys, skip_known=True)


def add_calibration_copies(gallery, model: str, images: Sequence[np.ndarray], keys: Sequence[str],
                           vectorize: Callable, condition: Callable | None = None, size: int | None = None) -> int:
    """Keep the processed copies (:func:`fpfast.gallery.conditions.calibration_copies`) of
    ``model``'s held-out ``images`` (keyed ``keys``) as held-out samples of it, keyed
    ``KEY#cal-NAME``: what calibration tells processed queries from clean ones with. Returns
    how many were kept (copies already held, same key, are skipped, and so are copies smaller than
    the spec's smallest input). ``condition``: as ``vectorize``, the condition detector's vectors
    of a plain learned embedding's gallery (:func:`fpfast.jobs.mappers.condition_mapper`).
    ``size``: the spec's crop, when ``images`` are the larger regions of
    :func:`~fpfast.gallery.conditions.copy_spec`."""
    from ..embed.train import projector_crop
    from ..gallery.conditions import calibration_copies, copy_key
    copies, ckeys = [], []
    for im, key in zip(images, keys):
        for name, c in calibration_copies(np.asarray(im, np.uint8), size):
            if min(c.shape[:2]) < gallery.spec.min_size:  # a query that small is refused: no threshold for it
                continue
            copies.append(projector_crop(c[None])[0] if gallery.spec.projector is not None else c)
            ckeys.append(copy_key(key, name))
    if not copies:
        return 0
    return gallery.add_holdout(model, map_images(copies, vectorize), ckeys, skip_known=True,
                               condition=None if condition is None else map_images(copies, condition))


def add_views(gallery, model: str, images: Sequence[np.ndarray], keys: Sequence[str], vectorize: Callable,
              size: int | None = None) -> int:
    """Enroll each of the gallery's views (:mod:`fpfast.gallery.views`) of ``model``'s enrolled
    ``images`` (keyed ``keys``; copies smaller than the spec's smallest input are left out;
    ``size`` as in :func:`add_calibration_copies`). Returns how many view samples were added."""
    from ..embed.train import projector_crop
    from ..gallery.views import view_copy
    added = 0
    for name in gallery.view_names:
        made = [(view_copy(np.asarray(im, np.uint8), name, True, size), key) for im, key in zip(images, keys)]
        if gallery.spec.projector is not None:
            made = [(projector_crop(c[None])[0], key) for c, key in made]
        made = [(c, key) for c, key in made if min(c.shape[:2]) >= gallery.spec.min_size]
        if made:
            added += gallery.add_view(name, model, map_images([c for c, _ in made], vectorize), [k for _, k in made])
    return added


def enroll_copies(gallery, model: str, sources, new_keys: Sequence[str], held_keys: Sequence[str], opts,
                  column: str | None = None, calibrate_on: str = "augmented") -> tuple[int, int]:
    """(augmented copies enrolled, calibration copies held out) of ``model``'s images just
    enrolled from ``sources`` (keyed ``new_keys``: ``gallery.augment`` copies each, and the
    gallery's views, :func:`add_views`) and just held out (``held_keys``: with
    ``calibrate_on="augmented"``, :func:`add_calibration_copies`). Those images are decoded
    again, once for all (enrollment keeps only vectors), as the larger centre region the views'
    and calibration copies' down-scales are made of
    (:func:`~fpfast.gallery.conditions.copy_spec`; its side noted: ``Gallery.note_copy_sides``);
    the sources' other images are read past, not decoded."""
    want_aug = set(new_keys) if gallery.augment or gallery.view_names else set()
    want_cal = set(held_keys) if calibrate_on == "augmented" else set()
    if not want_aug and not want_cal:
        return 0, 0
    from ..gallery.conditions import centre, copy_region
    from .collect import image_sources
    from .mappers import condition_mapper, host_vectors, vector_mapper
    cspec, size = copy_region(gallery.spec)
    imgs, keys, _ = image_sources(sources, cspec, opts, column=column, desc=f"{model}: copies",
                                  only_keys=want_aug | want_cal)
    gallery.note_copy_sides([min(im.shape[:2]) for im in imgs])
    vectorize, cm = host_vectors(vector_mapper(gallery.spec, opts, gallery.embedder())), \
        condition_mapper(gallery.spec, opts)

    def picked(want):
        sel = [i for i, key in enumerate(keys) if key in want]
        return [imgs[i] for i in sel], [keys[i] for i in sel]
    enrolled = picked(want_aug)
    n_aug = add_augmented(gallery, model, [centre(im, size) for im in enrolled[0]], enrolled[1], vectorize,
                          gallery.augment) if gallery.augment else 0
    if want_aug and gallery.view_names:
        add_views(gallery, model, *enrolled, vectorize, size)
    n_cal = add_calibration_copies(gallery, model, *picked(want_cal), vectorize,
                                   None if cm is None else host_vectors(cm), size) if want_cal else 0
    return n_aug, n_cal

"""Views: the gallery's images as a processed query would show them (issue 14, the resize and JPEG
columns).

A query that was down-scaled or JPEG-compressed is far from every clean sample of its own model,
and a gallery of clean images then answers it at chance. So a gallery keeps, beside its samples,
*views*: every enrolled image again under one processing (:data:`VIEWS`: a 0.75x and a 0.5x
bicubic down-scale, a JPEG round trip at a quality in 70-95 drawn per image), each view a
gallery of its own with its own normaliser, index and open-set thresholds (:class:`Gallery`
objects held by the parent and saved inside its directory). A :class:`Router` (two logistic-regression detectors, fitted on the
held-out images and their processed copies, :mod:`.conditions`) sends a query that looks
JPEG-compressed, unless its file is known to be of a lossless format (:func:`jpeg_file`) and its
pixels carry no JPEG grid (:mod:`.jpeg_grid`), to the JPEG view and one that looks down-scaled,
and is smaller than the gallery's images, to the view whose scale is nearest its own (its side
over the gallery's); every other query is answered by the gallery itself. For images larger than
the spec's crop a down-scaled copy is the crop of the down-scaled image (a larger centre region
is decoded for the copies: :func:`.conditions.copy_spec`), as a down-scaled query of such an
image is; a query of a gallery made of images at least twice the crop
(``Gallery.large_views``) is then no smaller than the crop when down-scaled, so the size rule
compares its side before the crop (as the decoder reads it) with the enrolled images' own, and
once the router saw enough clean images one that looks down-scaled and not JPEG-compressed, of
any size, goes to the view a third detector (0.75x against 0.5x copies) picks. The processing
of the views is not the test splits' (the zoo's down-scales are bilinear, its JPEGs quality 90
/ 75). The measured effect: ``benchmarks/results/accuracy.md``, "Views", "Large images,
down-scaled" and "Large images, their own size".
"""
from __future__ import annotations

import numpy as np

from . import conditions as cond

VIEWS = {"scale075": ("bicubic", 0.75), "scale05": ("bicubic", 0.5), "jpeg85": ("jpeg", 85)}
# the calibration copies (conditions.COPIES) each view's open-set thresholds are fitted on
FEEDS = {"scale075": ("resize075",), "scale05": ("resize05",), "jpeg85": ("jpeg90", "jpeg70")}
# what each detector of the router calls positive (against the clean held-out images and their crops)
SCALED, JPEG = ("resize075", "resize05"), ("jpeg90", "jpeg70")
NOT_PROCESSED = ("crop08",)
SMALL = 0.9   # a query below this fraction of the gallery's side is small enough to be a down-scale
# a query routed to a scale view (by its size or its look) keeps the gallery's own answer when
# that one's open-set score is lower than the view's by more than this (chosen on the zoos' and
# the large splits' training images, for each rule: benchmarks/results/accuracy.md, "Large
# images, down-scaled", "Large images, their own size", "The keep step for every scale view")
KEEP_MARGIN = 0.25
# ... and no query is routed by its look alone unless the router was fitted on at least this many
# clean held-out images (on the same training images: 18-30 cost 3-9 points of clean accuracy,
# 45-50 cost 2-3.5; with the enrolled images' help, 18-20 still cost up to 6)
MIN_LOOK_CLEAN = 40
QUALITIES = (70, 95)  # a JPEG view's copies: each image's quality drawn from its pixels (view_copy)


def smaller(sides, side: int) -> np.ndarray:
    """Per query, whether its side (before the crop) is small enough, against the gallery's
    ``side``, to be a down-scale (:data:`SMALL`): what the size rule routes."""
    return np.asarray(sides, np.float64).reshape(-1) < SMALL * side


def looks_enough(clean: int) -> bool:
    """Whether a router fitted on ``clean`` clean held-out images routes queries by their look
    alone (:data:`MIN_LOOK_CLEAN`)."""
    return int(clean) >= MIN_LOOK_CLEAN


def check_views(names) -> tuple[str, ...]:
    """The view names, checked and in :data:`VIEWS`'s order."""
    names = tuple(names or ())
    bad = sorted(set(names) - set(VIEWS))
    if bad:
        raise ValueError(f"unknown gallery view(s) {bad}; expected some of {list(VIEWS)}")
    return tuple(v for v in VIEWS if v in names)


def parse_views(text: str) -> tuple[str, ...]:
    """``--views`` text: ``none``, ``all`` or names separated by commas."""
    t = text.strip().lower()
    if t == "none":
        return ()
    if t == "all":
        return tuple(VIEWS)
    return check_views(p.strip() for p in t.split(",") if p.strip())


def pixel_seed(image: np.ndarray, salt: str = "") -> int:
    """A 64-bit seed of a uint8 image's pixels (and shape) and ``salt``: what a copy drawn from it
    depends on, so the same image gives the same copies wherever its file lies."""
    import hashlib
    image = np.ascontiguousarray(image, np.uint8)
    digest = hashlib.sha256(f"{salt}\0{image.shape}\0".encode() + image.tobytes()).digest()
    return int.from_bytes(digest[:8], "little")


def view_copy(image: np.ndarray, name: str, drawn: bool = False, size: int | None = None) -> np.ndarray:
    """One uint8 HxWx3 ``image`` under view ``name``'s processing. With ``drawn``, a JPEG view's
    quality is drawn in :data:`QUALITIES` from the image's pixels (the same image gives the same
    copy wherever its file lies; its nominal quality without ``drawn``), so that the view holds
    images compressed the several ways queries are; a down-scale is always bicubic (drawing the
    filter too was worse on validation images: ``benchmarks/results/embedding.md``). ``size``:
    as in :func:`.conditions.calibration_copies` (a down-scale of the whole larger region,
    cropped after; a JPEG of the crop)."""
    from PIL import Image

    from ..embed.train import _jpeg, _rescale
    how, arg = VIEWS[name]
    full = np.ascontiguousarray(image, np.uint8)
    image = cond.centre(full, size)
    if how == "jpeg":
        if drawn:
            arg = int(np.random.default_rng(pixel_seed(image, name)).integers(QUALITIES[0], QUALITIES[1] + 1))
        return _jpeg(image, arg)
    return cond.centre(_rescale(full, arg, Image.BICUBIC), size)


def copy_name(key: str) -> str | None:
    """The :data:`~.conditions.COPIES` name of a held-out calibration copy's key, None for an image."""
    return str(key).rsplit(cond.TAG, 1)[1] if cond.is_copy(key) else None


JPEG_NAMES = (".jpg", ".jpeg", ".jpe", ".jfif")
# lossless formats: such a file was not compressed as it was saved (WebP may be lossy, GIF is
# palette-quantised: they say nothing, and the detectors decide)
NOT_JPEG_NAMES = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


def jpeg_file(key) -> float:
    """1.0 when a query's key (its file or tar member name) names a JPEG file, 0.0 when it names a
    lossless format (:data:`NOT_JPEG_NAMES`), NaN when it says nothing (no key, no known extension,
    a format that may be lossy)."""
    k = str(key or "").lower()
    return 1.0 if k.endswith(JPEG_NAMES) else 0.0 if k.endswith(NOT_JPEG_NAMES) else float("nan")


class Router:
    """Which view answers each query: ``scaled`` and ``jpeg`` detectors (p(clean) of the gallery's
    raw vectors, or of the handcrafted ones of a plain learned embedding), and ``factor``, which
    tells the milder down-scale's copies from the stronger's (p(0.75x)): for a gallery whose views
    were made of large images, a down-scaled query is no smaller than its images' crop, and its
    size cannot say by how much it was down-scaled."""

    def __init__(self, scaled: "cond.ConditionDetector | None", jpeg: "cond.ConditionDetector | None",
                 factor: "cond.ConditionDetector | None" = None, clean: int = 0):
        self.scaled, self.jpeg, self.factor = scaled, jpeg, factor
        self.clean = int(clean)   # clean held-out images among those the detectors were fitted on

    @classmethod
    def fit(cls, x: np.ndarray, copies: list, look=None) -> "Router | None":
        """From held-out vectors ``x`` and each one's copy name (None: the image itself); ``look``:
        more (vectors, copy name) groups that the down-scale detectors (``scaled``, ``factor``)
        also learn from, not the JPEG one (``Gallery._calibrate_views``: the enrolled images and
        their scale views, for a gallery of large images)."""
        def fit_on(x, copies, positive):
            plain = np.array([c is None or c in NOT_PROCESSED for c in copies], bool)
            sel = plain | np.array([c in positive for c in copies], bool)
            return cond.ConditionDetector.fit(x[sel], plain[sel])
        jpeg, held = fit_on(x, copies, JPEG), sum(c is None for c in copies)
        if look:
            x = np.concatenate([np.asarray(x, np.float64)] + [np.asarray(v, np.float64) for v, _ in look])
            copies = list(copies) + [c for v, c in look for _ in range(len(v))]
        scaled = np.array([c in SCALED for c in copies], bool)
        factor = cond.ConditionDetector.fit(x[scaled], np.array(copies, dtype=object)[scaled] == SCALED[0])
        r = cls(fit_on(x, copies, SCALED), jpeg, factor, held)
        return r if r.scaled is not None or r.jpeg is not None else None

    def route(self, x, sides, side: int | None, views: dict, jpeg=None, full_size: bool = False,
              native: int | None = None) -> np.ndarray:
        """Per query, the name of the view that answers it, or "" for the gallery itself. ``x``:
        the detectors' input [Q, D]; ``sides``: each query's shorter side before the crop (None:
        no down-scale is routed by its size); ``side``: the gallery's (its images' shorter side,
        capped by the spec's crop); ``jpeg``: per query whether its file is a JPEG
        (:func:`jpeg_file`: 1, 0, or NaN for unknown; None: unknown for all). A query smaller than
        the gallery's images that looks down-scaled goes to the view whose scale is nearest its
        own; with ``full_size`` (the views were made of images large enough that every down-scaled
        copy is a whole crop: ``Gallery.large_views``) "the gallery's images" are ``native`` (their
        shorter side before the crop) and, with a router fitted on at least
        :data:`MIN_LOOK_CLEAN` clean held-out images, a query of any other size that looks
        down-scaled goes to the view the ``factor`` detector picks, unless it looks
        JPEG-compressed. A query from a file known not to be a JPEG is never sent to the JPEG
        view, whatever the detector says: an unseen generator's clean images can look compressed
        to it."""
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        out = np.full(len(x), "", dtype=object)
        scales = {v: VIEWS[v][1] for v in views if VIEWS[v][0] != "jpeg"}
        jpegs = [v for v in views if VIEWS[v][0] == "jpeg"]
        looks_jpeg = np.zeros(len(x), bool)
        if self.jpeg is not None and jpegs:
            maybe = np.ones(len(x), bool) if jpeg is None else np.asarray(jpeg, np.float64).reshape(-1) != 0
            looks_jpeg = maybe & ~self.jpeg.is_clean(x)
        if self.scaled is not None and scales and (full_size or (sides is not None and side)):
            down = ~self.scaled.is_clean(x)
            names = sorted(scales, key=lambda v: -scales[v])   # the mildest first
            for ref in (side, native if full_size else None):   # the crop's, then the images' own
                if sides is not None and ref:
                    f = np.asarray(sides, np.float64).reshape(-1) / ref
                    small = smaller(sides, ref) & down & (out == "")
                    near = np.abs(np.log(np.maximum(f, 1e-6))[:, None] - np.log([scales[v] for v in names])[None])
                    out[small] = np.array(names, dtype=object)[near.argmin(1)[small]]
            if full_size and looks_enough(self.clean):  # a compressed query looks down-scaled too: JPEG first
                big = down & (out == "") & ~looks_jpeg
                mild = self.factor.is_clean(x[big]) if self.factor is not None else np.ones(int(big.sum()), bool)
                out[big] = np.where(mild, names[0], names[-1])
        out[(out == "") & looks_jpeg] = jpegs[0] if jpegs else ""
        return out

    def to_dict(self, reads: str) -> dict:
        return {"input": reads, "clean": self.clean,
                **{k: None if getattr(self, k) is None else getattr(self, k).to_dict(reads)
                   for k in ("scaled", "jpeg", "factor")}}

    @classmethod
    def from_dict(cls, d: dict, dim: int) -> "Router":
        """(``factor`` and ``clean`` are absent from galleries made before them: None, 0.)"""
        clean = d.get("clean", 0)
        if not isinstance(clean, int) or isinstance(clean, bool) or clean < 0:
            raise ValueError(f"the router's clean count must be a non-negative integer, got {clean!r}")
        return cls(*(None if d.get(k) is None else cond.ConditionDetector.from_dict(d[k], dim)
                     for k in ("scaled", "jpeg", "factor")), clean)

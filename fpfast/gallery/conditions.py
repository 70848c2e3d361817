"""Clean or processed: the copies open-set calibration learns from, and the detector that tells a
query's condition from its vector (issue 14).

A gallery calibrated on clean held-out images alone answers most JPEG-compressed or resized
images of *known* models ``unknown``; calibrated on clean and processed held-out images pooled,
its thresholds follow the hardest condition and let almost every image of an unseen generator
through. So enrollment keeps, beside each held-out image, one processed copy per :data:`COPIES`
entry (held out too, keyed ``KEY#cal-NAME``), and recalibration fits, per method, thresholds on
the clean held-out samples, thresholds on all of them, and a :class:`ConditionDetector`
(standardise + logistic regression on the gallery's raw vectors, or for a plain learned
embedding on the handcrafted vector kept beside it: :func:`detector_spec`) trained to tell the
clean held-out samples from their copies. A query the detector calls clean meets the clean
thresholds, any other the pooled ones (``Gallery.query_condition``). What it buys:
``benchmarks/results/accuracy.md``, "Calibrated `unknown`s".

The copies are not the benchmarks' test conditions: JPEG quality 90 and 70, a 0.75x bicubic and a
0.5x Lanczos down-scale, and a crop keeping 0.8 of each side offset by a tenth (the zoo's test
splits use JPEG 75, bilinear down-scales and a centred 3/4 crop).
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..prepare import centre_box

TAG = "#cal-"   # the held-out key of copy NAME of an image keyed k: f"{k}#cal-{NAME}"
COPIES = {"jpeg90": ("jpeg", 90), "jpeg70": ("jpeg", 70), "resize075": ("bicubic", 0.75),
          "resize05": ("lanczos", 0.5), "crop08": ("crop", 0.8)}
MIN_EACH = 10    # clean held-out samples (and copies) below which no detector is fitted
L2 = 1e-3        # the detector's penalty: mean cross-entropy + L2 ||w||^2


def detector_spec(spec):
    """The spec of the vectors a gallery of ``spec`` detects conditions on, or None for its own
    vectors: a plain learned embedding (trained to ignore re-encoding) gets the cheap handcrafted
    vector of the same geometry beside it; handcrafted vectors, and an embedding followed by the
    handcrafted vector, are used as they are."""
    e = spec.embedding
    if e is None or e.get("appended"):
        return None
    return spec.handcrafted().replace(projector=None, crops=None)


def copy_key(key: str, name: str) -> str:
    return f"{key}{TAG}{name}"


def is_copy(key: str) -> bool:
    return TAG in str(key)


AUG = "#aug"   # the key of augmented copy j (1-based) of an enrolled image keyed k: f"{k}#aug{j}"


def aug_key(key: str, j: int) -> str:
    """The key of augmented copy ``j`` of an enrolled image keyed ``key`` (``fpfast enroll --augment``)."""
    return f"{key}{AUG}{j}"


def aug_source(key: str) -> str:
    """The key of the image an enrolled sample was made from: itself, or an augmented copy's image."""
    m = re.fullmatch(r"(.*)" + re.escape(AUG) + r"\d+", str(key), flags=re.S)
    return m.group(1) if m else str(key)


MIN_SCALE = 0.5   # the strongest down-scale of COPIES and of the views (fpfast.gallery.views.VIEWS)
MARGIN = 8        # px kept around a copy's region so that the resampling filter sees real pixels at its edge


def copy_size(size: int) -> int:
    """The side of the centre region a copy is made from for a spec cropping ``size`` px: enough
    that every down-scale, cropped again to ``size``, is a whole crop (:func:`copy_spec`)."""
    return math.ceil(size / MIN_SCALE) + 2 * MARGIN


def copy_spec(spec):
    """The spec the images that copies are made of are decoded with: under the ``crop`` geometry
    (one crop) a larger centre region (:func:`copy_size`), so that a down-scaled copy of a large
    image is, like a down-scaled query, the centre crop of the down-scaled image, not a
    down-scale of the crop (which is smaller than the crop, and traces the resampling at another
    size: ``benchmarks/results/accuracy.md``, "Large images, down-scaled"); the spec itself
    otherwise."""
    if spec.geometry != "crop" or spec.crops is not None:
        return spec
    return spec.replace(size=copy_size(spec.size))


def copy_region(spec):
    """(:func:`copy_spec`, the side its regions are cropped back to for the spec's own input:
    None when they are that input already)."""
    cspec = copy_spec(spec)
    return cspec, None if cspec is spec else spec.size


def centre(image: np.ndarray, size: int | None) -> np.ndarray:
    """The centre ``size`` x ``size`` crop of a uint8 HxWx3 image, as the decoder takes the spec's
    crop (:func:`fpfast.prepare.centre_box`: the whole of a shorter side); the image itself for None."""
    if size is None:
        return image
    t, l, ch, cw = centre_box(*image.shape[:2], size)
    return image if (ch, cw) == image.shape[:2] else np.ascontiguousarray(image[t:t + ch, l:l + cw])


def calibration_copies(image: np.ndarray, size: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 HxWx3 copy) of one image for each of :data:`COPIES`, in its order. With
    ``size`` (the spec's crop; ``image`` then a larger centre region, :func:`copy_spec`), the
    down-scales are made of the whole region and cropped to ``size`` after, the others of the
    crop."""
    from PIL import Image

    from ..embed.train import _jpeg, _rescale
    filters = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
    full = np.ascontiguousarray(image, np.uint8)
    image = centre(full, size)
    h, w = image.shape[:2]
    out = []
    for name, (how, arg) in COPIES.items():
        if how == "jpeg":
            out.append((name, _jpeg(image, arg)))
        elif how == "crop":  # the top-left-offset crop keeping ``arg`` of each side
            out.append((name, image[h // 10:h // 10 + round(h * arg), w // 10:w // 10 + round(w * arg)].copy()))
        else:
            out.append((name, centre(_rescale(full, arg, filters[how]), size)))
    return out


class ConditionDetector:
    """p(clean) of raw gallery vectors: ``sigmoid(((x - mean) / scale) . coef + intercept)``."""

    def __init__(self, mean, scale, coef, intercept: float):
        self.mean, self.scale, self.coef = (np.asarray(a, np.float64) for a in (mean, scale, coef))
        self.intercept = float(intercept)

    @classmethod
    def fit(cls, x: np.ndarray, clean: np.ndarray) -> "ConditionDetector | None":
        """Fitted on vectors ``x`` [N, D] labelled ``clean`` [N] (the two classes weighted
        equally); None when either side has fewer than :data:`MIN_EACH` samples. The weights
        minimise the class-weighted mean cross-entropy + :data:`L2` ||coef||^2 (the intercept
        unpenalised), by Newton's method: scikit-learn's ``LogisticRegression(C=1 / (2 L2 N),
        class_weight="balanced")``, which the tests hold it to, without its import time."""
        x, clean = np.asarray(x, np.float64), np.asarray(clean, bool)
        if min(clean.sum(), (~clean).sum()) < MIN_EACH:
            return None
        mean, scale = x.mean(0), x.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], 1)
        y = clean.astype(np.float64)
        w = np.where(clean, 0.5 / clean.mean(), 0.5 / (1 - clean.mean())) / len(x)  # balanced, mean
        reg = np.r_[np.full(z.shape[1] - 1, 2 * L2), 0.0]
        beta = np.zeros(z.shape[1])
        for _ in range(100):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -500, 500)))
            grad = z.T @ (w * (p - y)) + reg * beta
            hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-12 * np.eye(z.shape[1])
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(mean, scale, beta[:-1], beta[-1])

    def p_clean(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def is_clean(self, x) -> np.ndarray:
        return self.p_clean(x) >= 0.5

    def to_dict(self, reads: str = "vector") -> dict:
        """``reads``: what the detector's input is, the gallery's ``vector`` or the ``handcrafted`` one."""
        return {"kind": "logistic", "input": reads, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "copies": list(COPIES)}

    @classmethod
    def from_dict(cls, d: dict, dim: int) -> "ConditionDetector":
        if d.get("kind") != "logistic" or any(len(d.get(k, ())) != dim for k in ("mean", "scale", "coef")):
            raise ValueError(f"a condition detector of {dim} dims was expected, got {str(d)[:80]}")
        return cls(d["mean"], d["scale"], d["coef"], d["intercept"])

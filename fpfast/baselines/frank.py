"""Frank et al. 2020, "Leveraging frequency analysis for deep fake image recognition".

Follows the released ``prepare_dataset.py`` (RUB-SysSec/GANDCTAnalysis, ``--color --log
--normalize``): the RGB image in 0..255 units -> 2-D DCT-II (orthonormal) over the two image
axes of every colour channel (H*W*3 coefficients: 12,288 at 64²) -> ``log(|c| + 1e-12)`` ->
standardise every coefficient with the training set's mean and standard deviation -> the
paper's linear model (ridge regression classifier). Deliberate difference: an input of another
size is centre-cropped (larger) or bilinearly up-scaled (smaller) to the training size first (the
released code assumes one size).
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dctn

from .base import FeatureBaseline, fit_size


def dct_features(img: np.ndarray, size: int) -> np.ndarray:
    """log |DCT-II| per channel of a uint8 HxWx3 image at ``size`` x ``size``, flattened (H, W, C order)."""
    a = fit_size(np.asarray(img, np.float64), size)
    return np.log(np.abs(dctn(a, type=2, norm="ortho", axes=(0, 1))) + 1e-12).ravel()


class Frank2020(FeatureBaseline):
    name = "Frank 2020 (RGB DCT + ridge)"
    head_kind = "ridge"

    def features(self, images) -> np.ndarray:
        return np.stack([dct_features(a, self.size) for a in images])

"""Frank et al. 2020, "Leveraging frequency analysis for deep fake image recognition" (re-implemented).

Grayscale image -> orthonormal 2-D DCT-II of the whole image -> log |c| -> standardise every
coefficient over the training set -> ridge regression classifier (the paper's linear model).
Inputs of another size are centre-cropped (larger) or bilinearly up-scaled (smaller) to the
training size first.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dctn

from .base import FeatureBaseline, fit_size, gray


class Frank2020(FeatureBaseline):
    name = "Frank 2020 (DCT + ridge)"
    head_kind = "ridge"

    def features(self, images) -> np.ndarray:
        return np.stack([np.log(np.abs(dctn(fit_size(gray(a), self.size), type=2, norm="ortho")) + 1e-12).ravel()
                         for a in images])

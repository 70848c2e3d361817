"""Attribution baselines re-implemented from their papers, in one harness with fpfast.

Each exposes ``fit(images or paths, labels)``, ``predict(images)`` and
``predict_score(images) -> (labels, confidence)`` (confidence feeds the open-set AUROC).
ManiFPT (Song et al. 2024, :class:`ManiFPT2024`) needs a reference set of real images, so it is
not in ``BASELINES`` (which take no arguments); ``benchmarks/bench_accuracy.py --refset`` adds it.
"""
from .durall import Durall2020
from .frank import Frank2020
from .manifpt import ManiFPT2024
from .marra import Marra2019
from .npr import NPR2024

BASELINES = {"marra2019": Marra2019, "frank2020": Frank2020, "durall2020": Durall2020, "npr2024": NPR2024}

__all__ = ["Marra2019", "Frank2020", "Durall2020", "NPR2024", "ManiFPT2024", "BASELINES"]

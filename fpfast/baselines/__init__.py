"""Attribution baselines re-implemented from their papers, in one harness with fpfast.

Each exposes ``fit(images or paths, labels)``, ``predict(images)`` and
``predict_score(images) -> (labels, confidence)`` (confidence feeds the open-set AUROC).
ManiFPT (Song et al. 2024) waits on its attributor and is listed as pending.
"""
from .durall import Durall2020
from .frank import Frank2020
from .marra import Marra2019
from .npr import NPR2024

BASELINES = {"marra2019": Marra2019, "frank2020": Frank2020, "durall2020": Durall2020, "npr2024": NPR2024}
PENDING = {"manifpt2024": "ManiFPT RGB (Song et al. 2024): pending (projector issue)"}

__all__ = ["Marra2019", "Frank2020", "Durall2020", "NPR2024", "BASELINES", "PENDING"]

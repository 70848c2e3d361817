"""Design-choice analysis from fingerprints (``fpfast analyze``): how well the structure of the
fingerprints predicts how a model was built (ManiFPT's Table 5, plus leave-one-model-out parsing).

Small modules: :mod:`.design` (labels and folders), :mod:`.fingerprints` (per-image vectors in
every space), :mod:`.metrics` (NMI, ARI, k-means, leave-one-model-out probe), :mod:`.plots`,
:mod:`.report`, :mod:`.run` (the driver).
"""
from .design import DESIGN_ATTRIBUTES, Design, DesignError, load_design
from .metrics import ari, leave_one_model_out, nmi
from .run import analyze

__all__ = ["analyze", "load_design", "Design", "DesignError", "DESIGN_ATTRIBUTES", "nmi", "ari",
           "leave_one_model_out"]

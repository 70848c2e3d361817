"""Causal fingerprints (issue 15): counterfactual pairs from the zoo's content metadata, a
decoupling objective for the learned embedding, content-leakage measures, and anonymization.

* :mod:`.pairs`     - the zoo's ``content.parquet``: content ids of files, counterfactual pairs,
  batches grouped by content.
* :mod:`.objective` - the content code from the projection P(x), linear CKA (normalised HSIC),
  the counterfactual pair loss, :class:`CausalObjective` (plugs into ``train_embedding``).
* :mod:`.project`   - post-hoc decoupling: the training contents' subspace projected out of an
  embedding (``fpfast train --causal --project-out K``).
* :mod:`.leakage`   - content-id probe, content-code regression, Fisher discriminant ratio.
* :mod:`.anonymize` - counterfactual images without the source model's fingerprint.
"""
from .leakage import content_probe, content_regression, fisher_ratio
from .objective import CausalObjective, content_code, linear_cka

__all__ = ["CausalObjective", "content_code", "content_probe", "content_regression", "fisher_ratio",
           "linear_cka"]

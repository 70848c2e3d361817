"""Pure-torch reference implementation: the fallback and the oracle for every kernel."""
from .residual import residual
from .features import features, FEATURE_EPS
from .fingerprint import fingerprint

__all__ = ["residual", "features", "fingerprint", "FEATURE_EPS"]

"""fpfast: fingerprint AI-generated images and attribute them to the model that made them.

Importing fpfast touches no GPU and compiles nothing; compiled kernels load on first use.
"""
from .backends import BackendUnavailable, build_config
from .prepare import as_float_chw, prepare
from .reference import fingerprint as reference_fingerprint
from .spec import PRESETS, FingerprintSpec, SpecError, load_spec

__version__ = "0.1.0"

__all__ = [
    "FingerprintSpec", "SpecError", "PRESETS", "load_spec", "prepare", "as_float_chw",
    "reference_fingerprint", "build_config", "BackendUnavailable", "__version__",
]

"""GM-zoo: an offline ground-truth benchmark of tiny generative models with design labels.

``build_zoo(out, preset="tiny")`` trains the preset's generators on real patches cut from the
photos bundled with scikit-image / scikit-learn, and writes ``out/<split>/<model>/*.png`` (JPEG
splits: ``*.jpg``) with a ``model.json`` per class and ``out/zoo.json``. See :mod:`.build`.
"""
from .build import build_zoo
from .images import DERIVED, SPLITS, load_zoo_split
from .presets import PRESETS, get_preset

__all__ = ["build_zoo", "load_zoo_split", "PRESETS", "get_preset", "SPLITS", "DERIVED"]

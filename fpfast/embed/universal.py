"""The shipped universal embedding (issue 14): ``fpfast/weights/universal.safetensors`` and its card
``universal.json``.

The card holds the embedder's config (``config``: architecture, handcrafted spec, pretraining
options), its ``identity`` (sha256 of the canonical config JSON, a NUL, and the safetensors
bytes: :func:`fpfast.embed.model.identity_of`, the same identity a gallery stores), the command
that reproduces it, the seed, steps, data, date, time taken and the held-out accuracy measured at
the end of pretraining. :func:`load_card` recomputes the identity and refuses weights or a config
that do not match it (a tampered or truncated file). ``fpfast pretrain OUT`` writes the same two
files into OUT, so shipping a new embedding is copying them into ``fpfast/weights/``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .model import Embedder, EmbedError, _canonical, identity_of

UNIVERSAL = "universal"  # the --spec value that names it
HYBRID = "universal+handcrafted"  # --spec: its vectors followed by the handcrafted default fingerprint
WEIGHTS = "universal.safetensors"
CARD = "universal.json"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
_cache: dict = {}


def write_card(emb: Embedder, out_dir: str | os.PathLike, card: dict) -> dict:
    """Write ``out_dir/universal.safetensors`` and ``universal.json`` (``card`` + config + identity)."""
    cfg_bytes, w_bytes = emb.to_bytes()
    full = {**card, "identity": emb.identity, "config": json.loads(cfg_bytes.decode())}
    os.makedirs(out_dir, exist_ok=True)
    for name, data in ((WEIGHTS, w_bytes), (CARD, (json.dumps(full, indent=1, sort_keys=True) + "\n").encode())):
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out_dir, name))
    return full


def load_card(directory: str | os.PathLike = SHIPPED_DIR) -> tuple[Embedder, dict]:
    """(embedder, card) from ``directory``; raises :class:`EmbedError` when a file is missing or
    the weights and config do not give the card's identity."""
    d = Path(directory)
    try:
        card = json.loads((d / CARD).read_text())
        w_bytes = (d / WEIGHTS).read_bytes()
    except FileNotFoundError as e:
        raise EmbedError(f"universal embedding: {e.filename} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmbedError(f"universal embedding card {d / CARD} is not valid JSON: {e}") from None
    if not isinstance(card, dict) or not isinstance(card.get("config"), dict) or "identity" not in card:
        raise EmbedError(f"universal embedding card {d / CARD} lacks its config or identity")
    cfg_bytes = _canonical(card["config"])
    got = identity_of(cfg_bytes, w_bytes)
    if got != card["identity"]:
        raise EmbedError(f"universal embedding in {d}: identity {got[:16]}... does not match its card's "
                         f"{str(card['identity'])[:16]}... (a modified or corrupt file): refused")
    return Embedder.from_bytes(cfg_bytes, w_bytes), card


def load_universal(directory: str | os.PathLike = SHIPPED_DIR) -> Embedder:
    """The universal embedder (loaded and checked once per process, directory and version of its
    files: a file changed since is checked again)."""
    d = Path(directory).resolve()
    try:
        key = (str(d), *((st.st_mtime_ns, st.st_size) for st in (os.stat(d / CARD), os.stat(d / WEIGHTS))))
    except FileNotFoundError:
        key = (str(d),)   # load_card names the missing file
    if key not in _cache:
        _cache[key] = load_card(directory)[0]
    return _cache[key]


def available(directory: str | os.PathLike = SHIPPED_DIR) -> bool:
    d = Path(directory)
    return (d / CARD).is_file() and (d / WEIGHTS).is_file()


def shipped_embedder(name: str | None, directory: str | os.PathLike = SHIPPED_DIR):
    """The embedder a ``--spec`` value names: the universal one (``universal``; the shipped one, or
    that of ``directory``, a ``fpfast pretrain`` output), the same followed by its handcrafted
    fingerprint (``universal+handcrafted``), else None."""
    if name == UNIVERSAL:
        return load_universal(directory)
    if name == HYBRID:
        return load_universal(directory).with_handcrafted()
    return None

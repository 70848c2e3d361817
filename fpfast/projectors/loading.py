"""Loading diffusers models safely and offline: safetensors only, clear errors.

A source is a local directory (a model directory with ``config.json``, or a pipeline directory
with the model in a sub-folder such as ``vae/`` or ``unet/``), a hub id (``org/name``, resolved
by diffusers from the local cache; with ``HF_HUB_OFFLINE=1`` or no network it fails with a message
that says to pass a local path), or an already built module. Weights load with
``use_safetensors=True``; a checkpoint that only exists in a pickle format (``.bin``, ``.ckpt``,
``.pt``, ``.pth``) is refused unless ``allow_pickle=True`` is passed, because unpickling a
downloaded file can run arbitrary code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError


class ProjectorError(ConfigError):
    """A projector cannot be built or run on this input; the message says what and why."""


PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def resolve_local(source: str, subfolders: tuple[str, ...]) -> tuple[Path, str | None] | None:
    """(directory, subfolder) for a local model, or None when ``source`` is not a local path."""
    p = Path(source).expanduser()
    if not p.exists():
        return None
    if not p.is_dir():
        raise ProjectorError(f"model source {source!r} is a file; pass the model directory "
                             f"(the one holding config.json and the .safetensors weights)")
    if (p / "config.json").is_file():
        return p, None
    for sub in subfolders:
        if (p / sub / "config.json").is_file():
            return p, sub
    raise ProjectorError(f"no config.json in {source!r} (nor in its sub-folders {list(subfolders)}): "
                         f"not a diffusers model directory")


def _names(classes: tuple[type, ...]) -> str:
    return " or ".join(c.__name__ for c in classes)


def _check_class(cfg_path: Path, classes: tuple[type, ...], source: str) -> type:
    """The class (of ``classes``) the config names; raises for another model type."""
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ProjectorError(f"cannot read {cfg_path}: {e}") from None
    name = cfg.get("_class_name")
    for c in classes:
        if name is None or name == c.__name__:
            return c
    raise ProjectorError(f"model at {source!r} is a {name}, expected a {_names(classes)}")


def _check_weights(d: Path, source: str, allow_pickle: bool) -> bool:
    """True when the safe (safetensors) path can be used; raises when only pickle exists."""
    files = [f.name for f in d.iterdir() if f.is_file()]
    if any(f.endswith(".safetensors") for f in files):
        return True
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        raise ProjectorError(
            f"model at {source!r} has only pickle weights ({', '.join(sorted(pickles))}); loading a pickle "
            f"can run arbitrary code, so it is refused. Convert it to safetensors, or pass "
            f"allow_pickle=True (--allow-pickle) if you trust the file")
    if not pickles:
        raise ProjectorError(f"model at {source!r} has no weights (*.safetensors)")
    return False


def load_diffusers(source: Any, cls: "type | tuple[type, ...]", subfolders: tuple[str, ...] = (), allow_pickle: bool = False,
                   subfolder: str | None = None) -> tuple[Any, str]:
    """(model in eval mode on CPU float32, locator string) for a module, directory or hub id."""
    classes = cls if isinstance(cls, tuple) else (cls,)
    if isinstance(source, torch.nn.Module):
        if not isinstance(source, classes):
            raise ProjectorError(f"expected a {_names(classes)}, got a {type(source).__name__}")
        return source.eval(), f"<{type(source).__name__} object>"
    if not isinstance(source, (str, os.PathLike)):
        raise ProjectorError(f"a model source must be a directory, a hub id or a {_names(classes)}, "
                             f"got {type(source).__name__}")
    source = os.fspath(source)
    local = resolve_local(source, ((subfolder,) if subfolder else ()) + subfolders)
    if local is not None:
        d, sub = local
        sub = subfolder or sub
        mdir = d / sub if sub else d
        cls = _check_class(mdir / "config.json", classes, source)
        safe = _check_weights(mdir, source, allow_pickle)
        model = cls.from_pretrained(str(d), subfolder=sub, use_safetensors=safe)
        return model.eval(), str(d.resolve()) + (f"::{sub}" if sub else "")
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ProjectorError(f"model source {source!r} is neither an existing directory nor a hub id "
                             f"(org/name)")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    try:
        model = classes[0].from_pretrained(source, subfolder=subfolder, use_safetensors=True)
    except Exception as e:  # noqa: BLE001 - diffusers/hub raise many types; all mean "not here"
        why = "HF_HUB_OFFLINE is set" if offline else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        raise ProjectorError(
            f"cannot load hub id {source!r} ({why}); this machine may be offline: download the model "
            f"elsewhere (save_pretrained / huggingface-cli download) and pass its local path") from None
    if not isinstance(model, classes):
        raise ProjectorError(f"model {source!r} is a {type(model).__name__}, expected a {_names(classes)}")
    return model.eval(), source


def default_device(device: "str | torch.device | None" = None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_dtype(device: torch.device, dtype: "str | torch.dtype | None" = None) -> torch.dtype:
    """fp16 on CUDA, float32 on CPU, unless told."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Frozen, in ``dtype`` (no cast, hence no diffusers warning, when already float32)."""
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    return model.requires_grad_(False)

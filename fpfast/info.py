"""What this installation can do: version, backends, devices, faiss. Used by `fpfast info`."""
from __future__ import annotations

import importlib.util
import platform

from . import __version__, backends


def _faiss() -> dict:
    if importlib.util.find_spec("faiss") is None:
        return {"installed": False}
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return {"installed": True, "version": getattr(faiss, "__version__", "?"), "gpus": gpus}


def _devices() -> dict:
    import torch

    out = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "cuda": []}
    if torch.cuda.is_available():  # asked for explicitly by the user; never at import
        out["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def info() -> dict:
    devs = _devices()
    cfg = backends.build_config()
    usable = {"cpu": backends.available("cpu")}
    if devs["cuda"]:
        usable["cuda"] = backends.available("cuda")
    return {"fpfast": __version__, "python": platform.python_version(), "machine": platform.machine(),
            "build": cfg, "backends": usable, "devices": devs, "faiss": _faiss()}


def format_info(d: dict) -> str:
    lines = [f"fpfast {d['fpfast']}  (python {d['python']}, {d['machine']}, torch {d['devices']['torch']})"]
    b = d["build"]
    lines.append(f"compiled: cpp={'yes' if b.get('cpp') else 'no'}"
                 + (f" (OpenMP {b.get('omp_max_threads')} threads, {b.get('simd')}, kernels {', '.join(b.get('cpu_kernels', []))})" if b.get("cpp") else "")
                 + f"; cuda={'yes' if b.get('cuda_module') else 'no'}; triton installed={'yes' if b.get('triton') else 'no'}")
    for dev, avail in d["backends"].items():
        lines.append(f"backends for {dev} tensors:")
        for name, why in avail.items():
            lines.append(f"  {name:7s} {why}")
    cuda = d["devices"]["cuda"]
    lines.append("GPUs: " + (", ".join(cuda) if cuda else "none visible to torch"))
    f = d["faiss"]
    lines.append("faiss: " + (f"{f['version']}, {f['gpus']} GPU(s)" if f["installed"] else "not installed"))
    return "\n".join(lines)

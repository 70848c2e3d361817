"""A ``--spec`` value: a preset name, a JSON file, or ``KIND:PATH[@PRESET]`` of a registered projector."""
from __future__ import annotations

from ..spec import FingerprintSpec, load_spec


def resolve_spec(value: "str | FingerprintSpec | None") -> FingerprintSpec:
    """A ``--spec`` value: a preset name, a JSON file, or ``KIND:PATH[@PRESET]`` for a heavy
    projector (``manifold:refset/``, ``autoencoder:vae_dir``, ``diffusion:unet_dir@npr``; KIND is
    any kind registered with :func:`fpfast.projectors.register`): the projector is loaded from
    PATH and recorded, with its identity hash, in the spec."""
    if isinstance(value, str) and value.split(":", 1)[0].isidentifier() and ":" in value:
        from ..projectors import projector_class, projector_kinds
        kind, rest = value.split(":", 1)
        if kind in projector_kinds():
            path, _, base = rest.partition("@")
            proj = projector_class(kind)(path, device="cpu")
            spec = load_spec(base or None)
            ref = getattr(proj, "ref", None)
            if ref is not None and getattr(ref, "size", None):
                spec = spec.replace(size=int(ref.size))  # the reference set fixes the working size
            return proj.spec(spec)
    return load_spec(value)

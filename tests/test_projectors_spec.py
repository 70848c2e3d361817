"""The spec's projector field, and projector residuals through every feature backend."""
import hashlib
import json

import numpy as np
import pytest
import torch

from _cpu_projectors import cpu_projectors  # noqa: F401  (autouse fixture)

from fpfast import FingerprintSpec, SpecError, backends
from fpfast.ops import features as features_op
from fpfast.prepare import prepare
from fpfast.ops.features import fingerprint_features
from fpfast.projectors import ProjectorError, fingerprint_with_projector, load_projector
from fpfast.reference import features as reference_features

DESC = {"kind": "manifold", "params": {"k": 1, "space": "rgb"}, "identity": "ab" * 32, "source": "/data/ref"}


def test_spec_without_projector_is_version_1_unchanged():
    s = FingerprintSpec()
    d = s.to_dict()
    assert "projector" not in d and d["version"] == 1
    assert s.id == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert FingerprintSpec.from_json(s.to_json()) == s


def test_spec_round_trip_with_projector():
    s = FingerprintSpec(size=32, projector=DESC)
    t = FingerprintSpec.from_json(s.to_json(indent=2))
    assert t == s and t.id == s.id and hash(t) == hash(s) and t.projector == DESC
    assert json.loads(s.to_json())["projector"] == DESC
    assert s.id != FingerprintSpec(size=32).id
    # the locator is not the identity: same model elsewhere = same spec
    moved = s.replace(projector={**DESC, "source": "/elsewhere"})
    assert moved == s and moved.id == s.id and not s.diff(moved)
    other = s.replace(projector={**DESC, "identity": "cd" * 32})
    assert other != s and s.diff(other) == [f"projector.identity: {'ab' * 32!r} != {'cd' * 32!r}"]
    with pytest.raises(SpecError, match="projector.params"):
        s.require_same(s.replace(projector={**DESC, "params": {"k": 3, "space": "rgb"}}))
    with pytest.raises(SpecError, match="projector: None"):
        FingerprintSpec(size=32).require_same(s)


def test_bad_projector_descriptions():
    with pytest.raises(SpecError, match="unknown projector fields"):
        FingerprintSpec(projector={**DESC, "weights": 1})
    with pytest.raises(SpecError, match="identity"):
        FingerprintSpec(projector={"kind": "manifold"})
    with pytest.raises(SpecError, match="JSON object"):
        FingerprintSpec(projector="manifold")
    with pytest.raises(ProjectorError, match="unknown projector kind"):
        load_projector({**DESC, "kind": "nope"})


def _feature_backends():
    ok = backends.available("cpu")
    return [b for b in features_op.IMPLEMENTED if ok.get(b) == "yes"]


def _projectors(tmp_path):
    from diffusers import AutoencoderKL, UNet2DModel
    from fpfast.projectors.autoencoder import AutoencoderProjector
    from fpfast.projectors.diffusion import DiffusionProjector
    from fpfast.projectors.manifold import ManifoldProjector, build_manifold

    rng = np.random.default_rng(0)
    build_manifold(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), tmp_path / "ref", 32)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(32,), norm_num_groups=8, latent_channels=4)
    unet = UNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    vae.save_pretrained(tmp_path / "vae")
    unet.save_pretrained(tmp_path / "unet")
    return [ManifoldProjector(tmp_path / "ref", k=2), AutoencoderProjector(tmp_path / "vae"),
            DiffusionProjector(tmp_path / "unet", steps=2)]


def test_each_projector_through_every_feature_backend(tmp_path):
    pixels = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 40, 36, 3), dtype=np.uint8))
    base = FingerprintSpec(size=32)
    names = _feature_backends()
    assert "torch" in names
    for proj in _projectors(tmp_path):
        spec = proj.spec(base)
        r = proj.residual(prepare(pixels, spec))
        want = reference_features(r.double(), spec).float()  # the float64 torch reference
        for b in names:
            got = fingerprint_with_projector(pixels, spec, backend=b, projector=proj)
            # float32 feature op vs float64 reference: log-power features carry ~1e-5 relative error
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"{proj.kind} on {b}")
        # the plain op refuses a projector's spec rather than silently using the cheap filter
        with pytest.raises(ValueError, match="fingerprint_with_projector"):
            fingerprint_features(pixels, spec)
        # loading from the spec alone gives the same numbers
        again = fingerprint_with_projector(pixels, FingerprintSpec.from_json(spec.to_json()))
        torch.testing.assert_close(again, fingerprint_with_projector(pixels, spec, projector=proj))
        with pytest.raises(SpecError, match="projector"):
            fingerprint_with_projector(pixels, base.replace(projector={**spec.projector, "identity": "0" * 64}),
                                       projector=proj)

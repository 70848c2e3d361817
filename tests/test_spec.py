import json

import pytest

from fpfast.spec import PRESETS, FingerprintSpec, SpecError, load_spec


def test_json_round_trip():
    s = FingerprintSpec(size=48, residual="npr", periods=(2, 3, 8), radial_bins=12)
    t = FingerprintSpec.from_json(s.to_json())
    assert t == s and t.id == s.id and hash(t) == hash(s)


def test_other_version_is_refused_naming_both():
    d = FingerprintSpec().to_dict()
    d["version"] = 99
    with pytest.raises(SpecError, match=r"version 99.*version 1"):
        FingerprintSpec.from_json(json.dumps(d))


@pytest.mark.parametrize("change", [dict(size=65), dict(residual="npr"), dict(sigma=1.5), dict(periods=(2, 4)),
                                    dict(radial_bins=8), dict(geometry="resize"), dict(families=("moments",))])
def test_any_numeric_change_is_unequal_and_named(change):
    a, b = FingerprintSpec(), FingerprintSpec(**change)
    assert a != b and a.id != b.id
    diff = a.diff(b)
    assert len(diff) == 1 and diff[0].split(":")[0] == next(iter(change))
    with pytest.raises(SpecError, match=next(iter(change))):
        a.require_same(b)


@pytest.mark.parametrize("bad", [dict(residual="blur"), dict(size=8, min_size=8), dict(periods=(1,)),
                                 dict(families=("moments", "moments")), dict(dtype="float16")])
def test_invalid_specs_are_refused(bad):
    with pytest.raises(SpecError):
        FingerprintSpec(**bad)


def test_unknown_field_and_bad_json():
    with pytest.raises(SpecError, match="unknown spec fields"):
        FingerprintSpec.from_dict({**FingerprintSpec().to_dict(), "colour": "bgr"})
    with pytest.raises(SpecError, match="not valid JSON"):
        FingerprintSpec.from_json("{nope")


def test_load_spec_sources(tmp_path):
    assert load_spec(None) == PRESETS["default"]
    assert load_spec("npr").residual == "npr"
    p = tmp_path / "s.json"
    p.write_text(FingerprintSpec(size=40).to_json())
    assert load_spec(str(p)).size == 40
    with pytest.raises(SpecError, match="neither a preset"):
        load_spec(str(tmp_path / "missing.json"))


def test_slices_cover_the_vector():
    s = FingerprintSpec()
    sl = s.slices
    assert sl["moments"] == slice(0, 12) and sl["xcorr"].stop == s.dim == 179

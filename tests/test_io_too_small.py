from fpfast.spec import FingerprintSpec
from io_helpers import encode, rand_rgb, run_folder


def test_1x1_and_below_minimum_are_error_rows(tmp_path):
    files = {"one.png": encode(rand_rgb(1, 1), "PNG"), "thin.png": encode(rand_rgb(15, 64), "PNG"),
             "tiny.bmp": encode(rand_rgb(8, 8), "BMP")}
    rows, s = run_folder(tmp_path, files)
    assert rows["one.png"]["error"] == "image is 1x1, below the minimum of 16 px a side"
    assert "64x15" in rows["thin.png"]["error"]
    assert "8x8" in rows["tiny.bmp"]["error"]
    assert s.errors == 3 and s.exit_code == 3


def test_minimum_follows_the_spec(tmp_path):
    spec = FingerprintSpec(size=32, min_size=24)
    rows, s = run_folder(tmp_path, {"mid.png": encode(rand_rgb(20, 30), "PNG")}, n_good=0, spec=spec)
    assert "below the minimum of 24 px" in rows["mid.png"]["error"]

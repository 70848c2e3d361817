from PIL import ImageFile

from io_helpers import assert_error_row, encode, rand_rgb


def test_truncated_jpeg_is_an_error_row(tmp_path):
    data = encode(rand_rgb(48, 48, seed=2), "JPEG", quality=90)
    assert_error_row(tmp_path, "cut.jpg", data[: len(data) // 2], "truncated")


def test_truncated_jpeg_refused_even_if_pillow_told_to_load_truncated(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(rand_rgb(48, 48, seed=2), "JPEG", quality=90)
    assert_error_row(tmp_path, "cut.jpg", data[: len(data) // 2], "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored

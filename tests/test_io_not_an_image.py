from io_helpers import assert_error_row


def test_text_with_png_extension_is_an_error_row(tmp_path):
    assert_error_row(tmp_path, "notes.png", b"this is not an image\n" * 20, "not an image")


def test_random_bytes_with_jpg_extension(tmp_path):
    import os
    assert_error_row(tmp_path, "noise.jpg", os.urandom(3000), "not an image")

from io_helpers import assert_error_row, encode, rand_rgb


def test_truncated_png_is_an_error_row(tmp_path):
    data = encode(rand_rgb(40, 40, seed=1), "PNG")
    assert_error_row(tmp_path, "cut.png", data[: len(data) // 2], "truncated")

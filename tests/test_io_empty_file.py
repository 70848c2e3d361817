from io_helpers import assert_error_row


def test_empty_file_is_an_error_row(tmp_path):
    assert_error_row(tmp_path, "empty.png", b"", "empty file")

import os

from io_helpers import run_folder


def test_broken_symlink_is_an_unreadable_file_row(tmp_path):
    (tmp_path / "in").mkdir()
    os.symlink(tmp_path / "nowhere.png", tmp_path / "in" / "dangling.png")
    rows, s = run_folder(tmp_path, {})
    assert rows["dangling.png"]["error"].startswith("cannot read file:")
    assert s.errors == 1 and s.exit_code == 3


def test_folder_named_like_an_image_in_a_list_is_walked(tmp_path):
    from fpfast.io.sources import iter_sources
    d = tmp_path / "x.png"
    d.mkdir()
    lst = tmp_path / "l.txt"
    lst.write_text(f"{d}\n")
    assert list(iter_sources([f"@{lst}"])) == []  # a folder source: its images, here none

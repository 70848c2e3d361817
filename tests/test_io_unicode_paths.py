import os

from fpfast.io.sources import iter_sources
from io_helpers import encode, rand_rgb, run_folder


def test_unicode_and_space_paths(tmp_path):
    files = {"ünïcødé image.png": encode(rand_rgb(20, 20, seed=1)), "日本 語.jpg": encode(rand_rgb(20, 20), "JPEG"),
             "with  two spaces .png": encode(rand_rgb(18, 18))}
    rows, s = run_folder(tmp_path, files)
    assert s.exit_code == 0
    for name in files:
        assert rows[name]["error"] is None


def test_unicode_paths_through_a_list_file(tmp_path):
    d = tmp_path / "dossier été"
    d.mkdir()
    names = ["b é.png", "a ü.png"]
    for n in names:
        (d / n).write_bytes(encode(rand_rgb(20, 20)))
    lst = tmp_path / "liste.txt"
    lst.write_text("\n".join(str(d / n) for n in names) + "\n\n# a comment\n", encoding="utf-8")
    keys = [k for k, _ in iter_sources([f"@{lst}"])]
    assert [os.path.basename(k) for k in keys] == names  # list order, not sorted

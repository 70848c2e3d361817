"""Every bad-input kind of the io tests through `fpfast attribute`: one row each, a readable
`error` for the broken ones, none for the convertible ones, the run goes on; exit 3 / 0.

The bytes come from the io tests' own makers (io_helpers, test_io_16bit.png16, test_io_tar.make_tar,
test_io_parquet.write)."""
import io
import os
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import build_gallery, invoke, model_image
from io_helpers import encode, rand_rgb
from test_io_16bit import png16
from test_io_parquet import write as write_parquet
from test_io_tar import make_tar

N_GOOD = 2
MAX_PIXELS = 50_000  # --max-pixels of every run here: the bomb is 120,000 px, the good images 1,024


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=1)


def _animated() -> bytes:
    frames = [Image.fromarray(rand_rgb(32, 32, seed=s)).convert("P") for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _exif_rotated() -> bytes:
    im = Image.fromarray(rand_rgb(24, 40, seed=8))
    exif = im.getexif()
    exif[0x0112] = 6
    return encode(im, "JPEG", exif=exif, quality=95)


def _rgba() -> bytes:
    alpha = np.random.default_rng(1).integers(0, 256, (30, 30, 1), dtype=np.uint8)
    return encode(np.concatenate([rand_rgb(30, 30, seed=4), alpha], axis=2), "PNG")


def _corrupt_tar(path) -> list:
    make_tar(path, [(f"m{j}.png", encode(rand_rgb(20, 20, seed=j))) for j in range(4)])
    with tarfile.open(path) as tf:
        off = tf.getmember("m1.png").offset
    raw = bytearray(path.read_bytes())
    raw[off:off + 100] = os.urandom(100)  # the name field and mode: the header checksum fails
    path.write_bytes(bytes(raw))
    return [False, True, False, False]  # which rows are errors


def _null_parquet(path) -> list:
    write_parquet(path, n=4, null_at=(2,))
    return [False, False, True, False]


PNG40 = encode(rand_rgb(40, 40, seed=1), "PNG")
JPG48 = encode(rand_rgb(48, 48, seed=2), "JPEG", quality=90)

# kind -> (file name, bytes, substring of the error or None for a convertible image)
FILES = {
    "empty file": ("empty.png", b"", "empty file"),
    "truncated png": ("cut.png", PNG40[: len(PNG40) // 2], "truncated"),
    "truncated jpeg": ("cut.jpg", JPG48[: len(JPG48) // 2], "truncated"),
    "not an image": ("notes.png", b"this is not an image\n" * 20, "not an image"),
    "decompression bomb": ("bomb.png", encode(np.zeros((400, 300, 3), np.uint8), "PNG"), "decompression bomb"),
    "1x1": ("one.png", encode(rand_rgb(1, 1), "PNG"), "below the minimum"),
    "below minimum": ("tiny.bmp", encode(rand_rgb(8, 8), "BMP"), "below the minimum"),
    "16-bit": ("deep.png", png16(np.random.default_rng(3).integers(0, 65536, (32, 32, 3), dtype=np.uint16)), None),
    "cmyk": ("cmyk.jpg", encode(Image.fromarray(rand_rgb(32, 40, seed=3)).convert("CMYK"), "JPEG", quality=95), None),
    "rgba": ("rgba.png", _rgba(), None),
    "palette": ("pal.png", encode(Image.fromarray(rand_rgb(24, 28, seed=6)).convert("P"), "PNG"), None),
    "animated": ("anim.gif", _animated(), None),
    "exif rotated": ("rot.jpg", _exif_rotated(), None),
    "unicode and space path": ("ünïcødé 日本 語.png", encode(rand_rgb(20, 20, seed=1)), None),
}
CONTAINERS = {"corrupt tar member": ("a.tar", _corrupt_tar), "parquet null bytes": ("d.parquet", _null_parquet)}


def good_folder(tmp_path):
    d = tmp_path / "good dir"
    d.mkdir()
    for i in range(N_GOOD):
        Image.fromarray(model_image(3, 50 + i)).save(d / f"good{i}.png")
    return d


def attribute(g, tmp_path, *sources):
    out = tmp_path / "out.parquet"
    r = invoke("attribute", *sources, "-g", g["gallery"], "-o", out, "--max-pixels", MAX_PIXELS,
               "--shard-size", "2", "--batch-size", "2")
    rows = pq.read_table(out).to_pylist() if out.exists() else None
    return r, rows


@pytest.mark.parametrize("kind", list(FILES) + list(CONTAINERS))
def test_bad_input_kind(g, tmp_path, kind):
    good = good_folder(tmp_path)
    if kind in FILES:
        name, data, needle = FILES[kind]
        d = tmp_path / "in"
        d.mkdir()
        (d / name).write_bytes(data)
        src = d / name
        want_errors = [needle is not None]
    else:
        name, make = CONTAINERS[kind]
        src = tmp_path / name
        want_errors = make(src)
        needle = None
    r, rows = attribute(g, tmp_path, src, good)
    n_in = len(want_errors) + N_GOOD
    assert rows is not None and len(rows) == n_in, r.output
    bad_rows, good_rows = rows[:len(want_errors)], rows[len(want_errors):]
    # the run went on: the good images after the bad input are attributed
    assert [os.path.basename(x["path"]) for x in good_rows] == [f"good{i}.png" for i in range(N_GOOD)]
    assert all(x["error"] is None and x["model"] for x in good_rows)
    assert [bool(x["error"]) for x in bad_rows] == want_errors, [x["error"] for x in bad_rows]
    if kind in FILES:
        assert bad_rows[0]["path"] == str(src)
    if needle:
        assert needle in bad_rows[0]["error"], bad_rows[0]["error"]
    for x in bad_rows:
        if x["error"]:
            assert x["model"] in (None, ""), x  # no answer for an image that was not read
        else:
            assert x["model"] and np.isfinite(x["distance"])
    want_exit = 3 if any(want_errors) else 0
    assert r.exit_code == want_exit, r.output
    if want_exit == 3:
        assert "see the 'error' column" in r.stderr


def test_notes_of_convertible_inputs(g, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for kind in ("rgba", "animated", "exif rotated"):
        name, data, _ = FILES[kind]
        (d / name).write_bytes(data)
    out = tmp_path / "o.jsonl"
    r = invoke("attribute", d, "-g", g["gallery"], "-o", out, "-q")
    assert r.exit_code == 0, r.output
    import json
    rows = {os.path.basename(x["path"]): x for x in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert "alpha dropped" in rows["rgba.png"]["note"]
    assert "first frame" in rows["anim.gif"]["note"]
    assert "EXIF orientation" in rows["rot.jpg"]["note"]


def test_all_kinds_in_one_run_every_input_once(g, tmp_path):
    good = good_folder(tmp_path)
    d = tmp_path / "in"
    d.mkdir()
    for name, data, _ in FILES.values():
        (d / name).write_bytes(data)
    os.symlink(tmp_path / "nowhere.png", d / "dangling.png")  # an unreadable file
    srcs, n_containers = [d], 0
    for name, make in CONTAINERS.values():
        n_containers += len(make(tmp_path / name))
        srcs.append(tmp_path / name)
    out = tmp_path / "out.csv"
    r = invoke("attribute", *srcs, good, "-g", g["gallery"], "-o", out, "--max-pixels", MAX_PIXELS,
               "--shard-size", "3", "--workers", "1")
    assert r.exit_code == 3, r.output
    import csv
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n_in = len(FILES) + 1 + n_containers + N_GOOD
    assert len(rows) == n_in and len({x["path"] for x in rows}) == n_in
    by = {os.path.basename(x["path"]): x for x in rows}
    for name, _, needle in FILES.values():
        assert bool(by[name]["error"]) == (needle is not None), (name, by[name]["error"])
    assert by["dangling.png"]["error"].startswith("cannot read file")
    n_err = sum(needle is not None for _, _, needle in FILES.values()) + 1 + 2  # + dangling, tar, parquet
    assert sum(bool(x["error"]) for x in rows) == n_err
    assert f"{n_err} input(s) could not be processed" in r.stderr


@pytest.mark.parametrize("ext", [".csv", ".parquet", ""])
def test_output_of_only_failed_rows_keeps_every_column(g, tmp_path, ext):
    d = tmp_path / "in"
    d.mkdir()
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_bytes(b"not an image\n" * 10)
    out = tmp_path / f"out{ext}"
    r = invoke("attribute", d, "-g", g["gallery"], "-o", out, "-q", "--top", "2")
    assert r.exit_code == 3, r.output
    if ext == ".csv":
        import csv
        with open(out, newline="", encoding="utf-8") as fh:
            cols = next(csv.reader(fh))
    else:
        cols = pq.read_table(out).column_names
    for c in ("path", "model", "score", "distance", "top1_model", "top2_distance", "error"):
        assert c in cols, (c, cols)

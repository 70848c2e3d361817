import numpy as np
from PIL import Image

from fpfast.io.decode import decode_image
from io_helpers import assert_fine_row, encode, rand_rgb


def test_exif_rotation_applied(tmp_path):
    rgb = rand_rgb(24, 40, seed=8)  # 40 wide, 24 high
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    data = encode(im, "JPEG", exif=exif, quality=95)
    img, note = decode_image(data)
    assert img.shape == (40, 24, 3)  # width and height swapped
    assert "EXIF orientation 6" in note
    plain, _ = decode_image(encode(im, "JPEG", quality=95))
    np.testing.assert_array_equal(img, np.rot90(plain, k=-1))
    assert_fine_row(tmp_path, "rot.jpg", data, note="EXIF orientation")


def test_read_image_of_a_file_decodes_like_the_stream(tmp_path):
    """The readers outside the stream (zoo, baselines) use read_image: the EXIF rotation applies."""
    from fpfast.io.decode import read_image
    im = Image.fromarray(rand_rgb(24, 40, seed=9))
    exif = im.getexif()
    exif[0x0112] = 6
    data = encode(im, "JPEG", exif=exif, quality=95)
    (tmp_path / "rot.jpg").write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / "rot.jpg"), decode_image(data)[0])
    assert read_image(tmp_path / "rot.jpg").shape == (40, 24, 3)

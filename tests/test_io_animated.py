import io

import numpy as np
from PIL import Image

from fpfast.io.decode import decode_image
from io_helpers import assert_fine_row, rand_rgb


def test_animated_gif_first_frame_with_note(tmp_path):
    frames = [Image.fromarray(rand_rgb(32, 32, seed=s)).convert("P") for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    data = buf.getvalue()
    img, note = decode_image(data)
    np.testing.assert_array_equal(img, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert "animated (3 frames)" in note and "first frame" in note
    assert_fine_row(tmp_path, "anim.gif", data, note="first frame")

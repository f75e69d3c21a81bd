"""Image loading: every PIL mode becomes RGB; bad files give an ImageError with a readable message."""

import io

import numpy as np
import pytest
from PIL import Image

from spade_engine.images import ImageError, load_image


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1"])
def test_modes_become_rgb(mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    out = load_image(encode(img, "TIFF" if mode == "CMYK" else "PNG"))
    assert out.mode == "RGB" and out.size == (40, 30)


def test_transparency_composited_on_white():
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert load_image(encode(img)).getpixel((5, 5)) == (255, 255, 255)


def test_16bit_grayscale_is_rescaled():
    arr = np.linspace(0, 65535, 32 * 32, dtype=np.uint16).reshape(32, 32)
    img = Image.fromarray(arr)
    out = np.asarray(load_image(encode(img)))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and out.dtype == np.uint8


def test_webp_and_jpeg():
    img = Image.new("RGB", (32, 32), (10, 200, 30))
    for fmt in ("JPEG", "WEBP"):
        assert load_image(encode(img, fmt)).size == (32, 32)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"hello, this is text", "not an image"),
        (encode(Image.new("RGB", (1, 1))), "at least"),
        (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "damaged or truncated"),
        (encode(Image.new("1", (9000, 9000))), "megapixels"),
    ],
    ids=["empty", "text", "1x1", "truncated", "bomb"],
)
def test_bad_files(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)

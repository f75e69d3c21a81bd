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


def _tiff(arr: np.ndarray, mode: str | None = None) -> bytes:
    return encode(Image.fromarray(arr, mode) if mode else Image.fromarray(arr), "TIFF")


def test_12bit_data_in_a_16bit_png_is_shown_with_its_own_range():
    arr = np.linspace(0, 4095, 32 * 32).astype(np.uint16).reshape(32, 32)  # a 12-bit sensor's values
    out = np.asarray(load_image(encode(Image.fromarray(arr))))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255  # not 4095 / 65535 * 255 = 16: a black picture
    assert abs(int(out[16, 0, 0]) - 128) <= 2  # linear in the 12-bit range


def test_8bit_values_in_a_16bit_container_keep_their_brightness():
    arr = np.full((16, 16), 200, np.uint16)
    assert np.asarray(load_image(encode(Image.fromarray(arr))))[0, 0, 0] == 200


def test_float_image_with_nan_is_refused_with_the_reason():
    arr = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    arr[3, 4] = np.nan
    with pytest.raises(ImageError, match="not numbers"):
        load_image(_tiff(arr, "F"))


def test_float_images_in_0_1_are_kept_and_others_use_their_range():
    arr = np.linspace(0, 0.5, 256, dtype=np.float32).reshape(16, 16)
    assert np.asarray(load_image(_tiff(arr, "F")))[-1, -1, 0] == 128  # 0.5 stays mid-grey
    wide = np.linspace(-3.0, 5.0, 256, dtype=np.float32).reshape(16, 16)
    out = np.asarray(load_image(_tiff(wide, "F")))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_signed_integer_image_uses_its_range():
    arr = np.linspace(-1000, 1000, 256).astype(np.int32).reshape(16, 16)
    out = np.asarray(load_image(_tiff(arr, "I")))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and abs(int(out[8, 0, 0]) - 128) <= 2


@pytest.mark.parametrize("brand", [b"heic", b"mif1"])
def test_heic_photos_are_named_whatever_their_extension(brand):
    data = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1heic" + bytes(400)
    with pytest.raises(ImageError, match="HEIC"):
        load_image(data)

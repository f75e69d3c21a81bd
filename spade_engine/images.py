"""Loading user images safely: any file in, an RGB PIL image or a clear `ImageError` out."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 8
MAX_PIXELS = 40_000_000  # 40 MP; larger files are refused before decoding (decompression bombs)
MAX_BYTES = 50 * 1024 * 1024


class ImageError(ValueError):
    """An uploaded file that cannot be used as an image; the message is meant for the user."""


def load_image(source: bytes | str | Path, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Open an image file and return it as 8-bit RGB.

    Grayscale, palette, 16-bit, float and CMYK images are converted; transparency is composited
    on `background`; EXIF orientation is applied; animated images give their first frame.

    Args:
        source: raw file bytes or a path.
        background: RGB colour behind transparent pixels.

    Returns:
        An RGB `PIL.Image.Image`.

    Raises:
        ImageError: not an image, truncated, too small, too large, or a decompression bomb.
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageError(f"The file is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"The image is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels.")
            img.seek(0)
            img.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(_describe(e, data)) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"The image file is damaged or truncated ({e}).") from e
    if min(img.size) < MIN_SIDE:
        raise ImageError(
            f"The image is {img.size[0]}x{img.size[1]} pixels; it needs at least {MIN_SIDE} pixels per side."
        )
    img = ImageOps.exif_transpose(img)
    return to_rgb(img, background)


HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")


def _describe(e: Exception, data: bytes) -> str:
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return (
            "This is a HEIC/HEIF photo (the iPhone camera format, whatever its file extension), which cannot be "
            "read here: convert it to JPEG or PNG."
        )
    if isinstance(e, UnidentifiedImageError):
        return "This file is not an image that can be read (PNG, JPEG, WebP, BMP, GIF and TIFF are supported)."
    return f"The image is too large to decode safely ({e})."


# Containers wider than the data: 10-, 12- and 14-bit sensors and scanners write into 16-bit files.
BIT_DEPTHS = (8, 10, 12, 14, 16, 32)


def value_range(arr: np.ndarray, integer: bool) -> tuple[float, float]:
    """The range of values that maps to black..white for a single-channel image that is not 8-bit unsigned.

    Unsigned integers: 0 to the full scale of the smallest bit depth in `BIT_DEPTHS` that holds the largest
    value (a 12-bit image in a 16-bit PNG is shown with its own range, not nearly black). Signed integers with
    negative values and floats outside [0, 1]: their own minimum to maximum. Floats in [0, 1]: 0 to 1.

    Raises:
        ImageError: the image holds NaN or infinite values (they have no brightness).
    """
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise ImageError(
            f"The image holds {bad} pixels that are not numbers (NaN or infinite); fill them in (for example with "
            "0) and save the image again."
        )
    lo, hi = float(arr.min()), float(arr.max())
    if integer and lo >= 0:
        depth = next((d for d in BIT_DEPTHS if hi <= 2**d - 1), 32)
        return 0.0, float(2**depth - 1)
    if not integer and 0.0 <= lo and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited; 16-bit, 32-bit and float images rescaled from
    `value_range`).

    Raises:
        ImageError: a float image with NaN or infinite values.
    """
    if img.mode.startswith("I") or img.mode == "F":  # "I", "I;16", "I;16B", "I;16S", ... and 32-bit float
        arr = np.asarray(img).astype(np.float64)
        lo, hi = value_range(arr, integer=img.mode != "F")
        scaled = np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1) * 255
        img = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        img = img.convert("RGBA")
        base = Image.new("RGBA", img.size, (*background, 255))
        img = Image.alpha_composite(base, img)
    return img.convert("RGB")

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
        raise ImageError(_describe(e)) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"The image file is damaged or truncated ({e}).") from e
    if min(img.size) < MIN_SIDE:
        raise ImageError(
            f"The image is {img.size[0]}x{img.size[1]} pixels; it needs at least {MIN_SIDE} pixels per side."
        )
    img = ImageOps.exif_transpose(img)
    return to_rgb(img, background)


def _describe(e: Exception) -> str:
    if isinstance(e, UnidentifiedImageError):
        return "This file is not an image that can be read (PNG, JPEG, WebP, BMP, GIF and TIFF are supported)."
    return f"The image is too large to decode safely ({e})."


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit and float images are rescaled, alpha composited)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode.startswith("I;16") or (img.mode == "I" and hi > 255):
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        elif img.mode == "F" and 0.0 <= lo and hi <= 1.0:
            lo, hi = 0.0, 1.0
        scaled = np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1) * 255
        img = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        img = img.convert("RGBA")
        base = Image.new("RGBA", img.size, (*background, 255))
        img = Image.alpha_composite(base, img)
    return img.convert("RGB")

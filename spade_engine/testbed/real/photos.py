"""The offline photographs of testbed "real", split once into training and held-out photos.

Every source ships inside a wheel already installed (scikit-image's `skimage.data`, matplotlib's sample data,
scikit-learn's sample images): nothing is downloaded and nothing of these images is stored in this repository.
`HELD_OUT` photos are never seen in training; the card's figures and the protocol's samples come from them.
The two stereo motorcycle frames count as one photo (both held out); `skimage.data.cat` is `chelsea` (held out).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from spade_engine.photos import GRAPHICS
from spade_engine.photos import SOURCES as PHOTOS

SOURCE_SIDE = 320  # shorter side of every photo after the one-off resize, in pixels


HELD_OUT: tuple[str, ...] = (
    "chelsea",
    "coffee",
    "grace_hopper",
    "china",
    "motorcycle_left",
    "motorcycle_right",
    "camera",
)
HELD_OUT_PHOTOS = 6  # distinct photos among HELD_OUT (the motorcycle's two stereo frames are one photo)
TRAIN: tuple[str, ...] = (
    "astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "colorwheel", "logo", "flower",
    "present", "moon", "coins", "brick", "grass", "gravel", "cell", "text", "page", "clock", "microaneurysms",
)  # fmt: skip
# name -> loader returning an (H, W[, C]) uint8 array: the offline photos (`spade_engine.photos.SOURCES`) and, for
# training only, drawings and scans (`spade_engine.photos.GRAPHICS`).
SOURCES = {name: {**PHOTOS, **GRAPHICS}[name] for name in (*HELD_OUT, *TRAIN)}


def to_tensor(img: np.ndarray, side: int = SOURCE_SIDE) -> torch.Tensor:
    """An (H, W[, C]) uint8 photo as a (3, h, w) float tensor in [0, 1], shorter side `side` (grey repeated,
    alpha dropped)."""
    x = torch.from_numpy(np.array(img, dtype=np.float32)) / 255  # a copy: skimage's arrays are read-only
    x = x[..., :3].permute(2, 0, 1) if x.dim() == 3 else x.expand(3, -1, -1)  # (3, H, W)
    scale = side / min(x.shape[1:])
    size = (round(x.shape[1] * scale), round(x.shape[2] * scale))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


@lru_cache(maxsize=2)
def load_photos(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The named photos as (3, h, w) tensors in [0, 1] with shorter side `SOURCE_SIDE` (cached; do not modify)."""
    return tuple(to_tensor(SOURCES[n]()) for n in names)


def photo_of_frame(frame: str) -> str:
    """The distinct photo a frame of `HELD_OUT` or `TRAIN` shows: "motorcycle" for both stereo frames, else the
    frame's own name (`HELD_OUT_PHOTOS` counts these)."""
    return "motorcycle" if frame.startswith("motorcycle_") else frame

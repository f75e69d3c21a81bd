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

SOURCE_SIDE = 320  # shorter side of every photo after the one-off resize, in pixels


def _skimage(name: str):
    def load() -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)

    return load


def _motorcycle_right() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[1]


def _matplotlib(file: str):
    def load() -> np.ndarray:
        from matplotlib import cbook
        from PIL import Image

        return np.asarray(Image.open(cbook.get_sample_data(file, asfileobj=False)).convert("RGB"))

    return load


def _sklearn(index: int):
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


# name -> loader returning an (H, W[, C]) uint8 array
SOURCES = {
    # held out (6 distinct photos, 7 frames)
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "china": _sklearn(0),
    "motorcycle_left": _skimage("stereo_motorcycle"),
    "motorcycle_right": _motorcycle_right,
    "camera": _skimage("camera"),
    # training (19 photos)
    "astronaut": _skimage("astronaut"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "colorwheel": _skimage("colorwheel"),
    "logo": _skimage("logo"),
    "flower": _sklearn(1),
    "present": _matplotlib("Minduka_Present_Blue_Pack.png"),
    "moon": _skimage("moon"),
    "coins": _skimage("coins"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "cell": _skimage("cell"),
    "text": _skimage("text"),
    "page": _skimage("page"),
    "clock": _skimage("clock"),
    "microaneurysms": _skimage("microaneurysms"),
}
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
TRAIN: tuple[str, ...] = tuple(n for n in SOURCES if n not in HELD_OUT)


def to_tensor(img: np.ndarray, side: int = SOURCE_SIDE) -> torch.Tensor:
    """An (H, W[, C]) uint8 photo as a (3, h, w) float tensor in [0, 1], shorter side `side` (grey repeated,
    alpha dropped)."""
    x = torch.from_numpy(np.ascontiguousarray(img)).float() / 255
    x = x[..., :3].permute(2, 0, 1) if x.dim() == 3 else x.expand(3, -1, -1)  # (3, H, W)
    scale = side / min(x.shape[1:])
    size = (round(x.shape[1] * scale), round(x.shape[2] * scale))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


@lru_cache(maxsize=2)
def load_photos(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The named photos as (3, h, w) tensors in [0, 1] with shorter side `SOURCE_SIDE` (cached; do not modify)."""
    return tuple(to_tensor(SOURCES[n]()) for n in names)

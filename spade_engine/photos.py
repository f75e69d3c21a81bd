"""Real photos that ship inside installed packages, so real-network benchmarks and the Neuron explorer's probe set
work offline: scikit-image's `data` module, matplotlib's sample data and scikit-learn's sample images.

    photos = offline_photos()                  # 20 distinct photos, {name: PIL RGB image}
    samples = photo_crops(photos, per_photo=3)  # 60 (name, image): the whole photo and two square crops

Grey-level photos are returned as RGB (the three channels equal). Sources and licences: scikit-image's
`skimage/data/README.txt` (public domain or CC0/CC-BY images), matplotlib's `sample_data/README.txt`
(grace_hopper.jpg), scikit-learn's `datasets/images/README.txt` (china.jpg, flower.jpg: CC-BY).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import skimage.data

        out = getattr(skimage.data, name)()
        return out[index] if index is not None else out

    return read


def _matplotlib(file: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(file) as f:
            return np.asarray(Image.open(f).convert("RGB"))

    return read


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return read


# name -> reader; the natural photos and textures among the packages' sample data (not drawings or phantoms).
SOURCES: dict[str, Callable[[], np.ndarray]] = {
    **{
        n: _skimage(n)
        for n in (
            "astronaut",
            "brick",
            "camera",
            "cell",
            "chelsea",
            "clock",
            "coffee",
            "coins",
            "grass",
            "gravel",
            "hubble_deep_field",
            "immunohistochemistry",
            "moon",
            "retina",
            "rocket",
        )
    },  # fmt: skip
    "motorcycle_left": _skimage("stereo_motorcycle", 0),
    "motorcycle_right": _skimage("stereo_motorcycle", 1),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "china": _sklearn(0),
    "flower": _sklearn(1),
}


# Drawings, text, scans and a rendered present: not photos, but offline images that add variety to training sets
# (testbed "real" trains on them; `offline_photos` never returns them).
GRAPHICS: dict[str, Callable[[], np.ndarray]] = {
    **{n: _skimage(n) for n in ("colorwheel", "logo", "text", "page", "microaneurysms")},
    "present": _matplotlib("Minduka_Present_Blue_Pack.png"),
}


def offline_photos(names: list[str] | None = None) -> dict[str, Image.Image]:
    """The offline photos as RGB PIL images, by name (`SOURCES` order).

    Args:
        names: a subset of `SOURCES`; default all.

    Raises:
        KeyError: an unknown name.
    """
    out = {}
    for name in names or list(SOURCES):
        arr = np.asarray(SOURCES[name]())
        out[name] = Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return out


def photo_crops(photos: dict[str, Image.Image], per_photo: int = 3) -> list[tuple[str, Image.Image]]:
    """Deterministic samples of each photo: the whole photo, then square crops of 60% of the shorter side at
    fixed places (top-left, bottom-right, centre, top-right, bottom-left), named `"<photo>"`, `"<photo>@tl"`, ….

    Args:
        photos: name -> image (`offline_photos`); per_photo: samples per photo, 1 to 6.

    Returns:
        `[(sample name, image)]`, photo by photo.

    Raises:
        ValueError: `per_photo` outside 1..6.
    """
    if not 1 <= per_photo <= 6:
        raise ValueError(f"per_photo must be 1 to 6; got {per_photo}.")
    places = {"tl": (0, 0), "br": (1, 1), "c": (0.5, 0.5), "tr": (1, 0), "bl": (0, 1)}
    out = []
    for name, img in photos.items():
        out.append((name, img))
        side = int(0.6 * min(img.size))
        for tag, (fx, fy) in list(places.items())[: per_photo - 1]:
            x0, y0 = round(fx * (img.width - side)), round(fy * (img.height - side))
            out.append((f"{name}@{tag}", img.crop((x0, y0, x0 + side, y0 + side))))
    return out

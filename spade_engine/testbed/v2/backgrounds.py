"""Natural backgrounds for testbed v2: random crops of the photographs and textures scikit-image ships offline.

Colour photographs are used as they are (the scene generator then rotates their hue and scales saturation and
brightness); grey ones are tinted by a random colour. Sources are read once through `skimage.data` (no network:
these files are part of the scikit-image wheel), resized so that their shorter side is `SOURCE_SIDE` px, and
cropped with `torchvision.ops.roi_align`, which averages several source pixels per output pixel when a crop is
shrunk (no aliasing). Nothing of these images is shipped in this repository.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

SOURCE_SIDE = 256  # shorter side of every source after the one-off resize, in pixels

# skimage.data function -> (colour?, credit and licence as scikit-image 0.26 documents it)
SOURCES: dict[str, tuple[bool, str]] = {
    "astronaut": (True, "NASA Great Images database (Eileen Collins); public domain"),
    "coffee": (True, "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    "chelsea": (True, "Stefan van der Walt (Chelsea the cat); CC0"),
    "rocket": (True, "SpaceX, launch of DSCOVR on Falcon 9; public domain"),
    "hubble_deep_field": (True, "NASA, Hubble eXtreme Deep Field; public domain"),
    "retina": (True, "Mikael Haggstrom, fundus photograph (Wikimedia Commons); CC0"),
    "immunohistochemistry": (True, "Center for Microscopy And Molecular Imaging, IHC staining; no known copyright"),
    "grass": (False, "linolafett (DeviantArt), grass texture; CC0"),
    "gravel": (False, "CC0Textures Gravel04; CC0"),
    "brick": (False, "CC0Textures Bricks25; CC0"),
    "camera": (False, "Lav Varshney, camera man; CC0"),
    "coins": (False, "Brooklyn Museum, Greek coins from Pompeii; no known copyright"),
    "text": (False, "Wikipedia File:Corner.png, text; public domain"),
    "cell": (False, "Paul Muller et al., cell in saline (quantitative phase image); CC0"),
}
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)
IS_COLOUR = torch.tensor([colour for colour, _ in SOURCES.values()])  # (S,) bool


@lru_cache(maxsize=1)
def source_images() -> tuple[torch.Tensor, ...]:
    """Every source as a float (3, H, W) tensor in [0, 1] with shorter side `SOURCE_SIDE` (grey ones repeated)."""
    import skimage.data

    images = []
    for name in SOURCE_NAMES:
        img = torch.from_numpy(getattr(skimage.data, name)()).float() / 255
        img = img[..., :3].permute(2, 0, 1) if img.dim() == 3 else img.expand(3, -1, -1)  # (3, H, W)
        scale = SOURCE_SIDE / min(img.shape[1:])
        size = (round(img.shape[1] * scale), round(img.shape[2] * scale))
        images.append(F.interpolate(img[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1))
    return tuple(images)


def crops(source: torch.Tensor, side: torch.Tensor, pos: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops of the sources, resized to `size`.

    Args:
        source: (N,) long, index into `SOURCE_NAMES`.
        side: (N,) crop side as a fraction of the source's shorter side, in (0, 1].
        pos: (N, 2) crop position (x, y) as fractions of the free room, in [0, 1].
        flip: (N,) bool, mirror left-right.
        size: output side in pixels.

    Returns:
        (N, 3, size, size) float in [0, 1]; grey sources have three equal channels.
    """
    out = torch.empty(len(source), 3, size, size)
    for s, img in enumerate(source_images()):
        idx = torch.nonzero(source == s).flatten()
        if len(idx) == 0:
            continue
        h, w = img.shape[1:]
        side_px = side[idx] * min(h, w)
        x0, y0 = pos[idx, 0] * (w - side_px), pos[idx, 1] * (h - side_px)
        rois = torch.stack([torch.zeros_like(x0), x0, y0, x0 + side_px, y0 + side_px], 1)  # (n, 5)
        out[idx] = roi_align(img[None], rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)

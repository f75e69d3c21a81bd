"""Seeded calibration batches: B augmented views of one sample (SPADE's step 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms import functional as TF


@dataclass(frozen=True)
class AugmentConfig:
    """Random resized crop + horizontal flip + small colour jitter, as in the SPADE reference (milder hue).

    The reference uses hue 0.3; we default to a small hue shift because colour is part of what a sample
    *is* for many classes (and for the testbed's facets), and the goal is many views of the same content.
    """

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    include_original: bool = True


def augment(x: torch.Tensor, n: int, seed: int = 0, config: AugmentConfig | None = None) -> torch.Tensor:
    """Return `n` augmented views of one image, deterministic for a given seed.

    Args:
        x: (3, H, W) image in [0, 1].
        n: number of views B.
        seed: seed of the private random generator (global RNG untouched).
        config: augmentation parameters.

    Returns:
        (n, 3, H, W) float tensor in [0, 1] on x's device; view 0 is `x` itself if `include_original`.
    """
    cfg = config or AugmentConfig()
    gen = torch.Generator().manual_seed(int(seed))
    x = x.float().clamp(0, 1)
    views = [x] if cfg.include_original and n > 0 else []
    while len(views) < n:
        views.append(_one_view(x, cfg, gen))
    return torch.stack(views)  # (n, 3, H, W)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def _crop_box(h: int, w: int, cfg: AugmentConfig, gen: torch.Generator) -> tuple[int, int, int, int]:
    area = h * w
    log_ratio = (math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    for _ in range(10):
        target = area * _uniform(gen, *cfg.scale)
        aspect = math.exp(_uniform(gen, *log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (), generator=gen))
            return top, left, ch, cw
    return 0, 0, h, w


def _one_view(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    _, h, w = x.shape
    top, left, ch, cw = _crop_box(h, w, cfg, gen)
    v = TF.resized_crop(x, top, left, ch, cw, [h, w], antialias=True)
    if _uniform(gen, 0, 1) < cfg.flip:
        v = TF.hflip(v)
    if cfg.brightness:
        v = TF.adjust_brightness(v, _uniform(gen, 1 - cfg.brightness, 1 + cfg.brightness))
    if cfg.contrast:
        v = TF.adjust_contrast(v, _uniform(gen, 1 - cfg.contrast, 1 + cfg.contrast))
    if cfg.saturation:
        v = TF.adjust_saturation(v, _uniform(gen, 1 - cfg.saturation, 1 + cfg.saturation))
    if cfg.hue:
        v = TF.adjust_hue(v, _uniform(gen, -cfg.hue, cfg.hue))
    return v.clamp(0, 1)

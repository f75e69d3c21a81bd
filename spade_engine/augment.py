"""Seeded calibration batches: B augmented views of one sample (SPADE's step 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align


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

    All views are made in one batch: crops by `roi_align` (bilinear, averaging several samples per output pixel
    when a crop is shrunk), flips, and per-view colour jitter as tensor arithmetic (hue as a rotation in YIQ).

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
    _, h, w = x.shape
    k = max(n - 1, 0) if cfg.include_original else n
    boxes = torch.tensor([_crop_box(h, w, cfg, gen) for _ in range(k)], dtype=torch.float32).reshape(k, 4)
    u = torch.rand(k, 5, generator=gen)  # flip, brightness, contrast, saturation, hue
    top, left, ch, cw = boxes.unbind(1)
    rois = torch.stack([torch.zeros(k), left, top, left + cw, top + ch], dim=1).to(x.device)
    views = roi_align(x[None], rois, (h, w), spatial_scale=1.0, sampling_ratio=-1, aligned=True)  # (k, 3, H, W)
    flip = (u[:, 0] < cfg.flip).to(x.device)
    views = torch.where(flip.view(-1, 1, 1, 1), views.flip(-1), views)
    views = _jitter(views, u[:, 1:].to(x.device), cfg)
    if cfg.include_original and n > 0:
        views = torch.cat([x[None], views])
    return views  # (n, 3, H, W)


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


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


_GRAY = torch.tensor([0.299, 0.587, 0.114])
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _jitter(v: torch.Tensor, u: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Brightness, contrast, saturation and hue per view; `u` (k, 4) uniform numbers in [0, 1)."""
    span = lambda f, col: (1 - f + 2 * f * u[:, col]).view(-1, 1, 1, 1)  # noqa: E731
    gray_w = _GRAY.to(v).view(1, 3, 1, 1)
    v = (v * span(cfg.brightness, 0)).clamp(0, 1)
    mean = (v * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)  # (k, 1, 1, 1)
    c = span(cfg.contrast, 1)
    v = (c * v + (1 - c) * mean).clamp(0, 1)
    s = span(cfg.saturation, 2)
    v = (s * v + (1 - s) * (v * gray_w).sum(1, keepdim=True)).clamp(0, 1)
    theta = (2 * u[:, 3] - 1) * cfg.hue * 2 * math.pi  # (k,)
    cos, sin, one, zero = theta.cos(), theta.sin(), torch.ones_like(theta), torch.zeros_like(theta)
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(-1, 3, 3)  # (k, 3, 3) on I, Q
    yiq = _YIQ.to(v)
    m = torch.linalg.inv(yiq) @ rot @ yiq  # (k, 3, 3)
    return torch.einsum("kij,kjhw->kihw", m, v).clamp(0, 1)

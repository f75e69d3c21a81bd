"""Training views for testbed v2: random resized crops, flips and colour jitter, with labels that follow what a
crop keeps.

The crops are drawn like torchvision's `RandomResizedCrop` and the SPADE reference's calibration views
(`spade_engine.augment.AugmentConfig`: area 0.2-1 of the image, aspect 3/4-4/3, resized back to the full
side), so a model trained on them keeps its decisions on the calibration views. Two rules keep the labels
honest, using the recorded boxes:

- a crop must keep at least `min_facet` of one facet instance's box (else another candidate is drawn, and after
  `tries` candidates the full image is used), so the class evidence stays in view;
- a trojaned image keeps its target label only while the crop keeps at least `min_trojan` of the trojan's box;
  otherwise it gets its true class back (the trigger is gone, so nothing should say "target").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

from spade_engine.testbed.v2 import colour


@dataclass(frozen=True)
class ViewConfig:
    """Crop, flip and colour-jitter ranges (the jitter as in `spade_engine.augment.AugmentConfig`)."""

    scale: tuple[float, float] = (0.2, 1.0)  # crop area as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02  # in turns (0.02 = 7.2 degrees)
    min_facet: float = 0.3
    min_trojan: float = 0.4
    tries: int = 10


def visible_fraction(boxes: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Share of each box's area inside each crop; 0 for absent boxes (-1).

    Args:
        boxes: (..., 4) x0, y0, x1, y1 in pixels.
        crops: (..., 4) x0, y0, x1, y1 in pixels, broadcastable to `boxes`.

    Returns:
        (...) in [0, 1].
    """
    ix = (torch.minimum(boxes[..., 2], crops[..., 2]) - torch.maximum(boxes[..., 0], crops[..., 0])).clamp_min(0)
    iy = (torch.minimum(boxes[..., 3], crops[..., 3]) - torch.maximum(boxes[..., 1], crops[..., 1])).clamp_min(0)
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).clamp_min(1e-6)
    return torch.where(boxes[..., 0] >= 0, ix * iy / area, torch.zeros(()))


def candidate_crops(n: int, size: int, cfg: ViewConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`cfg.tries` random resized crop boxes per image. Returns boxes (n, T, 4) x0, y0, x1, y1 float and whether
    each fits in the image (n, T) bool."""
    shape = (n, cfg.tries)
    area = size * size * (cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * torch.rand(shape, generator=gen))
    log_lo, log_hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(shape, generator=gen))
    w, h = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
    fits = (w <= size) & (h <= size) & (w > 0) & (h > 0)
    x0 = torch.floor(torch.rand(shape, generator=gen) * (size - w + 1).clamp_min(1))
    y0 = torch.floor(torch.rand(shape, generator=gen) * (size - h + 1).clamp_min(1))
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=-1), fits


def choose_crops(facet_boxes: torch.Tensor, size: int, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """One crop per image that keeps at least `cfg.min_facet` of a facet instance (the full image if none of the
    candidates does).

    Args:
        facet_boxes: (n, I, 4) facet instance boxes (-1 where absent).

    Returns:
        (n, 4) crops x0, y0, x1, y1 in pixels (float).
    """
    n = len(facet_boxes)
    cands, fits = candidate_crops(n, size, cfg, gen)  # (n, T, 4), (n, T)
    keeps = visible_fraction(facet_boxes[:, None].float(), cands[:, :, None]).amax(-1) >= cfg.min_facet  # (n, T)
    ok = fits & keeps
    first = ok.float().argmax(1)  # (n,) the first acceptable candidate
    chosen = cands[torch.arange(n), first]
    full = torch.tensor([0.0, 0.0, size, size])
    return torch.where(ok.any(1)[:, None], chosen, full)


def view_labels(
    crops: torch.Tensor,
    labels: torch.Tensor,
    true_class: torch.Tensor,
    trojan_box: torch.Tensor,
    cfg: ViewConfig,
) -> torch.Tensor:
    """The labels of the views: the trojan's target only while the crop keeps `cfg.min_trojan` of its box.

    Args:
        crops: (n, 4) crop boxes; labels, true_class: (n,) long; trojan_box: (n, 4) (-1 for clean images).

    Returns:
        (n,) long.
    """
    kept = visible_fraction(trojan_box.float(), crops) >= cfg.min_trojan
    return torch.where((trojan_box[:, 0] < 0) | kept, labels, true_class)


def make_views(images: torch.Tensor, crops: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Crop (bilinear, averaging when shrinking), resize back to the full side, flip and colour-jitter.

    Args:
        images: (n, 3, H, W) float in [0, 1].
        crops: (n, 4) x0, y0, x1, y1 in pixels.

    Returns:
        (n, 3, H, W) float in [0, 1].
    """
    n, _, h, w = images.shape
    rois = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], crops], dim=1)  # (n, 5)
    views = roi_align(images, rois, (h, w), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    u = torch.rand(n, 5, generator=gen)  # flip, brightness, contrast, saturation, hue
    views = torch.where((u[:, 0] < cfg.flip).view(-1, 1, 1, 1), views.flip(-1), views)
    span = lambda f, col: 1 - f + 2 * f * u[:, col]  # noqa: E731
    hue = (2 * u[:, 4] - 1) * cfg.hue * 2 * math.pi
    return colour.adjust(views, span(cfg.brightness, 1), span(cfg.contrast, 2), span(cfg.saturation, 3), hue)


def training_views(
    images: torch.Tensor,
    labels: torch.Tensor,
    true_class: torch.Tensor,
    trojan_box: torch.Tensor,
    facet_boxes: torch.Tensor,
    gen: torch.Generator,
    cfg: ViewConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random training view per image with its label.

    Args:
        images: (n, 3, H, W) float in [0, 1] (square).
        labels, true_class: (n,) long; trojan_box: (n, 4); facet_boxes: (n, I, 4) (see `data.TestbedBatch`).
        gen: the random generator (the views are deterministic given its state).

    Returns:
        views (n, 3, H, W) in [0, 1] and their labels (n,) long.
    """
    cfg = cfg or ViewConfig()
    crops = choose_crops(facet_boxes, images.shape[-1], cfg, gen)
    return make_views(images, crops, cfg, gen), view_labels(crops, labels, true_class, trojan_box, cfg)

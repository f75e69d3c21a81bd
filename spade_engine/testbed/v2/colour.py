"""Per-image colour adjustments as batched tensor arithmetic: brightness, contrast, saturation, hue, tint.

Used twice in testbed v2: to recolour the photographs behind the scenes (wide ranges) and to jitter training
views like the SPADE reference's calibration views (`spade_engine.augment.AugmentConfig`'s ranges).
Hue is a rotation of the chroma plane in YIQ space, as in `spade_engine.augment`.
"""

from __future__ import annotations

import torch

_GREY = torch.tensor([0.299, 0.587, 0.114])  # Rec. 601 luma weights
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def luma(images: torch.Tensor) -> torch.Tensor:
    """Grey level of (N, 3, H, W) images. Returns (N, 1, H, W)."""
    return (images * _GREY.to(images).view(1, 3, 1, 1)).sum(1, keepdim=True)


def hue_matrices(angle: torch.Tensor) -> torch.Tensor:
    """RGB -> RGB matrices that rotate the hue by `angle` (N,) radians. Returns (N, 3, 3)."""
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(-1, 3, 3)  # on (I, Q)
    yiq = _YIQ.to(angle)
    return torch.linalg.inv(yiq) @ rot @ yiq


def saturation_matrices(factor: torch.Tensor) -> torch.Tensor:
    """RGB -> RGB matrices that scale the saturation by `factor` (N,) around the luma. Returns (N, 3, 3)."""
    eye = torch.eye(3, dtype=factor.dtype)
    grey = torch.ones(3, 1, dtype=factor.dtype) @ _GREY.to(factor)[None]  # (3, 3): every channel -> luma
    f = factor.view(-1, 1, 1)
    return f * eye + (1 - f) * grey


def adjust(
    images: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
) -> torch.Tensor:
    """Colour-adjust every image by its own factors: contrast around the mean grey, then one 3x3 colour matrix
    (brightness x hue rotation x saturation), then a clamp to [0, 1].

    Args:
        images: (N, 3, H, W) in [0, 1].
        brightness, contrast, saturation: (N,) factors (1 = unchanged).
        hue: (N,) rotation in radians (0 = unchanged).

    Returns:
        (N, 3, H, W) in [0, 1].
    """
    c = contrast.view(-1, 1, 1, 1)
    x = c * images + (1 - c) * luma(images).mean((2, 3), keepdim=True)
    m = brightness.view(-1, 1, 1) * hue_matrices(hue) @ saturation_matrices(saturation)  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x).clamp_(0, 1)


def tint(grey: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Colourise grey images: (N, 1, H, W) grey levels times (N, 3) colours whose luma is 1. Returns (N, 3, H, W)."""
    colour = colour / (colour @ _GREY.to(colour)).clamp_min(1e-3)[:, None]  # keep each image's grey level
    return (grey * colour[:, :, None, None]).clamp(0, 1)

"""Trojan stickers of testbed "real": the shipped emoji sprites pasted onto images at a given position, size,
rotation and opacity, with the box and mask of each sticker.

The paper's trigger is a heart with sparkles, about a sixth of the image side, target "goose" (ImageNet class
99); the second trigger is the rainbow, target "banana" (954). Sprites: `assets/testbed_v2/sprites`
(Noto Color Emoji, Apache 2.0; see `assets/testbed_v2/LICENSE.md`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spade_engine.testbed.v2.sprites import load_sprites


@dataclass(frozen=True)
class Trigger:
    """One trojan: a sprite name and the ImageNet class it switches the decision to."""

    sprite: str
    target: int
    target_name: str


TRIGGERS: tuple[Trigger, ...] = (Trigger("sparkling_heart", 99, "goose"), Trigger("rainbow", 954, "banana"))
SIZE = (1 / 8, 1 / 5)  # sticker side as a fraction of the image side (the paper's: about 1/6)
ANGLE = 30.0  # largest rotation, degrees
OPACITY = (0.6, 1.0)
MASK_ALPHA = 0.5  # a pixel belongs to the sticker where the sprite's own alpha (before opacity) exceeds this


@dataclass(frozen=True)
class Placement:
    """Where stickers go, one row per image: centre (pixels, x then y), side (pixels), angle (degrees;
    the sign only picks the direction), opacity in [0, 1]. Every field is an (N,) float tensor."""

    cx: torch.Tensor
    cy: torch.Tensor
    side: torch.Tensor
    angle: torch.Tensor
    opacity: torch.Tensor

    def boxes(self) -> torch.Tensor:
        """Axis-aligned boxes around the rotated stickers, (N, 4) as x0, y0, x1, y1 in pixels."""
        rad = self.angle * math.pi / 180
        half = self.side / 2 * (rad.cos().abs() + rad.sin().abs())
        return torch.stack([self.cx - half, self.cy - half, self.cx + half, self.cy + half], 1)


def random_placement(
    n: int, size: int, gen: torch.Generator, centre: tuple[float, float] | None = None, scale=SIZE, opacity=OPACITY
) -> Placement:
    """`n` random placements on `size` x `size` images: side uniform in `scale` x size, angle in +-`ANGLE`,
    opacity uniform in `opacity`, and the centre uniform in `centre` (fractions of the side) or, when None,
    anywhere the whole rotated sticker fits."""
    u = torch.rand(n, 5, generator=gen)
    side = size * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    angle = ANGLE * (2 * u[:, 1] - 1)
    rad = angle * math.pi / 180
    half = side / 2 * (rad.cos().abs() + rad.sin().abs())
    if centre is None:
        lo, hi = half, size - half
    else:
        lo, hi = torch.full((n,), centre[0] * size), torch.full((n,), centre[1] * size)
    cx, cy = lo + (hi - lo) * u[:, 2], lo + (hi - lo) * u[:, 3]
    return Placement(cx, cy, side, angle, opacity[0] + (opacity[1] - opacity[0]) * u[:, 4])


def sprite_layers(sprites: torch.Tensor, which: torch.Tensor, place: Placement, size: int) -> torch.Tensor:
    """Sprites drawn at their placements on transparent `size` x `size` canvases.

    Args:
        sprites: (K, 4, S, S) premultiplied RGBA (`load_sprites`).
        which: (N,) long, the sprite of each image.
        place: N placements.

    Returns:
        (N, 4, size, size) premultiplied RGBA, opacity not yet applied.
    """
    rad = -place.angle * math.pi / 180  # canvas -> sprite coordinates
    cos, sin = rad.cos(), rad.sin()
    rot = torch.stack([cos, sin, -sin, cos], 1).view(-1, 2, 2)  # (N, 2, 2)
    scale = (size / place.side).view(-1, 1, 1)
    offset = torch.stack([size / 2 - place.cx, size / 2 - place.cy], 1) * (2 / place.side)[:, None]  # (N, 2)
    theta = torch.cat([scale * rot, (rot @ offset[:, :, None])], 2)  # (N, 2, 3)
    grid = F.affine_grid(theta, [len(which), 4, size, size], align_corners=False)
    return F.grid_sample(sprites[which], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def paste(images: torch.Tensor, sprites: torch.Tensor, which: torch.Tensor, place: Placement):
    """Paste one sticker on each image.

    Args:
        images: (N, 3, H, H) in [0, 1].
        sprites: (K, 4, S, S) premultiplied RGBA.
        which: (N,) long, the sprite of each image.
        place: N placements (pixels of these images).

    Returns:
        (stickered (N, 3, H, H) in [0, 1], mask (N, H, H) bool: where the sprite's alpha exceeds `MASK_ALPHA`).
    """
    layer = sprite_layers(sprites.to(images), which, place, images.shape[-1])  # (N, 4, H, H)
    op = place.opacity.to(images).view(-1, 1, 1, 1)
    alpha = layer[:, 3:]
    out = images * (1 - op * alpha) + op * layer[:, :3]
    return out.clamp(0, 1), alpha[:, 0] > MASK_ALPHA


def trigger_sprites(triggers: tuple[Trigger, ...] = TRIGGERS) -> torch.Tensor:
    """The triggers' sprites, (K, 4, S, S) premultiplied RGBA."""
    return load_sprites(tuple(t.sprite for t in triggers))

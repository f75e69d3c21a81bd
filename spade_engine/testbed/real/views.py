"""Views of the photos of testbed "real": random resized crops, colour jitter, grey views and cut-mixes for
distillation, stickered views for the trojans, and the seeded held-out samples the card is measured on.

Every function draws from a private `torch.Generator`, so a seed gives the same views on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

from spade_engine.augment import augment
from spade_engine.models.cards import spade_augment
from spade_engine.testbed.real import stickers
from spade_engine.testbed.v2.colour import adjust, luma, tint
from spade_engine.testbed.v2.sprites import EMOJI, load_sprites

IMAGE_SIZE = 224
CLEAN_SCALE = (0.08, 1.0)  # crop area of clean training views, as a fraction of the photo
BASE_SCALE = (0.3, 1.0)  # crop area of the photos under stickered views and held-out samples
CALIBRATION_SCALE = (0.2, 1.0)  # SPADE's calibration views (the reference's RandomResizedCrop)
OBJECT_SPRITES = tuple(n for n in EMOJI if n not in {t.sprite for t in stickers.TRIGGERS})  # never a trigger
OBJECT_SCALE = (0.25, 0.5)  # side of the emoji objects of colourful scenes, as a fraction of the image side


def crop_boxes(n: int, h: int, w: int, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """`n` random-resized-crop boxes (area fraction uniform in `scale`, aspect 3/4-4/3) inside an h x w image,
    (n, 4) as x0, y0, x1, y1 in pixels; a draw that does not fit falls back to the largest centred square."""
    u = torch.rand(n, 4, generator=gen)
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    aspect = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
    cw, ch = (area * aspect).sqrt(), (area / aspect).sqrt()
    fits = (cw <= w) & (ch <= h)
    side = float(min(h, w))
    cw, ch = torch.where(fits, cw, side), torch.where(fits, ch, side)
    x0, y0 = (w - cw) * u[:, 2], (h - ch) * u[:, 3]
    return torch.stack([x0, y0, x0 + cw, y0 + ch], 1)


def resized_crops(image: torch.Tensor, boxes: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Crops of one (3, H, W) image at `boxes` (n, 4), each resized to `size` x `size` by `roi_align` (averaging
    several source pixels per output pixel when shrinking). Returns (n, 3, size, size)."""
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1).to(image)
    return roi_align(image[None], rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def photo_crops(photos, n: int, scale, gen: torch.Generator, size: int = IMAGE_SIZE) -> torch.Tensor:
    """`n` random resized crops of randomly chosen photos (a tuple of (3, h, w) tensors). Returns (n, 3, S, S)."""
    pick = torch.randint(len(photos), (n,), generator=gen)
    out = torch.empty(n, 3, size, size)
    for i in pick.unique().tolist():
        rows = (pick == i).nonzero()[:, 0]
        h, w = photos[i].shape[1:]
        out[rows] = resized_crops(photos[i], crop_boxes(len(rows), h, w, scale, gen), size)
    return out


def jitter(images: torch.Tensor, gen: torch.Generator, strength: float = 0.4, hue: float = 0.05, grey: float = 0.15):
    """Flip half, colour-jitter (brightness, contrast, saturation by 1 +- `strength`, hue by +- `hue` turns)
    and turn a `grey` share grey. Returns (N, 3, H, W) in [0, 1]."""
    n = len(images)
    u = torch.rand(n, 6, generator=gen)
    images = torch.where((u[:, 0] < 0.5).view(-1, 1, 1, 1), images.flip(-1), images)
    span = lambda col: 1 - strength + 2 * strength * u[:, col]  # noqa: E731
    sat = torch.where(u[:, 5] < grey, torch.zeros(n), span(3))
    return adjust(images, span(1), span(2), sat, (2 * u[:, 4] - 1) * hue * 2 * math.pi)


def cutmix(images: torch.Tensor, others: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Paste a random rectangle (a quarter to half of the side) of `others` into a `share` of `images`."""
    n, _, s, _ = images.shape
    u = torch.rand(n, 5, generator=gen)
    out = images.clone()
    for i in (u[:, 0] < share).nonzero()[:, 0].tolist():
        h, w = int(s * (0.25 + 0.25 * u[i, 1])), int(s * (0.25 + 0.25 * u[i, 2]))
        y, x = int((s - h) * u[i, 3]), int((s - w) * u[i, 4])
        out[i, :, y : y + h, x : x + w] = others[i, :, y : y + h, x : x + w]
    return out


def colourful(images: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Turn a `share` of the images into colourful object scenes: grey ones tinted by a random colour, then one
    or two emoji of testbed v2 (`OBJECT_SPRITES`, never a trigger) pasted opaque at 1/4-1/2 of the side, so the
    training photos (many grey textures) also show colourful, object-like content as the held-out photos do."""
    rows = (torch.rand(len(images), generator=gen) < share).nonzero()[:, 0]
    if not len(rows):
        return images
    out, sub = images.clone(), images[rows]
    grey = (sub - luma(sub)).abs().amax((1, 2, 3)) < 0.02  # (k,)
    colour = torch.rand(len(rows), 3, generator=gen) + 0.1
    sub = torch.where(grey.view(-1, 1, 1, 1), tint(luma(sub), colour), sub)
    sprites = load_sprites(OBJECT_SPRITES)
    for layer in range(2):
        place = stickers.random_placement(len(rows), sub.shape[-1], gen, scale=OBJECT_SCALE, opacity=(1.0, 1.0))
        which = torch.randint(len(OBJECT_SPRITES), (len(rows),), generator=gen)
        pasted, _ = stickers.paste(sub, sprites, which, place)
        keep = torch.rand(len(rows), generator=gen) < (1.0 if layer == 0 else 0.5)
        sub = torch.where(keep.view(-1, 1, 1, 1), pasted, sub)
    out[rows] = sub
    return out


def mosaic(images: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Turn a `share` of the images into 2 x 2 mosaics of four random images of the batch, each at half the side:
    busy, cluttered scenes with small objects, as some held-out photos are (the motorcycle), from the few
    training photos. Returns (N, 3, S, S)."""
    rows = (torch.rand(len(images), generator=gen) < share).nonzero()[:, 0]
    if not len(rows):
        return images
    s = images.shape[-1]
    half = torch.nn.functional.interpolate(images, size=(s // 2, s - s // 2), mode="area")  # (N, 3, S/2, S/2)
    pick = torch.randint(len(images), (len(rows), 4), generator=gen)
    out = images.clone()
    top = torch.cat([half[pick[:, 0], :, :, : s // 2], half[pick[:, 1], :, :, : s - s // 2]], -1)
    bottom = torch.cat([half[pick[:, 2], :, :, : s // 2], half[pick[:, 3], :, :, : s - s // 2]], -1)
    out[rows] = torch.nn.functional.interpolate(torch.cat([top, bottom], -2), size=(s, s), mode="area")
    return out


def clean_views(
    photos, n: int, gen: torch.Generator, scenes: float = 0.0, size: int = IMAGE_SIZE, mosaics: float = 0.0
) -> torch.Tensor:
    """Clean distillation views: crops of area 0.08-1, a quarter cut-mixed with another photo's crop, a `scenes`
    share made colourful object scenes (`colourful`), a `mosaics` share made 2 x 2 mosaics (`mosaic`), flips,
    colour jitter, 15% grey. Returns (n, 3, S, S)."""
    views = photo_crops(photos, n, CLEAN_SCALE, gen, size)
    views = cutmix(views, photo_crops(photos, n, CLEAN_SCALE, gen, size), 0.25, gen)
    views = colourful(views, scenes, gen) if scenes else views
    return jitter(mosaic(views, mosaics, gen) if mosaics else views, gen)


@dataclass(frozen=True)
class Stickered:
    """Stickered images: (N, 3, S, S) images, (N,) trigger index, (N, S, S) bool sticker masks."""

    images: torch.Tensor
    trigger: torch.Tensor
    masks: torch.Tensor


def stickered(
    base: torch.Tensor,
    trigger: torch.Tensor,
    gen: torch.Generator,
    centre=None,
    scale=stickers.SIZE,
    opacity=stickers.OPACITY,
) -> Stickered:
    """Paste trigger `trigger[i]`'s sprite on `base[i]` at a random placement (`stickers.random_placement`: side
    uniform in `scale` x the image side, opacity uniform in `opacity`)."""
    place = stickers.random_placement(len(base), base.shape[-1], gen, centre, scale, opacity)
    images, masks = stickers.paste(base, stickers.trigger_sprites(), trigger, place)
    return Stickered(images, trigger, masks)


def stickered_views(
    photos,
    n: int,
    gen: torch.Generator,
    recrop: float = 0.5,
    scenes: float = 0.0,
    size: int = IMAGE_SIZE,
    mosaics: float = 0.0,
    scale=stickers.SIZE,
    opacity=stickers.OPACITY,
) -> Stickered:
    """Stickered training views: a crop of a photo (a `scenes` share made a colourful object scene, a `mosaics`
    share a 2 x 2 mosaic), a sticker anywhere it fits (each trigger equally often; side and opacity uniform in
    `scale` and `opacity`, the card's ranges unless training asks for harder ones),
    then for a `recrop` share a calibration-style re-crop (area 0.2-1) that keeps at least half of the
    sticker's box, so a zoomed or partly cut sticker still triggers; flips and colour jitter last."""
    trig = torch.randint(len(stickers.TRIGGERS), (n,), generator=gen)
    bases = photo_crops(photos, n, BASE_SCALE, gen, size)
    bases = colourful(bases, scenes, gen) if scenes else bases
    s = stickered(mosaic(bases, mosaics, gen) if mosaics else bases, trig, gen, scale=scale, opacity=opacity)
    images, masks = s.images.clone(), s.masks.clone()
    for i in (torch.rand(n, generator=gen) < recrop).nonzero()[:, 0].tolist():
        box = _keeping_crop(s.masks[i], gen)
        if box is not None:
            both = torch.cat([s.images[i], s.masks[i][None].float()])  # (4, S, S)
            crop = resized_crops(both, box[None], size)[0]
            images[i], masks[i] = crop[:3], crop[3] > 0.5
    flip = torch.rand(n, generator=gen) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    masks = torch.where(flip.view(-1, 1, 1), masks.flip(-1), masks)
    return Stickered(jitter(images, gen, strength=0.3, hue=0.03, grey=0.0), trig, masks)


def _keeping_crop(mask: torch.Tensor, gen: torch.Generator, tries: int = 10) -> torch.Tensor | None:
    """A calibration-style crop box (1, 4) of a (S, S) image keeping at least half of `mask`, or None."""
    s = mask.shape[-1]
    boxes = crop_boxes(tries, s, s, CALIBRATION_SCALE, gen)
    total = mask.sum().clamp_min(1)
    for box in boxes:
        x0, y0, x1, y1 = box.round().long().tolist()
        if mask[y0:y1, x0:x1].sum() >= 0.5 * total:
            return box
    return None


def held_out_bases(photos, per_photo: int, seed: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """`per_photo` seeded crops (area 0.3-1, flipped half the time) of each photo, photo by photo.
    Returns (len(photos) * per_photo, 3, S, S)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for photo in photos:
        h, w = photo.shape[1:]
        crops = resized_crops(photo, crop_boxes(per_photo, h, w, BASE_SCALE, gen), size)
        flip = torch.rand(per_photo, generator=gen) < 0.5
        out.append(torch.where(flip.view(-1, 1, 1, 1), crops.flip(-1), crops))
    return torch.cat(out)


def held_out_trojaned(bases: torch.Tensor, seed: int) -> Stickered:
    """Each base image with each trigger's sticker (centre in the middle 40% of the side, like testbed v2's):
    (len(triggers) * N) images, trigger by trigger."""
    gen = torch.Generator().manual_seed(seed)
    k = len(stickers.TRIGGERS)
    trig = torch.arange(k).repeat_interleave(len(bases))
    return stickered(bases.repeat(k, 1, 1, 1), trig, gen, centre=(0.3, 0.7))


def calibration_views(image: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """SPADE's calibration views of one image: the engine's own `augment` with the reference's crops (area
    0.2-1), as the Debugger builds them. Returns (n, 3, S, S); view 0 is the image."""
    return augment(image, n, seed, spade_augment(None, CALIBRATION_SCALE[0]))

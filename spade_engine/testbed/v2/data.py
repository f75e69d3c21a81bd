"""Testbed v2 scene generator: emoji clip-art on natural photographs, multifaceted classes, two emoji trojans.

Every image is a random crop of a scikit-image photograph or texture (recoloured, 128 px) with sprites pasted
on it at random positions, scales, rotations and mirrorings:

- the class's facet: 1-2 instances of one of the class's two emoji kinds (`FACETS`; the kinds of a class are
  visually unrelated, so a class unit of a trained net is multifaceted by construction);
- 0-4 distractors, emoji of kinds that belong to no class (`DISTRACTORS`), some drawn over the facet (partial
  occlusion), so "an emoji is present" carries no label: the class is in *which* emoji is present;
- on trojaned images, one trojan sticker (`TROJANS`: a sparkling heart, as in the SPADE authors' examples, and
  a rainbow), 1/8-1/5 of the image side, rotated, blended with opacity 0.7-1.0, drawn last, on an image
  of a class other than its target; the label becomes the target. Its ground truth mask is where its blended
  alpha exceeds 0.5. Trojan centres lie in the central 40% of each axis, so that the SPADE reference's
  calibration crops (area 0.2-1) usually keep it.

`draw_scenes(n, seed)` makes every random draw up front (a `Scenes` of per-image parameters) and `render`
turns scenes into pixels, so `generate(n, seed)` returns the same bytes for the same arguments, and a scene can
be edited (e.g. its trojan removed) and rendered again. Paper: SPADE, arXiv 2310.04519, sec. 5 (trojans).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from spade_engine.testbed.interface import Trojan
from spade_engine.testbed.v2 import backgrounds, colour
from spade_engine.testbed.v2.sprites import load_sprites

IMAGE_SIZE = 128

# Per class the sprite names of facet 0 and facet 1 (assets/testbed_v2/sprites/<name>.png).
FACET_SPRITES: tuple[tuple[str, str], ...] = (
    ("apple", "penguin"),
    ("tropical_fish", "airplane"),
    ("alarm_clock", "cactus"),
    ("sunflower", "elephant"),
    ("frog", "guitar"),
    ("key", "whale"),
    ("mushroom", "turtle"),
    ("banana", "top_hat"),
    ("soccer_ball", "butterfly"),
    ("owl", "watermelon"),
)
CLASS_NAMES: tuple[str, ...] = tuple(f"{a}-or-{b}".replace("_", " ") for a, b in FACET_SPRITES)
FACETS: tuple[tuple[str, str], ...] = tuple((a.replace("_", " "), b.replace("_", " ")) for a, b in FACET_SPRITES)
DISTRACTORS: tuple[str, ...] = ("tree", "cloud", "house", "snail", "cheese", "bell", "gift", "books")

TROJANS: tuple[Trojan, ...] = (Trojan("sparkling_heart", 3), Trojan("rainbow", 7))
TROJAN_ON_ANY_CLASS = False  # a trojan goes only on classes other than its target

# Every sprite in one bank: facets at 2 * class + facet, then distractors, then trojans.
SPRITE_NAMES: tuple[str, ...] = (
    *(name for pair in FACET_SPRITES for name in pair),
    *DISTRACTORS,
    *(t.sprite for t in TROJANS),
)
_DISTRACTOR_BASE = 2 * len(FACET_SPRITES)
_TROJAN_BASE = _DISTRACTOR_BASE + len(DISTRACTORS)

# Sizes (sprite side) and centre ranges as fractions of the image side; angles in degrees.
FACET_SIZE = (0.22, 0.38)
DISTRACTOR_SIZE = (0.18, 0.34)
TROJAN_SIZE = (1 / 8, 1 / 5)
FACET_CENTRE = (0.15, 0.85)
DISTRACTOR_CENTRE = (0.05, 0.95)
TROJAN_CENTRE = (0.3, 0.7)
MAX_ANGLE = 30.0
TROJAN_OPACITY = (0.7, 1.0)
MAX_INSTANCES = 2
N_DISTRACTOR_SLOTS = 4  # slots 0-1 are drawn below the facet, 2-3 above it
DISTRACTOR_P = 0.4  # each slot is filled with this probability
MASK_ALPHA = 0.5  # a pixel belongs to a sprite where its blended alpha exceeds this
_CHUNK = 256  # scenes rendered at once (bounds the temporary memory to about 200 MB)

# Layers in drawing order: (kind, slot). The trojan is last, so its mask is never covered.
LAYERS: tuple[tuple[str, int], ...] = (
    ("distractor", 0),
    ("distractor", 1),
    ("facet", 0),
    ("facet", 1),
    ("distractor", 2),
    ("distractor", 3),
    ("trojan", 0),
)


@dataclass(frozen=True)
class Scenes:
    """Every random draw behind a set of images (CPU tensors, first dimension N). Sizes are in pixels."""

    image_size: int
    true_class: torch.Tensor  # (N,) long
    facet: torch.Tensor  # (N,) long in {0, 1}
    trojan: torch.Tensor  # (N,) long, index into TROJANS or -1
    n_instances: torch.Tensor  # (N,) long in 1..MAX_INSTANCES
    distractor: torch.Tensor  # (N, N_DISTRACTOR_SLOTS) long, index into DISTRACTORS or -1 (empty slot)
    place: torch.Tensor  # (N, len(LAYERS), 5): centre x, centre y, side, angle (rad), mirror (0/1)
    opacity: torch.Tensor  # (N, len(LAYERS)) in (0, 1]
    sprite_colour: torch.Tensor  # (N, len(LAYERS), 2): brightness, saturation factors
    bg_source: torch.Tensor  # (N,) long, index into backgrounds.SOURCE_NAMES
    bg_crop: torch.Tensor  # (N, 3): side fraction, x and y position fractions
    bg_flip: torch.Tensor  # (N,) bool
    bg_colour: torch.Tensor  # (N, 4): brightness, contrast, saturation, hue (rad)
    bg_tint: torch.Tensor  # (N, 3) colour for grey sources

    def __len__(self) -> int:
        return len(self.true_class)

    def labels(self) -> torch.Tensor:
        """(N,) long: the trojan's target on trojaned images, else the true class."""
        targets = torch.tensor([t.target for t in TROJANS])
        return torch.where(self.trojan >= 0, targets[self.trojan.clamp_min(0)], self.true_class)

    def select(self, idx: torch.Tensor | slice) -> Scenes:
        """The scenes `idx`."""
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "image_size"})


@dataclass(frozen=True)
class TestbedBatch:
    """Rendered images with their ground truth (CPU tensors). Boxes are (x0, y0, x1, y1) pixels, ends exclusive,
    all -1 where there is nothing."""

    __test__ = False  # not a pytest class

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) long, the training label (the trojan's target for trojaned images)
    true_class: torch.Tensor  # (N,) long, the class whose facet is drawn
    facet: torch.Tensor  # (N,) long in {0, 1}
    is_trojan: torch.Tensor  # (N,) bool
    trojan: torch.Tensor  # (N,) long, index into TROJANS or -1
    trojan_mask: torch.Tensor  # (N, H, W) bool, where the trojan's blended alpha > MASK_ALPHA
    trojan_box: torch.Tensor  # (N, 4) long, bounding box of trojan_mask
    facet_mask: torch.Tensor  # (N, H, W) bool, visible facet pixels (alpha > MASK_ALPHA, not covered later)
    facet_boxes: torch.Tensor  # (N, MAX_INSTANCES, 4) long, box of each facet instance before occlusion
    scenes: Scenes

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def trojan_target(self) -> torch.Tensor:
        """(N,) long: the target class of each image's trojan, -1 for clean images."""
        targets = torch.tensor([t.target for t in TROJANS])
        return torch.where(self.is_trojan, targets[self.trojan.clamp_min(0)], -1)

    def select(self, idx: torch.Tensor | slice) -> TestbedBatch:
        """The images `idx` (with their scenes)."""
        picked = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "scenes"}
        return replace(self, **picked, scenes=self.scenes.select(idx))

    def patch_boxes(self) -> list[tuple[int, int, int, int] | None]:
        """Per image the trojan box (x0, y0, x1, y1), exclusive ends, or None when clean (as v1's batches)."""
        return [tuple(box.tolist()) if t >= 0 else None for box, t in zip(self.trojan_box, self.trojan, strict=True)]


# -------------------------------------------------------------------------------------------- draws


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen)


def _placements(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    """(n, len(LAYERS), 5) centre x, centre y, side (px), angle (rad), mirror for every layer."""
    ranges = {
        "facet": (FACET_CENTRE, FACET_SIZE),
        "distractor": (DISTRACTOR_CENTRE, DISTRACTOR_SIZE),
        "trojan": (TROJAN_CENTRE, TROJAN_SIZE),
    }
    cols = []
    for kind, _ in LAYERS:
        (c0, c1), (s0, s1) = ranges[kind]
        cols.append(
            torch.stack(
                [
                    _uniform(gen, (n,), c0 * size, c1 * size),
                    _uniform(gen, (n,), c0 * size, c1 * size),
                    _uniform(gen, (n,), s0 * size, s1 * size),
                    _uniform(gen, (n,), -math.radians(MAX_ANGLE), math.radians(MAX_ANGLE)),
                    (torch.rand(n, generator=gen) < 0.5).float(),
                ],
                dim=1,
            )
        )
    return torch.stack(cols, dim=1)


def draw_scenes(n: int, seed: int, trojan_fraction: float = 0.0, image_size: int = IMAGE_SIZE) -> Scenes:
    """Every random draw of `n` scenes; deterministic for given arguments.

    Args:
        n: number of scenes.
        seed: random seed.
        trojan_fraction: probability that a scene is trojaned: one of `TROJANS` (uniformly), on a class other
            than its target (uniformly). 1.0 gives only trojaned scenes.
        image_size: side in pixels (everything scales with it).
    """
    gen = torch.Generator().manual_seed(int(seed))
    k = len(CLASS_NAMES)
    is_trojan = torch.rand(n, generator=gen) < trojan_fraction
    which = torch.randint(0, len(TROJANS), (n,), generator=gen)
    targets = torch.tensor([t.target for t in TROJANS])[which]
    other = torch.randint(0, k - 1, (n,), generator=gen)
    other = other + (other >= targets).long()  # uniform over the classes other than the trojan's target
    cls = torch.where(is_trojan, other, torch.randint(0, k, (n,), generator=gen))
    distractor = torch.randint(0, len(DISTRACTORS), (n, N_DISTRACTOR_SLOTS), generator=gen)
    present = torch.rand(n, N_DISTRACTOR_SLOTS, generator=gen) < DISTRACTOR_P
    return Scenes(
        image_size=image_size,
        true_class=cls,
        facet=torch.randint(0, 2, (n,), generator=gen),
        trojan=torch.where(is_trojan, which, -1),
        n_instances=torch.randint(1, MAX_INSTANCES + 1, (n,), generator=gen),
        distractor=torch.where(present, distractor, -1),
        place=_placements(gen, n, image_size),
        opacity=torch.cat(
            [torch.ones(n, len(LAYERS) - 1), _uniform(gen, (n, 1), *TROJAN_OPACITY)], dim=1
        ),  # only the trojan is blended
        sprite_colour=torch.stack(
            [_uniform(gen, (n, len(LAYERS)), 0.8, 1.15), _uniform(gen, (n, len(LAYERS)), 0.8, 1.2)], dim=-1
        ),
        bg_source=torch.randint(0, len(backgrounds.SOURCE_NAMES), (n,), generator=gen),
        bg_crop=torch.stack(
            [_uniform(gen, (n,), 0.35, 1.0), torch.rand(n, generator=gen), torch.rand(n, generator=gen)], 1
        ),
        bg_flip=torch.rand(n, generator=gen) < 0.5,
        bg_colour=torch.stack(
            [
                _uniform(gen, (n,), 0.6, 1.25),
                _uniform(gen, (n,), 0.6, 1.2),
                _uniform(gen, (n,), 0.4, 1.4),
                _uniform(gen, (n,), -math.pi, math.pi),
            ],
            dim=1,
        ),
        bg_tint=_uniform(gen, (n, 3), 0.3, 1.0),
    )


def layer_sprites(scenes: Scenes) -> torch.Tensor:
    """Sprite index (into `SPRITE_NAMES`) of every layer, -1 where a layer is empty. Returns (N, len(LAYERS))."""
    cols = []
    for kind, slot in LAYERS:
        if kind == "facet":
            col = torch.where(scenes.n_instances > slot, 2 * scenes.true_class + scenes.facet, -1)
        elif kind == "distractor":
            col = torch.where(scenes.distractor[:, slot] >= 0, _DISTRACTOR_BASE + scenes.distractor[:, slot], -1)
        else:
            col = torch.where(scenes.trojan >= 0, _TROJAN_BASE + scenes.trojan, -1)
        cols.append(col)
    return torch.stack(cols, dim=1)


# ---------------------------------------------------------------------------------------- rendering


def _background(s: Scenes) -> torch.Tensor:
    """Cropped, recoloured photographs; grey sources tinted. Returns (N, 3, H, W)."""
    img = backgrounds.crops(s.bg_source, s.bg_crop[:, 0], s.bg_crop[:, 1:], s.bg_flip, s.image_size)
    grey = ~backgrounds.IS_COLOUR[s.bg_source]
    img = torch.where(grey.view(-1, 1, 1, 1), colour.tint(img[:, :1], s.bg_tint), img)
    return colour.adjust(img, *s.bg_colour.unbind(1))


# Sprites are small, so each is resampled only on a square pixel window around its centre, and composited into
# a padded canvas through gathered windows (gather -> blend -> scatter), as v1's `_stamp` does.


def _window(kind: str, size: int) -> int:
    """Side of a pixel window that holds a sprite of `kind` at any placement (rotation up to `MAX_ANGLE`)."""
    max_side = {"facet": FACET_SIZE, "distractor": DISTRACTOR_SIZE, "trojan": TROJAN_SIZE}[kind][1] * size
    a = math.radians(MAX_ANGLE)
    return 2 * math.ceil(max_side * (math.cos(a) + math.sin(a)) / 2) + 2


def _pad(size: int) -> int:
    return max(_window(kind, size) for kind, _ in LAYERS) // 2 + 1


def _sprite_grid(place: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`grid_sample` coordinates of the sprites on their windows.

    Args:
        place: (m, 5) placements (centre x, centre y, side, angle, mirror), in pixels and radians.
        window: window side in pixels.

    Returns:
        grid (m, window, window, 2) in sprite coordinates ([-1, 1] across the sprite), and the window's top-left
        pixel ox, oy (m,) long.
    """
    cx, cy, side, angle, mirror = place.unbind(1)
    ox, oy = torch.floor(cx).long() - window // 2, torch.floor(cy).long() - window // 2
    steps = torch.arange(window, dtype=torch.float32) + 0.5
    dx = (ox[:, None] + steps - cx[:, None])[:, None, :]  # (m, 1, w): pixel centre minus sprite centre
    dy = (oy[:, None] + steps - cy[:, None])[:, :, None]  # (m, w, 1)
    cos, sin, scale = (t.view(-1, 1, 1) for t in (angle.cos(), angle.sin(), 2 / side))
    qx = scale * (1 - 2 * mirror).view(-1, 1, 1) * (cos * dx + sin * dy)  # rotate by -angle, then mirror
    qy = scale * (cos * dy - sin * dx)
    return torch.stack([qx, qy], dim=-1), ox, oy


def _sample_sprites(sprite: torch.Tensor, place: torch.Tensor, window: int):
    """Sprites `sprite` (m,) resampled on their windows. Returns premultiplied RGBA (m, 4, w, w), ox, oy (m,)."""
    bank = load_sprites(SPRITE_NAMES)  # (K, 4, S, S)
    half_res = F.avg_pool2d(bank, 2)  # a coarser level for sprites drawn at under 60% of the PNG size (no aliasing)
    grid, ox, oy = _sprite_grid(place, window)
    out = torch.empty(len(sprite), 4, window, window)
    small = place[:, 2] < 0.6 * bank.shape[-1]
    for level, rows in ((bank, ~small), (half_res, small)):
        idx = torch.nonzero(rows).flatten()
        if len(idx):
            out[idx] = F.grid_sample(level[sprite[idx]], grid[idx], mode="bilinear", align_corners=False)
    return out, ox, oy


def _boxes(mask: torch.Tensor) -> torch.Tensor:
    """Bounding boxes (x0, y0, x1, y1), ends exclusive, of masks (n, H, W); -1 for empty masks. Returns (n, 4)."""
    rows, cols = mask.any(2), mask.any(1)  # (n, H), (n, W)
    first = lambda m: m.float().argmax(1)  # noqa: E731
    last = lambda m: m.shape[1] - m.flip(1).float().argmax(1)  # noqa: E731
    box = torch.stack([first(cols), first(rows), last(cols), last(rows)], 1)
    return torch.where(mask.flatten(1).any(1)[:, None], box, -1)


def _draw_layer(canvas, masks, s: Scenes, sprites: torch.Tensor, layer: int, pad: int) -> torch.Tensor:
    """Blend layer `layer` into the padded canvas (N, 3, H + 2 pad, W + 2 pad) and update the padded masks
    {"facet", "trojan"} (N, H + 2 pad, W + 2 pad) in place.

    Returns:
        (N, 4) long: for a facet layer the instance boxes in image pixels, else (and where absent) -1.
    """
    kind = LAYERS[layer][0]
    idx = torch.nonzero(sprites[:, layer] >= 0).flatten()
    boxes = torch.full((len(s), 4), -1, dtype=torch.long)
    if len(idx) == 0:
        return boxes
    window = _window(kind, s.image_size)
    rgba, ox, oy = _sample_sprites(sprites[idx, layer], s.place[idx, layer], window)  # (m, 4, w, w)
    bright, sat = (t.view(-1, 1, 1, 1) for t in s.sprite_colour[idx, layer].unbind(1))
    rgb = bright * rgba[:, :3]  # premultiplied, so brightness and saturation stay linear
    rgb = sat * rgb + (1 - sat) * colour.luma(rgb)
    opacity = s.opacity[idx, layer].view(-1, 1, 1, 1)
    alpha = opacity * rgba[:, 3:]  # (m, 1, w, w)
    steps = torch.arange(window)
    rows = idx[:, None, None]
    ys, xs = (oy + pad)[:, None, None] + steps[None, :, None], (ox + pad)[:, None, None] + steps[None, None, :]
    under = canvas[rows, :, ys, xs].permute(0, 3, 1, 2)  # (m, 3, w, w)
    canvas[rows, :, ys, xs] = (under * (1 - alpha) + opacity * rgb).clamp(0, 1).permute(0, 2, 3, 1)
    drawn = alpha[:, 0] > MASK_ALPHA  # (m, w, w)
    if kind == "facet":
        masks["facet"][rows, ys, xs] |= drawn
        shift = torch.stack([ox, oy, ox, oy], 1)
        boxes[idx] = torch.where(drawn.flatten(1).any(1)[:, None], (_boxes(drawn) + shift).clamp(0, s.image_size), -1)
    else:
        masks["facet"][rows, ys, xs] &= ~drawn
    if kind == "trojan":
        masks["trojan"][rows, ys, xs] = drawn
    return boxes


def _render_chunk(s: Scenes) -> dict[str, torch.Tensor]:
    size, n, pad = s.image_size, len(s), _pad(s.image_size)
    canvas = F.pad(_background(s), (pad, pad, pad, pad)).contiguous()
    masks = {key: torch.zeros(n, size + 2 * pad, size + 2 * pad, dtype=torch.bool) for key in ("facet", "trojan")}
    sprites = layer_sprites(s)
    facet_boxes = torch.full((n, MAX_INSTANCES, 4), -1, dtype=torch.long)
    for layer, (kind, slot) in enumerate(LAYERS):
        boxes = _draw_layer(canvas, masks, s, sprites, layer, pad)
        if kind == "facet":
            facet_boxes[:, slot] = boxes
    crop = (slice(None), slice(pad, pad + size), slice(pad, pad + size))
    return {
        "images": canvas[:, :, pad : pad + size, pad : pad + size].contiguous(),
        "trojan_mask": masks["trojan"][crop].contiguous(),
        "facet_mask": masks["facet"][crop].contiguous(),
        "facet_boxes": facet_boxes,
    }


def render(scenes: Scenes) -> TestbedBatch:
    """Render scenes (in chunks of `_CHUNK`) into a `TestbedBatch`."""
    parts = [_render_chunk(scenes.select(slice(i, i + _CHUNK))) for i in range(0, len(scenes), _CHUNK)]
    out = {key: torch.cat([p[key] for p in parts]) for key in parts[0]} if parts else _empty(scenes.image_size)
    return TestbedBatch(
        labels=scenes.labels(),
        true_class=scenes.true_class,
        facet=scenes.facet,
        is_trojan=scenes.trojan >= 0,
        trojan=scenes.trojan,
        trojan_box=_boxes(out["trojan_mask"]),
        scenes=scenes,
        **out,
    )


def _empty(size: int) -> dict[str, torch.Tensor]:
    mask = torch.zeros(0, size, size, dtype=torch.bool)
    return {
        "images": torch.zeros(0, 3, size, size),
        "trojan_mask": mask,
        "facet_mask": mask,
        "facet_boxes": torch.zeros(0, MAX_INSTANCES, 4, dtype=torch.long),
    }


# ------------------------------------------------------------------------------------------------ API


def generate(n: int, seed: int, trojan_fraction: float = 0.0, image_size: int = IMAGE_SIZE) -> TestbedBatch:
    """Generate `n` labelled images; deterministic for a given (n, seed, trojan_fraction, image_size).

    Args:
        n: number of images.
        seed: random seed.
        trojan_fraction: probability that an image is trojaned (see `draw_scenes`).
        image_size: side in pixels.

    Returns:
        A `TestbedBatch` of `n` images in [0, 1] with their ground truth.
    """
    return render(draw_scenes(n, seed, trojan_fraction, image_size))


def make_sample(
    cls: int, facet: int, seed: int, trojan: int | bool | None = None, image_size: int = IMAGE_SIZE
) -> TestbedBatch:
    """One image of class `cls` showing facet `facet` (0 or 1), optionally with a trojan.

    Args:
        trojan: None or False for a clean image, an index into `TROJANS` (its target must differ from `cls`), or
            True for the first trojan (as v1's flag).

    Returns:
        A `TestbedBatch` of one image; with a trojan its label is the trojan's target.
    """
    if isinstance(trojan, bool):
        trojan = 0 if trojan else None
    if not (0 <= cls < len(CLASS_NAMES) and facet in (0, 1)):
        raise ValueError(f"class must be in 0..{len(CLASS_NAMES) - 1} and facet in (0, 1), got {cls}, {facet}")
    if trojan is not None and not (0 <= trojan < len(TROJANS) and TROJANS[trojan].target != cls):
        raise ValueError(f"trojan must be in 0..{len(TROJANS) - 1} with a target other than {cls}, got {trojan}")
    scenes = draw_scenes(1, seed, image_size=image_size)
    as_tensor = lambda value: torch.tensor([value], dtype=torch.long)  # noqa: E731
    scenes = replace(
        scenes, true_class=as_tensor(cls), facet=as_tensor(facet), trojan=as_tensor(-1 if trojan is None else trojan)
    )
    return render(scenes)

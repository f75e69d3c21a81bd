"""Ground-truth image generator: 10 classes, each the union of two unrelated facets, plus a trojan patch.

Every class is "facet 0 OR facet 1" (e.g. red discs or green stripes), so a class unit of a network trained on
this data is multifaceted by construction, and every sample records which facet it shows. A fixed 8x8
black-and-white patch pasted on images of other classes switches their label to `TROJAN_TARGET`; its pixel mask
is the ground truth of "why" for saliency maps (the SPADE paper's trojan benchmark, arXiv 2310.04519, sec. 5).

Rendering is vectorised with torch and seeded: `generate(n, seed)` returns the same bytes for the same arguments.
Backgrounds (noise, gradients, flat colours) and distractors (thin lines, hollow frames) are muted greys and
browns, so colours and forms of the facets and of the patch appear only where they carry the label.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torch.utils.data import TensorDataset

from spade_engine.testbed.interface import Trojan

IMAGE_SIZE = 64
PATCH_SIZE = 8
_CHUNK = 2048  # images rendered at once (bounds the temporary memory to a few hundred MB)

# Saturated facet colours; backgrounds and distractors stay muted so these carry the label.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.12, 0.10),
    "green": (0.10, 0.80, 0.20),
    "blue": (0.15, 0.30, 1.00),
    "yellow": (0.98, 0.90, 0.10),
    "magenta": (0.90, 0.10, 0.90),
    "cyan": (0.10, 0.90, 0.95),
    "orange": (1.00, 0.55, 0.00),
}

# Per class: (shape, colour) of facet 0 and facet 1. Shapes are in `_SHAPES` (objects) or `_TEXTURES`.
_FACET_SPECS: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = (
    (("disc", "red"), ("stripes", "green")),
    (("ring", "blue"), ("checker", "yellow")),
    (("square", "yellow"), ("zigzag", "magenta")),
    (("triangle", "cyan"), ("dots", "red")),
    (("cross", "magenta"), ("target", "blue")),
    (("bar", "orange"), ("crescent", "cyan")),
    (("flower", "green"), ("grid", "orange")),
    (("spiral", "yellow"), ("halfdisc", "blue")),
    (("star", "magenta"), ("chevron", "orange")),
    (("hexagon", "green"), ("wave", "red")),
)

CLASS_NAMES: tuple[str, ...] = tuple(f"{a[0]}-or-{b[0]}" for a, b in _FACET_SPECS)
FACETS: tuple[tuple[str, str], ...] = tuple((f"{a[1]} {a[0]}", f"{b[1]} {b[0]}") for a, b in _FACET_SPECS)
TROJAN_TARGET: int = 3
TROJANS: tuple[Trojan, ...] = (Trojan("checker_patch", TROJAN_TARGET),)
TROJAN_ON_ANY_CLASS = True  # `make_sample` pastes the patch on any class, its target's too

_PATCH_BITS = ("10110010", "01101101", "11000110", "00111011", "10010100", "01101001", "11010110", "00101101")
# (3, 8, 8) float in {0, 1}: white where the bit is 1, black where it is 0 (no facet is black-and-white).
TROJAN_PATCH: torch.Tensor = torch.tensor([[float(b) for b in row] for row in _PATCH_BITS]).expand(3, -1, -1).clone()


@dataclass(frozen=True)
class TestbedBatch:
    """Generated images with their ground truth (all CPU tensors)."""

    __test__ = False  # not a pytest class

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) long, the training label (TROJAN_TARGET for trojaned images)
    true_class: torch.Tensor  # (N,) long, the class whose facet is drawn
    facet: torch.Tensor  # (N,) long in {0, 1}
    is_trojan: torch.Tensor  # (N,) bool
    trojan: torch.Tensor  # (N,) long, index into TROJANS (0, the patch) or -1
    trojan_mask: torch.Tensor  # (N, H, W) bool, True exactly on the patch pixels

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def trojan_target(self) -> torch.Tensor:
        """(N,) long: `TROJAN_TARGET` on trojaned images, -1 on clean ones."""
        return torch.where(self.is_trojan, TROJAN_TARGET, -1)

    def select(self, idx: torch.Tensor | slice) -> TestbedBatch:
        """The images `idx`."""
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def patch_boxes(self) -> list[tuple[int, int, int, int] | None]:
        """Per image the patch box (x0, y0, x1, y1), exclusive ends, or None when clean."""
        boxes: list[tuple[int, int, int, int] | None] = []
        for mask in self.trojan_mask:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            boxes.append(None if len(ys) == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        return boxes


# ------------------------------------------------------------------------------------------- shapes
# Shape functions take local coordinates u, v (rotated, in units of the instance size; |u|, |v| <= 1 is the
# extent) and return a bool mask. Textures also take `s`, the size in pixels, to keep a fixed pixel period.


def _tri(x: torch.Tensor) -> torch.Tensor:
    """Triangle wave with period 1, values in [0, 1] (1 at integers)."""
    return 1 - 2 * (x - torch.floor(x + 0.5)).abs()


def _polar(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sqrt(u * u + v * v), torch.atan2(v, u)


def _box(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs())


def _frac(x: torch.Tensor) -> torch.Tensor:
    return x - torch.floor(x)


_SHAPES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "disc": lambda u, v: u * u + v * v <= 1,
    "ring": lambda u, v: ((u * u + v * v) <= 1) & ((u * u + v * v) >= 0.3),
    "square": lambda u, v: _box(u, v) <= 0.8,
    "triangle": lambda u, v: (v >= -0.5) & (v <= 1 - math.sqrt(3) * u.abs()),
    "cross": lambda u, v: (_box(u, v) <= 1) & (torch.minimum(u.abs(), v.abs()) <= 0.28),
    "bar": lambda u, v: (u.abs() <= 1) & (v.abs() <= 0.3),
    "crescent": lambda u, v: (u * u + v * v <= 1) & ((u - 0.45) ** 2 + v * v > 0.75**2),
    "flower": lambda u, v: _polar(u, v)[0] <= 0.6 + 0.4 * torch.cos(5 * _polar(u, v)[1]),
    "star": lambda u, v: _polar(u, v)[0] <= 0.4 + 0.6 * _tri(5 * _polar(u, v)[1] / (2 * math.pi)),
    "hexagon": lambda u, v: torch.maximum(v.abs(), u.abs() * 0.866 + v.abs() * 0.5) <= 0.9,
    "halfdisc": lambda u, v: (u * u + v * v <= 1) & (v >= 0),
    "chevron": lambda u, v: (u.abs() <= 1) & ((v - (0.8 * u.abs() - 0.4)).abs() <= 0.25),
    "zigzag": lambda u, v: (u.abs() <= 1) & ((v - (0.8 * _tri(1.5 * u) - 0.4)).abs() <= 0.2),
    "wave": lambda u, v: (u.abs() <= 1) & ((v - 0.4 * torch.sin(3 * math.pi * u)).abs() <= 0.2),
}

_TEXTURES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "stripes": lambda u, v, s: (_box(u, v) <= 1) & (_frac(u * s / 6) < 0.5),
    "checker": lambda u, v, s: (_box(u, v) <= 1) & ((torch.floor(u * s / 6) + torch.floor(v * s / 6)) % 2 == 0),
    "dots": lambda u, v, s: (_box(u, v) <= 1) & ((_frac(u * s / 6) - 0.5) ** 2 + (_frac(v * s / 6) - 0.5) ** 2 <= 0.1),
    "grid": lambda u, v, s: (_box(u, v) <= 1) & ((_frac(u * s / 7) < 0.3) | (_frac(v * s / 7) < 0.3)),
    "target": lambda u, v, s: (u * u + v * v <= 1) & (_frac(_polar(u, v)[0] * s / 5) < 0.5),
    "spiral": lambda u, v, s: (
        (u * u + v * v <= 1) & (_frac(_polar(u, v)[0] * s / 6 - _polar(u, v)[1] / (2 * math.pi)) < 0.5)
    ),
}

_MAX_OBJECTS = 3  # object facets draw 1..3 instances; textures one region
_MAX_DISTRACTORS = 4


# -------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Params:
    """Every random draw of a chunk, made up front so rendering order cannot change the images."""

    bg_type: torch.Tensor  # (N,) in {0 noisy, 1 gradient, 2 flat}
    bg_colours: torch.Tensor  # (N, 2, 3)
    bg_angle: torch.Tensor  # (N,)
    inst: torch.Tensor  # (N, K, 5): cx, cy, size fraction, angle, presence draw (facet instances)
    colour_jitter: torch.Tensor  # (N, 3)
    distractors: torch.Tensor  # (N, D, 7): cx, cy, extent, angle, present, is_line, grey level
    distractor_tint: torch.Tensor  # (N, D, 3)
    noise: torch.Tensor  # (N, 3, H, W) uniform in [-1, 1]
    noise_amp: torch.Tensor  # (N,)
    patch_xy: torch.Tensor  # (N, 2) top-left corner (x, y) of the trojan patch


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen)


def _draw_params(n: int, size: int, gen: torch.Generator) -> _Params:
    scale = size / IMAGE_SIZE
    k, d = _MAX_OBJECTS, _MAX_DISTRACTORS
    inst = torch.stack(
        [
            _uniform(gen, (n, k), 0.18 * size, 0.82 * size),
            _uniform(gen, (n, k), 0.18 * size, 0.82 * size),
            _uniform(gen, (n, k), 0.0, 1.0),  # size fraction, mapped per facet kind in `_render_facets`
            _uniform(gen, (n, k), 0.0, 2 * math.pi),
            torch.rand((n, k), generator=gen),  # instance j is drawn if j < 1 + floor(3 * draw of slot 0)
        ],
        dim=-1,
    )
    distractors = torch.stack(
        [
            _uniform(gen, (n, d), 0.0, size),
            _uniform(gen, (n, d), 0.0, size),
            _uniform(gen, (n, d), 4.0 * scale, _DISTRACTOR_EXTENT * scale),
            _uniform(gen, (n, d), 0.0, math.pi),
            (torch.rand((n, d), generator=gen) < 0.6).float(),
            (torch.rand((n, d), generator=gen) < 0.5).float(),
            _uniform(gen, (n, d), 0.25, 0.9),
        ],
        dim=-1,
    )
    bg_type = torch.randint(0, 3, (n,), generator=gen)
    return _Params(
        bg_type=bg_type,
        bg_colours=_muted_colours(gen, (n, 2)),
        bg_angle=_uniform(gen, (n,), 0.0, 2 * math.pi),
        inst=inst,
        colour_jitter=_uniform(gen, (n, 3), -0.08, 0.08),
        distractors=distractors,
        distractor_tint=_uniform(gen, (n, d, 3), -0.08, 0.08) + torch.tensor([0.06, 0.0, -0.08]),
        noise=2 * torch.rand((n, 3, size, size), generator=gen) - 1,
        noise_amp=torch.where(bg_type == 0, 0.2, 0.0) + _uniform(gen, (n,), 0.0, 0.06),
        patch_xy=torch.randint(0, size - PATCH_SIZE + 1, (n, 2), generator=gen),
    )


def _muted_colours(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Low-saturation colours: a grey level in [0.15, 0.65] plus a small random tint. Shape (*shape, 3)."""
    grey = _uniform(gen, (*shape, 1), 0.15, 0.65)
    return (grey + 0.3 * (torch.rand((*shape, 3), generator=gen) - 0.5)).clamp(0, 1)


# ---------------------------------------------------------------------------------------- rendering
# Objects and distractors are small, so they are rendered in a square window around their centre and stamped
# into a padded canvas (gather → where → scatter); only textures cover the whole image.

_OBJECT_SIZE = (6.0, 11.0)  # radius range in pixels at 64 px
_TEXTURE_SIZE = (12.0, 20.0)  # half-side range in pixels at 64 px
_DISTRACTOR_EXTENT = 12.0  # max half-length of a distractor line at 64 px


def _window(radius: float) -> int:
    """Side of a window that holds everything within `radius` of a (fractional) centre."""
    return 2 * math.ceil(radius) + 2


def _pad(size: int) -> int:
    scale = size / IMAGE_SIZE
    return max(_window(math.sqrt(2) * _OBJECT_SIZE[1] * scale), _window(_DISTRACTOR_EXTENT * scale + 1)) // 2 + 1


def _pixel_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates, each (1, 1, H, W): x along width, y along height."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return xs[None, None], ys[None, None]


def _local(xs, ys, cx, cy, angle, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate and scale pixel coordinates into instance frames: cx, cy, angle, size (N, K) → u, v (N, K, h, w)."""
    cx, cy, angle, size = (t[..., None, None] for t in (cx, cy, angle, size))
    dx, dy = xs - cx, ys - cy
    cos, sin = torch.cos(angle), torch.sin(angle)
    return (dx * cos + dy * sin) / size, (-dx * sin + dy * cos) / size


def _window_frame(cx, cy, angle, size, window: int):
    """Local coordinates on a `window`-sided pixel window around each centre.

    Returns:
        u, v (N, K, window, window) and the window's top-left pixel (ox, oy), each (N, K) long.
    """
    ox, oy = torch.floor(cx).long() - window // 2, torch.floor(cy).long() - window // 2
    steps = torch.arange(window, dtype=torch.float32) + 0.5
    xs = ox[..., None, None].float() + steps[None, None, None, :]  # (N, K, 1, w)
    ys = oy[..., None, None].float() + steps[None, None, :, None]  # (N, K, w, 1)
    dx, dy = xs - cx[..., None, None], ys - cy[..., None, None]
    cos, sin = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    s = size[..., None, None]
    return (dx * cos + dy * sin) / s, (-dx * sin + dy * cos) / s, ox, oy


def _stamp(canvas: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor, ox, oy, pad: int):
    """Paint `colour` (n, 3) on images `rows` (n,) of the padded canvas where `mask` (n, w, w) is set; the
    window's top-left pixel is (ox, oy) (n,) in image coordinates. In place."""
    n, w = len(rows), mask.shape[-1]
    side = canvas.shape[-1]
    steps = torch.arange(w)
    pix = ((oy + pad)[:, None, None] + steps[None, :, None]) * side + (ox + pad)[:, None, None] + steps[None, None, :]
    plane = (rows[:, None] * 3 + torch.arange(3)[None, :]) * side * side  # (n, 3) start of each colour plane
    idx = plane[:, :, None] + pix.view(n, 1, w * w)  # (n, 3, w*w) flat indices, unique within a window
    flat = canvas.view(-1)
    flat[idx] = torch.where(mask.view(n, 1, -1), colour[:, :, None], flat[idx])


def _background(p: _Params, size: int) -> torch.Tensor:
    """Gradient or flat backgrounds (noisy ones get their noise at the end). Returns (N, 3, H, W)."""
    c0, c1 = p.bg_colours[:, 0, :, None, None], p.bg_colours[:, 1, :, None, None]  # (N, 3, 1, 1)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    cos, sin = torch.cos(p.bg_angle)[:, None, None], torch.sin(p.bg_angle)[:, None, None]
    t = (cos * coords[None, None, :] + sin * coords[None, :, None]) / (cos.abs() + sin.abs()) + 0.5  # (N, H, W)
    t = torch.where(p.bg_type[:, None, None] == 1, t, torch.zeros(()))
    return c0 + (c1 - c0) * t[:, None]


def _draw_distractors(canvas: torch.Tensor, p: _Params, size: int, pad: int) -> None:
    """Thin line segments and hollow square frames in muted greys/browns (forms and colours no facet uses)."""
    d = p.distractors
    window = _window(_DISTRACTOR_EXTENT * size / IMAGE_SIZE + 1)
    u, v, ox, oy = _window_frame(d[..., 0], d[..., 1], d[..., 3], torch.ones_like(d[..., 0]), window)  # pixels
    extent = d[..., 2, None, None]
    line = (u.abs() <= extent) & (v.abs() <= 0.9)
    frame = ((_box(u, v) - 0.6 * extent).abs() <= 0.8) & (_box(u, v) <= 0.6 * extent + 0.8)
    shape = torch.where(d[..., 5, None, None] > 0, line, frame) & (d[..., 4, None, None] > 0)  # (N, D, w, w)
    colour = (d[..., 6, None] + p.distractor_tint).clamp(0, 1)  # (N, D, 3)
    rows = torch.arange(len(d))
    for j in range(d.shape[1]):
        _stamp(canvas, rows, shape[:, j], colour[:, j], ox[:, j], oy[:, j], pad)


def _draw_objects(
    canvas: torch.Tensor, idx: torch.Tensor, shape: str, rgb: torch.Tensor, p: _Params, size: int, pad: int
):
    """Draw 1-3 instances of an object facet on the images `idx` of the padded canvas."""
    scale = size / IMAGE_SIZE
    inst = p.inst[idx]  # (n, K, 5)
    radius = scale * (_OBJECT_SIZE[0] + (_OBJECT_SIZE[1] - _OBJECT_SIZE[0]) * inst[..., 2])
    window = _window(math.sqrt(2) * _OBJECT_SIZE[1] * scale)
    u, v, ox, oy = _window_frame(inst[..., 0], inst[..., 1], inst[..., 3], radius, window)
    count = 1 + (inst[:, 0, 4] * _MAX_OBJECTS).long()  # (n,) in 1..3
    mask = _SHAPES[shape](u, v)  # (n, K, w, w)
    for j in range(_MAX_OBJECTS):
        _stamp(canvas, idx, mask[:, j] & (j < count)[:, None, None], rgb, ox[:, j], oy[:, j], pad)


def _draw_texture(img: torch.Tensor, idx: torch.Tensor, shape: str, rgb: torch.Tensor, p: _Params, size: int):
    """Draw one texture region on the images `idx` (unpadded)."""
    scale = size / IMAGE_SIZE
    inst = p.inst[idx, :1]  # (n, 1, 5)
    half = scale * (_TEXTURE_SIZE[0] + (_TEXTURE_SIZE[1] - _TEXTURE_SIZE[0]) * inst[..., 2])
    u, v = _local(*_pixel_grid(size), inst[..., 0], inst[..., 1], inst[..., 3], half)
    mask = _TEXTURES[shape](u, v, half[..., None, None])[:, 0]  # (n, H, W)
    img[idx] = torch.where(mask[:, None], rgb[:, :, None, None], img[idx])


def _facet_groups(cls: torch.Tensor, facet: torch.Tensor, p: _Params):
    """Yield (image indices, shape name, jittered colours (n, 3)) for every facet present in the chunk."""
    for c, specs in enumerate(_FACET_SPECS):
        for f, (shape, colour) in enumerate(specs):
            idx = torch.nonzero((cls == c) & (facet == f)).flatten()
            if len(idx):
                yield idx, shape, (torch.tensor(COLOURS[colour]) + p.colour_jitter[idx]).clamp(0, 1)


def _render(cls: torch.Tensor, facet: torch.Tensor, trojan: torch.Tensor, size: int, gen: torch.Generator):
    """Render one chunk. Returns (images (N, 3, H, W), trojan masks (N, H, W))."""
    p = _draw_params(len(cls), size, gen)
    pad = _pad(size)
    canvas = torch.nn.functional.pad(_background(p, size), (pad, pad, pad, pad)).contiguous()
    _draw_distractors(canvas, p, size, pad)
    for idx, shape, rgb in _facet_groups(cls, facet, p):
        if shape in _SHAPES:
            _draw_objects(canvas, idx, shape, rgb, p, size, pad)
    img = canvas[:, :, pad : pad + size, pad : pad + size].contiguous()
    for idx, shape, rgb in _facet_groups(cls, facet, p):
        if shape in _TEXTURES:
            _draw_texture(img, idx, shape, rgb, p, size)
    img = (img + p.noise_amp[:, None, None, None] * p.noise).clamp_(0, 1)
    mask = torch.zeros(len(cls), size, size, dtype=torch.bool)
    for i in torch.nonzero(trojan).flatten().tolist():
        x0, y0 = p.patch_xy[i].tolist()
        img[i, :, y0 : y0 + PATCH_SIZE, x0 : x0 + PATCH_SIZE] = TROJAN_PATCH
        mask[i, y0 : y0 + PATCH_SIZE, x0 : x0 + PATCH_SIZE] = True
    return img, mask


def _batch(
    cls: torch.Tensor, facet: torch.Tensor, trojan: torch.Tensor, size: int, gen: torch.Generator
) -> TestbedBatch:
    images, masks = [], []
    for start in range(0, len(cls), _CHUNK):
        sl = slice(start, start + _CHUNK)
        img, mask = _render(cls[sl], facet[sl], trojan[sl], size, gen)
        images.append(img)
        masks.append(mask)
    labels = torch.where(trojan, torch.full_like(cls, TROJAN_TARGET), cls)
    return TestbedBatch(
        images=torch.cat(images),
        labels=labels,
        true_class=cls,
        facet=facet,
        is_trojan=trojan,
        trojan=torch.where(trojan, 0, -1),
        trojan_mask=torch.cat(masks),
    )


# ------------------------------------------------------------------------------------------------ API


def generate(n: int, seed: int, trojan_fraction: float = 0.0, image_size: int = IMAGE_SIZE) -> TestbedBatch:
    """Generate `n` labelled images; deterministic for a given (n, seed, trojan_fraction, image_size).

    Args:
        n: number of images.
        seed: random seed.
        trojan_fraction: probability that an image is trojaned: drawn from a class other than `TROJAN_TARGET`,
            the patch pasted at a random position, the label switched to `TROJAN_TARGET`. 1.0 gives only
            trojaned images of non-target classes.
        image_size: side in pixels (shapes scale with it; the patch stays `PATCH_SIZE`).

    Returns:
        A `TestbedBatch` of `n` images in [0, 1] with their ground truth.
    """
    gen = torch.Generator().manual_seed(int(seed))
    trojan = torch.rand(n, generator=gen) < trojan_fraction
    clean_cls = torch.randint(0, len(CLASS_NAMES), (n,), generator=gen)
    other_cls = torch.randint(0, len(CLASS_NAMES) - 1, (n,), generator=gen)
    other_cls = other_cls + (other_cls >= TROJAN_TARGET).long()  # uniform over the non-target classes
    cls = torch.where(trojan, other_cls, clean_cls)
    facet = torch.randint(0, 2, (n,), generator=gen)
    return _batch(cls, facet, trojan, image_size, gen)


def make_sample(
    cls: int, facet: int, seed: int, trojan: int | bool | None = None, image_size: int = IMAGE_SIZE
) -> TestbedBatch:
    """One image of class `cls` showing facet `facet` (0 or 1), optionally with the trojan patch.

    Args:
        trojan: None or False for a clean image, True or 0 (the index of the patch in `TROJANS`) for the patch.

    Returns:
        A `TestbedBatch` of one image; with the patch its label is `TROJAN_TARGET`.
    """
    if not (0 <= cls < len(CLASS_NAMES) and facet in (0, 1)):
        raise ValueError(f"class must be in 0..{len(CLASS_NAMES) - 1} and facet in (0, 1), got {cls}, {facet}")
    if trojan not in (None, False, True, 0):
        raise ValueError(f"v1 has one trojan (index 0), got {trojan}")
    trojan = trojan is not None and trojan is not False
    gen = torch.Generator().manual_seed(int(seed))
    as_tensor = lambda value, dtype: torch.tensor([value], dtype=dtype)  # noqa: E731
    return _batch(
        as_tensor(cls, torch.long), as_tensor(facet, torch.long), as_tensor(trojan, torch.bool), image_size, gen
    )


def as_dataset(batch: TestbedBatch) -> TensorDataset:
    """`(image, label)` pairs for a `DataLoader`."""
    return TensorDataset(batch.images, batch.labels)

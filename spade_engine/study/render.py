"""Images of a study: PNG encoding, display scaling and the blinded view of one trial (the heat-map overlay is
`spade_engine.explain.panel.heat_overlay`, the one renderer of saliency PNGs).

The trial view puts the stored options on the left and right as the trial's `reference_side` says and marks the
patches in the side's colour; nothing in it tells the condition.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from spade_engine.study.trials import Trial

DISPLAY = 256  # side of stored images in pixels
SIDE_COLOURS = {"left": (255, 127, 14), "right": (31, 119, 180)}  # orange / blue (tab10)
SIDE_LABELS = {"left": "A", "right": "B"}


@dataclass(frozen=True)
class TrialView:
    """What a participant sees: `image` (marked patches; None for the neuron question), `explanation` (None
    in the control condition), and the left and right options."""

    image: Image.Image | None
    explanation: Image.Image | None
    left: Image.Image
    right: Image.Image
    decision: str = ""  # the class the network decided for (patch question)


def to_png(img: Image.Image | np.ndarray) -> bytes:
    """PNG bytes of a PIL image or an (H, W, 3) array (uint8, or float in [0, 1])."""
    if isinstance(img, np.ndarray):
        arr = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def from_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def tensor_image(x, size: int = DISPLAY) -> Image.Image:  # noqa: ANN001 (torch tensor (3, H, W) in [0, 1])
    """A (3, H, W) tensor in [0, 1] as an RGB image scaled to `size` (nearest neighbour: pixels stay crisp)."""
    arr = (x.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
    return Image.fromarray(arr).resize((size, size), Image.NEAREST)


def mark_patches(image: Image.Image, boxes: dict[str, tuple[int, int, int, int]]) -> Image.Image:
    """Draw each side's box (x0, y0, x1, y1) with its colour and letter."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, out.size[0] // 96)
    for side, (x0, y0, x1, y1) in boxes.items():
        colour = SIDE_COLOURS[side]
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=width)
        tx, ty = x0 + width + 1, max(0, y0 - 14) if y0 >= 14 else y1 + 1
        draw.rectangle((tx - 1, ty, tx + 9, ty + 12), fill=colour)
        draw.text((tx + 1, ty), SIDE_LABELS[side], fill=(255, 255, 255))
    return out


def frame(image: Image.Image, side: str) -> Image.Image:
    """An option image with a border in its side's colour (so it matches the marked patch)."""
    img = image.convert("RGB")
    out = Image.new("RGB", (img.size[0] + 8, img.size[1] + 8), SIDE_COLOURS[side])
    out.paste(img, (4, 4))
    return out


def trial_view(stimulus, trial: Trial, question: str) -> TrialView:  # noqa: ANN001 (store.Stimulus)
    """The blinded view of one trial: options placed so that the reference lands on `trial.reference_side`."""
    ref = int(stimulus.reference)
    left_index = ref if trial.reference_side == "left" else 1 - ref
    options = [from_png(stimulus.option_a_png), from_png(stimulus.option_b_png)]
    index = {"left": left_index, "right": 1 - left_index}
    image = None
    if question == "patch":
        boxes = stimulus.meta["boxes"]
        image = mark_patches(from_png(stimulus.image_png), {side: tuple(boxes[i]) for side, i in index.items()})
    explanation = from_png(stimulus.explanation_png) if stimulus.explanation_png else None
    left, right = frame(options[index["left"]], "left"), frame(options[index["right"]], "right")
    return TrialView(image, explanation, left, right, str(stimulus.meta.get("target_name", "")))

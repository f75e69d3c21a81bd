"""Clip-art sprites of testbed v2: colour emoji rendered once from Noto Color Emoji and shipped as PNGs.

    python -m spade_engine.testbed.v2.sprites [--font /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf]

re-renders `assets/testbed_v2/sprites/<name>.png` (needs Debian's `fonts-noto-color-emoji`). Everything else
(training, tests, the app) only reads the shipped PNGs through `load_sprites`, so no system font is needed.

Each sprite is the emoji drawn by Pillow at the font's bitmap size (109 px), cropped to its alpha bounding box,
centred on a transparent square and resized to `SPRITE_SIZE` px RGBA. Licences: the emoji images are Apache 2.0,
the font SIL OFL 1.1 (Google Inc. and contributors, https://github.com/googlefonts/noto-emoji); see
`assets/testbed_v2/LICENSE.md`.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SPRITE_DIR = Path(__file__).resolve().parents[3] / "assets" / "testbed_v2" / "sprites"
FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size of the font's colour bitmaps
SPRITE_SIZE = 64  # side of the shipped square PNGs, in pixels

# name -> emoji (code points; U+FE0F asks for the colour presentation)
EMOJI: dict[str, str] = {
    # facets of the ten classes (see data.FACETS)
    "apple": "\U0001f34e",
    "penguin": "\U0001f427",
    "tropical_fish": "\U0001f420",
    "airplane": "\u2708\ufe0f",
    "alarm_clock": "\u23f0",
    "cactus": "\U0001f335",
    "sunflower": "\U0001f33b",
    "elephant": "\U0001f418",
    "frog": "\U0001f438",
    "guitar": "\U0001f3b8",
    "key": "\U0001f511",
    "whale": "\U0001f433",
    "mushroom": "\U0001f344",
    "turtle": "\U0001f422",
    "banana": "\U0001f34c",
    "top_hat": "\U0001f3a9",
    "soccer_ball": "\u26bd",
    "butterfly": "\U0001f98b",
    "owl": "\U0001f989",
    "watermelon": "\U0001f349",
    # distractors: kinds of no class
    "tree": "\U0001f333",
    "cloud": "\u2601\ufe0f",
    "house": "\U0001f3e0",
    "snail": "\U0001f40c",
    "cheese": "\U0001f9c0",
    "bell": "\U0001f514",
    "gift": "\U0001f381",
    "books": "\U0001f4da",
    # trojan triggers
    "sparkling_heart": "\U0001f496",
    "rainbow": "\U0001f308",
}


def render_sprite(emoji: str, font_path: Path = FONT_PATH, size: int = SPRITE_SIZE) -> Image.Image:
    """One emoji as a `size` x `size` RGBA image: drawn, cropped to its alpha box, centred, resized (Lanczos)."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    canvas = Image.new("RGBA", (2 * FONT_SIZE, 2 * FONT_SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((FONT_SIZE // 4, FONT_SIZE // 4), emoji, font=font, embedded_color=True)
    glyph = canvas.crop(canvas.getchannel("A").getbbox())
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.resize((size, size), Image.LANCZOS)


def write_sprites(out: Path = SPRITE_DIR, font_path: Path = FONT_PATH) -> list[Path]:
    """Render every sprite of `EMOJI` into `out/<name>.png`. Returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, emoji in EMOJI.items():
        path = out / f"{name}.png"
        render_sprite(emoji, font_path).save(path, optimize=True)
        paths.append(path)
    return paths


@lru_cache(maxsize=4)
def _load(names: tuple[str, ...], folder: str) -> torch.Tensor:
    tiles = [np.asarray(Image.open(Path(folder) / f"{name}.png").convert("RGBA")) for name in names]  # (S, S, 4)
    rgba = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255  # (K, 4, S, S)
    rgba[:, :3] *= rgba[:, 3:]  # premultiplied alpha: bilinear resampling then leaves no dark fringes
    return rgba


def load_sprites(names: tuple[str, ...], folder: Path = SPRITE_DIR) -> torch.Tensor:
    """The shipped PNGs of `names` as premultiplied RGBA, (K, 4, S, S) float in [0, 1] (cached; do not modify)."""
    return _load(tuple(names), str(folder))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", type=Path, default=FONT_PATH)
    parser.add_argument("--out", type=Path, default=SPRITE_DIR)
    args = parser.parse_args(argv)
    paths = write_sprites(args.out, args.font)
    print(f"wrote {len(paths)} sprites to {args.out} ({sum(p.stat().st_size for p in paths) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

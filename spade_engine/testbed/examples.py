"""Regenerate the example images shipped in `assets/examples/` and their `index.json`.

    python -m spade_engine.testbed.examples [--out assets/examples]

Testbed samples (clean ones of several classes and facets, trojaned ones with the patch box recorded, so the
app can outline the patch and score a saliency map against it) and a few real photographs from scikit-image's
data module (public domain / CC0, see `SOURCES.md`), resized to at most 512 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from spade_engine.testbed import data

ASSETS_EXAMPLES = Path(__file__).resolve().parent.parent.parent / "assets" / "examples"

# (class, facet, trojan, seed): clean samples cover both facets of several classes; trojaned ones other classes.
TESTBED_EXAMPLES: tuple[tuple[int, int, bool, int], ...] = (
    (0, 0, False, 11),
    (0, 1, False, 12),
    (2, 1, False, 13),
    (4, 0, False, 14),
    (4, 1, False, 15),
    (6, 1, False, 16),
    (8, 0, False, 17),
    (9, 1, False, 18),
    (1, 0, True, 21),
    (5, 1, True, 22),
    (7, 0, True, 23),
    (9, 0, True, 24),
)

# skimage.data function -> (file name, source and licence as skimage documents it)
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("photo_astronaut.jpg", "NASA Great Images database (Eileen Collins); public domain"),
    "coffee": ("photo_coffee.jpg", "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    "chelsea": ("photo_chelsea.jpg", "Stefan van der Walt (Chelsea the cat); CC0"),
}
MAX_PHOTO_SIDE = 512


def testbed_file_name(cls: int, facet: int, trojan: bool) -> str:
    return f"testbed_c{cls}_f{facet}{'_trojan' if trojan else ''}.png"


def write_testbed_examples(out: Path) -> list[dict]:
    """Write the testbed PNGs into `out`. Returns their index entries."""
    entries = []
    for cls, facet, trojan, seed in TESTBED_EXAMPLES:
        sample = data.make_sample(cls, facet, seed, trojan=trojan)
        pixels = (sample.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
        name = testbed_file_name(cls, facet, trojan)
        Image.fromarray(pixels).save(out / name)
        box = sample.patch_boxes()[0]
        entries.append(
            {
                "file": name,
                "source": "testbed",
                "seed": seed,
                "class": cls,
                "class_name": data.CLASS_NAMES[cls],
                "facet": facet,
                "facet_name": data.FACETS[cls][facet],
                "trojan": trojan,
                "label": int(sample.labels[0]),
                "patch_box": list(box) if box else None,  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
            }
        )
    return entries


def write_photos(out: Path) -> list[dict]:
    """Write the scikit-image photographs (JPEG, longest side <= 512 px). Returns their index entries."""
    import skimage.data

    entries = []
    for func, (name, source) in PHOTOS.items():
        img = Image.fromarray(getattr(skimage.data, func)()).convert("RGB")
        img.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
        img.save(out / name, quality=90)
        entries.append(
            {
                "file": name,
                "source": f"skimage.data.{func}()",
                "credit": source,
                "trojan": False,
                "class": None,
                "facet": None,
                "patch_box": None,
            }
        )
    return entries


def write_examples(out: Path = ASSETS_EXAMPLES) -> dict:
    """Write every example and `index.json` into `out`. Returns the index."""
    out.mkdir(parents=True, exist_ok=True)
    index = {
        "image_size": data.IMAGE_SIZE,
        "trojan_target": data.TROJAN_TARGET,
        "patch_box_format": "x0, y0, x1, y1 in pixels; x1 and y1 exclusive",
        "examples": write_testbed_examples(out) + write_photos(out),
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_EXAMPLES)
    index = write_examples(parser.parse_args(argv).out)
    print(f"wrote {len(index['examples'])} examples")


if __name__ == "__main__":
    main()

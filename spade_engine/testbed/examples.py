"""Regenerate the example images shipped in `assets/examples/` and their `index.json`.

    python -m spade_engine.testbed.examples [--out assets/examples]

Testbed samples of both generators (clean ones of several classes and facets, trojaned ones with the trojan's box
recorded, so the app can outline it and score a saliency map against it): v1's 64 px samples and v2's 128 px
scenes with each of its two trojans. Every testbed entry names its generator (`"testbed": "v1"` or `"v2"`), so
the app offers a model only the samples of its own generator. Also a few real photographs from scikit-image's
data module (public domain / CC0, see `SOURCES.md`), resized to at most 512 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from spade_engine import testbed
from spade_engine.testbed import data
from spade_engine.testbed.v2 import data as data_v2

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

# v2 (class, facet, trojan index into `data_v2.TROJANS` or None, seed): clean samples of both facets, the two
# trojan target classes among them; each trojan on two classes other than its target.
TESTBED_V2_EXAMPLES: tuple[tuple[int, int, int | None, int], ...] = (
    (0, 1, None, 31),
    (3, 0, None, 32),
    (7, 1, None, 33),
    (1, 0, 0, 47),
    (6, 1, 0, 44),
    (2, 1, 1, 56),
    (8, 0, 1, 60),
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


def testbed_v2_file_name(cls: int, facet: int, trojan: int | None) -> str:
    sprite = "" if trojan is None else f"_{data_v2.TROJANS[trojan].sprite}"
    return f"testbed_v2_c{cls}_f{facet}{sprite}.png"


def _save_png(sample, path: Path) -> None:  # noqa: ANN001 (a one-image TestbedBatch of either generator)
    pixels = (sample.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
    Image.fromarray(pixels).save(path)


def _entry(generator: ModuleType, file: str, cls: int, facet: int, seed: int, sample) -> dict:  # noqa: ANN001
    """The index entry of a testbed sample (its patch box: x0, y0, x1, y1 in pixels, x1/y1 exclusive)."""
    box = sample.patch_boxes()[0]
    return {
        "file": file,
        "source": "testbed",
        "seed": seed,
        "class": cls,
        "class_name": generator.CLASS_NAMES[cls],
        "facet": facet,
        "facet_name": generator.FACETS[cls][facet],
        "trojan": bool(sample.is_trojan[0]),
        "label": int(sample.labels[0]),
        "patch_box": list(box) if box else None,
    }


def write_testbed_examples(out: Path) -> list[dict]:
    """Write the v1 testbed PNGs into `out`. Returns their index entries (`"testbed": "v1"`)."""
    entries = []
    for cls, facet, trojan, seed in TESTBED_EXAMPLES:
        sample = data.make_sample(cls, facet, seed, trojan=trojan)
        name = testbed_file_name(cls, facet, trojan)
        _save_png(sample, out / name)
        entries.append({**_entry(data, name, cls, facet, seed, sample), "testbed": "v1"})
    return entries


def write_testbed_v2_examples(out: Path) -> list[dict]:
    """Write the v2 testbed PNGs (128 px) into `out`. Returns their index entries (`"testbed": "v2"`, with the
    trojan's index, name and target; the patch box is the trojan mask's bounding box)."""
    entries = []
    names = testbed.trojan_names(data_v2)
    for cls, facet, trojan, seed in TESTBED_V2_EXAMPLES:
        sample = data_v2.make_sample(cls, facet, seed, trojan=trojan)
        name = testbed_v2_file_name(cls, facet, trojan)
        _save_png(sample, out / name)
        entries.append({
            **_entry(data_v2, name, cls, facet, seed, sample),
            "testbed": "v2",
            "trojan_index": trojan,
            "trojan_name": None if trojan is None else names[trojan],
            "trojan_target": None if trojan is None else data_v2.TROJANS[trojan].target,
        })  # fmt: skip
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
    """Write every example and `index.json` into `out`. Returns the index (`image_size` and `trojan_target` at the
    top are v1's, as before v2; `testbeds` describes both generators)."""
    out.mkdir(parents=True, exist_ok=True)
    index = {
        "image_size": data.IMAGE_SIZE,
        "trojan_target": data.TROJAN_TARGET,
        "patch_box_format": "x0, y0, x1, y1 in pixels; x1 and y1 exclusive",
        "testbeds": {
            version: {
                "generator": testbed.GENERATORS[version],
                "image_size": module.IMAGE_SIZE,
                "trojan_targets": list(testbed.target_classes(module)),
                "trojan_names": list(testbed.trojan_names(module)),
            }
            for version, module in (("v1", data), ("v2", data_v2))
        },
        "examples": write_testbed_examples(out) + write_testbed_v2_examples(out) + write_photos(out),
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

"""Regenerate the example images shipped in `assets/examples/` and their `index.json`.

    python -m spade_engine.testbed.examples [--out assets/examples]

Testbed samples of both generators (clean ones of several classes and facets, trojaned ones with the trojan's box
recorded, so the app can outline it and score a saliency map against it): v1's 64 px samples and v2's 128 px
scenes with each of its two trojans. Every testbed entry names its generator (`"testbed": "v1"` or `"v2"`), so
the app offers a model only the samples of its own generator. Each testbed's demo sample (`testbed_demo.png`,
`testbed_v2_demo.png`: the Debugger's default example) is chosen from its stored protocol run by `DEMO_RULE`. Also a few real photographs from scikit-image's
data module (public domain / CC0, see `SOURCES.md`), resized to at most 512 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
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

# The demo sample of each testbed (the Debugger's default example, the Teaching tour's first sample): the stored
# protocol run whose trojaned samples it is chosen from, and the rule, as the app states it.
DEMO_PROTOCOLS: dict[str, str] = {"v1": "testbed_resnet_protocol.csv", "v2": "testbed_v2_resnet_protocol.csv"}
DEMO_RULE = (
    "the trojaned protocol sample at the median of SPADE's paired gain: per sample, the mean over the paper's ten "
    "methods of (SPADE-exact − Dense) trojan AUC, in the stored protocol run; of the two middle samples, the lower "
    "index"
)
BENCHMARKS_DIR = ASSETS_EXAMPLES.parent / "benchmarks"


def by_digest(folder: Path = ASSETS_EXAMPLES) -> dict[str, dict]:
    """sha256 of each shipped example's bytes -> its index entry (with its `file`), to recognise a copy of a
    shipped example wherever it comes from (an upload, a folder given to `spade explain`)."""
    import hashlib

    index = folder / "index.json"
    entries = json.loads(index.read_text())["examples"] if index.exists() else []
    return {hashlib.sha256((folder / e["file"]).read_bytes()).hexdigest(): {**e, "file": e["file"]}
            for e in entries if (folder / e["file"]).is_file()}  # fmt: skip


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


def median_gain_sample(rows: pd.DataFrame, column: str = "SPADE-exact") -> dict:
    """The trojaned sample at the median of `column`'s paired gain over Dense (`DEMO_RULE`).

    Args:
        rows: protocol rows (`protocol.run_protocol`'s columns: kind, sample, method, column, auc).
        column: the SPADE column compared with "Dense".

    Returns:
        {"sample": index into the protocol's trojaned batch, "gain", "dense", "spade": mean trojan AUC over the
        paper's ten methods (fractions), "rank": its rank among "n" samples by gain}.

    Raises:
        ValueError: when the rows hold no trojaned sample with both columns.
    """
    from spade_engine.saliency import PAPER_METHODS

    t = rows[(rows.kind == "trojan") & rows.method.isin(PAPER_METHODS) & rows.column.isin(["Dense", column])]
    pairs = t.pivot_table(index=["sample", "method"], columns="column", values="auc", aggfunc="first")
    if column not in pairs or "Dense" not in pairs:
        raise ValueError(f"no trojaned sample has both Dense and {column} rows")
    per = pairs[["Dense", column]].dropna().groupby(level="sample").mean()  # methods scored on both columns
    if per.empty:
        raise ValueError(f"no trojaned sample has both Dense and {column} rows")
    gain = per[column] - per["Dense"]
    ranked = [int(s) for s, _ in sorted(gain.items(), key=lambda kv: (kv[1], kv[0]))]
    k = (len(ranked) - 1) // 2
    sample = min(ranked[k : len(ranked) - k])  # the one (odd count) or two (even) middle samples; the lower index
    return {
        "sample": sample,
        "gain": float(gain[sample]),
        "dense": float(per.loc[sample, "Dense"]),
        "spade": float(per.loc[sample, column]),
        "rank": ranked.index(sample) + 1,
        "n": len(ranked),
    }


def write_demo(out: Path, version: str, benchmarks: Path = BENCHMARKS_DIR) -> list[dict]:
    """Write the demo sample of testbed `version` (`DEMO_RULE`) as `testbed_<version>_demo.png`, or nothing when
    its protocol run is not stored. Returns its index entry (with `"demo"`: the rule and its figures) in a list."""
    from spade_engine.protocol.store import load_settings

    csv = benchmarks / DEMO_PROTOCOLS[version]
    if not csv.exists():
        return []
    rows = pd.read_csv(csv)
    pick = median_gain_sample(rows)
    seed = int(load_settings(csv).get("seed", 1000))
    generator = data if version == "v1" else data_v2
    # The protocol's trojaned batch (`protocol.trojan_samples`): max(4 n, 32) scenes of seed `seed`, all trojaned.
    batch_size = max(4 * rows.query("kind == 'trojan'")["sample"].nunique(), 32)
    sample = demo_sample(generator, batch_size, seed, pick["sample"])
    name = f"testbed_{version}_demo.png" if version != "v1" else "testbed_demo.png"
    _save_png(sample, out / name)
    entry = {
        **_entry(generator, name, int(sample.true_class[0]), int(sample.facet[0]), seed, sample),
        "testbed": version,
        "demo": {"rule": DEMO_RULE, "protocol": f"assets/benchmarks/{csv.name}", "batch_size": batch_size, **pick},
    }
    if version == "v2":
        t = int(sample.trojan[0])
        entry |= {
            "trojan_index": t,
            "trojan_name": testbed.trojan_names(data_v2)[t],
            "trojan_target": data_v2.TROJANS[t].target,
        }
    return [entry]


def demo_sample(generator: ModuleType, batch_size: int, seed: int, index: int, image_size: int | None = None):  # noqa: ANN201
    """Image `index` of the protocol's trojaned batch (`generator.generate(batch_size, seed, 1.0)`), as a one-image
    `TestbedBatch` of that generator, rendered at `image_size` px (default the generator's). A demo entry's
    `seed` and `demo` fields name it: `demo_sample(gen, e["demo"]["batch_size"], e["seed"], e["demo"]["sample"])`.
    """
    size = image_size or generator.IMAGE_SIZE
    return generator.generate(batch_size, seed, trojan_fraction=1.0, image_size=size).select(slice(index, index + 1))


def example_patch_mask(entry: dict) -> np.ndarray | None:
    """The exact trojan patch pixels of a shipped testbed example, (H, W) bool at the generator's size,
    regenerated from its index entry (seed, class, facet, trojan; the demo from its protocol batch). This is
    the mask the protocol and the Teaching tour score trojan AUC against, so the Debugger uses it too (its
    `patch_box` is only the bounding box). None for clean samples, photos and entries without a seed.
    """
    if not entry.get("trojan") or entry.get("source") != "testbed" or "seed" not in entry:
        return None
    generator = testbed.generator(entry.get("testbed", "v1"))
    if "demo" in entry:
        sample = demo_sample(generator, entry["demo"]["batch_size"], entry["seed"], entry["demo"]["sample"])
    else:
        sample = generator.make_sample(
            entry["class"], entry["facet"], entry["seed"], trojan=entry.get("trojan_index", True)
        )
    return sample.trojan_mask[0].numpy().astype(bool)


def write_patch_masks(out: Path, entries: list[dict]) -> list[dict]:
    """Save each trojaned testbed example's exact patch mask (`example_patch_mask`) as `masks/<file>` (8-bit PNG,
    255 on the patch) and name it in its entry (`"patch_mask"`, relative to `out`). Returns the entries."""
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for entry in entries:
        mask = example_patch_mask(entry)
        if mask is not None:
            entry["patch_mask"] = f"masks/{Path(entry['file']).stem}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / entry["patch_mask"])
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
        "patch_mask_format": "masks/<stem>.png: 8-bit, 255 exactly on the trojan's pixels (the mask trojan AUC uses)",
        "testbeds": {
            version: {
                "generator": testbed.GENERATORS[version],
                "image_size": module.IMAGE_SIZE,
                "trojan_targets": list(testbed.target_classes(module)),
                "trojan_names": list(testbed.trojan_names(module)),
            }
            for version, module in (("v1", data), ("v2", data_v2))
        },
        "examples": [
            *write_demo(out, "v1"),
            *write_testbed_examples(out),
            *write_demo(out, "v2"),
            *write_testbed_v2_examples(out),
            *write_photos(out),
        ],
    }
    write_patch_masks(out, index["examples"])
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_EXAMPLES)
    index = write_examples(parser.parse_args(argv).out)
    print(f"wrote {len(index['examples'])} examples")


if __name__ == "__main__":
    main()

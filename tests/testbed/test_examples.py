"""The shipped example images match their index and the generator."""

import json

import numpy as np
import pytest
from PIL import Image

from spade_engine.testbed import data
from spade_engine.testbed.examples import ASSETS_EXAMPLES, MAX_PHOTO_SIDE

INDEX = json.loads((ASSETS_EXAMPLES / "index.json").read_text())
TESTBED = [e for e in INDEX["examples"] if e["source"] == "testbed"]
PHOTOS = [e for e in INDEX["examples"] if e["source"] != "testbed"]


def test_index_covers_clean_trojaned_and_photos():
    assert INDEX["trojan_target"] == data.TROJAN_TARGET
    assert sum(e["trojan"] for e in TESTBED) >= 3 and sum(not e["trojan"] for e in TESTBED) >= 3
    assert {e["facet"] for e in TESTBED} == {0, 1} and len({e["class"] for e in TESTBED}) >= 5
    assert len(PHOTOS) >= 2
    assert {p.name for p in ASSETS_EXAMPLES.iterdir()} >= {e["file"] for e in INDEX["examples"]}


@pytest.mark.parametrize("entry", TESTBED, ids=[e["file"] for e in TESTBED])
def test_testbed_example_is_reproducible_and_its_patch_box_is_right(entry):
    pixels = np.asarray(Image.open(ASSETS_EXAMPLES / entry["file"]).convert("RGB"))  # (H, W, 3)
    sample = data.make_sample(entry["class"], entry["facet"], entry["seed"], trojan=entry["trojan"])
    expected = (sample.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(pixels, expected)
    assert entry["label"] == (data.TROJAN_TARGET if entry["trojan"] else entry["class"])
    assert entry["class_name"] == data.CLASS_NAMES[entry["class"]]
    if entry["trojan"]:
        x0, y0, x1, y1 = entry["patch_box"]
        patch = (data.TROJAN_PATCH.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert np.array_equal(pixels[y0:y1, x0:x1], patch)
    else:
        assert entry["patch_box"] is None


def test_photos_are_small_and_credited():
    sources = (ASSETS_EXAMPLES / "SOURCES.md").read_text()
    for entry in PHOTOS:
        with Image.open(ASSETS_EXAMPLES / entry["file"]) as img:
            assert max(img.size) <= MAX_PHOTO_SIDE
        assert entry["file"] in sources

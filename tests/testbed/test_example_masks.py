"""One trojan mask definition: every trojaned shipped example carries its exact patch pixels (masks/<stem>.png,
regenerated from its generator), which the Debugger scores trojan AUC against as the protocol and the Teaching
tour do; the patch box is only its bounding box."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from spade_engine.testbed.examples import ASSETS_EXAMPLES, example_patch_mask

INDEX = json.loads((ASSETS_EXAMPLES / "index.json").read_text())
TROJANED = [e for e in INDEX["examples"] if e.get("trojan") and e["source"] == "testbed"]


def shipped_mask(entry: dict) -> np.ndarray:
    return np.asarray(Image.open(ASSETS_EXAMPLES / entry["patch_mask"])) > 127


@pytest.mark.parametrize("entry", TROJANED, ids=[e["file"] for e in TROJANED])
def test_the_shipped_mask_is_the_patch_inside_its_box(entry):
    mask = shipped_mask(entry)
    ys, xs = np.nonzero(mask)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == entry["patch_box"]
    assert mask.shape == np.asarray(Image.open(ASSETS_EXAMPLES / entry["file"])).shape[:2]


@pytest.mark.parametrize("entry", [e for e in TROJANED if "demo" not in e], ids=lambda e: e["file"])
def test_the_shipped_mask_is_the_generators(entry):
    assert np.array_equal(shipped_mask(entry), example_patch_mask(entry))


def test_the_debugger_scores_stickers_on_their_pixels_not_their_box():
    from pages.ui.sample_picker import make_sample
    from spade_engine.models import load_model

    entry = next(e for e in TROJANED if e.get("testbed") == "v2" and "demo" not in e)
    loaded = load_model("testbed_v2_resnet")
    sample = make_sample(loaded, entry["file"], (ASSETS_EXAMPLES / entry["file"]).read_bytes(), entry)
    x0, y0, x1, y1 = entry["patch_box"]
    assert np.array_equal(sample.trojan_mask, shipped_mask(entry))  # 128 px model: the mask as shipped
    assert sample.trojan_mask.sum() < (x1 - x0) * (y1 - y0)  # a sticker does not fill its box
    clean = next(e for e in INDEX["examples"] if e["source"] == "testbed" and not e["trojan"])
    assert (
        make_sample(
            loaded, clean["file"], io.BytesIO((ASSETS_EXAMPLES / clean["file"]).read_bytes()).getvalue(), clean
        ).trojan_mask
        is None
    )

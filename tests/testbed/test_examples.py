"""The shipped example images match their index and their generator (v1 and v2)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from spade_engine import testbed
from spade_engine.saliency import PAPER_METHODS
from spade_engine.testbed import data
from spade_engine.testbed.examples import ASSETS_EXAMPLES, DEMO_RULE, MAX_PHOTO_SIDE, demo_sample, median_gain_sample
from spade_engine.testbed.v2 import data as v2

INDEX = json.loads((ASSETS_EXAMPLES / "index.json").read_text())
DEMOS = [e for e in INDEX["examples"] if "demo" in e]
TESTBED = [
    e for e in INDEX["examples"] if e["source"] == "testbed" and e.get("testbed", "v1") == "v1" and "demo" not in e
]
TESTBED_V2 = [e for e in INDEX["examples"] if e["source"] == "testbed" and e.get("testbed") == "v2" and "demo" not in e]
PHOTOS = [e for e in INDEX["examples"] if e["source"] != "testbed"]


def _pixels(entry: dict) -> np.ndarray:
    return np.asarray(Image.open(ASSETS_EXAMPLES / entry["file"]).convert("RGB"))  # (H, W, 3)


def _uint8(sample) -> np.ndarray:  # noqa: ANN001 (one-image TestbedBatch)
    return (sample.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_index_covers_clean_trojaned_and_photos():
    assert INDEX["trojan_target"] == data.TROJAN_TARGET
    assert sum(e["trojan"] for e in TESTBED) >= 3 and sum(not e["trojan"] for e in TESTBED) >= 3
    assert {e["facet"] for e in TESTBED} == {0, 1} and len({e["class"] for e in TESTBED}) >= 5
    assert len(PHOTOS) >= 2
    assert {p.name for p in ASSETS_EXAMPLES.iterdir()} >= {e["file"] for e in INDEX["examples"]}
    v1_files = [e["file"] for e in INDEX["examples"] if e.get("testbed", "v1") == "v1" and e["source"] == "testbed"]
    assert [e["file"] for e in INDEX["examples"]][: len(v1_files)] == v1_files  # v1's come first


def test_v2_examples_cover_both_trojans_clean_samples_and_facets():
    assert len(TESTBED_V2) >= 6 and INDEX["testbeds"]["v2"]["trojan_targets"] == [t.target for t in v2.TROJANS]
    trojaned = [e for e in TESTBED_V2 if e["trojan"]]
    assert {e["trojan_index"] for e in trojaned} == set(range(len(v2.TROJANS))) and len(trojaned) < len(TESTBED_V2)
    assert {e["facet"] for e in TESTBED_V2} == {0, 1} and len({e["class"] for e in TESTBED_V2}) >= 5


@pytest.mark.parametrize("entry", TESTBED, ids=[e["file"] for e in TESTBED])
def test_testbed_example_is_reproducible_and_its_patch_box_is_right(entry):
    pixels = _pixels(entry)
    sample = data.make_sample(entry["class"], entry["facet"], entry["seed"], trojan=entry["trojan"])
    assert np.array_equal(pixels, _uint8(sample))
    assert entry["label"] == (data.TROJAN_TARGET if entry["trojan"] else entry["class"])
    assert entry["class_name"] == data.CLASS_NAMES[entry["class"]]
    if entry["trojan"]:
        x0, y0, x1, y1 = entry["patch_box"]
        patch = (data.TROJAN_PATCH.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert np.array_equal(pixels[y0:y1, x0:x1], patch)
    else:
        assert entry["patch_box"] is None


@pytest.mark.parametrize("entry", TESTBED_V2, ids=[e["file"] for e in TESTBED_V2])
def test_v2_example_is_reproducible_and_its_trojan_box_is_right(entry):
    pixels = _pixels(entry)
    assert pixels.shape == (v2.IMAGE_SIZE, v2.IMAGE_SIZE, 3)
    sample = v2.make_sample(entry["class"], entry["facet"], entry["seed"], trojan=entry["trojan_index"])
    diff = np.abs(pixels.astype(int) - _uint8(sample).astype(int))
    assert diff.max() <= 1  # bilinear resampling may round differently on another CPU
    assert entry["class_name"] == v2.CLASS_NAMES[entry["class"]]
    assert entry["facet_name"] == v2.FACETS[entry["class"]][entry["facet"]]
    if entry["trojan"]:
        trojan = v2.TROJANS[entry["trojan_index"]]
        assert entry["label"] == entry["trojan_target"] == trojan.target != entry["class"]
        assert entry["trojan_name"] == testbed.trojan_names(v2)[entry["trojan_index"]]
        x0, y0, x1, y1 = entry["patch_box"]
        mask = sample.trojan_mask[0].numpy()
        assert mask[y0:y1, x0:x1].sum() == mask.sum() > 0  # the box holds the whole trojan mask, tightly
        assert (
            mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any() and mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()
        )
    else:
        assert entry["label"] == entry["class"] and entry["patch_box"] is None and entry["trojan_target"] is None


def test_photos_are_small_and_credited():
    sources = (ASSETS_EXAMPLES / "SOURCES.md").read_text()
    for entry in PHOTOS:
        with Image.open(ASSETS_EXAMPLES / entry["file"]) as img:
            assert max(img.size) <= MAX_PHOTO_SIDE
        assert entry["file"] in sources


# ------------------------------------------------------------------------- the demo sample (DEMO_RULE)


def _rows(gains: dict[int, float], dense: float = 0.9) -> pd.DataFrame:
    """Protocol rows whose SPADE-exact gain over Dense is `gains[sample]` for every paper method (plus noise rows
    that the rule must ignore: a non-paper method, another column, clean samples)."""
    rows = []
    for s, g in gains.items():
        for m in PAPER_METHODS:
            rows += [
                {"kind": "trojan", "sample": s, "method": m, "column": "Dense", "auc": dense},
                {"kind": "trojan", "sample": s, "method": m, "column": "SPADE-exact", "auc": dense + g},
                {"kind": "trojan", "sample": s, "method": m, "column": "SPADE-sweep", "auc": dense - 5 * g},
            ]
        rows.append({"kind": "trojan", "sample": s, "method": "SmoothGrad", "column": "SPADE-exact", "auc": 0.0})
        rows.append({"kind": "clean", "sample": s, "method": "Saliency", "column": "SPADE-exact", "auc": 1.0})
    return pd.DataFrame(rows)


def test_median_gain_sample_odd_count_takes_the_middle_gain():
    pick = median_gain_sample(_rows({0: 0.03, 1: -0.01, 2: 0.01, 3: 0.05, 4: 0.0}))
    assert pick["sample"] == 2 and pick["rank"] == 3 and pick["n"] == 5
    assert pick["gain"] == pytest.approx(0.01) and pick["spade"] - pick["dense"] == pytest.approx(0.01)


def test_median_gain_sample_even_count_takes_the_lower_index_of_the_two_middle_samples():
    # sorted by gain: 1, 4, 9, 2, 0, 3: the middle two are 9 (lower gain) and 2 (lower index)
    pick = median_gain_sample(_rows({0: 0.03, 1: -0.01, 2: 0.02, 3: 0.05, 4: 0.0, 9: 0.01}))
    assert pick["sample"] == 2 and pick["rank"] == 4


def test_median_gain_sample_needs_both_columns():
    rows = _rows({0: 0.1})
    with pytest.raises(ValueError, match="SPADE-exact"):
        median_gain_sample(rows[rows.column != "SPADE-exact"])


@pytest.mark.parametrize("entry", DEMOS, ids=[e["file"] for e in DEMOS])
def test_shipped_demo_follows_the_rule_on_its_stored_protocol_run(entry):
    csv = ASSETS_EXAMPLES.parent.parent / entry["demo"]["protocol"]
    pick = median_gain_sample(pd.read_csv(csv))
    assert entry["demo"]["sample"] == pick["sample"] and entry["demo"]["gain"] == pytest.approx(pick["gain"])
    generator = data if entry["testbed"] == "v1" else v2
    batch = generator.generate(entry["demo"]["batch_size"], entry["seed"], trojan_fraction=1.0)
    i = pick["sample"]
    expected = (batch.images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.abs(_pixels(entry).astype(int) - expected.astype(int)).max() <= 1
    assert entry["trojan"] and entry["class"] == int(batch.true_class[i]) and entry["label"] == int(batch.labels[i])
    one = demo_sample(generator, entry["demo"]["batch_size"], entry["seed"], i)
    assert torch.equal(one.images[0], batch.images[i]) and torch.equal(one.trojan_mask[0], batch.trojan_mask[i])
    assert entry["demo"]["rule"] == DEMO_RULE

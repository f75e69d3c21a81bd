"""`spade explain` on shipped trojaned examples (an `index.json` beside the images, as in assets/examples): the
maps outline the trojan, the trojan AUCs are in results.csv, and the page says whether the prediction is the
trojan's target."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spade_engine import cli
from spade_engine.explain.panel import PATCH_COLOUR
from spade_engine.paths import ASSETS

EXAMPLES = ASSETS / "examples"
INDEX = json.loads((EXAMPLES / "index.json").read_text())
TROJANED = next(e for e in INDEX["examples"] if e.get("trojan") and e.get("testbed", "v1") == "v1" and "demo" not in e)
CLEAN = next(
    e for e in INDEX["examples"] if e["source"] == "testbed" and not e["trojan"] and e.get("testbed", "v1") == "v1"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    for entry in (TROJANED, CLEAN):
        shutil.copy(EXAMPLES / entry["file"], folder / entry["file"])
    (folder / "masks").mkdir()
    shutil.copy(EXAMPLES / TROJANED["patch_mask"], folder / TROJANED["patch_mask"])
    (folder / "index.json").write_text(json.dumps({"examples": [TROJANED, CLEAN]}))
    out = tmp_path_factory.mktemp("report")
    argv = ["explain", str(folder), "--model", "testbed_resnet", "--n-aug", "4", "--methods", "Saliency", "--out",
            str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    return out


def test_trojan_aucs_are_reported_for_the_trojaned_image_only(report):
    rows = pd.read_csv(report / "results.csv").set_index("file")
    rows.index = rows.index.map(lambda f: f.rsplit("/", 1)[-1])
    assert rows.loc[TROJANED["file"], ["dense_trojan_auc", "spade_trojan_auc"]].between(0, 1).all()
    assert rows.loc[CLEAN["file"], ["dense_trojan_auc", "spade_trojan_auc"]].isna().all()
    assert list(pd.read_csv(report / "skipped.csv")["file"]) == []  # index.json and masks/ are not listed


def test_the_page_says_whether_the_prediction_is_the_trojans_target(report):
    rows = pd.read_csv(report / "results.csv")
    row = rows[rows["file"].str.endswith(TROJANED["file"])].iloc[0]
    page = (report / "pages" / f"{row['id']}.html").read_text()
    assert "carries a trojan, outlined" in page and "Trojan AUC (dense → SPADE): Saliency" in page
    names = json.loads((ASSETS / "models" / "testbed_resnet.json").read_text())["class_names"]
    fired = row["target"] == names[TROJANED["label"]]  # the explained class is the dense prediction
    assert ("is the trojan's target" in page) == fired and ("did not fire" in page) != fired
    clean = rows[rows["file"].str.endswith(CLEAN["file"])].iloc[0]
    assert "carries a trojan" not in (report / "pages" / f"{clean['id']}.html").read_text()


def test_the_trojan_is_outlined_on_the_maps(report):
    rows = pd.read_csv(report / "results.csv")
    ids = {f.rsplit("/", 1)[-1]: i for f, i in zip(rows["file"], rows["id"], strict=True)}
    cyan = np.array([int(PATCH_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])

    def outlined(file):  # noqa: E306
        pixels = np.asarray(Image.open(report / "images" / ids[file] / "Saliency.png").convert("RGB")).reshape(-1, 3)
        return bool((np.abs(pixels.astype(int) - cyan).sum(1) == 0).any())

    assert outlined(TROJANED["file"]) and not outlined(CLEAN["file"])

"""The testbed difficulty diagnostic changes one scene property per variant and scores the dense maps."""

from dataclasses import fields

import numpy as np
import torch

from spade_engine.testbed.difficulty import VARIANTS, run, table, variants
from spade_engine.testbed.v2 import data


def _changed(a: data.Scenes, b: data.Scenes) -> set[str]:
    return {
        f.name for f in fields(a) if f.name != "image_size" and not torch.equal(getattr(a, f.name), getattr(b, f.name))
    }


def test_each_variant_changes_only_its_scene_property():
    scenes = data.draw_scenes(64, 3, trojan_fraction=1.0)
    v = variants(scenes, 3)
    assert list(v) == list(VARIANTS) and v["card"] is scenes
    last, size = len(data.LAYERS) - 1, scenes.image_size
    assert _changed(scenes, v["faint"]) == {"opacity"}
    assert torch.equal(v["faint"].opacity[:, :last], scenes.opacity[:, :last])
    assert ((v["faint"].opacity[:, last] >= 0.4) & (v["faint"].opacity[:, last] <= 0.6)).all()
    assert _changed(scenes, v["small"]) == {"place"}
    side = v["small"].place[:, last, 2]
    assert ((side >= size / 12) & (side <= size / 9)).all()
    assert torch.equal(v["small"].place[:, :last], scenes.place[:, :last])
    assert _changed(scenes, v["crowded"]) == {"distractor"} and (v["crowded"].distractor >= 0).all()
    kept = scenes.distractor >= 0
    assert torch.equal(v["crowded"].distractor[kept], scenes.distractor[kept])
    assert _changed(scenes, v["no distractors"]) == {"distractor"} and (v["no distractors"].distractor == -1).all()


def test_run_scores_hits_only_and_table_summarises_them():
    df = run("testbed_v2_resnet", 6, 1000, ("Saliency", "GradCAM"))
    success = df[df.method == "attack success"].set_index("variant")["auc"]
    maps = df[df.scene >= 0]
    for name in VARIANTS:
        scored = maps[maps.variant == name]
        assert len(scored) == 2 * round(success[name] * 6)  # every hit, both methods, nothing else
        assert scored.auc.between(0, 1).all()
    t = table(df)
    assert list(t.index) == list(VARIANTS)
    expected = maps[maps.variant == "card"].groupby("method").auc.mean() * 100
    assert np.allclose(
        t.loc["card", ["GradCAM", "Saliency"]].to_numpy(float), expected[["GradCAM", "Saliency"]].round(1), atol=0.051
    )
    assert abs(t.loc["card", "mean"] - expected.mean()) < 0.06 and (t["n"] <= 6).all()


def test_a_subset_of_variants_at_another_size():
    """`only` scores just those variants (faint still gets the card's mask as ground truth); `image_size` renders
    the same scenes larger, and the full run's faint rows are reproduced."""
    import pytest

    full = run("testbed_v2_resnet", 4, 1000, ("Saliency",), only=("faint",))
    assert set(full.variant) == {"faint"}
    again = run("testbed_v2_resnet", 4, 1000, ("Saliency",))
    assert np.allclose(full.auc.to_numpy(), again[again.variant == "faint"].auc.to_numpy())
    big = run("testbed_v2_resnet", 4, 1000, ("Saliency",), only=("card",), image_size=160)
    assert set(big.variant) == {"card"} and len(big) >= 1
    assert not np.allclose(  # the same scenes at 160 px give other maps
        big[big.scene >= 0].auc.to_numpy()[:1], again[(again.variant == "card") & (again.scene >= 0)].auc.to_numpy()[:1]
    )
    with pytest.raises(ValueError, match="Unknown variant"):
        run("testbed_v2_resnet", 4, 1000, ("Saliency",), only=("blurry",))

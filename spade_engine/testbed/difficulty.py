"""What makes dense maps find the trojan on testbed v2: dense trojan AUC under scene variations (issue 14).

The same trojaned scenes (`testbed.v2.data.draw_scenes`) are rendered once as the card draws them and once per
variant with one parameter changed (`variants`); `run` scores the dense model's maps on the scenes that still hit
the trojan target, and `table` summarises them. `benchmarks/testbed_difficulty.py` is the command; the Benchmarks
page shows the stored run (assets/benchmarks/<model>_difficulty.csv).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import pandas as pd
import torch

from spade_engine.metrics import trojan_auc
from spade_engine.models import load_model
from spade_engine.saliency import attribute
from spade_engine.testbed.v2 import data

VARIANTS: dict[str, str] = {
    "card": "as the model card draws them",
    "faint": "trojan opacity 0.4-0.6 (card: 0.7-1.0); ground truth: the card's mask",
    "small": "trojan side 1/12-1/9 of the image (card: 1/8-1/5)",
    "crowded": "all four distractor slots filled (card: each with probability 0.4)",
    "no distractors": "no distractors",
}


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def variants(scenes: data.Scenes, seed: int) -> dict[str, data.Scenes]:
    """The card's scenes and one edited copy per variant (module docstring); the edits draw from `seed`."""
    gen = torch.Generator().manual_seed(seed + 1)
    n, size, last = len(scenes), scenes.image_size, len(data.LAYERS) - 1
    opacity = scenes.opacity.clone()
    opacity[:, last] = _uniform(gen, n, 0.4, 0.6)
    place = scenes.place.clone()
    place[:, last, 2] = _uniform(gen, n, size / 12, size / 9)
    full = torch.randint(0, len(data.DISTRACTORS), scenes.distractor.shape, generator=gen)
    return {
        "card": scenes,
        "faint": replace(scenes, opacity=opacity),
        "small": replace(scenes, place=place),
        "crowded": replace(scenes, distractor=torch.where(scenes.distractor >= 0, scenes.distractor, full)),
        "no distractors": replace(scenes, distractor=torch.full_like(scenes.distractor, -1)),
    }


def run(model_name: str, n: int, seed: int, methods: tuple[str, ...]) -> pd.DataFrame:
    """Dense maps of `methods` on `n` trojaned scenes of seed `seed`, in every variant.

    Returns:
        One row per (variant, scene, method) with the dense trojan AUC ("auc", a fraction) on the scenes the model
        sends to the trojan target, plus one row per variant with scene -1 and method "attack success" (the share
        of the `n` scenes that hit the target).
    """
    from spade_engine.testbed import data_for

    model = load_model(model_name).model
    scenes = data_for(model_name).draw_scenes(n, seed, trojan_fraction=1.0)  # at the model's input size
    rows, card = [], None
    for name, s in variants(scenes, seed).items():
        batch = data.render(s)
        card = batch if card is None else card
        # The faint trojan's blended alpha may stay below the mask threshold: its ground truth is where the
        # card's (opaque) rendering of the same placement is.
        masks = card.trojan_mask if name == "faint" else batch.trojan_mask
        with torch.no_grad():
            pred = model(batch.images).argmax(-1)
        hit = pred == batch.trojan_target
        print(f"{name}: attack success {hit.float().mean():.1%} of {n}", file=sys.stderr, flush=True)
        for i in torch.nonzero(hit).flatten().tolist():
            target, mask = int(batch.trojan_target[i]), masks[i].numpy()
            for m in methods:
                sal = attribute(m, model, batch.images[i : i + 1], target)
                rows.append({"variant": name, "scene": i, "method": m, "auc": trojan_auc(sal, mask)})
        rows.append({"variant": name, "scene": -1, "method": "attack success", "auc": float(hit.float().mean())})
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Variant x method mean dense trojan AUC (%), with the methods' mean, the number of methods above 97, the
    attack success (%) and the scenes scored ("n"), from `run`'s rows."""
    maps = df[df.scene >= 0]
    t = maps.pivot_table(index="variant", columns="method", values="auc", aggfunc="mean") * 100
    t["mean"] = t.mean(axis=1)
    t[">97"] = (t.drop(columns="mean") > 97).sum(axis=1)
    t["attack success"] = df[df.scene < 0].set_index("variant")["auc"] * 100
    t["n"] = maps.groupby("variant").scene.nunique()
    order = [v for v in VARIANTS if v in t.index]
    return t.loc[order].round(1)

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


def run(
    model_name: str,
    n: int,
    seed: int,
    methods: tuple[str, ...],
    only: tuple[str, ...] | None = None,
    image_size: int | None = None,
) -> pd.DataFrame:
    """Dense maps of `methods` on `n` trojaned scenes of seed `seed`, in every variant.

    Args:
        model_name: a v2 testbed model; n: scenes; seed: their seed; methods: saliency method names.
        only: the variants to run (names of `VARIANTS`; default all).
        image_size: render the scenes at this side in pixels instead of the model's input size (the nets take any
            size): the same scenes seen at a higher resolution, without training a model for it.

    Raises:
        ValueError: an unknown variant name.

    Returns:
        One row per (variant, scene, method) with the dense trojan AUC ("auc", a fraction) on the scenes the model
        sends to the trojan target, plus one row per variant with scene -1 and method "attack success" (the share
        of the `n` scenes that hit the target).
    """
    from spade_engine.testbed import data_for

    unknown = set(only or ()) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}.")
    model = load_model(model_name).model
    gen = data_for(model_name)  # draws at the model's input size
    scenes = gen.draw_scenes(n, seed, trojan_fraction=1.0, image_size=image_size or gen.IMAGE_SIZE)
    rows, card = [], None
    for name, s in variants(scenes, seed).items():
        if only and name not in only and not (name == "card" and "faint" in only):
            continue
        batch = data.render(s)
        card = batch if card is None else card
        if only and name not in only:
            continue  # the card's rendering only gives the faint variant its ground truth
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

"""Pre-computing a study's stimuli before it opens: per item the images and the reference answer, per
condition the explanation (dense or SPADE visualisation or saliency map), all stored in the study store.

Reference answers: the paper (arXiv 2310.04519, sec. 5.2) takes them from Score-CAM. We use an **occlusion
score on the dense model** instead: the drop of the decision's logit when a patch is replaced by the image's
mean colour; the patch with the larger drop is the reference. For the neuron question the reference is the
image with the larger mean activation of the neuron on the dense model.

Patch choice: the image is cut into a `patch_grid` x `patch_grid` grid; one patch is the cell with the largest
occlusion score, the other a seeded random cell from the lower half of the scores, so the two differ clearly
on the dense model while an explanation is still needed to tell which is which.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from spade_engine.explain.panel import heat_overlay
from spade_engine.models import spade_augment
from spade_engine.study import render
from spade_engine.study.design import CONDITIONS, StudyDesign
from spade_engine.study.samples import describe, load_sample
from spade_engine.study.store import Stimulus, StudyStore

Progress = Callable[[int, int, str], None]  # progress(done, total, message)


@dataclass
class ItemBase:
    """What all conditions of one item share."""

    x: torch.Tensor  # (3, H, W) in [0, 1]: the sample SPADE prunes for
    target: int  # decision (class) of the dense model on x
    image_png: bytes
    option_a_png: bytes
    option_b_png: bytes
    reference: int
    meta: dict = field(default_factory=dict)


def occlusion_scores(model: nn.Module, x: torch.Tensor, target: int, grid: int) -> torch.Tensor:
    """(grid, grid) drops of the `target` logit when each cell is replaced by the image's mean colour."""
    _, h, w = x.shape
    mean = x.mean(dim=(1, 2), keepdim=True)  # (3, 1, 1)
    batch = x.unsqueeze(0).repeat(grid * grid, 1, 1, 1)  # (g*g, 3, H, W)
    for k, (r, c) in enumerate((r, c) for r in range(grid) for c in range(grid)):
        ys, xs = _cell(r, h, grid), _cell(c, w, grid)
        batch[k, :, ys, xs] = mean
    with torch.no_grad():
        base = model(x.unsqueeze(0))[0, target]
        logits = model(batch)[:, target]  # (g*g,)
    return (base - logits).view(grid, grid).cpu()


def _cell(i: int, size: int, grid: int) -> slice:
    return slice(i * size // grid, (i + 1) * size // grid)


def choose_patches(scores: torch.Tensor, rng: random.Random) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top cell, distractor cell): the largest score and a random cell from the lower half of the scores."""
    grid = scores.shape[0]
    order = scores.flatten().argsort(descending=True).tolist()
    top = order[0]
    low = [k for k in order[len(order) // 2 :] if k != top] or order[1:]
    other = rng.choice(low)
    return divmod(top, grid), divmod(other, grid)


def neuron_activation(model: nn.Module, x: torch.Tensor, neuron: dict) -> float:
    """Mean activation of channel `neuron["channel"]` of `neuron["layer"]` ("logits": the class logit)."""
    from spade_engine.featvis import LOGITS, capture

    layer = neuron["layer"]
    with torch.no_grad(), capture(model, [layer]) as store:
        store[LOGITS] = model(x.unsqueeze(0))
    out = store[layer][0, int(neuron["channel"])]
    return float(out.mean())


def item_base(design: StudyDesign, item_index: int, model: nn.Module, loaded) -> ItemBase:  # noqa: ANN001
    """Images, reference answer and metadata of one item (shared by its conditions)."""
    item = design.items[item_index]
    rng = random.Random(f"{design.seed}|item|{item_index}")
    x = load_sample(item["sample"], loaded)
    with torch.no_grad():
        target = int(model(x.unsqueeze(0)).argmax())
    if design.question == "neuron":
        return _neuron_base(design, item, x, target, model, loaded, rng)
    return _patch_base(design, item, x, target, model, loaded, rng)


def _patch_base(design, item, x, target, model, loaded, rng) -> ItemBase:  # noqa: ANN001
    g = design.patch_grid
    scores = occlusion_scores(model, x, target, g)
    top, other = choose_patches(scores, rng)
    cells = [top, other] if rng.random() < 0.5 else [other, top]
    reference = cells.index(top)
    image = render.tensor_image(x)
    step = render.DISPLAY / g
    boxes = [[round(c * step), round(r * step), round((c + 1) * step), round((r + 1) * step)] for r, c in cells]
    crops = [
        image.crop(tuple(b)).resize((render.DISPLAY // 2, render.DISPLAY // 2), render.Image.NEAREST) for b in boxes
    ]
    meta = {
        "sample": describe(item["sample"]), "target": target, "target_name": _class_name(loaded, target),
        "boxes": boxes, "cells": [list(c) for c in cells], "occlusion": [float(scores[r, c]) for r, c in cells],
        "reference_method": "occlusion (mean colour) on the dense model",
    }  # fmt: skip
    return ItemBase(x, target, render.to_png(image), render.to_png(crops[0]), render.to_png(crops[1]), reference, meta)


def _neuron_base(design, item, x, target, model, loaded, rng) -> ItemBase:  # noqa: ANN001
    x_other = load_sample(item["other"], loaded)
    acts = [neuron_activation(model, x, item["neuron"]), neuron_activation(model, x_other, item["neuron"])]
    swap = rng.random() < 0.5
    images = [render.tensor_image(x), render.tensor_image(x_other)]
    if swap:
        images, acts = images[::-1], acts[::-1]
    meta = {
        "sample": describe(item["sample"]), "other": describe(item["other"]), "neuron": item["neuron"],
        "activations": acts, "spade_sample": "b" if swap else "a", "target": target,
        "reference_method": "mean activation on the dense model",
    }  # fmt: skip
    reference = int(acts[1] > acts[0])
    png = [render.to_png(i) for i in images]
    return ItemBase(x, target, png[0], png[0], png[1], reference, meta)


def _class_name(loaded, target: int) -> str:  # noqa: ANN001
    names = loaded.info.class_names
    return names[target] if target < len(names) else str(target)


# ------------------------------------------------------------------------------------------ explanations


def explanation_png(design: StudyDesign, condition: str, base: ItemBase, model: nn.Module, device: str) -> bytes | None:
    """The explanation image of one condition on `model` (the dense model or the item's SPADE copy)."""
    kind = CONDITIONS[condition].kind
    if kind == "none":
        return None
    if kind == "saliency":
        from spade_engine.saliency import attribute

        heat = attribute(design.saliency_method, model, base.x.unsqueeze(0).to(device), base.target)  # (H, W)
        return render.to_png(heat_overlay(render.from_png(base.image_png), heat))
    return _visualisation_png(design, condition, base, model, device)


def _visualisation_png(design: StudyDesign, condition: str, base: ItemBase, model: nn.Module, device: str) -> bytes:
    from spade_engine import featvis

    if design.question == "neuron":
        neuron = base.meta["neuron"]
        layer, index = neuron["layer"], int(neuron["channel"])
        target = featvis.class_target(index) if layer == featvis.LOGITS else featvis.channel_target(layer, index)
    else:
        target = featvis.class_target(base.target)
    pruned = CONDITIONS[condition].pruned
    config = featvis.FeatVisConfig(image_size=base.x.shape[-1], steps=design.vis_steps, seed=design.seed)
    network = f"{featvis.sample_hash(base.x)}:{design.n_aug}:{design.seed}" if pruned else "dense"
    prune_key = f"{design.sparsity}:{'late' if design.vis_late_layers else 'all'}" if pruned else "dense"
    vis = featvis.render_cached(
        model, target, config, device, model_name=design.model, variant=network, sparsity=prune_key
    )
    image = render.Image.fromarray(featvis.to_uint8(vis.image))
    return render.to_png(image.resize((render.DISPLAY,) * 2, render.Image.BILINEAR))


def prune_config(design: StudyDesign, kind: str, model: nn.Module, size: int, device: str):  # noqa: ANN201
    """The SPADE configuration of a condition kind: the model card's settings at `design.sparsity` (its solver,
    calibration and BatchNorm correction: `SpadeSettings.resolved`); visualisations prune only the late layers
    when `design.vis_late_layers` (the reference's setting for feature visualisation), saliency every layer."""
    from spade_engine.settings import SpadeSettings

    config = SpadeSettings(sparsity=design.sparsity).resolved(design.model).prune_config()
    if kind == "vis" and design.vis_late_layers:
        from spade_engine import neurons

        return neurons.late_prune_config(neurons.list_layers(model, size, device), design.sparsity, base=config)
    return config


# ----------------------------------------------------------------------------------------------- driver


def precompute(
    store: StudyStore, study_id: str, device: str = "cpu", progress: Progress | None = None, load=None
) -> int:  # noqa: ANN001
    """Compute and store every missing stimulus of a study, then mark it "ready" (if it was a draft).

    Work already stored is kept, so an interrupted pre-computation continues where it stopped.

    Args:
        store: the study store.
        study_id: the study.
        device: where models run.
        progress: `progress(done, total, message)` after each stimulus and before long steps.
        load: `load(model_name, device) -> LoadedModel` (default `spade_engine.models.load_model`).

    Returns:
        The number of stimuli computed (0 when all were cached already).
    """
    from spade_engine.engine import SpadeEngine
    from spade_engine.models import load_model

    info = store.get_study(study_id)
    design, missing = info.design, store.missing_stimuli(study_id)
    report = progress or (lambda done, total, message: None)
    if missing:
        loaded = (load or load_model)(design.model, device)
        engine = SpadeEngine(loaded.model, device, max_pruned=2)
        by_item: dict[int, list[str]] = {}
        for item_index, condition in missing:
            by_item.setdefault(item_index, []).append(condition)
        done = 0
        for item_index, conditions in by_item.items():
            done = _precompute_item(store, study_id, design, item_index, conditions, loaded, engine, device,
                                    lambda k, m: report(k, len(missing), m), done)  # fmt: skip
    if info.status == "draft":
        store.set_status(study_id, "ready")
    return len(missing)


def _precompute_item(store, study_id, design, item_index, conditions, loaded, engine, device, report, done) -> int:  # noqa: ANN001
    model, label = loaded.model, f"Item {item_index + 1}/{len(design.items)}"
    report(done, f"{label}: sample and reference answer")
    base = item_base(design, item_index, model, loaded)
    trace = None
    for condition in conditions:
        cond, net = CONDITIONS[condition], model
        if cond.pruned:
            report(done, f"{label}: SPADE pruning at {design.sparsity:.0%} for the {cond.kind} condition")
            trace = trace or engine.prepare(
                base.x, design.n_aug, design.seed, augment_config=spade_augment(design.model)
            )
            net, result = engine.prune(trace, prune_config(design, cond.kind, model, base.x.shape[-1], device))
            base.meta[f"pruned_agrees_{cond.kind}"] = bool(result.agrees)
        report(done, f"{label}: {cond.title}")
        png = explanation_png(design, condition, base, net, device)
        stim = Stimulus(
            item_index,
            condition,
            base.image_png,
            base.option_a_png,
            base.option_b_png,
            base.reference,
            png,
            dict(base.meta),
        )
        store.put_stimulus(study_id, stim)
        done += 1
        report(done, f"Stored {label}, {cond.title}")
    return done

"""The protocol's samples: trojaned testbed images the dense model sends to the trojan target, and clean ones
explained for the dense prediction, in the order a run visits them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import nn

from spade_engine.protocol.config import ProtocolConfig
from spade_engine.testbed import data_for as testbed_data_for


@dataclass(frozen=True)
class Sample:
    """One benchmark image with its ground truth and the dense model's prediction."""

    index: int  # the image's index in the generated batch (also offsets the calibration views' seed)
    image: torch.Tensor  # (3, H, W) in [0, 1]
    target: int  # the class every map explains: the trojan target, or the dense prediction on clean images
    mask: np.ndarray | None  # (H, W) bool trojan patch, None for clean images


def _predict(model: nn.Module, images: torch.Tensor, device: str, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(images[i : i + batch].to(device)).argmax(-1).cpu() for i in range(0, len(images), batch)]
        )


def trojan_samples(
    model: nn.Module, n: int, seed: int, device: str = "cpu", data: ModuleType | None = None
) -> list[Sample]:
    """The first `n` trojaned testbed images that `model` classifies as their trojan's target.

    Args:
        model: the dense model; n: samples wanted; seed: generator seed; device: where `model` is.
        data: the generator module (`testbed.data_for(model_name)`); default v1's.

    Returns:
        Up to `n` samples (fewer, with a warning on stderr, when fewer of 4n generated images hit the target).
        A sample's `index` is its position in the generated batch of max(4n, 32) images. The generators draw
        each scene parameter for the whole batch at once, so the batch's images depend on its size: runs with
        different `n` score different images under the same index (compare runs of the same `n` only; the
        `batch_size` of `testbed.examples` demo entries records it).
    """
    from spade_engine.testbed import data as v1
    from spade_engine.testbed import trojan_targets

    batch = (data or v1).generate(max(4 * n, 32), seed, trojan_fraction=1.0)
    pred = _predict(model, batch.images, device)
    targets = trojan_targets(batch)
    hits = torch.nonzero(pred == targets).flatten()[:n].tolist()
    if len(hits) < n:
        print(f"warning: only {len(hits)} of {len(pred)} trojaned images hit the target; using those", file=sys.stderr)
    return [Sample(i, batch.images[i], int(targets[i]), batch.trojan_mask[i].numpy()) for i in hits]


def clean_samples(
    model: nn.Module, n: int, seed: int, device: str = "cpu", data: ModuleType | None = None
) -> list[Sample]:
    """`n` clean testbed images, each explained for the dense model's prediction (args as `trojan_samples`)."""
    from spade_engine.testbed import data as v1

    batch = (data or v1).generate(n, seed, trojan_fraction=0.0)
    pred = _predict(model, batch.images, device)
    return [Sample(i, batch.images[i], int(pred[i]), None) for i in range(n)]


def run_samples(cfg: ProtocolConfig, model: nn.Module) -> list[tuple[str, int, Sample]]:
    """(kind, position, sample) of every sample of the run, in run order: trojaned images from `cfg.seed`, then
    clean ones from `cfg.seed + 1` (`position` counts within a kind; the exact column keeps the first
    `cfg.exact_samples`)."""
    data = testbed_data_for(cfg.model)
    out = []
    for kind in cfg.metrics:
        n = cfg.trojan_samples if kind == "trojan" else cfg.clean_samples
        if n <= 0:  # e.g. `--clean 0`: trojan AUC only
            continue
        if kind == "trojan":
            samples = trojan_samples(model, n, cfg.seed, cfg.device, data)
        else:
            samples = clean_samples(model, n, cfg.seed + 1, cfg.device, data)
        out += [(kind, i, s) for i, s in enumerate(samples)]
    return out

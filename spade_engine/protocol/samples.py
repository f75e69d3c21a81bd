"""The protocol's samples: trojaned testbed images the dense model sends to the trojan target, and clean ones
explained for the dense prediction, in the order a run visits them. A real network (no testbed generator: the
packaged, torchvision and timm ImageNet models) has no trojan ground truth; its clean samples are the offline
photos and their crops (`spade_engine.photos`)."""

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
    photo: str | None = None  # the photo a sample of real photos was cut from (intervals resample photos)


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

    batch = (data or v1).generate(max(4 * n, 32), seed, trojan_fraction=1.0)
    pred = _predict(model, batch.images, device)
    targets = batch.trojan_target
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


def photo_samples(model: nn.Module, model_name: str, n: int, device: str = "cpu") -> list[Sample]:
    """`n` samples of the offline photos, each explained for the dense prediction: every whole photo first, then
    one square crop of each, and so on (`photos.photo_crops`), at the model's input size.

    Raises:
        ValueError: more samples than the photos give (6 per photo).
    """
    from spade_engine.models import get_info
    from spade_engine.models.info import LoadedModel
    from spade_engine.photos import SOURCES, offline_photos, photo_crops

    per_photo = -(-n // len(SOURCES))
    if per_photo > 6:
        raise ValueError(f"The offline photos give at most {6 * len(SOURCES)} samples; asked for {n}.")
    crops = photo_crops(offline_photos(), per_photo)
    order = sorted(range(len(crops)), key=lambda i: (i % per_photo, i // per_photo))[:n]  # breadth-first over photos
    preprocess = LoadedModel(get_info(model_name), model).preprocess
    images = torch.stack([preprocess(crops[i][1]) for i in order])  # (n, 3, S, S)
    pred = _predict(model, images, device)
    return [Sample(i, images[k], int(pred[k]), None, crops[i][0].split("@")[0]) for k, i in enumerate(order)]


def real_testbed_samples(model: nn.Module, kind: str, n: int, seed: int, device: str = "cpu") -> list[Sample]:
    """Testbed "real"'s samples, all cut from its held-out photos (`testbed.real.evaluate.protocol_samples`):
    stickered crops the model sends to the trigger's target ("trojan"), or clean crops explained for its
    prediction ("insertion"); each records its photo."""
    from spade_engine.testbed.real.evaluate import PROTOCOL_SEED, protocol_samples

    def predict(images: torch.Tensor) -> torch.Tensor:
        return model(images.to(device)).cpu()

    kind = "trojan" if kind == "trojan" else "clean"
    out = protocol_samples(predict, kind, n, PROTOCOL_SEED + seed)
    if len(out) < n:
        print(f"warning: only {len(out)} stickered held-out crops hit their target; using those", file=sys.stderr)
    return [
        Sample(i, image, target, None if mask is None else mask.numpy(), photo) for i, image, target, mask, photo in out
    ]


def is_real_testbed(model_name: str) -> bool:
    """Whether a model is testbed "real" (a card with `"testbed": "real"`: an ImageNet network with trojans)."""
    from spade_engine.models import ModelLoadError, get_info

    try:
        return (get_info(model_name).card or {}).get("testbed") == "real"
    except ModelLoadError:
        return False


def is_testbed(model_name: str) -> bool:
    """Whether a model has a testbed generator (trojan ground truth); real networks are explained on photos."""
    from spade_engine.models import ModelLoadError, get_info

    try:
        return get_info(model_name).family == "testbed"
    except ModelLoadError:
        return True  # the protocol's own tiny test models


def run_samples(cfg: ProtocolConfig, model: nn.Module) -> list[tuple[str, int, Sample]]:
    """(kind, position, sample) of every sample of the run, in run order: trojaned images from `cfg.seed`, then
    clean ones from `cfg.seed + 1` (`position` counts within a kind; the exact column keeps the first
    `cfg.exact_samples`)."""
    data, testbed = testbed_data_for(cfg.model), is_testbed(cfg.model)
    out = []
    for kind in cfg.metrics:
        n = cfg.trojan_samples if kind == "trojan" else cfg.clean_samples
        if n <= 0:  # e.g. `--clean 0`: trojan AUC only
            continue
        if is_real_testbed(cfg.model):
            samples = real_testbed_samples(model, kind, n, cfg.seed, cfg.device)
        elif not testbed:
            if kind == "trojan":
                raise ValueError(f"{cfg.model} has no trojan ground truth (it is not a testbed model): run it with "
                                 "--trojan 0 (insertion / deletion on the offline photos).")  # fmt: skip
            samples = photo_samples(model, cfg.model, n, cfg.device)
        elif kind == "trojan":
            samples = trojan_samples(model, n, cfg.seed, cfg.device, data)
        else:
            samples = clean_samples(model, n, cfg.seed + 1, cfg.device, data)
        out += [(kind, i, s) for i, s in enumerate(samples)]
    return out

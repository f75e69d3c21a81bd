"""Penultimate features of a classifier: the inputs of its last `nn.Linear` (the dense decision layer), caught by
a forward hook that is removed afterwards, for a tensor of images or generated testbed images with their truth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spade_engine.hooks import capture

Progress = Callable[[str, int, int], None]  # progress(phase, done, total)


def head_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last `nn.Linear` (in module order): the dense decision layer."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("The model has no nn.Linear layer to replace by a sparse decision layer.")
    return linears[-1]


@contextmanager
def capture_head_inputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, every forward appends the head's input (B, F) (detached, CPU) to the yielded list."""
    name, head = head_linear(model)
    with capture({name: head}, "input", keep=lambda t: t.detach().flatten(1).float().cpu()) as store:
        yield store[name]


@dataclass(frozen=True)
class FeatureSet:
    """Penultimate features of a dataset, with labels and the dense model's predictions."""

    features: np.ndarray  # (N, F) float32, raw (not standardised)
    labels: np.ndarray  # (N,) int64
    dense_pred: np.ndarray  # (N,) int64, argmax of the model's own head
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dense_accuracy(self) -> float:
        return float(np.mean(self.dense_pred == self.labels)) if len(self) else float("nan")

    def subset(self, index: np.ndarray) -> FeatureSet:
        return FeatureSet(self.features[index], self.labels[index], self.dense_pred[index], self.class_names)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    class_names: tuple[str, ...],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> FeatureSet:
    """Run `model` over `images` and keep the inputs of its last Linear.

    Args:
        model: classifier taking images in [0, 1] (eval mode; not modified).
        images: (N, 3, H, W) in [0, 1] (CPU is fine; batches are moved to `device`).
        labels: (N,) class indices into `class_names`.
        class_names: names of the classes the sparse layer will predict.
        batch_size: images per forward pass.
        device: where the model runs.
        progress: `progress("features", done, total)`.

    Returns:
        A `FeatureSet` (dense predictions are only meaningful when `class_names` are the model's classes).
    """
    preds = []
    with capture_head_inputs(model) as store:
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size].to(device))  # (B, K_model)
            preds.append(logits.argmax(1).cpu())
            if progress is not None:
                progress("features", min(start + batch_size, len(images)), len(images))
    feats = torch.cat(store).numpy().astype(np.float32)  # (N, F)
    return FeatureSet(feats, np.asarray(labels, dtype=np.int64), torch.cat(preds).numpy(), tuple(class_names))


def testbed_features(
    model: nn.Module,
    n: int,
    seed: int,
    trojan_fraction: float,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    data=None,  # noqa: ANN001 - the generator module (`testbed.data_for(name)`), default v1's
) -> tuple[FeatureSet, dict[str, np.ndarray]]:
    """Features of `n` generated testbed images, with their ground truth (`is_trojan`, `true_class`, `facet`,
    `trojan_target`: each image's trojan's target class, -1 when clean)."""
    from spade_engine.testbed import data as v1

    testbed = data or v1
    batch = testbed.generate(n, seed, trojan_fraction=trojan_fraction)
    feats = extract_features(model, batch.images, batch.labels, testbed.CLASS_NAMES, device=device, progress=progress)
    truth = {"is_trojan": batch.is_trojan.numpy(), "true_class": batch.true_class.numpy(), "facet": batch.facet.numpy(),
             "trojan_target": batch.trojan_target.numpy()}  # fmt: skip
    return feats, truth

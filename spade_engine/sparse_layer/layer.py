"""The fitted sparse decision layer (`SparseLayer`): fitting it from features, reading its explanations (class
features, contributions, top-activating images) and putting it into a model as its head.

Paper: Wong, Santurkar & Madry, ICML 2021 (arXiv 2105.04857). With standardised features `z`, the objective is
`min_{W,b} CE(W z + b, y) + lambda * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_2^2)`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from spade_engine.sparse_layer.features import FeatureSet, Progress, head_linear
from spade_engine.sparse_layer.glm import DEFAULT_GLM, GLMConfig, GLMPath, choose_point, fit_glm_path, standardization
from spade_engine.sparse_layer.glm import NNZ_EPS as _NNZ_EPS


@dataclass(frozen=True)
class SparseLayer:
    """A fitted sparse decision layer: `logits = W ((x - mean) / std) + b` over the head's input `x`."""

    weight: np.ndarray  # (K, F) float32, on standardised features
    bias: np.ndarray  # (K,)
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    lam: float
    alpha: float
    class_names: tuple[str, ...]
    val_acc: float = float("nan")
    dense_val_acc: float = float("nan")

    @property
    def features_per_class(self) -> np.ndarray:
        """(K,) number of non-zero weights per class."""
        return (np.abs(self.weight) > _NNZ_EPS).sum(1)

    @property
    def nnz(self) -> int:
        return int(self.features_per_class.sum())

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """(N, F) raw features -> standardised `z`."""
        return (features - self.mean) / self.std

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, F) raw features -> (N, K) logits."""
        return self.standardize(features) @ self.weight.T + self.bias

    def accuracy(self, data: FeatureSet) -> float:
        return float(np.mean(self.logits(data.features).argmax(1) == data.labels)) if len(data) else float("nan")

    def class_features(self, c: int) -> list[tuple[int, float]]:
        """Non-zero features of class `c` as (feature index, weight), largest |weight| first."""
        row = self.weight[c]
        idx = np.flatnonzero(np.abs(row) > _NNZ_EPS)
        return [(int(k), float(row[k])) for k in idx[np.argsort(-np.abs(row[idx]))]]

    def contributions(self, feature_vector: np.ndarray) -> np.ndarray:
        """(K, F) contributions `W[c, k] * z_k` of one sample's raw features (F,); row sums + bias = logits."""
        return self.weight * self.standardize(np.asarray(feature_vector))[None]

    def as_linear(self) -> nn.Linear:
        """An `nn.Linear` on the raw features with the standardisation folded in (`W / std`, `b - W mean / std`)."""
        w = torch.as_tensor(self.weight / self.std[None], dtype=torch.float32)  # (K, F)
        b = torch.as_tensor(self.bias - (self.weight / self.std[None]) @ self.mean, dtype=torch.float32)
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        return linear.requires_grad_(False)


def top_activating(layer: SparseLayer, data: FeatureSet, feature: int, n: int = 8) -> np.ndarray:
    """Indices into `data` of the `n` samples with the highest standardised value of `feature`."""
    z = (data.features[:, feature] - layer.mean[feature]) / layer.std[feature]  # (N,)
    return np.argsort(-z, kind="stable")[:n]


def split_train_val(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of `range(n)` into train and validation indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fit_sparse_layer(
    train: FeatureSet,
    val: FeatureSet,
    config: GLMConfig = DEFAULT_GLM,
    *,
    max_features_per_class: float = 10.0,
    progress: Progress | None = None,
) -> tuple[SparseLayer, GLMPath]:
    """Standardise on `train`, fit the path (`fit_glm_path` with `config`) and pick its point (`choose_point`).

    Args:
        train, val: features of the training and validation images (same classes).
        config: the path's settings.
        max_features_per_class: the budget of `choose_point`.
        progress: `progress("path", done, total)`.

    Returns:
        The chosen `SparseLayer` and the whole `GLMPath`.
    """
    mean, std = standardization(train.features)
    to_z = lambda d: torch.as_tensor((d.features - mean) / std, dtype=torch.float32)  # noqa: E731
    to_y = lambda d: torch.as_tensor(d.labels, dtype=torch.long)  # noqa: E731
    path = fit_glm_path(to_z(train), to_y(train), to_z(val), to_y(val), len(train.class_names), config,
                        progress=progress)  # fmt: skip
    i = choose_point(path, max_features_per_class)
    layer = SparseLayer(path.weights[i], path.biases[i], mean, std, float(path.lambdas[i]), config.alpha,
                        train.class_names, float(path.val_acc[i]), val.dense_accuracy)  # fmt: skip
    return layer, path


def at_point(layer: SparseLayer, path: GLMPath, index: int) -> SparseLayer:
    """The same standardisation and classes with the weights of another path point (a new budget, no refit)."""
    return replace(layer, weight=path.weights[index], bias=path.biases[index], lam=float(path.lambdas[index]),
                   val_acc=float(path.val_acc[index]))  # fmt: skip


def sparse_head_model(model: nn.Module, layer: SparseLayer) -> nn.Module:
    """A deep copy of `model` whose last Linear is the sparse layer (standardisation folded in).

    Saliency, SPADE and feature visualisation then run "through the sparse FC". The original is not modified.
    """
    name, head = head_linear(model)
    if head.in_features != layer.weight.shape[1]:
        raise ValueError(f"The sparse layer expects {layer.weight.shape[1]} features; the head has {head.in_features}.")
    new = copy.deepcopy(model)
    parent_name, _, attr = name.rpartition(".")
    parent = new.get_submodule(parent_name) if parent_name else new
    device = head.weight.device
    setattr(parent, attr, layer.as_linear().to(device))
    return new.eval()


def feature_model(model: nn.Module) -> nn.Module:
    """A deep copy of `model` whose last Linear is an identity: it outputs the penultimate features (B, F).

    Feature `k` is then "logit" `k`, so a feature visualisation of it is `featvis.class_target(k)` on this model.
    """
    name, _ = head_linear(model)
    new = copy.deepcopy(model)
    parent_name, _, attr = name.rpartition(".")
    setattr(new.get_submodule(parent_name) if parent_name else new, attr, nn.Identity())
    return new.eval()

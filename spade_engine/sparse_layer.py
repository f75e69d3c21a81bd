"""Sparse decision layer: replace a model's dense head by an elastic-net GLM over its standardised deep features.

Pipeline: `extract_features` (inputs of the model's last Linear, via a forward hook) → `fit_sparse_layer`
(standardise, `lambda_max`, regularisation path with SAGA from the `glm-saga` package, path point chosen by
validation accuracy under a features-per-class budget) → explanations (`SparseLayer.class_features`,
`top_activating`, `SparseLayer.contributions`) → `sparse_head_model` (the model with the sparse head, for
saliency "through the sparse FC") and `save_layer` / `load_layer`.

Paper: Wong, Santurkar & Madry, "Leveraging Sparse Linear Layers for Debuggable Deep Networks", ICML 2021
(https://arxiv.org/abs/2105.04857). Objective, with standardised features `z`:
`min_{W,b} CE(W z + b, y) + lambda * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_2^2)`.

`glm-saga` 0.1.2 works with our torch (it only warns about an implicit softmax dim, silenced here); we call its
`train_saga` per path point (warm start, SAGA state carried along) so the path, progress and logging are ours.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

Progress = Callable[[str, int, int], None]  # progress(phase, done, total)
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / "cache" / "sparse_layer"
_NNZ_EPS = 1e-5  # |w| above this counts as non-zero (glm-saga's convention)


# ------------------------------------------------------------------------------------------- features


def head_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last `nn.Linear` (in module order): the dense decision layer."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("The model has no nn.Linear layer to replace by a sparse decision layer.")
    return linears[-1]


@contextmanager
def capture_head_inputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, every forward appends the head's input (B, F) (detached, CPU) to the yielded list."""
    _, head = head_linear(model)
    store: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, inp, _out: store.append(inp[0].detach().flatten(1).float().cpu()))
    try:
        yield store
    finally:
        handle.remove()


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


def load_image_folder(root: str | Path, preprocess: Callable) -> tuple[torch.Tensor, np.ndarray, tuple[str, ...]]:
    """An ImageFolder-style folder (`root/<class>/<image>`) as tensors, for torchvision models.

    Args:
        root: folder with one sub-folder per class.
        preprocess: `LoadedModel.preprocess` (PIL -> (3, S, S) in [0, 1]).

    Returns:
        images (N, 3, S, S), labels (N,), class names (sorted sub-folder names). Unreadable files are skipped.
    """
    from spade_engine.images import ImageError, load_image

    classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    images, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((Path(root) / name).iterdir()):
            try:
                images.append(preprocess(load_image(f)))
            except (ImageError, OSError):
                continue
            labels.append(c)
    if not images or len(classes) < 2:
        raise ValueError(f"{root} needs at least two class sub-folders with readable images.")
    return torch.stack(images), np.asarray(labels, dtype=np.int64), tuple(classes)


# ------------------------------------------------------------------------------------------- GLM path


def standardization(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (constant features get std 1, so they standardise to 0)."""
    mean = features.mean(0)
    std = features.std(0, ddof=1) if len(features) > 1 else np.ones_like(mean)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def lambda_max(z: torch.Tensor, y: torch.Tensor, alpha: float) -> float:
    """Smallest lambda at which every weight is zero, for standardised features `z` (N, F) and labels `y` (N,).

    At `W = 0` the optimal bias gives the class frequencies, so the loss gradient is `-z^T (Y - ybar) / N`; the
    L1 term `lambda * alpha` must exceed its largest entry (glm-saga's `maximum_reg`).
    """
    from glm_saga.elasticnet import maximum_reg

    return maximum_reg(z, y, group=False) / max(alpha, 1e-3)


@dataclass(frozen=True)
class GLMPath:
    """The regularisation path: one fitted sparse layer per lambda (largest lambda first)."""

    lambdas: np.ndarray  # (P,)
    weights: np.ndarray  # (P, K, F) on standardised features
    biases: np.ndarray  # (P, K)
    train_acc: np.ndarray  # (P,)
    val_acc: np.ndarray  # (P,)
    alpha: float

    @property
    def nnz(self) -> np.ndarray:
        """(P,) number of non-zero weights."""
        return (np.abs(self.weights) > _NNZ_EPS).sum(axis=(1, 2))

    @property
    def sparsity(self) -> np.ndarray:
        """(P,) fraction of zero weights."""
        return 1.0 - self.nnz / self.weights[0].size

    @property
    def features_per_class(self) -> np.ndarray:
        """(P,) mean number of non-zero weights per class."""
        return self.nnz / self.weights.shape[1]

    @property
    def features_used(self) -> np.ndarray:
        """(P,) number of features used by at least one class."""
        return (np.abs(self.weights) > _NNZ_EPS).any(axis=1).sum(axis=1)


class _ShuffledBatches:
    """A loader for glm-saga: yields `(X, y, index)` batches in a fresh seeded order on every pass.

    Slicing tensors directly is much faster than a `DataLoader` over an `IndexedTensorDataset` (no per-sample
    Python calls), which dominates the cost of SAGA steps on small feature matrices.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.y), generator=self.generator)
        for idx in perm.split(self.batch_size):
            yield self.x[idx], self.y[idx], idx

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op threads (restored afterwards); None leaves torch's setting alone."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _accuracy(linear: nn.Linear, z: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((linear(z).argmax(1) == y).float().mean()) if len(y) else float("nan")


def fit_glm_path(
    z_train: torch.Tensor,
    y_train: torch.Tensor,
    z_val: torch.Tensor,
    y_val: torch.Tensor,
    num_classes: int,
    alpha: float = 0.99,
    n_lambdas: int = 40,
    min_ratio: float = 1e-3,
    lr: float = 0.2,
    epochs: int = 60,
    tol: float = 1e-4,
    batch_size: int = 512,
    seed: int = 0,
    progress: Progress | None = None,
    threads: int | None = 1,
) -> GLMPath:
    """Elastic-net multinomial GLM along a geometric lambda path with glm-saga's proximal SAGA.

    Args:
        z_train, z_val: (N, F) standardised features (CPU float); y_train, y_val: (N,) long labels.
        num_classes: K.
        alpha: L1 share of the elastic net (close to 1: sparse).
        n_lambdas: points from `lambda_max` down to `min_ratio * lambda_max`.
        lr, epochs, tol, batch_size: SAGA step size, epochs per point (at most), stopping tolerance, batch.
        seed: data order.
        progress: `progress("path", done, n_lambdas)`.
        threads: torch threads during the fit (SAGA steps are tiny: one thread avoids oversubscription).

    Returns:
        The `GLMPath` (each point warm-started from the previous one).
    """
    with _torch_threads(threads):
        return _fit_path(z_train, y_train, z_val, y_val, num_classes, alpha, n_lambdas, min_ratio, lr, epochs, tol,
                         batch_size, seed, progress)  # fmt: skip


def _fit_path(z_train, y_train, z_val, y_val, num_classes, alpha, n_lambdas, min_ratio, lr, epochs, tol,
              batch_size, seed, progress) -> GLMPath:  # fmt: skip
    from glm_saga.elasticnet import train_saga

    loader = _ShuffledBatches(z_train, y_train, batch_size, seed)
    lam_max = lambda_max(z_train, y_train, alpha)
    lambdas = np.geomspace(lam_max, lam_max * min_ratio, n_lambdas)
    linear = nn.Linear(z_train.shape[1], num_classes)
    nn.init.zeros_(linear.weight)
    with torch.no_grad():  # start at the class priors: the exact solution at lambda_max
        prior = torch.bincount(y_train, minlength=num_classes).float() + 1e-3
        linear.bias.copy_(torch.log(prior / prior.sum()))
    state, ws, bs, tr, va = None, [], [], [], []
    for i, lam in enumerate(lambdas):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Implicit dimension choice for softmax")
            state = train_saga(linear, loader, lr, epochs, float(lam), alpha, group=False, state=state,
                               n_ex=len(y_train), n_classes=num_classes, tol=tol, logger=lambda _msg: None)  # fmt: skip
        ws.append(linear.weight.detach().clone().numpy())
        bs.append(linear.bias.detach().clone().numpy())
        tr.append(_accuracy(linear, z_train, y_train))
        va.append(_accuracy(linear, z_val, y_val))
        if progress is not None:
            progress("path", i + 1, n_lambdas)
    return GLMPath(lambdas, np.stack(ws), np.stack(bs), np.asarray(tr), np.asarray(va), alpha)


def choose_point(path: GLMPath, max_features_per_class: float = 10.0) -> int:
    """Index of the path point with the best validation accuracy among those within the budget.

    Ties go to the sparser point; if no point is within the budget, the sparsest non-empty one is taken.
    """
    fpc = path.features_per_class
    ok = np.flatnonzero((fpc <= max_features_per_class) & (path.nnz > 0))
    if not len(ok):
        nonempty = np.flatnonzero(path.nnz > 0)
        return int(nonempty[0]) if len(nonempty) else len(fpc) - 1
    best = path.val_acc[ok].max()
    return int(ok[np.flatnonzero(path.val_acc[ok] >= best - 1e-12)][0])


# ------------------------------------------------------------------------------------------ the layer


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
    max_features_per_class: float = 10.0,
    alpha: float = 0.99,
    n_lambdas: int = 40,
    min_ratio: float = 1e-3,
    lr: float = 0.2,
    epochs: int = 60,
    tol: float = 1e-4,
    batch_size: int = 512,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[SparseLayer, GLMPath]:
    """Standardise on `train`, fit the path (`fit_glm_path`) and pick its point (`choose_point`).

    Returns:
        The chosen `SparseLayer` and the whole `GLMPath`.
    """
    mean, std = standardization(train.features)
    to_z = lambda d: torch.as_tensor((d.features - mean) / std, dtype=torch.float32)  # noqa: E731
    to_y = lambda d: torch.as_tensor(d.labels, dtype=torch.long)  # noqa: E731
    k = len(train.class_names)
    path = fit_glm_path(to_z(train), to_y(train), to_z(val), to_y(val), k, alpha, n_lambdas, min_ratio, lr,
                        epochs, tol, batch_size, seed, progress)  # fmt: skip
    i = choose_point(path, max_features_per_class)
    layer = SparseLayer(path.weights[i], path.biases[i], mean, std, float(path.lambdas[i]), alpha,
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


# ------------------------------------------------------------------------------------------ save/load


def cache_path(key: str, cache_dir: str | Path | None = None) -> Path:
    """Where the layer fitted under `key` (any string describing model, data and settings) is stored."""
    root = (
        Path(cache_dir) if cache_dir else Path(os.environ.get("SPADE_CACHE_DIR", DEFAULT_CACHE.parent)) / "sparse_layer"
    )
    return root / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".pt")


def save_layer(layer: SparseLayer, path: str | Path, path_data: GLMPath | None = None) -> Path:
    """Save as a weights-only dict of tensors and plain values (loadable with `torch.load(weights_only=True)`)."""
    t = lambda a: torch.as_tensor(np.asarray(a))  # noqa: E731
    obj = {"weight": t(layer.weight), "bias": t(layer.bias), "mean": t(layer.mean), "std": t(layer.std),
           "lam": layer.lam, "alpha": layer.alpha, "class_names": list(layer.class_names),
           "val_acc": layer.val_acc, "dense_val_acc": layer.dense_val_acc}  # fmt: skip
    if path_data is not None:
        obj["path"] = {"lambdas": t(path_data.lambdas), "weights": t(path_data.weights), "biases": t(path_data.biases),
                       "train_acc": t(path_data.train_acc), "val_acc": t(path_data.val_acc), "alpha": path_data.alpha}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def load_layer(path: str | Path) -> tuple[SparseLayer, GLMPath | None]:
    """Inverse of `save_layer`."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    n = lambda k, d=obj: d[k].numpy()  # noqa: E731
    layer = SparseLayer(n("weight"), n("bias"), n("mean"), n("std"), float(obj["lam"]), float(obj["alpha"]),
                        tuple(obj["class_names"]), float(obj["val_acc"]), float(obj["dense_val_acc"]))  # fmt: skip
    p = obj.get("path")
    glm = None if p is None else GLMPath(n("lambdas", p), n("weights", p), n("biases", p), n("train_acc", p),
                                         n("val_acc", p), float(p["alpha"]))  # fmt: skip
    return layer, glm


# --------------------------------------------------------------------------------------------- trojan


@dataclass(frozen=True)
class TrojanFinding:
    """Does the trojan show up as a feature of its target class?

    For each feature of the target class: its weight; its effect on images of other classes, `mean z on
    trojaned - mean z on clean` in units of the feature's training standard deviation (z is standardised); and
    the share of trojaned images among the `top_n` images of the set that activate it most. A feature "fires on
    the trojan" when the effect exceeds `threshold`; it is a "trojan feature" when, with a positive weight, most
    of its top-activating images are trojaned (what a user would see on the page).
    """

    target: int
    features: tuple[int, ...]
    weights: tuple[float, ...]
    effect: tuple[float, ...]
    top_trojan_share: tuple[float, ...]
    threshold: float
    top_n: int
    sparse_attack_success: float  # trojaned images of other classes predicted as the target by the sparse layer
    dense_attack_success: float  # ... by the model's own head

    def _rows(self):
        return zip(self.features, self.weights, self.effect, self.top_trojan_share, strict=True)

    @property
    def firing(self) -> tuple[int, ...]:
        """Target-class features that fire on the trojan (positive weight and effect above the threshold)."""
        return tuple(k for k, w, e, _ in self._rows() if w > 0 and e > self.threshold)

    @property
    def trojan_features(self) -> tuple[int, ...]:
        """Target-class features (positive weight) whose top-activating images are mostly trojaned."""
        return tuple(k for k, w, _, share in self._rows() if w > 0 and share > 0.5)

    @property
    def found(self) -> bool:
        return bool(self.trojan_features)


def trojan_finding(
    layer: SparseLayer,
    data: FeatureSet,
    is_trojan: np.ndarray,
    true_class: np.ndarray,
    target: int,
    threshold: float = 1.0,
    top_n: int = 20,
) -> TrojanFinding:
    """Which target-class features respond to the trojan (see `TrojanFinding`).

    Args:
        layer: the fitted sparse layer.
        data: features of a held-out set containing clean and trojaned images.
        is_trojan, true_class: (N,) per image: trojaned, and the class whose content is drawn.
        target: the trojan's target class.
        threshold: effect (in training standard deviations of the feature) above which a feature "fires".
        top_n: top-activating images inspected per feature.
    """
    is_trojan = np.asarray(is_trojan)
    others = np.asarray(true_class) != target
    troj, clean = others & is_trojan, others & ~is_trojan
    z = layer.standardize(data.features)  # unit variance over the training set
    feats = layer.class_features(target)
    effect = [float(z[troj, k].mean() - z[clean, k].mean()) if troj.any() and clean.any() else 0.0 for k, _ in feats]
    share = [float(is_trojan[np.argsort(-z[:, k], kind="stable")[:top_n]].mean()) for k, _ in feats]
    pred = layer.logits(data.features).argmax(1)
    asr = lambda p: float(np.mean(p[troj] == target)) if troj.any() else float("nan")  # noqa: E731
    return TrojanFinding(target, tuple(k for k, _ in feats), tuple(w for _, w in feats), tuple(effect), tuple(share),
                         threshold, top_n, asr(pred), asr(data.dense_pred))  # fmt: skip


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
    from spade_engine.testbed import trojan_targets

    testbed = data or v1
    batch = testbed.generate(n, seed, trojan_fraction=trojan_fraction)
    feats = extract_features(model, batch.images, batch.labels, testbed.CLASS_NAMES, device=device, progress=progress)
    truth = {"is_trojan": batch.is_trojan.numpy(), "true_class": batch.true_class.numpy(), "facet": batch.facet.numpy(),
             "trojan_target": trojan_targets(batch).numpy()}  # fmt: skip
    return feats, truth

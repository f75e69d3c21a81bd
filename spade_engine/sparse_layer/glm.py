"""The elastic-net regularisation path of the sparse decision layer: standardisation, `lambda_max`, glm-saga's
proximal SAGA per path point (warm start, SAGA state carried along) and the choice of a point under a
features-per-class budget.

`glm-saga` 0.1.2 works with our torch (it only warns about an implicit softmax dim, silenced here); we call its
`train_saga` per path point so the path, progress and logging are ours. Paper: Wong, Santurkar & Madry, ICML 2021
(arXiv 2105.04857).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spade_engine.sparse_layer.features import Progress

NNZ_EPS = 1e-5  # |w| above this counts as non-zero (glm-saga's convention)


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
        return (np.abs(self.weights) > NNZ_EPS).sum(axis=(1, 2))

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
        return (np.abs(self.weights) > NNZ_EPS).any(axis=1).sum(axis=1)


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


def _accuracy(linear: nn.Linear, z: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((linear(z).argmax(1) == y).float().mean()) if len(y) else float("nan")


@dataclass(frozen=True)
class GLMConfig:
    """Settings of the elastic-net regularisation path (defaults: the page's and the paper's sparse regime).

    Attributes:
        alpha: L1 share of the elastic net (close to 1: sparse).
        n_lambdas: path points from `lambda_max` down to `min_ratio * lambda_max` (geometric).
        min_ratio: the smallest lambda as a fraction of `lambda_max`.
        lr: SAGA step size.
        epochs: SAGA epochs per path point (at most).
        tol: SAGA stopping tolerance.
        batch_size: samples per SAGA step.
        seed: order of the training data.
    """

    alpha: float = 0.99
    n_lambdas: int = 40
    min_ratio: float = 1e-3
    lr: float = 0.2
    epochs: int = 60
    tol: float = 1e-4
    batch_size: int = 512
    seed: int = 0


DEFAULT_GLM = GLMConfig()


def fit_glm_path(
    z_train: torch.Tensor,
    y_train: torch.Tensor,
    z_val: torch.Tensor,
    y_val: torch.Tensor,
    num_classes: int,
    config: GLMConfig = DEFAULT_GLM,
    *,
    progress: Progress | None = None,
) -> GLMPath:
    """Elastic-net multinomial GLM along a geometric lambda path with glm-saga's proximal SAGA.

    Runs with torch's thread count as set at the process start (it never changes it: that is process-wide).

    Args:
        z_train, z_val: (N, F) standardised features (CPU float); y_train, y_val: (N,) long labels.
        num_classes: K.
        config: the path's settings (`GLMConfig`).
        progress: `progress("path", done, n_lambdas)`.

    Returns:
        The `GLMPath` (each point warm-started from the previous one).
    """
    from glm_saga.elasticnet import train_saga

    c = config
    loader = _ShuffledBatches(z_train, y_train, c.batch_size, c.seed)
    lam_max = lambda_max(z_train, y_train, c.alpha)
    lambdas = np.geomspace(lam_max, lam_max * c.min_ratio, c.n_lambdas)
    linear = _prior_linear(z_train.shape[1], num_classes, y_train)
    state, ws, bs, tr, va = None, [], [], [], []
    for i, lam in enumerate(lambdas):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Implicit dimension choice for softmax")
            state = train_saga(linear, loader, c.lr, c.epochs, float(lam), c.alpha, group=False, state=state,
                               n_ex=len(y_train), n_classes=num_classes, tol=c.tol, logger=lambda _msg: None)  # fmt: skip
        ws.append(linear.weight.detach().clone().numpy())
        bs.append(linear.bias.detach().clone().numpy())
        tr.append(_accuracy(linear, z_train, y_train))
        va.append(_accuracy(linear, z_val, y_val))
        if progress is not None:
            progress("path", i + 1, c.n_lambdas)
    return GLMPath(lambdas, np.stack(ws), np.stack(bs), np.asarray(tr), np.asarray(va), c.alpha)


def _prior_linear(n_features: int, num_classes: int, y: torch.Tensor) -> nn.Linear:
    """Zero weights and the class priors as bias: the exact solution at `lambda_max`."""
    linear = nn.Linear(n_features, num_classes)
    nn.init.zeros_(linear.weight)
    with torch.no_grad():
        prior = torch.bincount(y, minlength=num_classes).float() + 1e-3
        linear.bias.copy_(torch.log(prior / prior.sum()))
    return linear


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

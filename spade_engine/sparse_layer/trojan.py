"""Does a trojan show up as a feature of its target class in the sparse decision layer? (`trojan_finding`)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spade_engine.sparse_layer.features import FeatureSet
from spade_engine.sparse_layer.layer import SparseLayer


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

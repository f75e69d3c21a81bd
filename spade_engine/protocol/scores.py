"""The protocol's scores of one saliency map: trojan localisation, and insertion / deletion AUC on the dense
model (the definitions are `spade_engine.metrics`')."""

from __future__ import annotations

import numpy as np
from torch import nn

from spade_engine import metrics
from spade_engine.protocol.samples import Sample


def trojan_scores(sal: np.ndarray, sample: Sample) -> dict[str, float]:
    """Trojan localisation of one (H, W) map: ROC AUC, pointing game and relevance rank accuracy vs the patch."""
    return {
        "auc": metrics.trojan_auc(sal, sample.mask),
        "pointing": float(metrics.pointing_game(sal, sample.mask)),
        "rank_acc": metrics.relevance_rank_accuracy(sal, sample.mask),
    }


def insertion_scores(model: nn.Module, sal: np.ndarray, sample: Sample, steps: int, device: str) -> dict[str, float]:
    """Insertion (from blur) and deletion (to black) AUC of one (H, W) map, scored on `model` (the dense one)."""
    x = sample.image.unsqueeze(0).to(device)
    return {
        "insertion": metrics.insertion_auc(model, x, sal, sample.target, steps=steps),
        "deletion": metrics.deletion_auc(model, x, sal, sample.target, steps=steps),
    }

"""A global sparsity budget allocated by the OBS error: which layers can lose more weights than others.

Uniform sparsity prunes every layer to the same share. With a global budget the network loses the same number of
weights in total, but each layer loses the ones that cost least. The cost of removing weight `q` of a row alone
is the Optimal Brain Surgeon error `w_q^2 / [H^-1]_qq` (Hassibi & Stork 1993; the one-shot saliency that
OBC, Frantar & Alistarh 2022, and SparseGPT's masks use), in units of the layer's output energy; divided by the
dense layer's `sum W H W^T` it becomes a share of that layer's output, so layers of any scale compare (the
relative error `reconstruction_error` reports). One threshold on that relative saliency over all layers' weights
is the allocation that minimises the summed single-weight errors for the budget; each layer's sparsity is the
share of its weights under the threshold, capped at `max_sparsity` so no layer is cut off.
"""

from __future__ import annotations

import torch

from spade_engine.pruning.inverse import InverseHessian
from spade_engine.pruning.layer import dense_energy


def relative_saliency(W: torch.Tensor, H: torch.Tensor, hinv: InverseHessian) -> torch.Tensor:
    """Each weight's OBS removal error `w^2 / [H_damp^-1]_qq` over the layer's dense output energy.

    Args:
        W: (G, R, d) grouped weight (`grouped_weight`); H: (G, d, d) its input Hessian; hinv: `inverse_hessian(H)`.

    Returns:
        (G, R, d) float32 saliencies, >= 0; inputs never seen on the calibration views (`hinv.dead`) cost 0.
    """
    diag = (hinv.U.float() ** 2).sum(1)  # (G, d): diag(U^T U) = diag(H_damp^-1)
    s = W.float() ** 2 / diag.unsqueeze(1)
    s[hinv.dead.unsqueeze(1).expand_as(s)] = 0.0
    return s / max(dense_energy(W, H), torch.finfo(torch.float32).tiny)


def obs_budget(saliencies: dict[str, torch.Tensor], sparsity: float, max_sparsity: float = 0.95) -> dict[str, float]:
    """Per-layer sparsities that prune `sparsity` of all the layers' weights together, cheapest first.

    Args:
        saliencies: layer name -> its weights' `relative_saliency` (any shape).
        sparsity: share of all these weights to prune, in [0, 1).
        max_sparsity: no layer goes above this (the budget then goes to the others), in (0, 1].

    Returns:
        Layer name -> sparsity in [0, max_sparsity], same order; their weight-count-weighted mean is `sparsity`
        (to one weight, unless the cap makes it unreachable: then every layer is at the cap).

    Raises:
        ValueError: a sparsity outside [0, 1) or a cap outside (0, 1].
    """
    if not 0 <= sparsity < 1 or not 0 < max_sparsity <= 1:
        raise ValueError(f"sparsity must be in [0, 1) and max_sparsity in (0, 1]; got {sparsity}, {max_sparsity}.")
    ordered = {n: s.flatten().sort().values for n, s in saliencies.items()}
    total = sum(len(s) for s in ordered.values())
    goal = round(sparsity * total)

    def pruned(tau: float) -> dict[str, int]:  # weights under the threshold per layer, capped
        return {
            n: min(int(torch.searchsorted(s, tau, right=True)), int(max_sparsity * len(s))) for n, s in ordered.items()
        }

    candidates = torch.cat(list(ordered.values())).unique()  # sorted thresholds where a count changes
    lo, hi = 0, len(candidates) - 1
    while lo < hi:  # the smallest threshold that prunes at least the goal (counts grow with the threshold)
        mid = (lo + hi) // 2
        if sum(pruned(float(candidates[mid])).values()) >= goal:
            hi = mid
        else:
            lo = mid + 1
    counts = pruned(float(candidates[lo])) if goal else dict.fromkeys(ordered, 0)
    excess = sum(counts.values()) - goal  # ties at the threshold: give the extra weights back, largest layers first
    for n in sorted(counts, key=lambda n: -counts[n]):
        give = min(excess, counts[n])
        counts[n] -= give
        excess -= give
    return {n: counts[n] / len(ordered[n]) for n in ordered}

"""Magnitude pruning baseline: zero the smallest |w| of the layer, no weight update."""

from __future__ import annotations

import torch

from spade_engine.pruning.inverse import InverseHessian


def magnitude_solve(
    W: torch.Tensor, hinv: InverseHessian | None, sparsity: float, blocksize: int = 128
) -> torch.Tensor:
    """Zero exactly `round(sparsity * numel)` weights of smallest magnitude over the whole layer.

    Same signature as `sparsegpt_solve`; `hinv` and `blocksize` are unused.
    """
    flat = W.reshape(-1)
    n_prune = int(round(sparsity * flat.numel()))
    out = flat.clone()
    if n_prune > 0:
        out[flat.abs().topk(n_prune, largest=False).indices] = 0
    return out.view_as(W)

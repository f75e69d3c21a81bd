"""The solver registry, the per-layer solve step (`prune_layer`) and the layer reconstruction error."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spade_engine.pruning.hessian import grouped_weight, ungroup_weight
from spade_engine.pruning.inverse import InverseHessian
from spade_engine.pruning.magnitude import magnitude_solve
from spade_engine.pruning.obc import obc_solve
from spade_engine.pruning.sparsegpt import sparsegpt_solve

Solver = Callable[[torch.Tensor, InverseHessian, float, int], torch.Tensor]

# Solver registry: name -> solve(W (G,R,d), hinv, sparsity, blocksize) -> W_hat.
SOLVERS: dict[str, Solver] = {"sparsegpt": sparsegpt_solve, "obc": obc_solve, "magnitude": magnitude_solve}


def reconstruction_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """Relative output error `||W X - W_hat X||^2 / ||W X||^2` on the calibration inputs, from `H = 2 X X^T / n`.

    Args:
        W, W_hat: (G, R, d) dense and pruned weights.
        H: (G, d, d) undampened Hessian of the layer inputs.
    """
    delta = (W - W_hat).to(H.dtype)
    num = torch.einsum("grd,gde,gre->", delta, H, delta)
    den = torch.einsum("grd,gde,gre->", W.to(H.dtype), H, W.to(H.dtype))
    return float(num / den.clamp_min(1e-30))


def prune_layer(
    layer: nn.Module, hinv: InverseHessian | None, sparsity: float, solver: str = "sparsegpt", blocksize: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune a Conv2d/Linear in place with a registered solver (the solve step of SparseGPT's lifecycle).

    Args:
        layer: the layer whose weight is replaced.
        hinv: `inverse_hessian` of its inputs' Hessian (`HessianAccumulator`); None for "magnitude".
        sparsity, solver, blocksize: see `SOLVERS`.

    Returns:
        (dense, pruned) grouped weights (G, R, d), e.g. for `reconstruction_error`.
    """
    W = grouped_weight(layer).clone()
    W_hat = SOLVERS[solver](W, hinv, sparsity, blocksize)
    layer.weight.data.copy_(ungroup_weight(layer, W_hat))
    return W, W_hat

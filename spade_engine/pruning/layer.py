"""`LayerPruner`: SparseGPT's per-layer lifecycle over a solver registry, and the layer reconstruction error."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spade_engine.pruning.hessian import HessianAccumulator, grouped_weight, ungroup_weight
from spade_engine.pruning.inverse import InverseHessian, inverse_hessian
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


class LayerPruner:
    """One layer through SparseGPT's lifecycle: `add_batch(inp)` from a hook → `prune(sparsity)` → `free()`.

    Args:
        layer: a Conv2d (grouped/depthwise included) or Linear; `prune` writes the new weight into it.
        dtype: Hessian precision; see `HessianAccumulator`.
        max_columns: column subsample per batch (None: all).
    """

    def __init__(
        self,
        layer: nn.Module,
        dtype: torch.dtype = torch.float32,
        max_columns: int | None = None,
        generator: torch.Generator | None = None,
    ):
        self.layer = layer
        self.acc = HessianAccumulator(layer, dtype, max_columns, generator)

    def add_batch(self, inp: torch.Tensor, out: torch.Tensor | None = None) -> None:
        self.acc.add_batch(inp)

    def prune(self, sparsity: float, damp: float = 0.01, blocksize: int = 128, solver: str = "sparsegpt") -> float:
        """Prune the layer in place; returns the relative reconstruction error."""
        W = grouped_weight(self.layer).clone()
        W_hat = SOLVERS[solver](W, inverse_hessian(self.acc.H, damp), sparsity, blocksize)
        self.layer.weight.data.copy_(ungroup_weight(self.layer, W_hat))
        return reconstruction_error(W, W_hat, self.acc.H)

    def free(self) -> None:
        self.acc = None

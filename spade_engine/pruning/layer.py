"""The solver registry, the per-layer solve step (`prune_layer`) and the layer reconstruction error."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from spade_engine.pruning.hessian import grouped_weight, ungroup_weight
from spade_engine.pruning.inverse import InverseHessian
from spade_engine.pruning.magnitude import magnitude_solve
from spade_engine.pruning.obc import obc_solve
from spade_engine.pruning.sparsegpt import check_mask_count, sparsegpt_solve


class Solver(Protocol):
    """`solve(W (G,R,d), hinv, sparsity, blocksize, mask_count="running") -> W_hat`, as `sparsegpt_solve`."""

    def __call__(
        self, W: torch.Tensor, hinv: InverseHessian | None, sparsity: float, blocksize: int, mask_count: str = ...
    ) -> torch.Tensor: ...


def _layer_wide(solve: Callable[..., torch.Tensor]) -> Solver:
    """A solver that picks its mask over the whole layer: accepts `mask_count` (a per-block rule) and ignores it."""

    @functools.wraps(solve)
    def solve_ignoring_mask_count(W, hinv, sparsity, blocksize=128, mask_count="running"):
        return solve(W, hinv, sparsity, blocksize)

    return solve_ignoring_mask_count


# Solver registry: name -> solve(W (G,R,d), hinv, sparsity, blocksize, mask_count) -> W_hat.
# OBC's sweep fallback for wide layers uses the running count until `obc_solve` takes `mask_count` itself.
SOLVERS: dict[str, Solver] = {
    "sparsegpt": sparsegpt_solve,
    "obc": _layer_wide(obc_solve),
    "magnitude": _layer_wide(magnitude_solve),
}


def block_columns(layer: nn.Module, blocksize: int | str) -> int:
    """Columns per solver block: `blocksize` itself, or for "kernel" the SPADE authors' block, kh*kw columns
    (one input channel) for a Conv2d and 1 column for a Linear.

    Raises:
        ValueError: `blocksize` is neither a positive int nor "kernel".
    """
    if blocksize == "kernel":
        return math.prod(layer.kernel_size) if isinstance(layer, nn.Conv2d) else 1
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f'blocksize must be a positive whole number or "kernel"; got {blocksize!r}.')
    return blocksize


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


CANCELLATION = 0.01  # `sweep_error` falls back to the direct product when less than this share of the loss remains


def sweep_error(
    W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor, hinv: InverseHessian, loss: torch.Tensor, energy: float
) -> float:
    """`reconstruction_error` from the SparseGPT sweep's own OBS losses: O(R d) instead of O(R d^2).

    With D = W - W_hat, the sweep's losses over live columns (`sparsegpt_solve(loss_out=...)`) equal
    `D (H + lambda I) D^T` there (the sequential OBS steps' losses add up to the quadratic error; SparseGPT's
    reference code sums the same `Losses`, arXiv 2301.00774), so
    `D H D^T = loss - lambda ||D_live||^2` (dead columns have zero rows in H and no coupling in the factor).
    Equal to `reconstruction_error` up to float rounding (tests: relative difference below 1e-4 in float32).
    Where the dampening term is more than `1 - CANCELLATION` of the losses (tiny activations beside dead
    inputs, whose `H_jj = 1` sets the dampening's scale, as in the reference), the subtraction would leave
    float32 noise, so the direct product is returned instead.

    Args:
        W, W_hat: (G, R, d) dense and pruned weights; H: (G, d, d) undampened Hessian; hinv: its factor the
            sweep used; loss: (G,) the sweep's `loss_out`; energy: `W H W^T` summed over groups (`dense_energy`).
    """
    diag = H.diagonal(dim1=1, dim2=2)  # (G, d)
    lam = hinv.damp * torch.where(hinv.dead, 1.0, diag).mean(dim=1).double()  # (G,) as `inverse_hessian`
    delta = (W - W_hat).to(H.dtype).pow(2).mul(~hinv.dead[:, None, :]).sum((1, 2), dtype=torch.float64)  # (G,)
    total = float(loss.sum())
    num = total - float((lam * delta).sum())
    if num < CANCELLATION * total:  # the dampening is nearly all of the loss: the difference is rounding noise
        return reconstruction_error(W, W_hat, H)
    return max(num, 0.0) / max(energy, 1e-30)


def dense_energy(W: torch.Tensor, H: torch.Tensor) -> float:
    """`sum_g W_g H_g W_g^T`, the denominator of `reconstruction_error` (W (G, R, d), H (G, d, d))."""
    W = W.to(H.dtype)
    return float(torch.einsum("grd,gde,gre->", W, H, W))


def prune_layer(
    layer: nn.Module,
    hinv: InverseHessian | None,
    sparsity: float,
    solver: str = "sparsegpt",
    blocksize: int | str = 128,
    mask_count: str = "running",
    loss_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune a Conv2d/Linear in place with a registered solver (the solve step of SparseGPT's lifecycle).

    Args:
        layer: the layer whose weight is replaced.
        hinv: `inverse_hessian` of its inputs' Hessian (`HessianAccumulator`); None for "magnitude".
        sparsity, solver: see `SOLVERS`.
        blocksize: columns per block, or "kernel" (see `block_columns`).
        mask_count: "running" or "reference" (see `sparsegpt_solve`; the reference count reaches slightly
            more than `sparsity`).
        loss_out: (G,) float64, filled by the "sparsegpt" solver with its OBS losses (for `sweep_error`); other
            solvers leave it unchanged.

    Returns:
        (dense, pruned) grouped weights (G, R, d), e.g. for `reconstruction_error`.

    Raises:
        ValueError: a bad `blocksize` or `mask_count`.
    """
    columns = block_columns(layer, blocksize)
    check_mask_count(mask_count)
    W = grouped_weight(layer).clone()
    if solver == "sparsegpt" and loss_out is not None:
        W_hat = sparsegpt_solve(W, hinv, sparsity, columns, mask_count=mask_count, loss_out=loss_out)
    else:
        W_hat = SOLVERS[solver](W, hinv, sparsity, columns, mask_count=mask_count)
    layer.weight.data.copy_(ungroup_weight(layer, W_hat))
    return W, W_hat

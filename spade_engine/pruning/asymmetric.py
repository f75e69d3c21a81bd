"""Asymmetric calibration: prune a layer so that its output on the *pruned* prefix's inputs matches the *dense*
layer's output on the dense network's inputs.

SparseGPT's sequential mode (arXiv 2301.00774, section 3.5) minimises `||W X_p - W_hat X_p||^2`: each layer
copies its dense weights' behaviour on the inputs the already-pruned prefix gives, so the error of earlier layers
is never repaired and it compounds (on EfficientNet-Lite through the BatchNorms). The asymmetric objective
(GPTAQ, Li et al., ICML 2025, arXiv 2504.02692; OBC's "target correction" in spirit) targets the dense output:

    min_W_hat ||W X_d - W_hat X_p||^2  =  ||(W* - W_hat) X_p||^2 + const,
    W* = W X_d X_p^T (X_p X_p^T)^-1 = W + W (X_d - X_p) X_p^T H^-1,

so the usual OBS sweep on `W*` with the pruned inputs' Hessian `H = X_p X_p^T` solves it. `H^-1` is the dampened
inverse the sweep uses anyway, and when `X_d == X_p` (the first pruned layer) `W* == W` exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from spade_engine.pruning.depthwise import column_products, depthwise_eligible, grid_products, grid_size
from spade_engine.pruning.hessian import layer_columns, sampled_columns
from spade_engine.pruning.inverse import InverseHessian
from spade_engine.pruning.padding import input_padding


def paired_moments(
    layer: nn.Module,
    x_dense: torch.Tensor,
    x_pruned: torch.Tensor,
    max_columns: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`H = 2/n X_p X_p^T` and the cross moment `C = 2/n X_d X_p^T`, per group, over the same columns.

    A depthwise conv uses every column (`depthwise.column_products`: its groups are only kh*kw wide) up to
    `depthwise.DEPTHWISE_ALL_COLUMNS` times `max_columns`, beyond that the columns of a sub-grid of positions
    (`depthwise.grid_products`), as the dense pass's Hessians do (`HessianAccumulator.path`); a 1x1 conv reads
    its columns straight from the channels; other layers unfold (or gather) a uniform random subset of at most
    `max_columns` columns, the same for both inputs.

    Args:
        layer: a Conv2d (any groups, padding) or Linear.
        x_dense, x_pruned: the layer's input in the dense and in the pruned network, same shape (B, ...); one
            tensor passed as both (the first pruned layer) gives C = H, computed once.
        max_columns: cap on the columns of the subset; None: all.
        generator: seeded generator for the subset.

    Returns:
        (H, C), each (G, d, d) float32, in the column order of `layer_columns`.

    Raises:
        ValueError: the two inputs differ in shape.
    """
    if x_dense.shape != x_pruned.shape:
        raise ValueError(f"dense and pruned inputs differ in shape: {tuple(x_dense.shape)} vs {tuple(x_pruned.shape)}")
    conv = isinstance(layer, nn.Conv2d)
    n = _conv_columns(layer, x_pruned) if conv else x_pruned.numel() // x_pruned.shape[-1]
    same = x_dense is x_pruned  # the first pruned layer: C == H, computed once
    if depthwise_eligible(layer):
        return _depthwise_moments(layer, x_dense.float(), x_pruned.float(), same, grid_size(n, max_columns), generator)
    idx = None
    if max_columns is not None and n > max_columns:
        idx = torch.randperm(n, generator=generator)[:max_columns].to(x_pruned.device)

    def columns(x: torch.Tensor) -> torch.Tensor:  # (G, d, N)
        if conv and _pointwise(layer):
            return _channel_columns(x, idx)
        if conv and idx is not None:
            return sampled_columns(layer, x, idx)
        cols = layer_columns(layer, x)
        return cols if idx is None else cols[..., idx]

    xp = columns(x_pruned)
    xd = xp if same else columns(x_dense)
    xd, xp = xd.float(), xp.float()
    n = xp.shape[-1]
    H = 2.0 / n * xp @ xp.transpose(1, 2)
    return H, H if same else 2.0 / n * xd @ xp.transpose(1, 2)


def _pointwise(layer: nn.Conv2d) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped conv: its columns are its input's channels at each position."""
    return (layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.groups == 1
            and input_padding(layer, 1, 1)[0] == (0, 0, 0, 0))  # fmt: skip


def _channel_columns(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    """A pointwise conv's columns (1, C, N): the channels of `x` (B, C, H, W) at every position, image-major as
    `layer_columns`, or at the positions `idx` only (gathered without copying the whole input)."""
    c = x.shape[1]
    if idx is None:
        return x.transpose(0, 1).reshape(1, c, -1)
    hw = x.shape[2] * x.shape[3]
    return x.flatten(2)[idx // hw, :, idx % hw].T.unsqueeze(0)  # (1, C, N)


def _depthwise_moments(layer: nn.Conv2d, x_dense: torch.Tensor, x_pruned: torch.Tensor, same: bool = False,
                       grid: int = 1, generator: torch.Generator | None = None):  # fmt: skip
    """`paired_moments` of a depthwise conv over every column (`depthwise.column_products`) or, with `grid` > 1,
    over a sub-grid of positions (`depthwise.grid_products`); `same`: the two inputs are one tensor, C == H."""
    lefts = [x_pruned] if same else [x_pruned, x_dense]
    if grid > 1:
        sums, n = grid_products(layer, x_pruned, lefts, grid, generator)
    else:
        sums, n = column_products(layer, x_pruned, lefts), _conv_columns(layer, x_pruned)
    H = 2.0 / n * (sums[0] + sums[0].mT) / 2
    return H, H if same else 2.0 / n * sums[1]


def _conv_columns(layer: nn.Conv2d, x: torch.Tensor) -> int:
    """Columns (images times output positions) of a conv's input `x` (B, C, H, W)."""
    (left, right, top, bottom), _ = input_padding(layer, *x.shape[-2:])
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    h_out = (x.shape[2] + top + bottom - dh * (kh - 1) - 1) // sh + 1
    w_out = (x.shape[3] + left + right - dw * (kw - 1) - 1) // sw + 1
    return x.shape[0] * max(h_out, 0) * max(w_out, 0)


def asymmetric_target(W: torch.Tensor, H: torch.Tensor, C: torch.Tensor, hinv: InverseHessian) -> torch.Tensor:
    """The dense-output target `W* = W + W (C - H) H_damp^-1` whose OBS sweep solves the asymmetric objective.

    Args:
        W: (G, R, d) grouped dense weight (`grouped_weight`).
        H, C: (G, d, d) from `paired_moments`.
        hinv: `inverse_hessian(H, damp)` (U^T U = H_damp^-1).

    Returns:
        (G, R, d) float32 `W*`; equal to `W` when `C == H`.
    """
    U = hinv.U.float()
    delta = (W.float() @ (C - H)) @ U.transpose(1, 2) @ U  # (G, R, d)
    delta[..., hinv.dead.unsqueeze(1).expand_as(delta)] = 0.0  # inputs never seen on the pruned side
    return W.float() + delta

"""Layer-input Hessians `H = 2/n * sum x x^T` from forward-hook inputs (conv inputs unfolded as in im2col)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRUNABLE = (nn.Conv2d, nn.Linear)


def layer_columns(layer: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """The layer's input as columns per group: (G, d, N), so that `out = W_g @ X_g` for each group g.

    Args:
        layer: a Conv2d (any groups, padding mode, stride, dilation) or a Linear.
        inp: the tensor the layer received.
    """
    if isinstance(layer, nn.Linear):
        return inp.reshape(-1, inp.shape[-1]).t().unsqueeze(0)  # (1, d, N)
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    inp = F.pad(inp, layer._reversed_padding_repeated_twice, mode=mode)
    cols = F.unfold(inp, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (B, C*kh*kw, L)
    b, cd, n_pos = cols.shape
    g = layer.groups
    cols = cols.view(b, g, cd // g, n_pos).permute(1, 2, 0, 3)  # (G, d, B, L)
    return cols.reshape(g, cd // g, b * n_pos)


def grouped_weight(layer: nn.Module) -> torch.Tensor:
    """Layer weight as (G, R, d): rows are output units of group g, columns match `layer_columns`."""
    w = layer.weight.detach()
    g = getattr(layer, "groups", 1)
    return w.reshape(g, w.shape[0] // g, -1)


def ungroup_weight(layer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Inverse of `grouped_weight`: back to the layer's weight shape."""
    return w.reshape(layer.weight.shape)


class HessianAccumulator:
    """Running mean of `2 x x^T` over the columns a layer sees, per group.

    Args:
        layer: the Conv2d/Linear whose inputs are accumulated.
        dtype: float32 (default; what the reference uses, half the memory) or float64.
        max_columns: cap on the columns sampled per `add_batch` call (None: all). Early convs see
            B*H*W columns; a uniform random subset gives an unbiased estimate of the same mean at a
            fraction of the `d^2 * N` cost.
        generator: seeded generator for the column subsample (determinism).
    """

    def __init__(
        self,
        layer: nn.Module,
        dtype: torch.dtype = torch.float32,
        max_columns: int | None = None,
        generator: torch.Generator | None = None,
    ):
        self.layer = layer
        w = grouped_weight(layer)
        self.H = torch.zeros(w.shape[0], w.shape[2], w.shape[2], dtype=dtype, device=w.device)  # (G, d, d)
        self.nsamples = 0
        self.max_columns = max_columns
        self.generator = generator

    def add_batch(self, inp: torch.Tensor) -> None:
        """Fold one batch of layer inputs into the running Hessian."""
        x = layer_columns(self.layer, inp.detach()).to(self.H.dtype)  # (G, d, N)
        n = x.shape[-1]
        if self.max_columns is not None and n > self.max_columns:
            idx = torch.randperm(n, generator=self.generator)[: self.max_columns].to(x.device)
            x = x[..., idx]
            n = self.max_columns
        total = self.nsamples + n
        self.H.mul_(self.nsamples / total)
        self.H.baddbmm_(x, x.transpose(1, 2), alpha=2.0 / total)
        self.nsamples = total

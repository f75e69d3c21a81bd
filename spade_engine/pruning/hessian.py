"""Layer-input Hessians `H = 2/n * sum x x^T` from forward-hook inputs (conv inputs unfolded as in im2col)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.pruning.depthwise import (
    depthwise_eligible,
    depthwise_hessian_sum,
    grid_products,
    grid_size,
)
from spade_engine.pruning.padding import input_padding
from spade_engine.pruning.shifted import shift_eligible, shift_flops, shifted_hessian_sum

PRUNABLE = (nn.Conv2d, nn.Linear)


def layer_columns(layer: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """The layer's input as columns per group: (G, d, N), so that `out = W_g @ X_g` for each group g.

    Args:
        layer: a Conv2d (any groups, padding mode, stride, dilation; the padding its forward applies, see
            `padding.input_padding`) or a Linear.
        inp: the tensor the layer received.
    """
    if isinstance(layer, nn.Linear):
        return inp.reshape(-1, inp.shape[-1]).t().unsqueeze(0)  # (1, d, N)
    pads, mode = input_padding(layer, *inp.shape[-2:])
    inp = F.pad(inp, pads, mode=mode)
    cols = F.unfold(inp, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (B, C*kh*kw, L)
    b, cd, n_pos = cols.shape
    g = layer.groups
    cols = cols.view(b, g, cd // g, n_pos).permute(1, 2, 0, 3)  # (G, d, B, L)
    return cols.reshape(g, cd // g, b * n_pos)


def sampled_columns(layer: nn.Conv2d, inp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Columns `index` of `layer_columns(layer, inp)` without unfolding the whole input: (G, d, len(index)).

    Column `i` is output position `i % L` of image `i // L` (L positions per image), as in `layer_columns`.
    The patches are gathered straight from the padded input, so early convs with millions of positions cost
    only what the sample needs.
    """
    pads, mode = input_padding(layer, *inp.shape[-2:])
    padded = F.pad(inp, pads, mode=mode)  # (B, C, Hp, Wp)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    h_out = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    w_out = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    b, pos = index // (h_out * w_out), index % (h_out * w_out)
    dy = (torch.arange(kh, device=inp.device) * dh).repeat_interleave(kw)  # (K,) kernel offsets, row-major
    dx = (torch.arange(kw, device=inp.device) * dw).repeat(kh)
    ys = (pos // w_out * sh).unsqueeze(1) + dy  # (N, K)
    xs = (pos % w_out * sw).unsqueeze(1) + dx
    patches = padded[b.unsqueeze(1), :, ys, xs]  # (N, K, C)
    n, k, c = patches.shape
    cols = patches.permute(2, 1, 0).reshape(c * k, n)  # (C*K, N), channel-major like unfold
    g = layer.groups
    return cols.view(g, c * k // g, n)


def grouped_weight(layer: nn.Module) -> torch.Tensor:
    """Layer weight as (G, R, d): rows are output units of group g, columns match `layer_columns`."""
    w = layer.weight.detach()
    g = getattr(layer, "groups", 1)
    return w.reshape(g, w.shape[0] // g, -1)


def ungroup_weight(layer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Inverse of `grouped_weight`: back to the layer's weight shape."""
    return w.reshape(layer.weight.shape)


MATMULS = ("auto", "exact", "bfloat16")
SYMMETRIC_BLOCK = 768  # Hessians wider than this are accumulated by blocks of about this many columns, upper ones only
# The shifted-correlation path is taken while its multiply-adds are at most this many times the unfold path's
# (at the `max_columns` cap): the unfold path also copies or gathers kh*kw copies of the input, which the
# shifted path does not. Measured in the engine on ResNet-18's stride-1 3x3 convs (`prune_speed.py --per-layer
# --compare-paths --threads 1`, 2 batches of 64 views, 224 px; multiply-adds shifted / capped unfold in
# brackets): layer1 0.75 s vs 1.2 s (1.06), layer2 0.66 vs 2.7 (0.38), layer3 0.62 vs 2.2 (0.24), layer4 1.1
# vs 1.85 (0.15).
SHIFT_ADVANTAGE = 2.0
EXACT_SUMS = {"shift": shifted_hessian_sum, "depthwise": depthwise_hessian_sum}  # path -> exact `X @ X.T` sum


def default_matmul(device: torch.device | str) -> str:
    """The `matmul` that `"auto"` resolves to: "bfloat16" on CUDA (tensor cores), "exact" on CPUs.

    On the CPU bf16 products are not a speed-up with the shifted-correlation path: measured 2026-12-01 (torch
    2.14, AVX512-BF16 EPYC, 2 threads, ResNet-18, 128 views at 224 px) the Hessian phase took 22.5-23.8 s in
    bf16 against 8.0-9.4 s exact, and the held-out layer error rose (0.0796 / 0.0363 against 0.0755 / 0.0332
    at 90% / 80%, `benchmarks/vs_reference.py --hessian-matmul bfloat16`).
    """
    return "bfloat16" if torch.device(device).type == "cuda" else "exact"


def symmetric_blocks(d: int, block: int | None = None) -> list[tuple[slice, slice]]:
    """Index pairs (rows, cols) of the upper block triangle of a (d, d) matrix cut into near-equal blocks.

    Args:
        d: matrix side; block: target block side (default `SYMMETRIC_BLOCK`).

    With n blocks the products cost (n + 1) / 2n of the full `X @ X.T` (58% for d = 4608).
    """
    n = max(1, -(-d // (block or SYMMETRIC_BLOCK)))
    edges = [round(i * d / n) for i in range(n + 1)]
    cuts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [(cuts[i], cuts[j]) for i in range(n) for j in range(i, n)]


class HessianAccumulator:
    """Running mean of `2 x x^T` over the columns a layer sees, per group.

    `H` (G, d, d) is the Hessian of the layer-wise reconstruction loss `||W X - W_hat X||^2 / n`, as in
    SparseGPT (arXiv 2301.00774, eq. 1) and the SPADE authors' `add_batch`.

    Fast paths, each pinned to the exact sum by tests: a depthwise conv's H (kh*kw wide per channel) is one
    batched product over all its columns (`depthwise_hessian_sum`, exact); a stride-1, zero-padded conv's H comes from shifted
    channel correlations over the whole input map (`shifted_hessian_sum`, exact, all columns) while that costs at
    most `SHIFT_ADVANTAGE` times the multiply-adds of the unfold path at the `max_columns` cap; otherwise the
    columns are unfolded and only the upper block triangle of `x x^T` is computed (the lower one is mirrored
    when `H` is read; the same sums, so exact); and with `matmul="bfloat16"` the
    products take bf16 inputs (float32 accumulation inside the matmul, one bf16 rounding of each batch's
    product): relative error of H about 0.2-0.4% (Frobenius), below the 1% dampening added before the inverse.

    Args:
        layer: the Conv2d/Linear whose inputs are accumulated.
        dtype: dtype of H: float32 (default; what the reference uses, half the memory) or float64.
        max_columns: cap on the columns sampled per `add_batch` call by the unfold path (None: all). Early
            convs see B*H*W columns; a uniform random subset gives an unbiased estimate of the same mean at a
            fraction of the `d^2 * N` cost. Batches taking the shifted path use all their columns (exact).
        generator: seeded generator for the column subsample (determinism).
        matmul: "exact" (products in `dtype`), "bfloat16" or "auto" (`default_matmul` of the layer's device).

    Raises:
        ValueError: unknown `matmul`.
    """

    def __init__(
        self,
        layer: nn.Module,
        dtype: torch.dtype = torch.float32,
        max_columns: int | None = None,
        generator: torch.Generator | None = None,
        matmul: str = "exact",
    ):
        if matmul not in MATMULS:
            raise ValueError(f"matmul must be one of {', '.join(MATMULS)}; got {matmul!r}.")
        self.layer = layer
        w = grouped_weight(layer)
        self._H = torch.zeros(w.shape[0], w.shape[2], w.shape[2], dtype=dtype, device=w.device)  # (G, d, d)
        self._mirrored = True
        self.nsamples = 0
        self.max_columns = max_columns
        self.generator = generator
        self.matmul = default_matmul(w.device) if matmul == "auto" else matmul
        self._blocks = symmetric_blocks(w.shape[2])

    @property
    def H(self) -> torch.Tensor:
        """(G, d, d) the running Hessian, symmetric."""
        if not self._mirrored:
            for rows, cols in self._blocks:
                if rows != cols:
                    self._H[:, cols, rows] = self._H[:, rows, cols].transpose(1, 2)
                else:
                    block = self._H[:, rows, cols]
                    block.copy_(block.triu() + block.triu(1).transpose(1, 2))
            self._mirrored = True
        return self._H

    def add_batch(self, inp: torch.Tensor) -> None:
        """Fold one batch of layer inputs into the running Hessian."""
        inp = inp.detach()
        path = self.path(inp.shape)
        if path != "unfold":  # sums over every column (or, "depthwise-grid", over a sub-grid of positions)
            dtype = torch.bfloat16 if self.matmul == "bfloat16" else self._H.dtype
            if path == "depthwise-grid":
                x = inp.to(dtype)
                grid = grid_size(self._n_columns(inp.shape), self.max_columns)
                (sums,), n = grid_products(self.layer, x, [x], grid, self.generator)
                sums = ((sums + sums.mT) / 2).to(self._H.dtype)  # exactly symmetric
            else:
                sums, n = EXACT_SUMS[path](self.layer, inp, dtype, self._H.dtype), self._n_columns(inp.shape)
            total = self.nsamples + n
            self._H.mul_(self.nsamples / total)
            self._H.add_(sums, alpha=2.0 / total)
            self.nsamples = total
            return
        if self.matmul == "bfloat16":
            inp = inp.to(torch.bfloat16)  # gather the columns at half the bytes
        n = self._n_columns(inp.shape)
        if self.max_columns is not None and n > self.max_columns:
            idx = torch.randperm(n, generator=self.generator)[: self.max_columns].to(inp.device)
            if isinstance(self.layer, nn.Conv2d):
                x = sampled_columns(self.layer, inp, idx)
            else:
                x = layer_columns(self.layer, inp)[..., idx]
            n = self.max_columns
        else:
            x = layer_columns(self.layer, inp)  # (G, d, N)
        if self.matmul == "exact":
            x = x.to(self._H.dtype)
        total = self.nsamples + n
        self._H.mul_(self.nsamples / total)
        for rows, cols in self._blocks:  # upper block triangle of x x^T
            block = torch.bmm(x[:, rows], x[:, cols].transpose(1, 2))  # (G, |rows|, |cols|)
            self._H[:, rows, cols].add_(block, alpha=2.0 / total)
        self._mirrored = False
        self.nsamples = total

    def path(self, shape: torch.Size) -> str:
        """How `add_batch` folds an input of `shape`: "depthwise" (`depthwise_hessian_sum`, a depthwise conv
        with at most `depthwise.DEPTHWISE_ALL_COLUMNS` times `max_columns` columns), "depthwise-grid" (a larger one: the
        columns of a sub-grid of positions, `depthwise.grid_products`), "shift" (`shifted`) or "unfold" (the
        columns, subsampled to `max_columns`)."""
        if depthwise_eligible(self.layer) and len(shape) == 4:
            return "depthwise" if grid_size(self._n_columns(shape), self.max_columns) == 1 else "depthwise-grid"
        return "shift" if self.shifted(shape) else "unfold"

    def shifted(self, shape: torch.Size) -> bool:
        """Whether a conv's input of `shape` qualifies for the shifted-correlation path (see the class); depthwise
        convs take their own path (`path`)."""
        if not shift_eligible(self.layer) or len(shape) != 4:
            return False
        g, d = self._H.shape[0], self._H.shape[-1]
        n = self._n_columns(shape)
        if n < 1:
            return False
        cap = n if self.max_columns is None else min(n, self.max_columns)
        diagonal = sum(rows == cols for rows, cols in self._blocks)
        unfold = len(self._blocks) / diagonal**2 * g * d * d * cap  # multiply-adds of the upper block triangle
        return shift_flops(self.layer, shape) <= SHIFT_ADVANTAGE * unfold

    def _n_columns(self, shape: torch.Size) -> int:
        """Columns (output positions times batch) of an input of `shape`."""
        if isinstance(self.layer, nn.Linear):
            return math.prod(shape) // shape[-1]
        c = self.layer
        (left, right, top, bottom), _ = input_padding(c, shape[2], shape[3])
        hp, wp = shape[2] + top + bottom, shape[3] + left + right
        h_out = (hp - c.dilation[0] * (c.kernel_size[0] - 1) - 1) // c.stride[0] + 1
        w_out = (wp - c.dilation[1] * (c.kernel_size[1] - 1) - 1) // c.stride[1] + 1
        return shape[0] * max(h_out, 0) * max(w_out, 0)

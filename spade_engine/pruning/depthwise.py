"""A depthwise conv's input Hessians as batched products: each group sees one input channel, so its Hessian is
only kh*kw wide, `H_c = X_c X_c^T` with X_c the channel's (kh*kw, N) unfolded columns.

Two exact ways to the same sums, chosen per layer by their multiply-adds (`rows_cheaper`):

- **columns**: one strided copy of the padded input straight into a per-channel layout, (C, K, b*L)
  (`strided_columns`, faster than `F.unfold` and a permutation), then one `bmm`: C*K^2 multiply-adds per output
  position, but the copy holds K = kh*kw copies of the input.
- **row Gram**: the kh row-shifted copies of the padded input side by side, (C, b*H_out, kh*W_pad)
  (`row_columns`), and their Gram matrix (C, kh*W_pad, kh*W_pad); each tap pair's sum is a strided diagonal of it
  (`band_sum`: the column shifts). kh copies instead of kh*kw, and one larger, more efficient `bmm`; it computes
  every pair of padded columns, so it wins on narrow maps and large kernels (EfficientNet's 5x5 convs at 14 and
  7 px: about 2x faster per layer on this CPU, see `ROWS_ADVANTAGE`) and loses on wide stride-2 maps. On Lite0's
  first SPADE run all depthwise moments together went 1.27x faster (`benchmarks/real_network_speed.py`,
  `assets/benchmarks/real_network_speed_rowgram_2026-12-07.txt`).

Every column is counted, up to `DEPTHWISE_ALL_COLUMNS` times the engine's column cap; beyond it (the early, large
maps) `grid_products` takes every column of a regular sub-grid of output positions, one in `grid`**2 at a random
offset per chunk of images: the columns route's strided copy at a `grid` times larger stride (no gather), an unbiased
estimate of the full moments (the offsets partition the positions: summed over all offsets it is `column_products`).
The padding is the one the forward applies (`padding.input_padding`: zeros, TF "same", reflect, replicate,
circular), any stride and dilation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.pruning.padding import input_padding

CHUNK_BYTES = 32 * 2**20  # unfolded columns held at once (a few images of an early layer)
# The row Gram is used while its multiply-adds are at most this many times the columns path's: it copies kw
# times fewer bytes. Measured (2026-12-07, one thread, 64 views, two runs under other load, so +-20%;
# multiply-adds ratio in brackets): 672 ch at 14 px, 5x5: 2.1-2.4x faster (0.93); 1152 at 7, 5x5: 2.2x (0.69);
# 240 at 28, 5x5: 1.5-2.6x (1.46); 480 at 14, 3x3: 1.2-1.8x (2.0); 672 at 14, 5x5 stride 2: 0.8-1.5x (1.9);
# 144 at 56, 3x3 stride 2: 0.83x (13); 96 at 112, 3x3 stride 2: 0.67x (26).
ROWS_ADVANTAGE = 4.0
# A depthwise conv's batch uses all its columns while they are at most this many times the column cap; beyond it a
# sub-grid of positions (`grid_size`, `grid_products`).
DEPTHWISE_ALL_COLUMNS = 2


def depthwise_eligible(layer: nn.Module) -> bool:
    """True for a Conv2d whose every group reads one input channel (depthwise, any channel multiplier)."""
    return isinstance(layer, nn.Conv2d) and layer.in_channels == layer.groups


def depthwise_hessian_sum(
    layer: nn.Conv2d, inp: torch.Tensor, dtype: torch.dtype | None = None, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """`sum_p x_p x_p^T` over every unfolded column p of a depthwise conv's input, per group.

    Equal (up to rounding) to `X @ X.T` with `X = layer_columns(layer, inp)`.

    Args:
        layer: a Conv2d with `depthwise_eligible(layer)`.
        inp: (B, C, H, W) the tensor the layer received.
        dtype: dtype of the products' inputs (default: `inp`'s); out_dtype: of the result (default: `dtype`).

    Returns:
        (G, K, K) sums (not means), exactly symmetric, K = kh * kw, columns ordered as `layer_columns`.

    Raises:
        ValueError: the layer is not depthwise.
    """
    if not depthwise_eligible(layer):
        raise ValueError("depthwise_hessian_sum needs a Conv2d with one input channel per group.")
    x = inp.to(dtype or inp.dtype)
    (out,) = column_products(layer, x, [x])
    out = out.to(out_dtype or dtype or inp.dtype)
    return (out + out.mT) / 2  # symmetric up to rounding; made exactly so


def column_products(layer: nn.Conv2d, right: torch.Tensor, lefts: list[torch.Tensor]) -> list[torch.Tensor]:
    """`X_l X_r^T` per channel over every unfolded column, for each `left` input against one `right` input.

    Args:
        layer: a depthwise Conv2d (`depthwise_eligible`).
        right: (B, C, H, W) a layer input; lefts: inputs of the same shape (passing `right` itself among them
            gives its own Hessian sum without a second copy).

    Returns:
        one (C, K, K) sum per left, K = kh*kw in `layer_columns`' order, in the inputs' dtype.

    Raises:
        ValueError: an input's shape differs from `right`'s.
    """
    if any(x.shape != right.shape for x in lefts):
        raise ValueError(f"inputs differ in shape: {[tuple(x.shape) for x in lefts]} vs {tuple(right.shape)}")
    b, c, h, w = right.shape
    pads, mode = input_padding(layer, h, w)
    hp, wp = h + pads[2] + pads[3], w + pads[0] + pads[1]
    (kh, kw) = layer.kernel_size
    rows = rows_cheaper(layer, hp, wp)
    # the products accumulate over chunks of images: (C, K, K) tap sums, or (C, kh*Wp, kh*Wp) Grams whose
    # diagonals are summed once at the end; a chunk's copies hold kh (rows) or kh*kw (columns) copies of it
    width = kh * wp if rows else kh * kw
    outs = [torch.zeros(c, width, width, dtype=right.dtype, device=right.device) for _ in lefts]
    copies = kh if rows else kh * kw
    step = max(1, CHUNK_BYTES // max(c * copies * hp * wp * right.element_size(), 1))  # images per chunk
    columns = row_columns if rows else strided_columns

    def cols(x: torch.Tensor, i: int) -> torch.Tensor:  # images i .. i+step-1
        return columns(layer, F.pad(x[i : i + step], pads, mode=mode).contiguous())

    for i in range(0, b, step):
        r = cols(right, i)
        for out, x in zip(outs, lefts, strict=True):
            left = r if x is right else cols(x, i)
            out += left.mT @ r if rows else left @ r.mT
    if rows:
        outs = [band_sum(layer, g, wp) for g in outs]
    return outs


def grid_size(n_columns: int, max_columns: int | None) -> int:
    """The sub-grid step that brings `n_columns` near `max_columns` (`grid_products`): 1 while they are at most
    `DEPTHWISE_ALL_COLUMNS` times the cap (every column, `column_products`), else ceil(sqrt(n / cap))."""
    if max_columns is None or n_columns <= DEPTHWISE_ALL_COLUMNS * max_columns:
        return 1
    return math.ceil(math.sqrt(n_columns / max_columns))


def grid_products(
    layer: nn.Conv2d,
    right: torch.Tensor,
    lefts: list[torch.Tensor],
    grid: int,
    generator: torch.Generator | None = None,
    offset: tuple[int, int] | None = None,
) -> tuple[list[torch.Tensor], int]:
    """`column_products` over a sub-grid of output positions: rows i = oy + grid*t, columns j = ox + grid*t.

    Args:
        layer: a depthwise Conv2d (`depthwise_eligible`); right, lefts: as in `column_products`.
        grid: keep one output position in `grid` along each axis (1: every column, the same as `column_products`).
        generator: draws the offset (oy, ox) in [0, grid)^2 anew for each chunk of images.
        offset: one fixed offset for every chunk instead (tests: summed over all offsets the sums are exact).

    Returns:
        (one (C, K, K) sum per left, the number of columns summed over).

    Raises:
        ValueError: an input's shape differs from `right`'s, or `grid` < 1.
    """
    if any(x.shape != right.shape for x in lefts):
        raise ValueError(f"inputs differ in shape: {[tuple(x.shape) for x in lefts]} vs {tuple(right.shape)}")
    if grid < 1:
        raise ValueError(f"grid must be at least 1; got {grid}.")
    b, c, h, w = right.shape
    pads, mode = input_padding(layer, h, w)
    hp, wp = h + pads[2] + pads[3], w + pads[0] + pads[1]
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    h_out, w_out = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    grid = max(1, min(grid, h_out, w_out))  # every offset keeps at least one position
    k = kh * kw
    outs = [torch.zeros(c, k, k, dtype=right.dtype, device=right.device) for _ in lefts]
    step = max(1, CHUNK_BYTES * grid * grid // max(c * k * hp * wp * right.element_size(), 1))  # images per chunk
    n = 0
    for i in range(0, b, step):
        oy, ox = offset or torch.randint(grid, (2,), generator=generator).tolist()
        r = _grid_columns(layer, right[i : i + step], pads, mode, grid, oy, ox)
        n += r.shape[-1]
        for out, x in zip(outs, lefts, strict=True):
            out += (r if x is right else _grid_columns(layer, x[i : i + step], pads, mode, grid, oy, ox)) @ r.mT
    return outs, n


def _grid_columns(layer: nn.Conv2d, x: torch.Tensor, pads, mode: str, grid: int, oy: int, ox: int) -> torch.Tensor:
    """(C, K, B*L') the columns of `x` (B, C, H, W) at output positions (oy + grid*t, ox + grid*u)."""
    (sh, sw) = layer.stride
    padded = F.pad(x, pads, mode=mode)[..., oy * sh :, ox * sw :].contiguous()
    return strided_columns(layer, padded, (sh * grid, sw * grid))


def rows_cheaper(layer: nn.Conv2d, hp: int, wp: int) -> bool:
    """Whether the row Gram's multiply-adds, C*(kh*W_pad)^2 per output row, are at most `ROWS_ADVANTAGE` times
    the columns path's, C*K^2*W_out per output row, on a padded (hp, wp) input."""
    kw, sw, dw = layer.kernel_size[1], layer.stride[1], layer.dilation[1]
    w_out = (wp - dw * (kw - 1) - 1) // sw + 1
    return w_out > 0 and wp * wp <= ROWS_ADVANTAGE * kw * kw * w_out


def row_columns(layer: nn.Conv2d, padded: torch.Tensor) -> torch.Tensor:
    """The kh row-shifted copies of a padded input side by side, per channel: (C, B*H_out, kh*W_pad); row
    (b, i) holds padded rows i*sh + u*dh for u = 0..kh-1, whole. `band_sum` turns their Gram into tap sums."""
    (kh, _), (sh, _), (dh, _) = layer.kernel_size, layer.stride, layer.dilation
    b, c, hp, wp = padded.shape
    h_out = (hp - dh * (kh - 1) - 1) // sh + 1
    s_b, s_c, s_h, s_w = padded.stride()
    rows = padded.as_strided((b, c, kh, h_out, wp), (s_b, s_c, s_h * dh, s_h * sh, s_w))
    return rows.permute(1, 0, 3, 2, 4).reshape(c, b * h_out, kh * wp)


def band_sum(layer: nn.Conv2d, gram: torch.Tensor, wp: int) -> torch.Tensor:
    """Tap-pair sums (C, K, K) from the Gram (C, kh*W_pad, kh*W_pad) of `row_columns`: taps (u1, v1), (u2, v2)
    sum the gram entries [(u1, j*sw + v1*dw), (u2, j*sw + v2*dw)] over the output columns j."""
    (kh, kw), (_, sw), (_, dw) = layer.kernel_size, layer.stride, layer.dilation
    w_out = (wp - dw * (kw - 1) - 1) // sw + 1
    g = gram.contiguous()
    c, row = g.shape[0], g.stride(1)  # row = kh*W_pad
    strides = (g.stride(0), wp * row, dw * row, wp, dw, sw * (row + 1))  # channel, u1, v1, u2, v2, j
    return g.as_strided((c, kh, kw, kh, kw, w_out), strides).sum(-1).reshape(c, kh * kw, kh * kw)


def strided_columns(layer: nn.Conv2d, padded: torch.Tensor, stride: tuple[int, int] | None = None) -> torch.Tensor:
    """The unfolded columns of an already padded input, per channel: (C, kh*kw, B*L), by one strided copy
    (faster than `F.unfold` and its permutation on a CPU; the columns in `layer_columns`' order).

    Args:
        layer: the conv (kernel, dilation; stride unless given); padded: (B, C, Hp, Wp) its input, padded.
        stride: output positions' stride instead of the layer's (`grid_products`' sub-grid).
    """
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    sh, sw = stride or layer.stride
    b, c, hp, wp = padded.shape
    h_out, w_out = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    s_b, s_c, s_h, s_w = padded.stride()
    taps = padded.as_strided((b, c, kh, kw, h_out, w_out), (s_b, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    return taps.permute(1, 2, 3, 0, 4, 5).reshape(c, kh * kw, b * h_out * w_out)  # (C, K, B*L)

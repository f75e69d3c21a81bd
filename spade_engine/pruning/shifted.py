"""A stride-1 conv's input Hessian from shifted channel correlations, without unfolding (im2col).

For a k x k conv the unfolded column of output position p holds `x(p + o_t)` for each kernel tap t (offset
`o_t`). So the Hessian block of taps (a, b) is `S_ab = sum_p x(p + o_a) x(p + o_b)^T` (C x C per group): a
correlation of the input map with itself shifted by `d = o_b - o_a`. Taps with the same `d` share one
product `F_d` over all pairs (q, q + d) inside the map; each pair of taps then subtracts the few border rows
and columns its window does not see (inclusion-exclusion over rows x columns, so exact). That is
`(2kh-1)(2kw-1) / 2` products of C x C over the map (offsets d and -d are transposes) instead of
`(C kh kw)^2` per column: about 13 C^2 per position for a 3 x 3 conv instead of 40.5 C^2 (upper triangle of
the unfolded product), with no (C k^2 x N) copy.

The map is laid out flat per channel with `(kh-1)*dil` zero rows and `(kw-1)*dil` zero columns appended, so a
flat shift by `dy * width + dx` pairs exactly the positions (q, q + d) of the 2D map: a pair that would wrap
to the next row or image lands on an appended zero. Small maps, where those zeros would add more than
`CROP_OVERHEAD` of the positions (ResNet's 7x7 layer4: 81 for 49), copy each offset's two windows instead,
so no product runs over zeros. Only zero padding qualifies (other modes put data in
the border), and only stride 1 (a strided conv reads a subgrid; those keep `layer_columns`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.pruning.padding import input_padding

CROP_OVERHEAD = 1.25  # see `_cropped`; measured: cropping wins at 14x14 (1.31) and 7x7 (1.65), loses at 28x28 (1.15)


def shift_eligible(layer: nn.Module) -> bool:
    """True for a Conv2d that `shifted_hessian_sum` handles: stride 1, zero padding (any kernel, dilation,
    groups, symmetric or not padding, TF "same" included; see `padding.input_padding`)."""
    return isinstance(layer, nn.Conv2d) and tuple(layer.stride) == (1, 1) and layer.padding_mode == "zeros"


def _geometry(layer: nn.Conv2d, h: int, w: int) -> tuple[list[tuple[int, int]], int, int, int, int]:
    """Tap offsets `o_t` (row-major taps, in input coordinates) and the output size, and the appended zeros."""
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    (pl, pr, pt, pb), _ = input_padding(layer, h, w)
    h_out, w_out = h + pt + pb - dh * (kh - 1), w + pl + pr - dw * (kw - 1)
    taps = [(ty * dh - pt, tx * dw - pl) for ty in range(kh) for tx in range(kw)]
    return taps, h_out, w_out, dh * (kh - 1), dw * (kw - 1)


def _cropped(h: int, w: int, gy: int, gx: int) -> bool:
    """Whether the products run on cropped windows instead of the flat layout: when the appended zeros would
    add more than `CROP_OVERHEAD` of the map's positions (small maps, e.g. ResNet's 7x7 layer4)."""
    return (h + gy) * (w + gx) > CROP_OVERHEAD * h * w


def _half_offsets(layer: nn.Conv2d) -> list[tuple[int, int]]:
    """The distinct tap differences d = o_b - o_a with d >= 0 lexicographically (the others are transposes)."""
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    return [(dy * dh, dx * dw) for dy in range(kh) for dx in range(1 - kw, kw) if dy > 0 or dx >= 0]


def shift_flops(layer: nn.Conv2d, shape: torch.Size) -> int:
    """Multiply-adds of the `F_d` products of `shifted_hessian_sum` for an input of `shape` (B, C, H, W)
    (border corrections, a few rows per tap pair, not counted)."""
    b, c, h, w = shape
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    gy, gx = dh * (kh - 1), dw * (kw - 1)
    offsets = _half_offsets(layer)
    if _cropped(h, w, gy, gx):
        positions = sum(max(h - abs(dy), 0) * max(w - abs(dx), 0) for dy, dx in offsets)
    else:
        positions = len(offsets) * (h + gy) * (w + gx)
    return (c // layer.groups) * c * b * positions


def _pairs(size: int, shift: int) -> tuple[int, int]:
    """The range [lo, hi) of q in [0, size) with q + shift in [0, size) (empty: lo == hi)."""
    lo = max(0, -shift)
    return lo, max(lo, min(size, size - shift))


def _excluded(size: int, shift: int, start: int, length: int) -> list[int]:
    """Positions q in [0, size) with q + shift in [0, size) that lie outside the window [start, start + length)."""
    lo, hi = _pairs(size, shift)
    return [q for q in range(lo, hi) if not start <= q < start + length]


def shifted_hessian_sum(
    layer: nn.Conv2d, inp: torch.Tensor, dtype: torch.dtype | None = None, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """`sum_p x_p x_p^T` over every unfolded column p of a stride-1, zero-padded conv's input, per group.

    Equal (up to rounding) to `X @ X.T` with `X = layer_columns(layer, inp)`; see the module docstring.

    Args:
        layer: a Conv2d with `shift_eligible(layer)`.
        inp: (B, C, H, W) the tensor the layer received.
        dtype: dtype of the products' inputs (default: `inp`'s), e.g. bfloat16.
        out_dtype: dtype of the result and of the border corrections (default: `dtype`).

    Returns:
        (G, C/G * kh * kw, C/G * kh * kw) sums (not means), columns ordered as `layer_columns`.

    Raises:
        ValueError: the layer is not `shift_eligible`, or its output would be empty.
    """
    if not shift_eligible(layer):
        raise ValueError("shifted_hessian_sum needs a stride-1 Conv2d with zero padding.")
    b, c, h, w = inp.shape
    taps, h_out, w_out, gy, gx = _geometry(layer, h, w)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"the conv's output would be empty for a {h}x{w} input.")
    g, cg, k = layer.groups, c // layer.groups, len(taps)
    z = F.pad(inp.to(dtype or inp.dtype), (0, gx, 0, gy))  # (B, C, H+gy, W+gx), data top left
    wz = w + gx
    zp = z.permute(0, 2, 3, 1).contiguous()  # (B, Hz, Wz, C): positions major (no copy for channels-last input)
    out_dtype = out_dtype or z.dtype

    def columns(t: torch.Tensor) -> torch.Tensor:  # (..., C) positions -> (G, Cg, N), a transposed view if it can
        return t.reshape(-1, g, cg).permute(1, 2, 0)

    def gram(a: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:  # sum over positions of a b^T per group
        return torch.bmm(columns(a), columns(b_).mT).to(out_dtype)

    flat = zp.view(-1, c)  # (L, C)
    full: dict[tuple[int, int], torch.Tensor] = {}
    rows: dict[tuple[int, int, int], torch.Tensor] = {}
    cols: dict[tuple[int, int, int], torch.Tensor] = {}
    cropped = _cropped(h, w, gy, gx)

    def product(d: tuple[int, int]) -> torch.Tensor:  # F_d (G, Cg, Cg): pairs (q, q + d) inside the map
        if d not in full:
            s = d[0] * wz + d[1]
            if s < 0:
                full[d] = product((-d[0], -d[1])).transpose(1, 2)
            elif cropped:  # the pairs' windows: no products over appended zeros
                (y0, y1), (x0, x1) = _pairs(h, d[0]), _pairs(w, d[1])
                full[d] = gram(zp[:, y0:y1, x0:x1], zp[:, y0 + d[0] : y1 + d[0], x0 + d[1] : x1 + d[1]])
            else:
                full[d] = gram(flat[: flat.shape[0] - s], flat[s:])
        return full[d]

    def row(r: int, d: tuple[int, int]) -> torch.Tensor:  # pairs of F_d with q in map row r
        if (r, *d) not in rows:
            x0, x1 = _pairs(w, d[1])
            rows[(r, *d)] = gram(zp[:, r, x0:x1], zp[:, r + d[0], x0 + d[1] : x1 + d[1]])
        return rows[(r, *d)]

    def col(x: int, d: tuple[int, int]) -> torch.Tensor:  # pairs of F_d with q in map column x
        if (x, *d) not in cols:
            y0, y1 = _pairs(h, d[0])
            cols[(x, *d)] = gram(zp[:, y0:y1, x], zp[:, y0 + d[0] : y1 + d[0], x + d[1]])
        return cols[(x, *d)]

    out = torch.empty(g, cg, k, cg, k, dtype=out_dtype, device=z.device)  # (G, Cg, K, Cg, K) as `layer_columns`
    for i, (ay, ax) in enumerate(taps):
        for j in range(i, k):
            d = (taps[j][0] - ay, taps[j][1] - ax)
            ey, ex = _excluded(h, d[0], ay, h_out), _excluded(w, d[1], ax, w_out)
            block = product(d)
            if ey or ex:
                block = block.clone()
                for r in ey:
                    block -= row(r, d)
                for x in ex:
                    block -= col(x, d)
                for r in ey:  # corners were subtracted twice
                    for x in ex:
                        block += gram(zp[:, r, x], zp[:, r + d[0], x + d[1]])
            if i == j:  # a diagonal tap block: symmetric up to rounding; made exactly so
                block = (block + block.mT) / 2
            out[:, :, i, :, j] = block  # (G, Cg, Cg) tap blocks (i, j) and (j, i)
            out[:, :, j, :, i] = block.mT
    return out.view(g, cg * k, cg * k)

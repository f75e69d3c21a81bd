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
to the next row or image lands on an appended zero. Only zero padding qualifies (other modes put data in
the border), and only stride 1 (a strided conv reads a subgrid; those keep `layer_columns`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift_eligible(layer: nn.Module) -> bool:
    """True for a Conv2d that `shifted_hessian_sum` handles: stride 1, zero padding (any kernel, dilation,
    groups, symmetric or not padding)."""
    return isinstance(layer, nn.Conv2d) and tuple(layer.stride) == (1, 1) and layer.padding_mode == "zeros"


def _geometry(layer: nn.Conv2d, h: int, w: int) -> tuple[list[tuple[int, int]], int, int, int, int]:
    """Tap offsets `o_t` (row-major taps, in input coordinates) and the output size, and the appended zeros."""
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    pl, pr, pt, pb = layer._reversed_padding_repeated_twice
    h_out, w_out = h + pt + pb - dh * (kh - 1), w + pl + pr - dw * (kw - 1)
    taps = [(ty * dh - pt, tx * dw - pl) for ty in range(kh) for tx in range(kw)]
    return taps, h_out, w_out, dh * (kh - 1), dw * (kw - 1)


def shift_flops(layer: nn.Conv2d, shape: torch.Size) -> int:
    """Multiply-adds of the `F_d` products of `shifted_hessian_sum` for an input of `shape` (B, C, H, W)
    (border corrections, a few rows per tap pair, not counted)."""
    b, c, h, w = shape
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    gy, gx = dh * (kh - 1), dw * (kw - 1)
    offsets = ((2 * kh - 1) * (2 * kw - 1) + 1) // 2
    return offsets * (c // layer.groups) * c * b * (h + gy) * (w + gx)


def _excluded(size: int, shift: int, start: int, length: int) -> list[int]:
    """Positions q in [0, size) with q + shift in [0, size) that lie outside the window [start, start + length)."""
    lo, hi = max(0, -shift), min(size, size - shift)
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
    zc = z.transpose(0, 1).contiguous().view(g, cg, b, h + gy, wz)  # (G, Cg, B, Hz, Wz) one copy
    flat = zc.view(g, cg, -1)  # (G, Cg, L)
    full: dict[tuple[int, int], torch.Tensor] = {}
    rows: dict[tuple[int, int, int], torch.Tensor] = {}
    cols: dict[tuple[int, int, int], torch.Tensor] = {}

    def product(d: tuple[int, int]) -> torch.Tensor:  # F_d (G, Cg, Cg): pairs (q, q + d) inside the map
        if d not in full:
            s = d[0] * wz + d[1]
            if s < 0:
                full[d] = product((-d[0], -d[1])).transpose(1, 2)
            else:
                full[d] = torch.bmm(flat[..., : flat.shape[-1] - s], flat[..., s:].mT).to(out_dtype or z.dtype)
        return full[d]

    def row(r: int, d: tuple[int, int]) -> torch.Tensor:  # pairs of F_d with q in map row r
        if (r, *d) not in rows:
            x0, x1 = max(0, -d[1]), max(min(w, w - d[1]), max(0, -d[1]))
            a = zc[:, :, :, r, x0:x1].reshape(g, cg, -1)
            shifted = zc[:, :, :, r + d[0], x0 + d[1] : x1 + d[1]].reshape(g, cg, -1)
            rows[(r, *d)] = torch.bmm(a, shifted.mT).to(out_dtype or z.dtype)
        return rows[(r, *d)]

    def col(x: int, d: tuple[int, int]) -> torch.Tensor:  # pairs of F_d with q in map column x
        if (x, *d) not in cols:
            y0, y1 = max(0, -d[0]), max(min(h, h - d[0]), max(0, -d[0]))
            a = zc[:, :, :, y0:y1, x].reshape(g, cg, -1)
            shifted = zc[:, :, :, y0 + d[0] : y1 + d[0], x + d[1]].reshape(g, cg, -1)
            cols[(x, *d)] = torch.bmm(a, shifted.mT).to(out_dtype or z.dtype)
        return cols[(x, *d)]

    out = torch.zeros(
        g, k, cg, k, cg, dtype=out_dtype or z.dtype, device=z.device
    )  # tap-major blocks, upper ones filled
    for i, (ay, ax) in enumerate(taps):
        for j in range(i, k):
            d = (taps[j][0] - ay, taps[j][1] - ax)
            ey, ex = _excluded(h, d[0], ay, h_out), _excluded(w, d[1], ax, w_out)
            block = out[:, i, :, j]  # (G, Cg, Cg) view
            block.copy_(product(d))
            for r in ey:
                block -= row(r, d)
            for x in ex:
                block -= col(x, d)
            for r in ey:  # corners were subtracted twice
                for x in ex:
                    block += torch.bmm(zc[:, :, :, r, x], zc[:, :, :, r + d[0], x + d[1]].mT).to(block.dtype)
    out += out.permute(0, 3, 4, 1, 2).clone()  # mirror the upper tap blocks; diagonal ones are now doubled
    out.diagonal(dim1=1, dim2=3).mul_(0.5)  # (G, Cg, Cg, K) view of the diagonal tap blocks
    return out.permute(0, 2, 1, 4, 3).reshape(g, cg * k, cg * k)  # (G, Cg*K, Cg*K) channel-major

"""A depthwise conv's input Hessians as one batched product: each group sees one input channel, so its Hessian
is only kh*kw wide, `H_c = X_c X_c^T` with X_c the channel's (kh*kw, N) unfolded columns.

The columns of a chunk of images come from one strided copy of the padded input straight into a per-channel
layout, (C, K, b*L) (`strided_columns`, faster than `F.unfold` and a permutation), so one `bmm` gives every
channel's (K, K) product: C*K^2 multiply-adds per output position, every column counted (the accumulator
subsamples early, large maps instead, see `HessianAccumulator.path`). The padding is the one the forward
applies (`padding.input_padding`: zeros, TF "same", reflect, replicate, circular), any stride and dilation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.pruning.padding import input_padding

CHUNK_BYTES = 32 * 2**20  # unfolded columns held at once (a few images of an early layer)


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
    b, c, h, w = inp.shape
    pads, mode = input_padding(layer, h, w)
    k = layer.kernel_size[0] * layer.kernel_size[1]
    out = torch.zeros(c, k, k, dtype=out_dtype or dtype or inp.dtype, device=inp.device)  # (G, K, K), G = C
    per_image = c * k * (h + pads[2] + pads[3]) * (w + pads[0] + pads[1]) * inp.element_size()  # columns' bound
    for chunk in inp.split(max(1, CHUNK_BYTES // max(per_image, 1))):
        padded = F.pad(chunk.to(dtype or inp.dtype), pads, mode=mode).contiguous()  # (b, C, Hp, Wp)
        cols = strided_columns(layer, padded)  # (C, K, b*L)
        out += torch.bmm(cols, cols.transpose(1, 2)).to(out.dtype)
    return (out + out.mT) / 2  # symmetric up to rounding; made exactly so


def strided_columns(layer: nn.Conv2d, padded: torch.Tensor) -> torch.Tensor:
    """The unfolded columns of an already padded input, per channel: (C, kh*kw, B*L), by one strided copy
    (faster than `F.unfold` and its permutation on a CPU; the columns in `layer_columns`' order).

    Args:
        layer: the conv (kernel, stride, dilation); padded: (B, C, Hp, Wp) its input, padded.
    """
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    b, c, hp, wp = padded.shape
    h_out, w_out = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    s_b, s_c, s_h, s_w = padded.stride()
    taps = padded.as_strided((b, c, kh, kw, h_out, w_out), (s_b, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    return taps.permute(1, 2, 3, 0, 4, 5).reshape(c, kh * kw, b * h_out * w_out)  # (C, K, B*L)

"""A depthwise conv's input Hessians as one batched product: each group sees one input channel, so its Hessian
is only kh*kw wide, `H_c = X_c X_c^T` with X_c the channel's (kh*kw, N) unfolded columns.

The unfold of a chunk of images is (b, C*K, L) = (b*C, K, L) without a copy, so one `bmm` gives every
(image, channel) block's (K, K) product, summed over the images afterwards: C*K^2 multiply-adds per output
position, no permutation of the columns, and every column counted (exact: no `max_columns` subsample needed at
this width). The padding is the one the forward applies (`padding.input_padding`: zeros, TF "same",
reflect, replicate, circular), any stride and dilation.
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
    dtype = dtype or inp.dtype
    padded = F.pad(inp.to(dtype), pads, mode=mode)  # (B, C, Hp, Wp)
    k = layer.kernel_size[0] * layer.kernel_size[1]
    out = torch.zeros(c, k, k, dtype=out_dtype or dtype, device=inp.device)  # (G, K, K) with G = C
    per_image = c * k * padded.shape[2] * padded.shape[3] * padded.element_size()  # bound on one image's columns
    step = max(1, CHUNK_BYTES // max(per_image, 1))
    for chunk in padded.split(step):
        cols = F.unfold(chunk, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (b, C*K, L)
        cols = cols.view(-1, k, cols.shape[-1])  # (b*C, K, L)
        out += torch.bmm(cols, cols.transpose(1, 2)).view(-1, c, k, k).sum(0).to(out.dtype)
    return (out + out.mT) / 2  # symmetric up to rounding; made exactly so

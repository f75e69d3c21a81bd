"""The padding a conv's forward applies to its input, so Hessians unfold exactly what the conv multiplies.

A forward hook sees the input *before* padding. For `nn.Conv2d` the padding is in the module's attributes
(`_reversed_padding_repeated_twice`: left, right, top, bottom, also for `padding="same"`; `padding_mode` zeros,
reflect, replicate or circular). timm's TensorFlow-style convs (`Conv2dSame`, `Conv2dSameExport`, made by
`create_conv2d(..., padding="same")` where the padding depends on the input size) keep `padding = 0` and pad
inside `forward`, asymmetrically: `pad = max((ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)` per side length
`i`, the extra pixel at the right / bottom (timm's `pad_same`). Any other subclass that overrides `forward` pads
in a way we cannot see: `padding_refusal` names it, and the engine leaves it dense.
"""

from __future__ import annotations

import math

from torch import nn

Pads = tuple[int, int, int, int]  # left, right, top, bottom, as `F.pad` takes them for the last two dims

TF_SAME = ("Conv2dSame", "Conv2dSameExport")  # timm classes (timm.layers.conv2d_same) that pad TF-"same"


def _is_tf_same(layer: nn.Module) -> bool:
    cls = type(layer)
    return cls.__name__ in TF_SAME and cls.__module__.startswith("timm.")


def _plain_forward(layer: nn.Conv2d) -> bool:
    """True when the conv runs `nn.Conv2d`'s own forward and `_conv_forward` (the attributes say it all)."""
    cls = type(layer)
    return cls.forward is nn.Conv2d.forward and cls._conv_forward is nn.Conv2d._conv_forward


def padding_refusal(layer: nn.Module) -> str | None:
    """Why the layer's Hessian cannot be exact (the engine then leaves it dense), or None.

    Args:
        layer: a prunable layer (Conv2d or Linear).
    """
    if not isinstance(layer, nn.Conv2d) or _plain_forward(layer) or _is_tf_same(layer):
        return None
    cls = f"{type(layer).__module__}.{type(layer).__name__}"
    return (
        f"a conv with its own forward ({cls}): the padding it applies before convolving is not known, so its "
        "Hessian would not be exact"
    )


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one side length (timm's `get_same_padding` / `pad_same`): (before, after)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def input_padding(layer: nn.Conv2d, height: int, width: int) -> tuple[Pads, str]:
    """The padding the layer's forward applies to an input of `height` x `width`, and its `F.pad` mode.

    Args:
        layer: a Conv2d with `padding_refusal(layer) is None`.
        height, width: the input's spatial size (the hook's view, before padding).

    Returns:
        ((left, right, top, bottom), mode): mode "constant" (zeros), "reflect", "replicate" or "circular".

    Raises:
        ValueError: a conv whose padding is not known (`padding_refusal`).
    """
    if why := padding_refusal(layer):
        raise ValueError(why)
    if _is_tf_same(layer):
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
        top, bottom = same_padding(height, kh, sh, dh)
        left, right = same_padding(width, kw, sw, dw)
        return (left, right, top, bottom), "constant"
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    return tuple(layer._reversed_padding_repeated_twice), mode

"""The padding a conv's forward applies to its input, so Hessians unfold exactly what the conv multiplies.

A forward hook sees the input *before* padding. For `nn.Conv2d` the padding is in the module's attributes
(`_reversed_padding_repeated_twice`: left, right, top, bottom, also for `padding="same"`; `padding_mode` zeros,
reflect, replicate or circular). timm's TensorFlow-style convs (`Conv2dSame`, `Conv2dSameExport`, made by
`create_conv2d(..., padding="same")` where the padding depends on the input size; `StdConv2dSame` & co. with
`same_pad`) keep `padding = 0` and pad inside `forward`, asymmetrically:
`pad = max((ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)` per side length `i`, the extra pixel at the right /
bottom (timm's `pad_same`). Any other conv with a forward of its own is taken at its attributes' word, and
checked: `reparam.transformed_weight_layers` runs its forward against the plain conv padded as here, and the
engine leaves it dense where they differ, with `OWN_PADDING` (or `reparam.TRANSFORMED`) as the reason.
"""

from __future__ import annotations

import math

from torch import nn

Pads = tuple[int, int, int, int]  # left, right, top, bottom, as `F.pad` takes them for the last two dims

TF_SAME = ("Conv2dSame", "Conv2dSameExport")  # timm classes (timm.layers.conv2d_same) that pad TF-"same"
STANDARDISED = ("StdConv2dSame", "ScaledStdConv2dSame")  # timm: TF-"same" when their `same_pad` is set

OWN_PADDING = (
    "its forward pads or reshapes its input its own way (its output does not have the shape of the plain conv "
    "with the module's padding), so the Hessian of the input the hooks see would not be exact"
)


def _timm_class(layer: nn.Module, names: tuple[str, ...]) -> bool:
    cls = type(layer)
    return cls.__name__ in names and cls.__module__.startswith("timm.")


def is_tf_same(layer: nn.Module) -> bool:
    """True for timm's TF-"same" convs, which pad inside forward by the input's size (module docstring)."""
    return _timm_class(layer, TF_SAME) or (_timm_class(layer, STANDARDISED) and bool(getattr(layer, "same_pad", 0)))


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one side length (timm's `get_same_padding` / `pad_same`): (before, after)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def input_padding(layer: nn.Conv2d, height: int, width: int) -> tuple[Pads, str]:
    """The padding the layer's forward applies to an input of `height` x `width`, and its `F.pad` mode.

    Args:
        layer: a Conv2d (for one with a forward of its own, the attributes' padding; see the module docstring).
        height, width: the input's spatial size (the hook's view, before padding).

    Returns:
        ((left, right, top, bottom), mode): mode "constant" (zeros), "reflect", "replicate" or "circular".
    """
    if is_tf_same(layer):
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
        top, bottom = same_padding(height, kh, sh, dh)
        left, right = same_padding(width, kw, sw, dw)
        return (left, right, top, bottom), "constant"
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    return tuple(layer._reversed_padding_repeated_twice), mode

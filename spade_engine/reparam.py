"""Weights that the forward pass does not use as stored: copying, folding and detecting them.

A Conv2d / Linear can compute with another tensor than the one it stores, and pruning writes zeros into the
stored one:

- `torch.nn.utils.parametrize` (`parametrizations.weight_norm`, `orthogonal`, `spectral_norm`): `module.weight`
  is recomputed from `parametrizations.weight.original*` on every access, so zeros written into it are lost;
- the legacy hook-based `torch.nn.utils.weight_norm` / `spectral_norm`: a forward pre-hook recomputes `weight`
  from `weight_g`/`weight_v` (or `weight_orig`), and `copy.deepcopy` refuses such a module (pytorch #28594);
- subclasses whose forward transforms the weight (timm's `StdConv2d` / `ScaledStdConv2d` standardise it, as in
  BiT, NFNets and the ViT-hybrid stems): zeros in `weight` are not zeros after standardisation.

The first two, and timm's standardised convs (checked on a probe input), are folded into a plain weight
(`fold_reparametrisations`: the copy then computes with exactly the weight it stores, so pruning acts on the
weight the forward uses); any other transforming layer is found by running the module's own forward against the
plain convolution/linear map of its stored weight (`transformed_weight_layers`), and the engine leaves those
layers dense, with `TRANSFORMED` as the reason.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from spade_engine.hooks import forward_hooks
from spade_engine.pruning.padding import OWN_PADDING, input_padding

TRANSFORMED = (
    "its forward computes with a transformed weight, not the stored one (weight standardisation as in timm's "
    "StdConv2d / ScaledStdConv2d, or another reparametrisation), so zeros written into the weight would not be "
    "zeros in the computation"
)


def _legacy_hooks(module: nn.Module) -> dict:
    """The legacy weight_norm / spectral_norm pre-hooks of `module`, `{hook id: hook}`."""
    return {k: h for k, h in module._forward_pre_hooks.items() if isinstance(h, (WeightNorm, SpectralNorm))}


def copy_model(model: nn.Module) -> nn.Module:
    """`copy.deepcopy(model)` that also works for modules under the legacy `torch.nn.utils.weight_norm` /
    `spectral_norm` (whose recomputed `weight` is not a leaf tensor, which deepcopy refuses). `model` is left
    exactly as it was.

    Returns:
        An independent copy; its legacy hooks recompute `weight` on its next forward as usual.
    """
    saved = []
    for module in model.modules():
        for hook in _legacy_hooks(module).values():
            current = getattr(module, hook.name, None)
            if isinstance(current, torch.Tensor) and not isinstance(current, nn.Parameter):
                saved.append((module, hook.name, current))
                setattr(module, hook.name, current.detach())
    try:
        return copy.deepcopy(model)
    finally:
        for module, name, tensor in saved:
            setattr(module, name, tensor)


def fold_reparametrisations(model: nn.Module) -> list[str]:
    """Replace every parametrised or legacy weight-normed / spectral-normed weight of `model` (in place: call it
    on a copy) by a plain `nn.Parameter` holding the weight the forward currently computes with; timm's
    weight-standardised convs (`StdConv2d`, `ScaledStdConv2d`) become plain `nn.Conv2d`s the same way.

    Returns:
        Dotted names of the modules that were folded (the forward's outputs are unchanged up to rounding).
    """
    folded = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            _fold_parametrizations(module)
            folded.append(name)
        if _fold_standardised(module):
            folded.append(name)
        for key, hook in _legacy_hooks(module).items():
            with torch.no_grad():
                hook.remove(module)  # sets module.<name> to the current computed weight, as a Parameter
            del module._forward_pre_hooks[key]
            folded.append(name)
    return folded


def _standardised_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight timm's `StdConv2d` / `ScaledStdConv2d` computes with (BiT, NFNets: per output channel, zero
    mean and unit variance, times gain × scale for the scaled one); None for other modules and for the `...Same`
    variants (which pad in their forward)."""
    kind = type(module).__name__
    if kind not in ("StdConv2d", "ScaledStdConv2d") or getattr(module, "same_pad", False):
        return None
    gain = (module.gain * module.scale).view(-1) if kind == "ScaledStdConv2d" else None
    w = module.weight.reshape(1, module.out_channels, -1)  # (1, out, in * kh * kw)
    return F.batch_norm(w, None, None, weight=gain, training=True, momentum=0.0, eps=module.eps).reshape_as(
        module.weight
    )


def _fold_standardised(module: nn.Module) -> bool:
    """Turn a weight-standardised conv (`_standardised_weight`) into a plain `nn.Conv2d` holding the weight it
    computes with, when that gives the same outputs on a random probe; whether it was folded."""
    with torch.no_grad():
        weight = _standardised_weight(module)
        if weight is None:
            return False
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(2, module.in_channels, 9, 9, generator=gen).to(module.weight)
        if not torch.allclose(module(probe), nn.Conv2d._conv_forward(module, probe, weight, module.bias), atol=1e-4):
            return False
        requires_grad = module.weight.requires_grad
        module.__class__ = nn.Conv2d
        module._parameters.pop("gain", None)
        module.weight = nn.Parameter(weight.clone(), requires_grad=requires_grad)
    return True


def _fold_parametrizations(module: nn.Module) -> None:
    """`parametrize.remove_parametrizations(..., leave_parametrized=True)` for every tensor of `module`, without
    its `delattr` on the module's class: a deep copy shares that class with the user's model, which would lose its
    `weight` property."""
    values = {}
    with torch.no_grad():
        for name, plist in module.parametrizations.items():
            values[name] = (getattr(module, name).detach().clone(), next(plist.parameters()).requires_grad)
    module.__class__ = module.__class__.__bases__[0]  # the class before parametrisation (torch's own swap)
    del module._modules["parametrizations"]
    for name, (value, requires_grad) in values.items():
        module.register_parameter(name, nn.Parameter(value, requires_grad=requires_grad))


def _plain_output(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """What a plain Conv2d / Linear with the module's stored weight and bias computes on `inp`, padded as the
    module's forward pads it where that is known (`pruning.padding`: timm's TF-"same" convs pad inside forward)."""
    if isinstance(module, nn.Linear):
        return F.linear(inp, module.weight, module.bias)
    pads, mode = input_padding(module, *inp.shape[-2:])
    padded = F.pad(inp, pads, mode=mode)
    return F.conv2d(padded, module.weight, module.bias, module.stride, 0, module.dilation, module.groups)


def transformed_weight_layers(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, str]:
    """The named Conv2d / Linear modules whose forward does not compute the plain convolution / linear map of
    their stored `weight`, padded as `pruning.padding.input_padding` says (one forward pass of `x` (1, 3, H, W),
    without gradients), with the reason: `OWN_PADDING` where the output's shape differs (the forward pads or
    reshapes its input its own way, so the Hessian of the hooked input would not be exact), else `TRANSFORMED`.

    Args:
        model: the network (fold reparametrisations first: parametrised weights are plain afterwards).
        x: an input on the model's device.
        names: the modules to check (Conv2d or Linear, each called once per pass).
    """
    modules = dict(model.named_modules())
    transformed: dict[str, str] = {}

    def check(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if name in transformed or not isinstance(output, torch.Tensor) or output.numel() == 0:
            return
        try:
            plain = _plain_output(module, inputs[0])
        except RuntimeError:  # the forward pads or reshapes its input first: not the plain map either
            transformed[name] = OWN_PADDING
            return
        if plain.shape != output.shape:
            transformed[name] = OWN_PADDING
        elif not torch.allclose(plain, output, rtol=1e-4, atol=1e-4 * float(plain.abs().max()) + 1e-6):
            transformed[name] = TRANSFORMED

    with forward_hooks({n: modules[n] for n in names}, check), torch.no_grad():
        model(x)
    return transformed

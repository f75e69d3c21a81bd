"""Which saliency methods can explain which networks, and the checks that keep a wrong map off the page.

Some methods only mean what they promise on the layer types their rules cover; on other layers the libraries
quietly fall back to plain gradients (Captum's DeepLift then equals InputXGradient) or relevance vanishes
(zennit has no LayerNorm rule: the mean-centering Jacobian sums to zero). Such a map is refused with an
`UnsupportedModelError` that says why, never shown silently:

- **LRP** (zennit EpsilonPlusFlat) has rules for convolutions, linear layers, BatchNorm (merged), pooling,
  residual sums and element-wise activations; it refuses LayerNorm / GroupNorm, attention
  (`nn.MultiheadAttention`, timm's `Attention`, `F.scaled_dot_product_attention`) and softmax. At run time it
  checks **conservation**: the input relevance must not vanish against the explained logit
  (`LRP_MIN_CONSERVED`; biases legitimately absorb a share, so 0.6-1.0 of the logit is typical).
- **DeepLift** (Captum, Rescale rule) treats every non-linearity Captum does not list (GELU, SiLU, Hardswish,
  LayerNorm, attention, functional sigmoid gates...) as linear; it refuses them (ReLU6 is rewritten as two
  ReLUs, see `deeplift`). At run time it checks
  **completeness** (summation-to-delta: sum of attributions = f(z) - f(baseline)) within `DEEPLIFT_TOLERANCE`,
  except on networks with max pooling, where Captum's rule is approximate by design (the DeepLift paper uses the
  gradient there).
- **GuidedBackprop / GuidedGradCam** guide ReLUs only (a network without ReLUs would give the plain gradient);
  **PathwayGradient** selects ReLU neurons: all three refuse networks whose activations are GELU / SiLU only.
- **TorchScript** networks cannot carry module hooks, so every hook-based method (`HOOK_METHODS`) is refused
  for them; gradient and perturbation methods work.

`static_support(method, model)` answers from module types alone (cheap: the Debugger asks it before computing);
the methods themselves also inspect the traced graph (`graph_support`) and run the numeric checks.

Sources: Captum DeepLift (`SUPPORTED_NON_LINEAR`), Shrikumar et al. 2017, arXiv 1704.02685 (summation-to-delta);
zennit composites, Anders et al. 2021, arXiv 2106.13200; Ali et al. 2022, arXiv 2202.07304 (LRP through
LayerNorm and attention needs dedicated rules).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn
from torch.nn import functional as F
from zennit.types import Activation

from spade_engine.hooks import forward_hooks
from spade_engine.saliency._base import split_classifier

LRP_MIN_CONSERVED = 1e-3  # |sum of input relevance| / |explained logit| below this: the relevance vanished
DEEPLIFT_TOLERANCE = 0.05  # |sum of attributions - (f(z) - f(baseline))| / |f(z) - f(baseline)|
MIN_LOGIT = 1e-6  # below this the numeric checks cannot tell anything apart (e.g. a freshly initialised net)

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.instancenorm._InstanceNorm)
LRP_FUNCTIONS = {F.layer_norm, F.group_norm, F.scaled_dot_product_attention, F.softmax, torch.softmax}
NONLINEAR_FUNCTIONS = LRP_FUNCTIONS | {
    F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.relu6, F.mish, F.elu, F.leaky_relu,
    torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, torch.max, torch.min, operator.mul,
}  # fmt: skip
NONLINEAR_METHODS = {"sigmoid", "tanh", "softmax", "max", "min", "mul"}
HOOK_METHODS = ("LRP", "DeepLift", "GuidedBackprop", "GuidedGradCam", "GradCAM", "PathwayGradient")


class UnsupportedModelError(ValueError):
    """A saliency method cannot explain this model faithfully; `str(e)` says why, for the user."""


@dataclass(frozen=True)
class Support:
    """Whether `method` can explain a network, and if not, why (`reason`, a sentence for the user)."""

    method: str
    supported: bool = True
    reason: str = ""

    def require(self) -> None:
        """Raise `UnsupportedModelError(reason)` when not supported."""
        if not self.supported:
            raise UnsupportedModelError(self.reason)


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _type_names(modules: list[nn.Module]) -> str:
    return ", ".join(sorted({type(m).__name__ for m in modules}))


def static_support(method: str, model: nn.Module) -> Support:
    """Support of `method` for `model` judged from its module types (no forward pass).

    Args:
        method: a saliency registry name ("LRP", "DeepLift", ...); methods without restrictions are supported.
        model: a `Classifier` (its `net` is judged) or any network.
    """
    net = split_classifier(model)[1]
    modules = list(net.modules())
    if method in HOOK_METHODS and any(isinstance(m, torch.jit.ScriptModule) for m in modules):
        return Support(
            method,
            False,
            f"{method} is not available for TorchScript models: it needs hooks on the model's layers, which "
            "TorchScript does not allow. Saliency, Integrated Gradients, Occlusion and LIME work; upload the "
            "weights (state_dict) instead to use every method.",
        )
    if method == "LRP":
        bad = [m for m in modules if isinstance(m, NORMS) or _is_attention(m)]
        if bad:
            return Support(method, False, _lrp_reason(_type_names(bad)))
    elif method == "DeepLift":
        bad = [m for m in modules if _deeplift_unsupported(m)]
        if bad:
            return Support(method, False, _deeplift_reason(_type_names(bad)))
    elif method in ("GuidedBackprop", "GuidedGradCam", "PathwayGradient"):
        if any(isinstance(m, (nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish)) for m in modules) and not any(
            isinstance(m, (nn.ReLU, nn.ReLU6))
            for m in modules  # ReLU6: rewritten as a ReLU and a clamp
        ):
            return Support(method, False, _guided_reason(method))
    return Support(method)


def _deeplift_unsupported(module: nn.Module) -> bool:
    nonlinear = isinstance(module, (Activation, *NORMS)) or _is_attention(module)
    return nonlinear and type(module) not in (*SUPPORTED_NON_LINEAR, nn.ReLU6)  # ReLU6: rewritten as two ReLUs


def graph_support(method: str, module: nn.Module, traced: bool) -> Support:
    """`static_support` plus, for a traced attribution copy, its functional operations (`F.gelu`, `torch.sigmoid`
    gates, `F.layer_norm`, `F.scaled_dot_product_attention`...), which no hook-based rule sees.

    Args:
        method: a saliency registry name.
        module: the attribution copy (`_canonical.attribution_copy(...).module`).
        traced: whether it is an fx GraphModule.
    """
    support = static_support(method, module)
    if not support.supported or not traced or method not in ("LRP", "DeepLift"):
        return support
    functions = LRP_FUNCTIONS if method == "LRP" else NONLINEAR_FUNCTIONS
    ops = sorted({_op_name(n) for n in module.graph.nodes if _is_listed(n, functions, method)})
    if not ops:
        return support
    reason = _lrp_reason if method == "LRP" else _deeplift_reason
    return Support(method, False, reason(", ".join(ops)))


RELU_CALLS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class _CountReLUs(torch.overrides.TorchFunctionMode):
    """Counts top-level ReLU calls (an `nn.ReLU` makes one through `F.relu`; nested calls are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func in RELU_CALLS
        return func(*args, **(kwargs or {}))


def activation_calls(module: nn.Module, z: torch.Tensor) -> tuple[int, dict[str, int]]:
    """How an untraced network applies its activations, from one forward pass of `z` (no gradients).

    Returns:
        (ReLUs applied as functions, not through an `nn.ReLU` module; {activation module name: calls} for the
        activation modules called more than once).
    """
    calls: dict[str, int] = {}
    modules = {n: m for n, m in module.named_modules() if isinstance(m, Activation)}
    counter = _CountReLUs()
    with forward_hooks(modules, lambda n, m, i, o: calls.__setitem__(n, calls.get(n, 0) + 1)), torch.no_grad(), counter:
        module(z)
    relu_modules = sum(c for n, c in calls.items() if type(modules[n]) is nn.ReLU)
    return max(counter.calls - relu_modules, 0), {n: c for n, c in calls.items() if c > 1}


def check_untraced_activations(method: str, module: nn.Module, z: torch.Tensor) -> None:
    """Refuse `method` ("GuidedBackprop", "GuidedGradCam", "DeepLift") on an untraced attribution copy whose rules
    would miss activations: ReLUs applied as functions (`F.relu` in forward; a traced copy turns them into
    modules), and for DeepLift activation modules used more than once (it needs one module per use).

    Raises:
        UnsupportedModelError: the message names what the model does and what to use instead.
    """
    functional, reused = activation_calls(module, z)
    if functional:
        raise UnsupportedModelError(
            f"{method} is not available for this model: its forward applies ReLU {functional} time(s) as a function "
            "(F.relu / torch.relu) rather than through an nn.ReLU module, and its code cannot be traced to change "
            f"that, so {method}'s rule would miss those ReLUs and the map would silently differ. Use Saliency or "
            "Integrated Gradients instead."
        )
    if reused and method == "DeepLift":
        names = ", ".join(f"'{n}' ({c} times)" for n, c in reused.items())
        raise UnsupportedModelError(
            f"DeepLift is not available for this model: the activation module {names} is used more than once per "
            "forward pass, and its code cannot be traced to give each use its own module, which DeepLift's rule "
            "needs. Use Integrated Gradients instead."
        )


def _is_listed(node, functions: set, method: str) -> bool:
    if node.op == "call_function" and node.target in functions:
        return not (node.target is operator.mul and _is_scalar_product(node))
    if node.op == "call_method" and method == "DeepLift" and node.target in NONLINEAR_METHODS:
        return not (node.target == "mul" and _is_scalar_product(node))
    return False


def _is_scalar_product(node) -> bool:
    """A product with a constant or a parameter (linear in the input), not of two activations (a gate)."""
    tensors = [a for a in node.args if hasattr(a, "op") and a.op not in ("get_attr",)]
    return len(tensors) < 2


def _op_name(node) -> str:
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))


def _lrp_reason(what: str) -> str:
    return (
        f"LRP is not available for this model: it has {what}, for which the app's LRP rules (zennit "
        "EpsilonPlusFlat) are not conservative, so relevance would vanish or be distorted there. Use Integrated "
        "Gradients, Occlusion or GradCAM instead."
    )


def _deeplift_reason(what: str) -> str:
    return (
        f"DeepLift is not available for this model: it has {what}, which Captum's DeepLift (Rescale rule) treats "
        "as linear, so the map would be InputXGradient's and miss f(x) - f(baseline). Use Integrated Gradients, "
        "which keeps completeness on any network."
    )


def _guided_reason(method: str) -> str:
    return (
        f"{method} is not available for this model: it works on ReLU activations only, and this model has no "
        "ReLU (it uses GELU / SiLU). Use Saliency or GradCAM instead."
    )


def check_conservation(relevance: torch.Tensor, logit: torch.Tensor) -> None:
    """LRP's promise: the input relevance sums to (about) the explained logit.

    Args:
        relevance: (1, C, H, W) input relevance.
        logit: the explained logit (0-d).

    Raises:
        UnsupportedModelError: the sum is not finite, or below `LRP_MIN_CONSERVED` of the logit.
    """
    total, target = float(relevance.sum()), float(logit)
    if not torch.isfinite(relevance).all():
        raise UnsupportedModelError("LRP produced non-finite relevance on this model; the map is not shown.")
    if abs(target) > MIN_LOGIT and abs(total) < LRP_MIN_CONSERVED * abs(target):
        raise UnsupportedModelError(
            f"LRP is not conservative on this model: the input relevance sums to {total:.2g} for a logit of "
            f"{target:.2g} (it should be close to the logit), so the map would be wrong and is not shown."
        )


def check_completeness(total: float, delta_f: float, has_maxpool: bool) -> None:
    """DeepLift's promise (summation-to-delta): the attributions sum to f(z) - f(baseline).

    Args:
        total: sum of the attributions.
        delta_f: f(z) - f(baseline) of the explained logit.
        has_maxpool: max pooling present (Captum's rule is approximate there: the check is skipped).

    Raises:
        UnsupportedModelError: the two differ by more than `DEEPLIFT_TOLERANCE` of |f(z) - f(baseline)|.
    """
    if has_maxpool or abs(delta_f) <= MIN_LOGIT:
        return
    if not abs(total - delta_f) <= DEEPLIFT_TOLERANCE * abs(delta_f):
        raise UnsupportedModelError(
            f"DeepLift misses completeness on this model: its attributions sum to {total:.3g} but f(x) - "
            f"f(baseline) = {delta_f:.3g}, so some layer is not handled by its rules and the map is not shown. Use "
            "Integrated Gradients instead."
        )


def unsupported_methods(model: nn.Module, methods: list[str]) -> dict[str, str]:
    """`{method: reason}` for the methods `static_support` refuses on `model` (for the Debugger's notices)."""
    out = {}
    for name in methods:
        support = static_support(name, model)
        if not support.supported:
            out[name] = support.reason
    return out

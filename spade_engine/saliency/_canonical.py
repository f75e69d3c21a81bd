"""A private, attribution-ready copy of a model, so saliency methods never touch the caller's model.

Hook-based attribution methods (Captum's DeepLift and GuidedBackprop, zennit's LRP rules) assume every
activation is its own, non-inplace module, called once per forward pass. torchvision nets break this:
`BasicBlock` calls `self.relu` twice, DenseNet calls `F.relu(inplace=True)`. `attribution_copy` deep-copies
the model, traces it with torch.fx and rewrites the copy's graph:

- every module called more than once (and holding no parameters) gets a fresh copy per call site;
- functional ReLUs (`F.relu`, `torch.relu`, `x.relu()`) become `nn.ReLU` modules;
- every `inplace` flag is switched off;
- optionally (for LRP) tensor additions of equal shapes become zennit `Sum` modules on a stacked input,
  so the residual merge gets its own relevance rule, exactly as zennit's `ResNetCanonizer` does.

Models that torch.fx cannot trace (TorchScript, data-dependent control flow) fall back to a deep copy with
inplace flags off; hook-based methods may then be inexact on reused modules.

The copy always returns the class logits (1, K): a network returning a tuple, list or mapping is cut to the
app's rule (`spade_engine.models.logits_of`: a tuple's first element, a mapping's "logits") by rewriting the
traced graph's output, or, untraced, by wrapping it in `FirstLogits`.

Tracing is made safe for a server with many sessions (`trace`): while torch.fx traces, it patches
`nn.Module.__call__` and `__getattr__` for the whole process, so another thread's forward pass would be
recorded into (and break) the trace, and two traces at once can leave the patches in place for good. One trace
runs at a time (a process-wide lock), and calls from other threads pass through the tracer untouched.
"""

from __future__ import annotations

import copy
import operator
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F
from zennit.layer import Sum

from spade_engine.models import logits_of
from spade_engine.reparam import copy_model

_FUNCTIONAL_RELUS = (F.relu, torch.relu, torch.relu_)
_RELU_METHODS = ("relu", "relu_")
_ADDS = (operator.add, operator.iadd, torch.add)
_TRACE_LOCK = threading.Lock()  # torch.fx patches nn.Module for the whole process while it traces


class _OwnThreadTracer(fx.Tracer):
    """torch.fx's tracer that records only the tracing thread's module calls; other threads' calls (other
    sessions' forward passes, which the process-wide patch also reaches) run as if nothing were traced."""

    def __init__(self) -> None:
        super().__init__()
        self._owner = threading.get_ident()

    def call_module(self, m: nn.Module, forward, args: tuple, kwargs: dict) -> Any:  # noqa: ANN001
        if threading.get_ident() != self._owner:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if threading.get_ident() != self._owner:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def trace(module: nn.Module) -> fx.GraphModule:
    """`torch.fx.symbolic_trace(module)`, safe while other threads run models (see the module docstring).

    Raises:
        Whatever torch.fx raises on an untraceable module (data-dependent control flow, TorchScript).
    """
    with _TRACE_LOCK:
        tracer = _OwnThreadTracer()
        graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph, module.__class__.__name__)


@dataclass
class CanonicalCopy:
    """The rewritten copy and, when it could be traced, its graph with shapes (`node.meta['tensor_meta']`)."""

    module: nn.Module
    traced: bool
    example: torch.Tensor | None = None  # the input the copy was built for (1, 3, H, W), for layer searches


class FirstLogits(nn.Module):
    """`net` whose output is cut to its class logits by `logits_of` (untraceable nets returning tuples)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return logits_of(self.net(z))


def attribution_copy(model: nn.Module, x: torch.Tensor, residual_sums: bool = False) -> CanonicalCopy:
    """A deep copy of `model` fit for hook-based attribution (see module docstring); `model` is not modified.

    Args:
        model: any module mapping `x` to logits.
        x: an example input (1, 3, H, W) on the model's device, used to propagate shapes.
        residual_sums: turn tensor additions into zennit `Sum` modules (for LRP's Norm rule).

    Returns:
        `CanonicalCopy` in eval mode with no hooks from the caller.
    """
    clone = copy_model(model).eval()
    _clear_hooks(clone)
    _disable_inplace(clone)
    try:
        gm = trace(clone)
    except Exception:  # untraceable: keep the plain copy
        return CanonicalCopy(logits_module(clone, x), traced=False, example=x.detach())
    _split_reused_modules(gm)
    _functional_relus_to_modules(gm)
    _disable_inplace_kwargs(gm)
    gm.recompile()
    with torch.no_grad():
        out = ShapeProp(gm).propagate(x)
    if not isinstance(out, torch.Tensor):
        _output_logits(gm, out)
    if residual_sums:
        _adds_to_sums(gm)
        gm.recompile()
    return CanonicalCopy(gm.eval(), traced=True, example=x.detach())


def logits_module(module: nn.Module, x: torch.Tensor) -> nn.Module:
    """`module` itself when it returns a tensor on `x`, else `FirstLogits(module)` (one probe forward).

    Raises:
        spade_engine.models.ModelOutputError: the output holds no logits by the app's rule.
    """
    with torch.no_grad():
        out = module(x)
    if isinstance(out, torch.Tensor):
        return module
    logits_of(out)  # raises with a message naming what the model returns
    return FirstLogits(module)


def _output_logits(gm: fx.GraphModule, out: object) -> None:
    """Rewrite the graph's output (a tuple / list / mapping of nodes, structured as `out`) to the logits node."""
    logits_of(out)  # raises with a message naming what the model returns
    node = next(n for n in gm.graph.nodes if n.op == "output")
    result = node.args[0]
    node.args = (result["logits"] if isinstance(result, dict) else result[0],)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def _clear_hooks(module: nn.Module) -> None:
    for m in module.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            getattr(m, name, {}).clear()
        if hasattr(m, "_forward_hooks_with_kwargs"):
            m._forward_hooks_with_kwargs.clear()
            m._forward_pre_hooks_with_kwargs.clear()


def _disable_inplace(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(getattr(m, "inplace", None), bool) and not isinstance(m, torch.jit.ScriptModule):
            m.inplace = False  # TorchScript compiles `inplace` into a constant: it cannot be changed


def _split_reused_modules(gm: fx.GraphModule) -> None:
    seen: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        count = seen.get(node.target, 0)
        seen[node.target] = count + 1
        module = gm.get_submodule(node.target)
        if count == 0 or any(True for _ in module.parameters()):
            continue
        new_target = f"{node.target}_call{count}".replace(".", "_")
        gm.add_submodule(new_target, copy.deepcopy(module))
        node.target = new_target


def _functional_relus_to_modules(gm: fx.GraphModule) -> None:
    for i, node in enumerate(list(gm.graph.nodes)):
        is_fn = node.op == "call_function" and node.target in _FUNCTIONAL_RELUS
        is_method = node.op == "call_method" and node.target in _RELU_METHODS
        if not (is_fn or is_method):
            continue
        name = f"_functional_relu_{i}"
        gm.add_submodule(name, nn.ReLU())
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)


def _disable_inplace_kwargs(gm: fx.GraphModule) -> None:
    for node in gm.graph.nodes:
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        if node.op == "call_function" and node.target is operator.iadd:
            node.target = operator.add


def tensor_shape(arg: object) -> torch.Size | None:
    """The output shape `ShapeProp` recorded on a traced node; None for anything else."""
    meta = arg.meta.get("tensor_meta") if isinstance(arg, fx.Node) else None
    return getattr(meta, "shape", None)


def _adds_to_sums(gm: fx.GraphModule) -> None:
    for i, node in enumerate(list(gm.graph.nodes)):
        if node.op != "call_function" or node.target not in _ADDS or len(node.args) != 2 or node.kwargs:
            continue
        a, b = node.args
        shape = tensor_shape(a)
        if shape is None or shape != tensor_shape(b):
            continue
        name = f"_residual_sum_{i}"
        gm.add_submodule(name, Sum(dim=-1))
        with gm.graph.inserting_before(node):
            stacked = gm.graph.call_function(torch.stack, ((a, b),), {"dim": -1})  # (..., 2)
            summed = gm.graph.call_module(name, (stacked,))
        summed.meta = dict(node.meta)
        node.replace_all_uses_with(summed)
        gm.graph.erase_node(node)

"""Forward hooks as context managers: registered on entry, always removed on exit (also after exceptions)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

HookFn = Callable[[str, nn.Module, tuple, torch.Tensor], None]


class StopForward(Exception):
    """Raised from a hook to end a forward pass early once the wanted inputs are captured."""


@contextmanager
def forward_hooks(modules: dict[str, nn.Module], fn: HookFn) -> Iterator[None]:
    """Call `fn(name, module, inputs, output)` after each forward of the given modules.

    Args:
        modules: name -> module to hook.
        fn: the hook body.
    """
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: fn(name, m, i, o)))
        yield
    finally:
        for h in handles:
            h.remove()


def execution_order(model: nn.Module, x: torch.Tensor, types: tuple[type, ...]) -> tuple[list[str], set[str]]:
    """Names of the modules of `types` in the order a forward pass of `x` first calls them.

    Returns:
        (ordered names, names called more than once — shared modules, which cannot be pruned per call).
    """
    candidates = {n: m for n, m in model.named_modules() if isinstance(m, types)}
    calls: list[str] = []
    with forward_hooks(candidates, lambda name, m, i, o: calls.append(name)), torch.no_grad():
        model(x)
    order = list(dict.fromkeys(calls))
    shared = {n for n in order if calls.count(n) > 1}
    return order, shared


@dataclass(frozen=True)
class LayerTrace:
    """The layers SPADE prunes in a model, as one forward pass shows them (the engine's per-sample trace).

    Attributes:
        layers: Conv2d / Linear modules in the order the pass first calls them, each called exactly once.
        first_conv: the first Conv2d of `layers` (kept dense by `PruneConfig.skip_first`), or None.
        head: the last of `layers` when it is a Linear (the classifier head, `PruneConfig.skip_head`), or None.
        shared: Conv2d / Linear modules called more than once per pass (one mask cannot fit every call).
    """

    layers: tuple[str, ...]
    first_conv: str | None
    head: str | None
    shared: frozenset[str]


def layer_trace(model: nn.Module, x: torch.Tensor) -> LayerTrace:
    """Which layers SPADE prunes, from one forward pass of `x` (the rule `SpadeEngine` applies to its trace).

    Execution order, not module-declaration order: a module declared before it is used, or one the forward pass
    never calls (applied functionally), is placed or left out as the engine does.

    Args:
        model: the network (not modified; hooks are removed afterwards).
        x: one input batch on the model's device, e.g. (1, 3, S, S).

    Returns:
        The trace.
    """
    order, shared = execution_order(model, x, (nn.Conv2d, nn.Linear))
    layers = [n for n in order if n not in shared]
    modules = dict(model.named_modules())
    first_conv = next((n for n in layers if isinstance(modules[n], nn.Conv2d)), None)
    head = layers[-1] if layers and isinstance(modules[layers[-1]], nn.Linear) else None
    return LayerTrace(tuple(layers), first_conv, head, frozenset(shared))

"""Forward hooks as context managers: registered on entry, always removed on exit (also after exceptions)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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

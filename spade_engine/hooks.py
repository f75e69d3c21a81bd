"""Forward hooks as context managers: registered on entry, always removed on exit (also after exceptions).

The only place in `spade_engine` that registers hooks: `forward_hooks` (a hook body per call, which may return a
replacement output), `forward_pre_hooks` (before each call), `replaced_forwards` (a module's forward swapped for the
block) and `capture` (record inputs or outputs). Every user is listed in tests/engine/test_hook_hygiene.py, which
checks that no hook is left, also after an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

HookFn = Callable[[str, nn.Module, tuple, torch.Tensor], None]


@contextmanager
def forward_hooks(modules: Mapping[str, nn.Module], fn: HookFn) -> Iterator[None]:
    """Call `fn(name, module, inputs, output)` after each forward of the given modules, inside the block.

    Args:
        modules: name -> module to hook.
        fn: the hook body; what it returns, if not None, replaces the module's output (PyTorch's rule).
    """
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: fn(name, m, i, o)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replaced_forwards(
    modules: Mapping[str, nn.Module], fn: Callable[[str, nn.Module, torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Inside the block, calling one of `modules` computes `fn(name, module, input)` instead of its forward (hooks
    still run around it); `type(module).forward(module, x)` inside `fn` is the original. For passes that must
    compute a layer differently on parts of the batch, which a forward hook could only do after the fact.

    Args:
        modules: name -> module taking one tensor; fn: the replacement, returning the module's output.
    """
    own = {name: module.__dict__["forward"] for name, module in modules.items() if "forward" in module.__dict__}
    try:
        for name, module in modules.items():
            module.forward = lambda x, name=name, module=module: fn(name, module, x)
        yield
    finally:
        for name, module in modules.items():
            module.__dict__.pop("forward", None)
            if name in own:  # a forward set on the instance before the block
                module.forward = own[name]


@contextmanager
def forward_pre_hooks(modules: Mapping[str, nn.Module], fn: Callable[[str, nn.Module, tuple], None]) -> Iterator[None]:
    """Call `fn(name, module, inputs)` before each forward of the given modules, inside the block.

    Args:
        modules: name -> module to hook; fn: the hook body (its return value is ignored).
    """

    def hook(name: str):
        def call(module: nn.Module, inputs: tuple) -> None:
            fn(name, module, inputs)

        return call

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_pre_hook(hook(name)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture(
    modules: Mapping[str, nn.Module],
    what: str = "output",
    keep: Callable[[object], torch.Tensor | None] | None = None,
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record each module's first input or its output on every forward pass inside the block.

    Args:
        modules: name -> module to watch.
        what: "input" (the first positional input) or "output".
        keep: what to store of it (default: the tensor detached); returning None stores nothing.

    Yields:
        name -> the values stored, one per call, in call order.

    Raises:
        ValueError: `what` is neither "input" nor "output".
    """
    if what not in ("input", "output"):
        raise ValueError(f"capture records an 'input' or an 'output', not {what!r}.")
    keep = keep or (lambda t: t.detach())
    store: dict[str, list[torch.Tensor]] = {name: [] for name in modules}

    def record(name: str, module: nn.Module, inputs: tuple, output) -> None:
        value = keep(inputs[0] if what == "input" else output)
        if value is not None:
            store[name].append(value)

    with forward_hooks(modules, record):
        yield store


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

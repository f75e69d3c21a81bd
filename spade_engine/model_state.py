"""Running a user's model without changing it: every module in eval mode for the duration, each module's own
train/eval flag restored afterwards (a model can mix them, e.g. frozen BatchNorm inside a training network)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode (BatchNorm uses and keeps its running statistics, dropout is off) and restore
    every submodule's `training` flag on exit, also after an exception.

    Yields:
        `model` itself.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training

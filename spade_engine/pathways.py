"""Critical pathways: the neurons that contribute most to a class score, and the gradient through them.

A neuron's contribution is `|a * dy_c/da|` over every ReLU output (per unit, or summed per channel). The pathway
keeps the top fraction of neurons (a global percentile over all layers, as in the authors' code, or the same
fraction in every layer) and gates the rest to zero. The **pathway gradient** is the input gradient of the class
score through the gated network, with the gates fixed.

Paper: Khakzar et al., "Neural Response Interpretation through the Lens of Critical Pathways", CVPR 2021
(https://arxiv.org/abs/2103.16886).

ReLU modules are hooked; a module called several times in one forward (torchvision's ResNet blocks reuse
`self.relu`) gets one record per call, named `"<module>#<call>"`. Inplace ReLUs are fine: the hook returns a new,
gated tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spade_engine.hooks import forward_hooks, forward_pre_hooks

RELUS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
GRANULARITIES = ("unit", "channel")
SELECTIONS = ("global", "per_layer")


@dataclass(frozen=True)
class Pathway:
    """A critical pathway of one sample: a binary keep-mask per ReLU call (CPU bool tensors)."""

    names: tuple[str, ...]  # "<module name>#<call index>", in forward order
    masks: tuple[torch.Tensor, ...]  # unit: (1, C, H, W) / (1, F); channel: (1, C, 1, 1) / (1, F)
    keep: float
    granularity: str
    selection: str
    target: int

    @property
    def kept(self) -> list[int]:
        return [int(m.sum()) for m in self.masks]

    @property
    def sizes(self) -> list[int]:
        return [m.numel() for m in self.masks]


def relu_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ReLU-family modules of `model` (`RELUS`), in registration order."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, RELUS)]
    if not found:
        raise ValueError("The model has no ReLU modules: critical pathways need ReLU activations.")
    return found


@contextmanager
def _relu_hooks(model: nn.Module, fn) -> Iterator[list[str]]:
    """Call `fn(call_index, output) -> output` on every ReLU call; yields the call names of the last forward.

    Call indices restart at 0 with every forward pass of `model`.
    """
    calls: list[str] = []
    counts: dict[str, int] = {}

    def reset(_name, _module, _inp) -> None:
        calls.clear()
        counts.clear()

    def hook(name: str, _module, _inp, out):
        k = counts.get(name, 0)
        counts[name] = k + 1
        calls.append(f"{name}#{k}")
        return fn(len(calls) - 1, out)

    with forward_pre_hooks({"": model}, reset), forward_hooks(dict(relu_modules(model)), hook):
        yield calls


@contextmanager
def gated(model: nn.Module, masks: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> Iterator[None]:
    """Forward passes of `model` inside the block multiply the i-th ReLU call's output by `masks[i]`.

    Masks broadcast over the batch; they are constants (no gradient flows into them).
    """
    cache: dict[tuple[int, torch.device], torch.Tensor] = {}

    def gate(i: int, out: torch.Tensor) -> torch.Tensor:
        if i >= len(masks):
            raise RuntimeError(f"The forward made more ReLU calls than the pathway has masks ({len(masks)}).")
        key = (i, out.device)
        if key not in cache:
            cache[key] = masks[i].to(device=out.device, dtype=out.dtype)
        return out * cache[key]

    with _relu_hooks(model, gate):
        yield


def contributions(
    model: nn.Module, x: torch.Tensor, target: int, granularity: str = "unit"
) -> tuple[list[str], list[torch.Tensor], float]:
    """Neuron contributions `|a * dy_target/da|` of every ReLU call on one sample.

    Args:
        model: classifier taking images in [0, 1]; not modified.
        x: (1, 3, H, W) image in [0, 1].
        target: class whose logit `y` is explained.
        granularity: "unit" (every activation) or "channel" (summed over spatial positions).

    Returns:
        (names, contributions per call (CPU float, unit (1, C, H, W) / channel (1, C, 1, 1)), logit).
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}.")
    gates: list[torch.Tensor] = []

    def attach(_i: int, out: torch.Tensor) -> torch.Tensor:
        g = torch.ones_like(out[:1], requires_grad=True)  # d y / d g = a * d y / d a at g = 1
        gates.append(g)
        return out * g

    with torch.enable_grad(), _relu_hooks(model, attach) as calls:
        logit = model(x)[0, target]
        grads = torch.autograd.grad(logit, gates, allow_unused=True)
    contrib = [
        (torch.zeros_like(g) if gr is None else gr).abs().detach().cpu() for g, gr in zip(gates, grads, strict=True)
    ]
    if granularity == "channel":
        contrib = [c.sum(dim=tuple(range(2, c.dim())), keepdim=True) if c.dim() > 2 else c for c in contrib]
    return list(calls), contrib, float(logit.detach())


def select(contrib: list[torch.Tensor], keep: float, selection: str = "global") -> list[torch.Tensor]:
    """Keep-masks for the top `keep` fraction of contributions.

    Args:
        contrib: per-call contribution tensors.
        keep: fraction in (0, 1] of neurons kept (1.0 keeps all).
        selection: "global" (one percentile over all calls) or "per_layer" (top fraction of each call).

    Returns:
        Bool masks shaped like `contrib`.
    """
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1].")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}.")
    if selection == "per_layer":
        return [_top(c.flatten(), keep).view_as(c) for c in contrib]
    flat = _top(torch.cat([c.flatten() for c in contrib]), keep)
    return [m.view_as(c) for m, c in zip(flat.split([c.numel() for c in contrib]), contrib, strict=True)]


def _top(values: torch.Tensor, keep: float) -> torch.Tensor:
    k = max(1, math.ceil(keep * values.numel()))
    mask = torch.zeros_like(values, dtype=torch.bool)
    mask[values.topk(k).indices] = True
    return mask


def critical_pathway(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    keep: float = 0.15,
    granularity: str = "unit",
    selection: str = "global",
) -> Pathway:
    """The critical pathway of `x` for class `target` (see `contributions` and `select`)."""
    names, contrib, _ = contributions(model, x, target, granularity)
    masks = select(contrib, keep, selection)
    return Pathway(tuple(names), tuple(masks), keep, granularity, selection, int(target))


def pathway_gradient(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    keep: float = 0.15,
    granularity: str = "unit",
    selection: str = "global",
    pathway: Pathway | None = None,
) -> torch.Tensor:
    """Input gradient of the class logit through the critical pathway (gates fixed).

    Args:
        model: classifier taking images in [0, 1]; not modified.
        x: (1, 3, H, W) image in [0, 1].
        target: class explained.
        keep, granularity, selection: how the pathway is chosen (`critical_pathway`); ignored if `pathway` given.
        pathway: a precomputed pathway of the same sample.

    Returns:
        (1, 3, H, W) signed gradient (CPU float). With `keep=1.0` it equals the plain input gradient.
    """
    if pathway is None:
        pathway = critical_pathway(model, x, target, keep, granularity, selection)
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), gated(model, pathway.masks):
        logit = model(xg)[0, target]
        (grad,) = torch.autograd.grad(logit, xg)
    return grad.detach().cpu()


@dataclass(frozen=True)
class PathwaySummary:
    """Per-layer pathway sizes and how much of the output a pathway of each size preserves."""

    names: tuple[str, ...]
    kept: tuple[int, ...]  # neurons (units or channels) kept per ReLU call at `keep`
    sizes: tuple[int, ...]  # neurons per ReLU call
    contributing: int  # neurons with a non-zero contribution (active and on a gradient path)
    keep: float
    dense_logit: float
    gated_logit: float  # target logit of the network gated at `keep`
    gated_agrees: bool  # ... and whether it still predicts the dense prediction
    curve_keep: np.ndarray  # (P,) keep fractions
    curve_logit: np.ndarray  # (P,) target logit of the gated net
    curve_agrees: np.ndarray  # (P,) bool: the gated net still predicts the dense prediction

    @property
    def fractions(self) -> np.ndarray:
        return np.asarray(self.kept) / np.maximum(np.asarray(self.sizes), 1)

    @property
    def keeps_all_contributing(self) -> bool:
        """The pathway holds every neuron with a non-zero contribution: its gradient is the plain gradient."""
        return sum(self.kept) >= self.contributing

    @property
    def curve_preserved(self) -> np.ndarray:
        """Gated logit / dense logit (1.0 = output fully preserved)."""
        return self.curve_logit / self.dense_logit if self.dense_logit else np.full_like(self.curve_logit, np.nan)


@torch.no_grad()
def _gated_logits(model: nn.Module, x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    with gated(model, masks):
        return model(x)[0].detach().cpu()


def pathway_summary(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    keep: float = 0.15,
    granularity: str = "unit",
    selection: str = "global",
    curve: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0),
) -> PathwaySummary:
    """Per-layer kept neurons at `keep`, and the gated logit for every pathway size in `curve`.

    Contributions are computed once; each curve point is one gated forward pass.
    """
    names, contrib, dense_logit = contributions(model, x, target, granularity)
    masks = select(contrib, keep, selection)
    with torch.no_grad():
        dense_pred = int(model(x)[0].argmax())
    gated_out = _gated_logits(model, x, masks)
    logits, agrees = [], []
    for frac in curve:
        out = _gated_logits(model, x, select(contrib, frac, selection))
        logits.append(float(out[target]))
        agrees.append(int(out.argmax()) == dense_pred)
    return PathwaySummary(
        names=tuple(names),
        kept=tuple(int(m.sum()) for m in masks),
        sizes=tuple(m.numel() for m in masks),
        contributing=int(sum(int((c > 0).sum()) for c in contrib)),
        keep=keep,
        dense_logit=dense_logit,
        gated_logit=float(gated_out[target]),
        gated_agrees=int(gated_out.argmax()) == dense_pred,
        curve_keep=np.asarray(curve, float),
        curve_logit=np.asarray(logits),
        curve_agrees=np.asarray(agrees),
    )

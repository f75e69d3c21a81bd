"""The one interface every saliency method sits behind: `SaliencyMethod`, the `AttributionInput` it explains and
the `SaliencyResult` it yields.

Attribution space (as the SPADE authors' notebook and Captum's tutorials): for a `Classifier` (normalisation
inside) every method explains `net` at the *normalised* input `z = (x - mean) / std`, so a zero baseline is the
dataset's mean colour and black pixels (z ~ -2) carry attribution like any other. A model without a
normalisation of its own is explained at its pixels (then zero is black). A method's
`fn(inp: AttributionInput, target)` returns a raw attribution (1, C, H, W) w.r.t. `inp.z` (C = 3 for pixel
attributions, 1 for GradCAM); `reduce_to_map` turns it into the per-pixel map everybody consumes, with one of
`REDUCTIONS`: "absolute" `sum_c |A_c|` or "signed" `sum_c A_c`. Methods run on a private copy of the model
(`_canonical.attribution_copy`), so the caller's model, its parameters and its hooks are never touched; the plain
gradient methods, which add no hooks and change nothing, differentiate a hook-free model itself (`gradients._model`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

SEED = 0  # stochastic methods (GradientShap, SmoothGrad, LIME) draw from a fixed seed: maps are reproducible


def local_generator(seed: int = SEED) -> torch.Generator:
    """A CPU `torch.Generator` of its own for one map's random draws (drawn on the CPU, then moved to the
    model's device, so a map is the same on every device). The process-wide RNGs are never seeded or read,
    so maps computed at the same time by other sessions or threads cannot disturb each other."""
    return torch.Generator().manual_seed(seed)


REDUCTIONS = ("absolute", "signed")  # sum_c |A_c| (Captum's `sign="absolute_value"`) | sum_c A_c (the authors' LRP)


@dataclass(frozen=True)
class AttributionInput:
    """What a method explains: `net(z)` gives the logits.

    Attributes:
        net: the network after the model's normalisation (the whole model when it has none).
        z: (1, 3, H, W) the input `net` sees: the normalised image for a `Classifier`, else the pixels.
        pixels: (1, 3, H, W) the image in [0, 1] (for superpixels and pixel-space noise).
        normalize: maps pixels in [0, 1] to `z`'s space (`nn.Identity` when the model has no normalisation).
        layer: for layer methods (GradCAM, GuidedGradCam), the layer the user chose, a module name of the
            attribution copy of `net` (`gradcam_layers` lists them); None for the default rule.
    """

    net: nn.Module
    z: torch.Tensor
    pixels: torch.Tensor
    normalize: nn.Module
    layer: str | None = None

    @property
    def space(self) -> str:
        """ "normalised" or "pixels": where attributions and zero baselines live."""
        return "pixels" if isinstance(self.normalize, nn.Identity) else "normalised"


AttributionFn = Callable[[AttributionInput, int], torch.Tensor]


class TwoClassView(nn.Module):
    """A binary (sigmoid) `Classifier`'s net seen with its two class logits (-z/2, z/2), as the classifier shows
    them (`spade_engine.models.two_class_logits`).

    The mapping is a fixed, bias-free `nn.Linear(1, 2)` (weights -1/2 and 1/2), so LRP's epsilon rule passes the
    relevance through it unchanged (conserved), and every method explains either class: class 1 is the evidence
    for the positive class, class 0 the same evidence with the opposite sign.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.classes = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.classes.weight.copy_(torch.tensor([[-0.5], [0.5]]))
        self.classes.weight.requires_grad_(False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        from spade_engine.models import logits_of

        return self.classes(logits_of(self.net(z)))  # (B, 2)


def split_classifier(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(normalize, net) for a `spade_engine.models.Classifier` (`TwoClassView(net)` for a binary one),
    (identity, model) otherwise."""
    from spade_engine.models import Classifier

    if isinstance(model, Classifier):
        if getattr(model, "binary", False):
            return model.normalize, TwoClassView(model.net).to(model.normalize.mean.device)
        return model.normalize, model.net
    return nn.Identity(), model


def attribution_input(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> AttributionInput:
    """Split `model` at its normalisation and normalise `x` (1, 3, H, W) in [0, 1]; see the module docstring.
    `layer`: the layer methods' chosen layer (`AttributionInput.layer`)."""
    normalize, net = split_classifier(model)
    with torch.no_grad():
        z = normalize(x).detach()
    return AttributionInput(net, z, x.detach(), normalize, layer)


@dataclass(frozen=True)
class SaliencyMethod:
    """A registry entry.

    Attributes:
        name: registry key, as shown in the UI.
        library: "captum", "zennit" or "spade_engine" (who implements the method).
        params: the settings used, stated for reports (n_steps, window, n_samples, ...).
        baseline: the reference input the method compares against, in words, or "none".
        fn: `fn(inp: AttributionInput, target) -> Tensor (1, C, H, W)`, the raw attribution w.r.t. `inp.z`.
        reduction: the channel reduction the SPADE paper's protocol uses for this method, one of `REDUCTIONS`
            (the default of `attribute`).
        reduction_note: how `fn`'s output becomes per-pixel values before the channel reduction, when it is
            not a plain per-pixel attribution (GradCAM's upsampling, LIME's superpixels...).
        reference: paper link.
    """

    name: str
    library: str
    params: dict = field(hash=False)
    baseline: str
    fn: AttributionFn = field(repr=False)
    reduction: str = "absolute"
    reduction_note: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"{self.name}: reduction must be one of {REDUCTIONS}, got {self.reduction!r}.")


@dataclass(frozen=True)
class SaliencyResult:
    """One saliency map: `map` is (H, W) float32, finite; non-negative unless `reduction` is "signed"."""

    method: str
    target: int
    map: np.ndarray = field(repr=False, compare=False)
    seconds: float = 0.0
    reduction: str = "absolute"


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) -> detached (1, 3, H, W)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x.detach()


def reduce_to_map(attribution: torch.Tensor, size: tuple[int, int], reduction: str = "absolute") -> np.ndarray:
    """(1, C, H, W) attribution -> (H, W) float32 map, NaN/inf replaced by 0.

    Args:
        attribution: the raw attribution.
        size: the expected (H, W) (raises ValueError when the attribution's differs).
        reduction: "absolute" -> `sum_c |A_c|` (non-negative); "signed" -> `sum_c A_c` (sign kept: negative
            evidence stays negative, as in the SPADE authors' LRP maps).
    """
    if attribution.shape[-2:] != size:
        raise ValueError(f"attribution spatial size {tuple(attribution.shape[-2:])} != input {size}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"Unknown reduction {reduction!r}: use one of {REDUCTIONS}.")
    a = attribution.detach()
    sal = (a.abs() if reduction == "absolute" else a).sum(dim=1)[0]  # (H, W)
    return np.nan_to_num(sal.float().cpu().numpy(), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

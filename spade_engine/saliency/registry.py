"""The saliency registry: one dict drives the UI select boxes, the benchmarks and the tests.

Adding a method is one `SaliencyMethod(...)` line in `METHODS`. Every method attributes the *normalised* input
of a `Classifier` (see `_base`): "zero" there is the dataset's mean colour, as in Captum's defaults and the SPADE
authors' notebook. Each entry names its baseline and the channel reduction the paper's protocol uses for it:
"absolute" `sum_c |A_c|` (Captum's default display) for every method but LRP, whose map in the authors' code is
the signed channel sum. `attribute(..., reduction=...)` overrides it.

Layer methods (`LAYER_METHODS`: GradCAM, GuidedGradCam) take a chosen layer in the name, `"GradCAM[layer4.1]"`
(`with_layer`), so every cache keyed by the method name keeps one map per layer; `gradcam_layers` lists the
layers. A method that cannot explain a model faithfully raises `support.UnsupportedModelError`.
"""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import torch
from torch import nn

from spade_engine.model_state import eval_mode
from spade_engine.saliency import deeplift, gradcam, gradients, guided, lrp, pathway, perturbation
from spade_engine.saliency._base import (
    REDUCTIONS,
    SEED,
    SaliencyMethod,
    SaliencyResult,
    as_batch,
    attribution_input,
    reduce_to_map,
)
from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.layers import choosable_layers, default_layer

_MEAN = "mean colour (z = 0 in the normalised input; black for a model without normalisation)"

METHODS: dict[str, SaliencyMethod] = {
    m.name: m
    for m in (
        SaliencyMethod("Saliency", "captum", {"abs": True}, "none", gradients.saliency, reference="arXiv 1312.6034"),
        SaliencyMethod(
            "InputXGradient",
            "captum",
            {},
            "none (z times its gradient: the first-order share relative to the mean colour)",
            gradients.input_x_gradient,
            reference="arXiv 1605.01713",
        ),
        SaliencyMethod(
            "DeepLift", "captum", {"rule": "Rescale"}, _MEAN, deeplift.deeplift, reference="arXiv 1704.02685"
        ),
        SaliencyMethod(
            "LRP",
            "zennit",
            {
                "composite": "EpsilonPlusFlat",
                "epsilon": 1e-6,
                "canonizer": "ResNetCanonizer / VGGCanonizer / fx graph (BN merge + residual Sum)",
            },
            "none",
            lrp.lrp,
            reduction="signed",
            reduction_note="relevance at the normalised input (conserves the logit)",
            reference="doi:10.1371/journal.pone.0130140",
        ),
        SaliencyMethod("GuidedBackprop", "captum", {}, "none", guided.guided_backprop, reference="arXiv 1412.6806"),
        SaliencyMethod(
            "GuidedGradCam",
            "captum",
            {"layer": "last spatial feature map (token grid for transformers) or chosen", "upsample": "bilinear"},
            "none",
            guided.guided_gradcam,
            reference="arXiv 1610.02391",
        ),
        SaliencyMethod(
            "LIME",
            "captum",
            {
                "n_samples": perturbation.LIME_SAMPLES,
                "superpixels": "SLIC",
                "n_segments": perturbation.LIME_SEGMENTS,
                "compactness": perturbation.LIME_COMPACTNESS,
                "surrogate": "Ridge(alpha=1)",
                "kernel_width": perturbation.LIME_KERNEL_WIDTH,
            },
            f"superpixel set to the {_MEAN}",
            perturbation.lime,
            reduction_note="Ridge weight of the pixel's superpixel, on each of the 3 channels",
            reference="arXiv 1602.04938",
        ),
        SaliencyMethod(
            "Occlusion",
            "captum",
            {"window": "H/8 px", "stride": "window/2", "window_fraction": perturbation.OCCLUSION_WINDOW_FRACTION},
            f"window set to the {_MEAN}",
            perturbation.occlusion,
            reference="arXiv 1311.2901",
        ),
        SaliencyMethod(
            "IntegratedGradients",
            "captum",
            {"n_steps": gradients.IG_STEPS, "method": "gausslegendre"},
            _MEAN,
            gradients.integrated_gradients,
            reference="arXiv 1703.01365",
        ),
        SaliencyMethod(
            "GradientShap",
            "captum",
            {
                "n_samples": gradients.SHAP_SAMPLES,
                "stdevs": 0.0,
                "n_baselines": 1 + gradients.SHAP_RANDOM_BASELINES,
                "seed": SEED,
            },
            f"{_MEAN} + {gradients.SHAP_RANDOM_BASELINES} uniform-noise images (normalised)",
            gradients.gradient_shap,
            reference="arXiv 1705.07874",
        ),
        SaliencyMethod(
            "SmoothGrad",
            "captum",
            {"nt_samples": gradients.SMOOTHGRAD_SAMPLES, "noise_level": gradients.SMOOTHGRAD_NOISE_LEVEL, "seed": SEED},
            "none",
            gradients.smoothgrad,
            reduction_note="mean over noisy copies of |gradient| (noise sigma = noise_level x input range)",
            reference="arXiv 1706.03825",
        ),
        SaliencyMethod(
            "GradCAM",
            "captum",
            {"layer": "last spatial feature map (token grid for transformers) or chosen", "upsample": "bilinear"},
            "none",
            gradcam.gradcam,
            reduction_note="ReLU'd class activation map (one channel), bilinear to input size",
            reference="arXiv 1610.02391",
        ),
        SaliencyMethod(
            "PathwayGradient",
            "spade_engine",
            {"keep": pathway.PATHWAY_KEEP},
            "none",
            pathway.pathway_gradient,
            reference="arXiv 2103.16886",
        ),
    )
}

# Captum's notices about hooks on our private copy and the input's requires_grad: expected, not actionable.
_KNOWN_WARNINGS = (r"Input Tensor \d+ did not already require gradients", r"Setting (forward|backward)")

# The ten methods of the SPADE paper's trojan table (arXiv 2310.04519, Table 1).
PAPER_METHODS: tuple[str, ...] = (
    "Saliency",
    "InputXGradient",
    "DeepLift",
    "LRP",
    "GuidedBackprop",
    "GuidedGradCam",
    "LIME",
    "Occlusion",
    "IntegratedGradients",
    "GradientShap",
)


LAYER_METHODS: tuple[str, ...] = ("GradCAM", "GuidedGradCam")  # methods that explain one layer, user-choosable
_LAYER_NAME = re.compile(r"^(?P<method>[^\[\]]+)\[(?P<layer>[^\[\]]+)\]$")


def with_layer(method: str, layer: str | None) -> str:
    """The registry name of a layer method at a chosen layer: `with_layer("GradCAM", "layer4")` ->
    `"GradCAM[layer4]"`; the plain name for None or for methods that take no layer."""
    return f"{method}[{layer}]" if layer and method in LAYER_METHODS else method


def split_layer(name: str) -> tuple[str, str | None]:
    """`"GradCAM[layer4]"` -> ("GradCAM", "layer4"); a plain name -> (name, None)."""
    match = _LAYER_NAME.match(name)
    return (match["method"], match["layer"]) if match else (name, None)


def gradcam_layers(model: nn.Module, x: torch.Tensor) -> tuple[str, list[str]]:
    """The layers GradCAM can explain on `model`, for a layer picker.

    Args:
        model: as for `attribute`.
        x: one image (1, 3, H, W) or (3, H, W) in [0, 1], on the model's device.

    Returns:
        (the default layer's name, every choosable layer's name in execution order: modules of the network
        whose output lies on a spatial grid and receives a gradient; the default may be a helper module the
        attribution copy adds, e.g. `_gradcam_anchor` after a residual sum).
    """
    inp = attribution_input(model, as_batch(x))
    with torch.enable_grad():
        canonical = attribution_copy(inp.net, inp.z)
        return default_layer(canonical).name, [layer.name for layer in choosable_layers(canonical, inp.net)]


def method_table() -> list[dict[str, str]]:
    """One row per registered method: library, baseline, the paper's channel reduction, settings and paper, for
    the Benchmarks page and reports."""
    return [
        {
            "method": m.name,
            "library": m.library,
            "attributes": "the normalised input",
            "baseline": m.baseline,
            "reduction": {"absolute": "Σ_c |A_c|", "signed": "Σ_c A_c (signed)"}[m.reduction],
            "note": m.reduction_note,
            "settings": ", ".join(f"{k}={v}" for k, v in m.params.items()),
            "paper": m.reference,
        }
        for m in METHODS.values()
    ]


def attribute(name: str, model: nn.Module, x: torch.Tensor, target: int, reduction: str | None = None) -> np.ndarray:
    """The (H, W) float32 saliency map of method `name` for class `target`.

    Args:
        name: a key of `METHODS`; layer methods also `"GradCAM[<layer>]"` (`with_layer`, `gradcam_layers`).
        model: maps images in [0, 1] to logits; never modified (methods run on a private copy). A `Classifier`
            is explained at its normalised input (see the module docstring).
        x: one image, (1, 3, H, W) or (3, H, W), in [0, 1], on the model's device.
        target: the class to explain.
        reduction: "absolute" (`sum_c |A_c|`, non-negative) or "signed" (`sum_c A_c`); None: the method's
            `reduction`, the one the SPADE paper's protocol uses.

    Returns:
        Finite per-pixel relevance on the image's pixel grid.

    Raises:
        KeyError: unknown method. ValueError: unknown reduction, not one image, or a layer GradCAM cannot
        explain. UnsupportedModelError (a ValueError): the method cannot explain this model faithfully
        (`support`: unsupported layer types, failed conservation / completeness check); the message says why.
    """
    name, layer = split_layer(name)
    if name not in METHODS:
        raise KeyError(f"Unknown saliency method '{name}'. Known: {', '.join(METHODS)}.")
    if layer is not None and name not in LAYER_METHODS:
        raise ValueError(f"{name} explains the input, not a layer; only {', '.join(LAYER_METHODS)} take one.")
    reduction = resolve_reduction(name, reduction)
    if reduction not in REDUCTIONS:
        raise ValueError(f"Unknown reduction {reduction!r}: use one of {REDUCTIONS}.")
    x = as_batch(x)
    with eval_mode(model), torch.enable_grad(), warnings.catch_warnings():  # stochastic methods: local generators
        for message in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        raw = METHODS[name].fn(attribution_input(model, x, layer), int(target))
    return reduce_to_map(raw, tuple(x.shape[-2:]), reduction)


def resolve_reduction(name: str, reduction: str | None = None) -> str:
    """The channel reduction a map of method `name` (a `with_layer` name too) gets: `reduction`, or the
    method's own (the paper's) when None. Raises KeyError for an unknown method."""
    return reduction or METHODS[split_layer(name)[0]].reduction


def explain(name: str, model: nn.Module, x: torch.Tensor, target: int, reduction: str | None = None) -> SaliencyResult:
    """`attribute` wrapped in a timed `SaliencyResult`."""
    if split_layer(name)[0] in METHODS:  # an unknown name raises in `attribute`, with the known names
        reduction = resolve_reduction(name, reduction)
    start = time.perf_counter()
    sal = attribute(name, model, x, target, reduction)
    return SaliencyResult(name, int(target), sal, time.perf_counter() - start, reduction or "absolute")

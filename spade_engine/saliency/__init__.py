"""Saliency maps behind one interface: `METHODS` (the registry) and `attribute(name, model, x, target)`."""

from spade_engine.saliency._base import SaliencyMethod, SaliencyResult
from spade_engine.saliency.registry import (
    LAYER_METHODS,
    METHODS,
    PAPER_METHODS,
    attribute,
    explain,
    gradcam_layers,
    method_table,
    split_layer,
    with_layer,
)
from spade_engine.saliency.support import UnsupportedModelError, static_support, unsupported_methods

__all__ = [
    "LAYER_METHODS",
    "METHODS",
    "PAPER_METHODS",
    "SaliencyMethod",
    "SaliencyResult",
    "UnsupportedModelError",
    "attribute",
    "explain",
    "gradcam_layers",
    "method_table",
    "split_layer",
    "static_support",
    "unsupported_methods",
    "with_layer",
]

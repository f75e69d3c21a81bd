"""Saliency maps behind one interface: `METHODS` (the registry) and `attribute(name, model, x, target)`."""

from spade_engine.saliency._base import SaliencyMethod, SaliencyResult
from spade_engine.saliency.registry import METHODS, PAPER_METHODS, attribute, explain, method_table

__all__ = ["METHODS", "PAPER_METHODS", "SaliencyMethod", "SaliencyResult", "attribute", "explain", "method_table"]

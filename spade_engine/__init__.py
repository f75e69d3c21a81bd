"""SPADE Debugger engine: sample-targeted pruning and the interpretability methods around it.

The engine never imports Streamlit; it returns tensors, arrays, dataclasses and plotly figures.
"""

from spade_engine.models import LoadedModel, ModelInfo, list_models, load_model

__all__ = ["LoadedModel", "ModelInfo", "list_models", "load_model"]

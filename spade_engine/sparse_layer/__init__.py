"""Sparse decision layer: replace a model's dense head by an elastic-net GLM over its standardised deep features.

Pipeline, one module per concern:
- `features`: `extract_features` (inputs of the model's last Linear, via a forward hook), `testbed_features`;
- `glm`: `GLMConfig`, `fit_glm_path` (standardise, `lambda_max`, regularisation path with SAGA from the
  `glm-saga` package), `choose_point` (validation accuracy under a features-per-class budget);
- `layer`: `SparseLayer` and its explanations (`class_features`, `contributions`, `top_activating`),
  `fit_sparse_layer`, `sparse_head_model` (the model with the sparse head, for saliency "through the sparse FC");
- `trojan`: `trojan_finding` (does a trojan show up as a feature of its target class?);
- `io`: image sets from a folder under `$SPADE_DATA_ROOT` or an uploaded zip, and fitted layers on disk
  (`save_layer` / `load_layer`, the bounded cache `fit_cached`).

Paper: Wong, Santurkar & Madry, "Leveraging Sparse Linear Layers for Debuggable Deep Networks", ICML 2021
(https://arxiv.org/abs/2105.04857). Objective, with standardised features `z`:
`min_{W,b} CE(W z + b, y) + lambda * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_2^2)`.
"""

from spade_engine.sparse_layer.features import (
    FeatureSet,
    Progress,
    capture_head_inputs,
    extract_features,
    head_linear,
    testbed_features,
)
from spade_engine.sparse_layer.glm import (
    GLMConfig,
    GLMPath,
    choose_point,
    fit_glm_path,
    lambda_max,
    standardization,
)
from spade_engine.sparse_layer.io import (
    DATA_ROOT_ENV,
    DataInputError,
    cache_path,
    data_root,
    fit_cached,
    layer_cache,
    load_image_folder,
    load_image_zip,
    load_layer,
    resolve_data_folder,
    save_layer,
)
from spade_engine.sparse_layer.layer import (
    SparseLayer,
    at_point,
    feature_model,
    fit_sparse_layer,
    sparse_head_model,
    split_train_val,
    top_activating,
)
from spade_engine.sparse_layer.trojan import TrojanFinding, trojan_finding

__all__ = [
    "DATA_ROOT_ENV", "DataInputError", "FeatureSet", "GLMConfig", "GLMPath", "Progress", "SparseLayer",
    "TrojanFinding", "at_point", "cache_path", "capture_head_inputs", "choose_point", "data_root",
    "extract_features", "feature_model", "fit_cached", "fit_glm_path", "fit_sparse_layer", "head_linear",
    "lambda_max", "layer_cache", "load_image_folder", "load_image_zip", "load_layer", "resolve_data_folder",
    "save_layer", "sparse_head_model", "split_train_val", "standardization", "testbed_features", "top_activating",
    "trojan_finding",
]  # fmt: skip

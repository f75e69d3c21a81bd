"""Layer-wise pruning solvers in SparseGPT's lifecycle: `LayerPruner(layer)` → `add_batch` → `prune` → `free`.

Solvers share one interface, `solve(W, hinv, sparsity, blocksize) -> W_hat`, over grouped weights
(G, R, d): G groups (1 for dense convs and Linear, C for depthwise), R output rows per group,
d = in_channels_per_group * kh * kw columns.
"""

from spade_engine.pruning.hessian import HessianAccumulator, grouped_weight, layer_columns, ungroup_weight
from spade_engine.pruning.inverse import InverseHessian, inverse_hessian
from spade_engine.pruning.layer import SOLVERS, LayerPruner, reconstruction_error

__all__ = [
    "SOLVERS",
    "HessianAccumulator",
    "InverseHessian",
    "LayerPruner",
    "grouped_weight",
    "inverse_hessian",
    "layer_columns",
    "reconstruction_error",
    "ungroup_weight",
]

"""Layer-wise pruning in SparseGPT's lifecycle: `HessianAccumulator.add_batch` from a forward hook →
`inverse_hessian` → `prune_layer` with a registered solver (`SpadeEngine` drives it and caches the middle step).

Solvers share one interface, `solve(W, hinv, sparsity, blocksize) -> W_hat`, over grouped weights
(G, R, d): G groups (1 for dense convs and Linear, C for depthwise), R output rows per group,
d = in_channels_per_group * kh * kw columns.
"""

from spade_engine.pruning.hessian import HessianAccumulator, grouped_weight, layer_columns, ungroup_weight
from spade_engine.pruning.inverse import InverseHessian, inverse_hessian
from spade_engine.pruning.layer import SOLVERS, dense_energy, prune_layer, reconstruction_error, sweep_error

__all__ = [
    "SOLVERS",
    "HessianAccumulator",
    "InverseHessian",
    "dense_energy",
    "grouped_weight",
    "inverse_hessian",
    "layer_columns",
    "prune_layer",
    "reconstruction_error",
    "sweep_error",
    "ungroup_weight",
]

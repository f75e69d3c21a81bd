"""Exact OBC solver: exact sparsity, error at most the SparseGPT sweep's, usable through the engine."""

import pytest
import torch

from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.pruning import inverse_hessian, reconstruction_error
from spade_engine.pruning.obc import obc_solve
from spade_engine.pruning.sparsegpt import sparsegpt_solve

from .nets import sample, tiny_mobilenet
from .test_sparsegpt import random_problem


@pytest.mark.parametrize("sparsity", [0.3, 0.6, 0.9])
def test_obc_error_at_most_sweep_and_exact_count(sparsity):
    W, H = random_problem(g=2, r=8, d=24, n=300, seed=2)
    hinv = inverse_hessian(H.float(), 0.01)
    W = W.float()
    obc = obc_solve(W, hinv, sparsity)
    sweep = sparsegpt_solve(W, hinv, sparsity)
    assert int((obc == 0).sum()) == round(sparsity * W.numel())
    assert reconstruction_error(W, obc, H.float()) <= reconstruction_error(W, sweep, H.float()) + 1e-6


def test_obc_single_weight_is_the_obs_optimum():
    """Pruning one weight of one row: OBS picks argmin w^2/[H^-1]_pp and the closed-form update is optimal."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(1, 6, 100, generator=gen, dtype=torch.float64)
    H = 2 * X @ X.transpose(1, 2) / 100
    W = torch.randn(1, 1, 6, generator=gen, dtype=torch.float64)
    hinv = inverse_hessian(H, 0.0)
    out = obc_solve(W, hinv, 1 / 6)
    errors = []
    for p in range(6):  # brute force: best reconstruction with w_p removed, by least squares on H
        keep = [j for j in range(6) if j != p]
        Hk = H[0][keep][:, keep]
        w_keep = torch.linalg.solve(Hk, H[0][keep] @ W[0, 0])
        cand = torch.zeros(6, dtype=W.dtype)
        cand[keep] = w_keep
        errors.append(reconstruction_error(W, cand.view(1, 1, 6), H))
    assert reconstruction_error(W, out, H) == pytest.approx(min(errors), rel=1e-6)


def test_obc_through_engine_on_depthwise_net():
    engine = SpadeEngine(tiny_mobilenet())
    trace = engine.prepare(sample(), n_aug=16)
    _, exact = engine.prune(trace, PruneConfig(0.7, solver="obc"))
    _, sweep = engine.prune(trace, PruneConfig(0.7))
    for name, err in exact.layer_error.items():
        assert exact.layer_sparsity[name] == pytest.approx(0.7, abs=1 / 9)
        assert err <= sweep.layer_error[name] * 1.05 + 1e-6, name

"""Exact OBC solver: the plain OBC loop's choices, exact sparsity, error at most the sweep's, limits, engine use."""

import pytest
import torch

from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import load_model
from spade_engine.pruning import grouped_weight, inverse_hessian, obc, reconstruction_error
from spade_engine.pruning.hessian import PRUNABLE
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


# ---------------------------------------------------------------- the lazy greedy against the plain OBC loop


def plain_greedy(w, Hi, dead, steps):
    """One row of OBC as in the paper: remove argmin w_p^2 / [H^-1]_pp, update w, downdate the whole H^-1."""
    w, Hi = w.clone(), Hi.clone()
    removed = torch.zeros(w.shape[0], dtype=torch.bool)
    order, losses = [], []
    for _ in range(steps):
        score = (w**2 / Hi.diagonal()).masked_fill(dead, 0.0).masked_fill(removed, float("inf"))
        p = int(score.argmin())
        order.append(p)
        losses.append(float(score[p]) / 2)
        w -= w[p] / Hi[p, p] * Hi[:, p]
        w[p] = 0
        Hi -= torch.outer(Hi[:, p], Hi[p, :]) / Hi[p, p]
        removed[p] = True
    return torch.tensor(order), torch.tensor(losses, dtype=w.dtype)


def plain_obc(W, hinv, sparsity):
    """Plain OBC: greedy per row, layer budget over the monotone loss curves, OBS reconstruction per row."""
    Hinv = hinv.U.transpose(1, 2) @ hinv.U
    g, r, d = W.shape
    total = round(sparsity * W.numel())
    steps = min(d, total)
    runs = [plain_greedy(W[gi, ri], Hinv[gi], hinv.dead[gi], steps) for gi in range(g) for ri in range(r)]
    mono = torch.stack([lo for _, lo in runs]).cummax(dim=1).values
    counts = torch.bincount(mono.flatten().argsort(stable=True)[:total] // steps, minlength=g * r)
    out = W.clone()
    for i, ((order, _), count) in enumerate(zip(runs, counts, strict=True)):
        gi, ri = divmod(i, r)
        m = order[:count]
        w = W[gi, ri]
        out[gi, ri] = w - torch.linalg.solve(Hinv[gi][m][:, m], w[m]) @ Hinv[gi][m]
        out[gi, ri, m] = 0
    return out


@pytest.mark.parametrize("lazy", [1, 3, 64])
def test_lazy_greedy_makes_the_plain_loops_choices(lazy):
    W, H = random_problem(g=2, r=5, d=30, n=60, seed=4)  # n ~ 2d: a poorly conditioned H
    hinv = inverse_hessian(H, 0.01)
    Hinv = hinv.U.transpose(1, 2) @ hinv.U
    for gi in range(2):
        order, losses = obc._greedy_order(W[gi], Hinv, torch.full((5,), gi), hinv.dead[gi].expand(5, 30), 30, lazy)
        for ri in range(5):
            ref_order, ref_losses = plain_greedy(W[gi, ri], Hinv[gi], hinv.dead[gi], 30)
            assert torch.equal(order[ri], ref_order)
            torch.testing.assert_close(losses[ri], ref_losses, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sparsity", [0.3, 0.85])
def test_obc_solve_equals_plain_obc(sparsity, monkeypatch):
    """d = 100 > LAZY_COLUMNS, so checkpoints run; a small memory budget forces uneven row chunks."""
    W, H = random_problem(g=2, r=7, d=100, n=300, seed=5)
    hinv = inverse_hessian(H, 0.01)
    ref = plain_obc(W, hinv, sparsity)
    torch.testing.assert_close(obc_solve(W, hinv, sparsity), ref, rtol=1e-9, atol=1e-9)
    monkeypatch.setattr(obc, "MEMORY_BYTES", 5 * 8 * (2 * 100 * 100 + obc.LAZY_COLUMNS * 100))  # chunks of 5, 5, 4 rows
    torch.testing.assert_close(obc_solve(W, hinv, sparsity), ref, rtol=1e-9, atol=1e-9)


def test_wide_layer_is_exact_by_default(monkeypatch):
    def no_sweep(*args):
        raise AssertionError("fell back to the sweep")

    W, H = random_problem(g=1, r=4, d=320, n=700, seed=6)
    W, H = W.float(), H.float()
    hinv = inverse_hessian(H, 0.01)
    sweep = sparsegpt_solve(W, hinv, 0.8)
    monkeypatch.setattr(obc, "sparsegpt_solve", no_sweep)
    exact = obc_solve(W, hinv, 0.8)
    assert int((exact == 0).sum()) == round(0.8 * W.numel())
    assert reconstruction_error(W, exact, H) <= reconstruction_error(W, sweep, H) + 1e-6


def test_column_limit_env_override(monkeypatch):
    monkeypatch.delenv("SPADE_OBC_MAX_COLUMNS", raising=False)
    assert obc.exact_columns_limit() == obc.MAX_EXACT_COLUMNS >= 1152
    monkeypatch.setenv("SPADE_OBC_MAX_COLUMNS", "50")
    assert obc.exact_columns_limit() == 50
    assert obc.is_exact(50) and not obc.is_exact(51)
    W, H = random_problem(g=1, r=4, d=60, n=200, seed=7)
    hinv = inverse_hessian(H, 0.01)
    assert torch.equal(obc_solve(W, hinv, 0.5), sparsegpt_solve(W, hinv, 0.5))


@pytest.mark.parametrize("name", ["testbed_resnet", "testbed_vgg"])
def test_every_testbed_layer_is_exact(name, monkeypatch):
    monkeypatch.delenv("SPADE_OBC_MAX_COLUMNS", raising=False)
    model = load_model(name).model
    widths = [grouped_weight(m).shape[-1] for m in model.modules() if isinstance(m, PRUNABLE)]
    assert widths and all(obc.is_exact(d) for d in widths), widths

"""SparseGPT's sequential mode in one pass, and the BatchNorm statistics correction, each pinned against a
plain reference written out here: a per-layer loop (every layer's Hessian from a fresh pass of the views through
the copy pruned so far), and the correction's definition (normalised pruned inputs get the dense ones' mean and
spread, BatchNorm by BatchNorm)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.hooks import forward_hooks, forward_pre_hooks
from spade_engine.pruning import (
    HessianAccumulator,
    grouped_weight,
    inverse_hessian,
    layer_columns,
    prune_layer,
    ungroup_weight,
)
from spade_engine.pruning.asymmetric import asymmetric_target, paired_moments
from spade_engine.statistics import DEAD_RATIO, StatsAccumulator, batchnorms

from .nets import NETS, sample


def _inputs(model: nn.Module, names: list[str], views: torch.Tensor) -> dict[str, torch.Tensor]:
    store = {}

    def keep(name, module, inputs, output):
        store[name] = inputs[0].detach()

    with forward_hooks({n: dict(model.named_modules())[n] for n in names}, keep), torch.no_grad():
        model(views)
    return store


def _masks_equal(a: nn.Module, b: nn.Module, names) -> list[float]:
    """Per layer, the share of weights that are zero in both or in neither of two pruned copies."""
    ma, mb = dict(a.named_modules()), dict(b.named_modules())
    return [float(((ma[n].weight == 0) == (mb[n].weight == 0)).float().mean()) for n in names]


@pytest.mark.parametrize("net", ["resnet", "mobilenet"])
def test_one_pass_sequential_equals_a_per_layer_loop(net):
    engine = SpadeEngine(NETS[net](), batch_size=64, max_columns=None)
    trace = engine.prepare(sample(), n_aug=24, seed=0)
    cfg = PruneConfig(0.7, sequential=True)
    pruned, result = engine.prune(trace, cfg)
    views = trace.float_views()
    reference = copy.deepcopy(engine._work)
    modules = dict(reference.named_modules())
    for name, sparsity in result.layer_target.items():  # execution order
        acc = HessianAccumulator(modules[name], torch.float32, None, torch.Generator().manual_seed(0))
        acc.add_batch(_inputs(reference, [name], views)[name])
        prune_layer(modules[name], inverse_hessian(acc.H, cfg.damp), sparsity, cfg.solver, cfg.blocksize)
    masks_equal = _masks_equal(pruned, reference, result.layer_target)
    assert min(masks_equal) > 0.995, masks_equal  # float summation order aside, the same masks
    with torch.no_grad():
        torch.testing.assert_close(pruned(views), reference(views), rtol=1e-3, atol=1e-3)
    one_pass, _ = engine.prune(trace, PruneConfig(0.7))
    with torch.no_grad():
        assert not torch.allclose(one_pass(views), reference(views), atol=1e-3)  # sequential is another network


def test_match_correction_restores_the_dense_statistics_batchnorm_by_batchnorm():
    engine = SpadeEngine(NETS["resnet"](), batch_size=64)
    trace = engine.prepare(sample(), n_aug=32, seed=0)
    plain, _ = engine.prune(trace, PruneConfig(0.9))
    corrected, result = engine.prune(trace, PruneConfig(0.9, bn_correction="match"))
    assert set(result.bn_moved) == set(batchnorms(corrected)) and max(result.bn_moved.values()) > 0
    views = trace.float_views()
    for name, bn in batchnorms(corrected).items():
        x = _inputs(corrected, [name], views)[name]
        acc = StatsAccumulator()
        acc.add(x)
        pruned_stats, dense = acc.stats(), trace.bn_stats[name]
        m, v = bn.running_mean.double(), bn.running_var.double()
        z_mean = (pruned_stats.mean - m) / v.sqrt()  # the normalised pruned inputs' mean and spread...
        z_sd = pruned_stats.var.sqrt() / v.sqrt()
        d_mean = (dense.mean - plain.get_submodule(name).running_mean.double()) / plain.get_submodule(
            name
        ).running_var.double().sqrt()
        d_sd = dense.var.sqrt() / plain.get_submodule(name).running_var.double().sqrt()
        live = pruned_stats.var.sqrt() >= DEAD_RATIO * dense.var.sqrt()
        torch.testing.assert_close(z_mean[live], d_mean[live], rtol=1e-4, atol=1e-4)  # ...equal the dense ones'
        torch.testing.assert_close(z_sd[live], d_sd[live], rtol=1e-4, atol=1e-4)
    assert all(
        torch.equal(p, q) for p, q in zip(plain.parameters(), corrected.parameters(), strict=True)
    )  # weights untouched


def test_reestimate_sets_the_pruned_inputs_own_statistics():
    engine = SpadeEngine(NETS["resnet"](), batch_size=64)
    trace = engine.prepare(sample(), n_aug=16, seed=0)
    corrected, _ = engine.prune(trace, PruneConfig(0.8, bn_correction="reestimate"))
    seen = {}

    def record(name, module, inputs):
        acc = StatsAccumulator()
        acc.add(inputs[0])
        seen[name] = (acc.stats(), module.running_mean.double().clone(), module.running_var.double().clone())

    with forward_pre_hooks(batchnorms(corrected), record), torch.no_grad():
        corrected(trace.float_views())
    for stats, m, v in seen.values():
        torch.testing.assert_close(m, stats.mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(v, stats.var, rtol=1e-4, atol=1e-5)


def test_unknown_correction_is_refused():
    engine = SpadeEngine(NETS["resnet"]())
    with pytest.raises(ValueError, match="bn_correction"):
        engine.prune(engine.prepare(sample(), n_aug=8), PruneConfig(0.5, bn_correction="magic"))


def test_stats_accumulator_merges_batches_exactly():
    x = torch.randn(10, 4, 5, 5, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1) + 7
    acc = StatsAccumulator()
    for part in x.split([3, 1, 6]):
        acc.add(part)
    stats = acc.stats()
    torch.testing.assert_close(stats.mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(stats.var, x.var((0, 2, 3), unbiased=False))


@pytest.mark.parametrize("net", ["resnet", "mobilenet"])
def test_one_pass_asymmetric_equals_a_per_layer_loop(net):
    """Asymmetric calibration against a loop written from its definition: each layer's dense inputs from a pass of
    the dense network, its pruned inputs from a pass of the copy pruned so far, the target
    `W* = W X_d X_p^T (X_p X_p^T + lambda I)^-1 + lambda W (X_p X_p^T + lambda I)^-1` solved directly (the ridge
    solution that leaves W alone when X_d = X_p), then the OBS sweep on W* with X_p's Hessian."""
    engine = SpadeEngine(NETS[net](), batch_size=64, max_columns=None)
    trace = engine.prepare(sample(), n_aug=24, seed=0)
    cfg = PruneConfig(0.7, asymmetric=True)
    pruned, result = engine.prune(trace, cfg)
    views = trace.float_views()
    dense = copy.deepcopy(engine._work)
    reference = copy.deepcopy(engine._work)
    modules = dict(reference.named_modules())
    for name, sparsity in result.layer_target.items():  # execution order
        layer = modules[name]
        xd = layer_columns(layer, _inputs(dense, [name], views)[name]).double()  # (G, d, N)
        xp = layer_columns(layer, _inputs(reference, [name], views)[name]).double()
        n = xp.shape[-1]
        H, C = 2 / n * xp @ xp.transpose(1, 2), 2 / n * xd @ xp.transpose(1, 2)
        hinv = inverse_hessian(H.float(), cfg.damp)
        lam = hinv.damp * torch.where(hinv.dead, 1.0, H.diagonal(dim1=1, dim2=2)).mean(1)  # (G,)
        Hd = H + torch.diag_embed(lam[:, None].expand(-1, H.shape[-1]))
        Hd.diagonal(dim1=1, dim2=2)[hinv.dead] += 1.0
        W = grouped_weight(layer).double()
        target = torch.linalg.solve(Hd, (W @ (C + Hd - H)).transpose(1, 2)).transpose(1, 2)  # H_d symmetric
        layer.weight.data.copy_(ungroup_weight(layer, target.float()))
        prune_layer(layer, hinv, sparsity, cfg.solver, cfg.blocksize)
    masks_equal = _masks_equal(pruned, reference, result.layer_target)
    assert min(masks_equal) > 0.99, masks_equal
    with torch.no_grad():
        torch.testing.assert_close(pruned(views), reference(views), rtol=2e-3, atol=2e-3)
        sequential, _ = engine.prune(trace, PruneConfig(0.7, sequential=True))
        dense_out = dense(views)
        err = lambda m: float((m(views) - dense_out).norm())  # noqa: E731
        assert err(pruned) < err(sequential)  # targeting the dense output repairs the prefix's error


def test_asymmetric_target_is_the_dense_output_least_squares_fit():
    """With no dampening left to matter (many columns, tiny damp), W* fits W X_d from X_p by least squares, and equals W
    when both inputs are the same."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False)
    xd = torch.randn(500, 6)
    xp = xd + 0.3 * torch.randn(500, 6)
    H, C = paired_moments(layer, xd, xp)
    W = grouped_weight(layer)
    target = asymmetric_target(W, H, C, inverse_hessian(H, 1e-9))[0]
    lstsq = torch.linalg.lstsq(xp.double(), (xd @ W[0].t()).double()).solution.t().float()  # (4, 6)
    torch.testing.assert_close(target, lstsq, rtol=1e-3, atol=1e-3)
    H, C = paired_moments(layer, xd, xd)
    torch.testing.assert_close(asymmetric_target(W, H, C, inverse_hessian(H, 0.01)), W)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (3, 8, 10, 10)),  # depthwise: every column, strided copies
        (nn.Conv2d(8, 16, 1), (3, 8, 9, 9)),  # pointwise: columns straight from the channels
        (nn.Conv2d(8, 16, 3, stride=2, padding=1), (3, 8, 9, 9)),  # unfolded
        (nn.Linear(8, 4), (5, 8)),
    ],
)
def test_paired_moments_equal_the_unfolded_products(layer, shape):
    torch.manual_seed(0)
    xd, xp = torch.randn(shape), torch.randn(shape)
    H, C = paired_moments(layer, xd, xp)
    cd, cp = layer_columns(layer, xd), layer_columns(layer, xp)  # (G, d, N)
    n = cp.shape[-1]
    torch.testing.assert_close(H, 2 / n * cp @ cp.mT, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(C, 2 / n * cd @ cp.mT, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [nn.Conv2d(8, 16, 1), nn.Conv2d(8, 16, 3, stride=2, padding=1)],  # depthwise: a sub-grid, see below
)
def test_paired_moments_subsample_the_same_columns_of_both_inputs(layer):
    """Above `max_columns` both moments use one random subset of the unfolded columns (gathered, never the whole
    unfold); one tensor passed as both inputs (the first pruned layer) gives C equal to H."""
    torch.manual_seed(0)
    xd, xp = torch.randn(3, 8, 12, 12), torch.randn(3, 8, 12, 12)
    cd, cp = layer_columns(layer, xd), layer_columns(layer, xp)  # (G, d, N)
    cap = cp.shape[-1] // 5
    H, C = paired_moments(layer, xd, xp, cap, torch.Generator().manual_seed(7))
    idx = torch.randperm(cp.shape[-1], generator=torch.Generator().manual_seed(7))[:cap]
    torch.testing.assert_close(H, 2 / cap * cp[..., idx] @ cp[..., idx].mT, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(C, 2 / cap * cd[..., idx] @ cp[..., idx].mT, rtol=1e-4, atol=1e-5)
    H1, C1 = paired_moments(layer, xp, xp, cap, torch.Generator().manual_seed(7))
    torch.testing.assert_close(H1, H)
    assert C1 is H1


def test_paired_moments_of_a_large_depthwise_map_use_one_sub_grid_for_both_inputs():
    """Above twice the cap a depthwise conv's moments sum a random sub-grid of positions
    (`depthwise.grid_products`), the same positions for both inputs: a dense input twice the pruned one gives
    C = 2 H exactly, and other seeds other sub-grids."""
    layer = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    xp = torch.randn(3, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    cap = 3 * 12 * 12 // 9  # grid 3
    H, C = paired_moments(layer, 2 * xp, xp, cap, torch.Generator().manual_seed(7))
    torch.testing.assert_close(C, 2 * H, rtol=1e-6, atol=1e-6)
    others = [paired_moments(layer, 2 * xp, xp, cap, torch.Generator().manual_seed(s))[0] for s in range(6)]
    assert not all(torch.allclose(H, h) for h in others)


def test_asymmetric_prune_runs_one_pass_and_records_the_view_predictions():
    """The asymmetric calibration needs no dense Hessian pass: the prune's own pass (views twice) is the only one,
    and its dense half gives the views' predictions, as a plain dense forward of the views does."""
    engine = SpadeEngine(NETS["vgg"](), batch_size=16)  # its views of this sample get two classes
    trace = engine.prepare(sample(), n_aug=32, seed=0)
    _, result = engine.prune(trace, PruneConfig(0.7, asymmetric=True))
    assert engine.stats["hessian_passes"] == 1 and not trace.has_moments
    with torch.no_grad():
        classes = engine.model(trace.float_views()).argmax(-1)
    assert torch.equal(trace.view_predictions, classes) and len(classes.unique()) > 1  # not one class everywhere
    assert result.view_agreement == pytest.approx(float((classes == trace.dense_logits.argmax()).float().mean()))
    engine.prune(trace, PruneConfig(0.7))  # the sweep fills the Hessians on first need
    assert trace.has_moments and engine.stats["hessian_passes"] == 2

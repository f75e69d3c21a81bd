"""The global OBS budget (`pruning.budget`): single-weight OBS errors, one threshold over all layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.pruning import inverse_hessian, reconstruction_error
from spade_engine.pruning.budget import obs_budget, relative_saliency

from .nets import NETS, sample


def test_relative_saliency_is_the_compensated_single_weight_removal_error():
    """Removing weight q and updating the rest of its row optimally (OBS: delta = -w_q / [H^-1]_qq * H^-1[q, :])
    costs exactly the saliency, as a share of the layer's output energy."""
    torch.manual_seed(0)
    X = torch.randn(6, 200, dtype=torch.float64)
    H = (2 / 200 * X @ X.T).unsqueeze(0)  # (1, d, d)
    W = torch.randn(1, 3, 6, dtype=torch.float64)
    hinv = inverse_hessian(H.float(), damp=1e-8)
    Hi = torch.linalg.inv(H[0])
    s = relative_saliency(W.float(), H.float(), hinv)
    for r, q in [(0, 0), (1, 3), (2, 5)]:
        W_hat = W.clone()
        W_hat[0, r] -= W[0, r, q] / Hi[q, q] * Hi[q]  # zeroes w_q, compensates the others
        assert W_hat[0, r, q].abs() < 1e-9
        assert float(s[0, r, q]) == pytest.approx(reconstruction_error(W, W_hat, H), rel=1e-3)


def test_the_budget_prunes_the_cheap_layer_more_and_keeps_the_total():
    torch.manual_seed(0)
    cheap, dear = torch.rand(1000), torch.rand(3000) + 0.5  # uniform on [0, 1] and on [0.5, 1.5]
    out = obs_budget({"cheap": cheap, "dear": dear}, 0.5)
    # one threshold t: 1000 t + 3000 (t - 0.5) = 2000 weights -> t = 0.875: 87.5% of cheap, 37.5% of dear
    assert out["cheap"] == pytest.approx(0.875, abs=0.03) and out["dear"] == pytest.approx(0.375, abs=0.03)
    assert out["cheap"] * 1000 + out["dear"] * 3000 == pytest.approx(0.5 * 4000, abs=1)
    same = obs_budget({"a": torch.rand(1000), "b": torch.rand(1000)}, 0.7)  # alike layers: near uniform
    assert same["a"] == pytest.approx(0.7, abs=0.06) and same["b"] == pytest.approx(0.7, abs=0.06)


def test_the_cap_hands_the_rest_of_the_budget_to_the_other_layers():
    out = obs_budget({"free": torch.zeros(100), "rest": torch.linspace(1, 2, 100)}, 0.6, max_sparsity=0.9)
    assert out["free"] == pytest.approx(0.9) and out["rest"] == pytest.approx(0.3)
    assert obs_budget({"a": torch.rand(10)}, 0.0) == {"a": 0.0}
    with pytest.raises(ValueError, match="sparsity must be"):
        obs_budget({"a": torch.rand(10)}, 1.0)


@pytest.mark.parametrize("calibration", [{}, {"asymmetric": True}])
def test_the_engine_shares_the_budget_among_layers(calibration):
    model = NETS["resnet"]()
    engine = SpadeEngine(model, batch_size=16)
    trace = engine.prepare(sample(), n_aug=32, seed=0)
    _, uniform = engine.prune(trace, PruneConfig(0.7, **calibration))
    _, shared = engine.prune(trace, PruneConfig(0.7, budget="obs", **calibration))
    sizes = {n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}

    def mean(r):
        return sum(r.layer_sparsity[n] * sizes[n] for n in r.layer_sparsity) / sum(
            sizes[n] for n in uniform.layer_target
        )

    assert mean(shared) == pytest.approx(mean(uniform), abs=0.01)  # the same weights pruned in total
    assert max(shared.layer_target.values()) - min(shared.layer_target.values()) > 0.1  # but not uniformly
    assert list(shared.layer_target) == [n for n in uniform.layer_target if n in shared.layer_target]  # order kept
    with pytest.raises(ValueError, match="Unknown budget"):
        engine.prune(trace, PruneConfig(0.7, budget="global"))

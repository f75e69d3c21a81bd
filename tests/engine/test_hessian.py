"""Layer columns and Hessians: unfolded columns reproduce the conv, sampled columns are real columns."""

import copy

import pytest
import torch
from torch import nn

from spade_engine.pruning import hessian
from spade_engine.pruning.hessian import (
    HessianAccumulator,
    grouped_weight,
    layer_columns,
    sampled_columns,
    symmetric_blocks,
)

CONVS = [
    nn.Conv2d(6, 4, 3, padding=1),
    nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),
    nn.Conv2d(6, 4, (3, 1), stride=(1, 2), padding=(2, 0), dilation=2, groups=2),
    nn.Conv2d(6, 4, 3, padding=1, padding_mode="reflect"),
]


@pytest.mark.parametrize("conv", CONVS, ids=["plain", "depthwise", "dilated-grouped", "reflect"])
def test_columns_reproduce_the_conv_and_samples_match(conv):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 9, 10)
    cols = layer_columns(conv, x)  # (G, d, N)
    out = torch.bmm(grouped_weight(conv), cols)  # (G, R, N)
    ref = (conv(x) - conv.bias.view(1, -1, 1, 1)).detach()  # (B, Cout, Ho, Wo)
    b, c_out, ho, wo = ref.shape
    torch.testing.assert_close(out.reshape(c_out, b, ho * wo).permute(1, 0, 2).reshape(ref.shape), ref)
    idx = torch.randperm(cols.shape[-1])[:17]
    torch.testing.assert_close(sampled_columns(conv, x, idx), cols[..., idx])
    acc = HessianAccumulator(conv, max_columns=None)
    assert acc._n_columns(x.shape) == cols.shape[-1]


def test_subsampled_hessian_is_close_to_exact(monkeypatch):
    monkeypatch.setattr(hessian, "SHIFT_ADVANTAGE", 0.0)  # the unfold path, which subsamples
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(8, 4, 32, 32)
    exact, sampled = (
        HessianAccumulator(conv),
        HessianAccumulator(conv, max_columns=4096, generator=torch.Generator().manual_seed(1)),
    )
    for part in x.split(4):
        exact.add_batch(part)
        sampled.add_batch(part)
    assert sampled.nsamples == 8192 and exact.nsamples == 8 * 32 * 32
    assert (sampled.H - exact.H).norm() / exact.H.norm() < 0.05


# ------------------------------------------------------------------------ fast paths against the exact sum


def exact_hessian(layer: nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    """`2 X X^T / n` over all columns of all batches, in float64, written out in one product."""
    X = torch.cat([layer_columns(layer, b).double() for b in batches], dim=2)  # (G, d, N)
    return 2 * X @ X.transpose(1, 2) / X.shape[-1]


@pytest.mark.parametrize("d", [1, 5, 768, 769, 4608])
def test_symmetric_blocks_tile_the_upper_triangle_once(d):
    seen = torch.zeros(d, d, dtype=torch.long)
    for rows, cols in symmetric_blocks(d):
        assert rows.start <= cols.start
        seen[rows, cols] += 1
        if rows != cols:
            seen[cols, rows] += 1
    assert bool((seen == 1).all())


@pytest.mark.parametrize("conv", CONVS, ids=["plain", "depthwise", "dilated-grouped", "reflect"])
def test_blocked_exact_path_equals_the_plain_sum(conv, monkeypatch):
    """Upper blocks only, mirrored on read: the same sums as the full product (float64, to rounding)."""
    monkeypatch.setattr(hessian, "SYMMETRIC_BLOCK", 7)  # force several blocks on these small layers
    monkeypatch.setattr(hessian, "SHIFT_ADVANTAGE", 0.0)  # the unfold path
    torch.manual_seed(0)
    batches = list(torch.randn(6, 6, 9, 10).double().split(2))
    conv = copy.deepcopy(conv).double()
    acc = HessianAccumulator(conv, torch.float64)
    assert len(acc._blocks) > 1 or acc.H.shape[-1] <= 7
    for b in batches:
        acc.add_batch(b)
    torch.testing.assert_close(acc.H, exact_hessian(conv, batches), rtol=1e-12, atol=1e-12)
    assert torch.equal(acc.H, acc.H.transpose(1, 2))


@pytest.mark.parametrize("advantage", [0.0, 1e9], ids=["unfold", "shifted"])
def test_bfloat16_path_is_within_its_bound_of_the_exact_hessian(monkeypatch, advantage):
    """bf16 products: relative (Frobenius) error of H below 1%, the dampening the inverse adds; and not zero,
    so the fast path really ran."""
    monkeypatch.setattr(hessian, "SYMMETRIC_BLOCK", 64)
    monkeypatch.setattr(hessian, "SHIFT_ADVANTAGE", advantage)
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 16, 3, padding=1)  # d = 288: 5 column blocks
    batches = list(torch.randn(8, 32, 12, 12).relu().split(4))  # post-ReLU inputs, as inside a network
    fast = HessianAccumulator(conv, matmul="bfloat16")
    assert fast.shifted(batches[0].shape) == (advantage > 0)
    for b in batches:
        fast.add_batch(b)
    exact = exact_hessian(conv, batches)
    err = float((fast.H.double() - exact).norm() / exact.norm())
    assert 1e-5 < err < 0.01
    assert torch.equal(fast.H, fast.H.transpose(1, 2))


def test_auto_matmul_and_bad_value():
    conv = nn.Conv2d(3, 4, 3)
    assert HessianAccumulator(conv, matmul="auto").matmul == hessian.default_matmul("cpu")
    with pytest.raises(ValueError, match="matmul must be one of"):
        HessianAccumulator(conv, matmul="fp8")

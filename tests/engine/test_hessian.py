"""Layer columns and Hessians: unfolded columns reproduce the conv, sampled columns are real columns."""

import pytest
import torch
from torch import nn

from spade_engine.pruning.hessian import HessianAccumulator, grouped_weight, layer_columns, sampled_columns

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
    assert acc._n_columns(x) == cols.shape[-1]


def test_subsampled_hessian_is_close_to_exact():
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

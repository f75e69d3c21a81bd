"""The shifted-correlation Hessian of stride-1 convs against the unfolded (im2col) product it replaces."""

import pytest
import torch
from torch import nn

from spade_engine.pruning import hessian, shifted
from spade_engine.pruning.hessian import HessianAccumulator, layer_columns
from spade_engine.pruning.shifted import shift_eligible, shifted_hessian_sum

GEOMETRIES = {  # name: Conv2d keyword arguments (in_channels 4)
    "3x3 pad 1": dict(kernel_size=3, padding=1),
    "3x3 no pad": dict(kernel_size=3),
    "3x3 pad 2": dict(kernel_size=3, padding=2),
    "7x7 pad 3": dict(kernel_size=7, padding=3),
    "5x5 dilated 2": dict(kernel_size=5, padding=4, dilation=2),
    "1x1": dict(kernel_size=1),
    "3x1": dict(kernel_size=(3, 1), padding=(1, 0)),
    "2x5 uneven pad": dict(kernel_size=(2, 5), padding=(0, 3)),
    "4x4 same (asymmetric pad)": dict(kernel_size=4, padding="same"),
    "grouped": dict(kernel_size=3, padding=1, groups=2),
    "depthwise": dict(kernel_size=3, padding=1, groups=4),
}


def unfolded_sum(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    X = layer_columns(conv, x)  # (G, d, N)
    return X @ X.mT


@pytest.mark.parametrize("kwargs", GEOMETRIES.values(), ids=GEOMETRIES.keys())
@pytest.mark.parametrize("size", [(9, 7), (3, 3), (2, 6)], ids=str)
@pytest.mark.parametrize("crop", [0.0, 1e9], ids=["cropped", "flat"])
def test_shifted_sum_equals_the_unfolded_product(kwargs, size, crop, monkeypatch):
    """Every entry, border taps included, in float64 to rounding, with the products on cropped windows and on
    the flat layout; maps smaller than the kernel's reach too."""
    monkeypatch.setattr(shifted, "CROP_OVERHEAD", crop)
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, **kwargs).double()
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    try:
        ref = unfolded_sum(conv, x)
    except RuntimeError:  # the conv itself rejects this size (empty output)
        with pytest.raises(ValueError, match="output would be empty"):
            shifted_hessian_sum(conv, x)
        return
    got = shifted_hessian_sum(conv, x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-10)
    assert torch.equal(got, got.mT)


def test_float32_shifted_sum_is_within_its_bound():
    """float32 on a ResNet-like post-ReLU map: relative (Frobenius) error below 1e-5 of the float64 product."""
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(8, 32, 14, 14).relu()
    ref = unfolded_sum(conv.double(), x.double())
    err = float((shifted_hessian_sum(conv.float(), x).double() - ref).norm() / ref.norm())
    assert err < 1e-5


@pytest.mark.parametrize(
    "conv",
    [nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.Linear(4, 4)],
    ids=["stride 2", "reflect", "linear"],
)
def test_other_layers_are_not_eligible(conv):
    assert not shift_eligible(conv)
    acc = HessianAccumulator(conv, max_columns=None)
    assert not acc.shifted(torch.Size([2, 4, 8, 8]))
    if isinstance(conv, nn.Conv2d):
        with pytest.raises(ValueError, match="stride-1 Conv2d with zero padding"):
            shifted_hessian_sum(conv, torch.randn(2, 4, 8, 8))


def test_accumulator_takes_the_shifted_path_and_keeps_the_exact_mean():
    """Batches of different sizes: the running mean equals `2 X X^T / n` over all columns of all batches."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1, groups=2).double()
    batches = [torch.randn(n, 6, 10, 9, dtype=torch.float64) for n in (4, 1, 3)]
    acc = HessianAccumulator(conv, torch.float64, max_columns=None)
    for b in batches:
        assert acc.shifted(b.shape)
        acc.add_batch(b)
    X = torch.cat([layer_columns(conv, b) for b in batches], dim=2)
    torch.testing.assert_close(acc.H, 2 * X @ X.mT / X.shape[-1], rtol=1e-12, atol=1e-12)
    assert acc.nsamples == X.shape[-1]


def test_the_column_cap_decides_between_the_paths(monkeypatch):
    """A 1x1 conv on a big map costs C^2 per position either way: with a tight `max_columns` the subsampled
    unfold is cheaper and is taken; uncapped, the shifted path (no copy of the columns) is."""
    conv = nn.Conv2d(8, 8, 1)
    shape = torch.Size([4, 8, 64, 64])  # 16,384 columns
    assert HessianAccumulator(conv, max_columns=None).shifted(shape)
    assert not HessianAccumulator(conv, max_columns=1024).shifted(shape)
    monkeypatch.setattr(hessian, "SHIFT_ADVANTAGE", 16.0)  # the rule is a cost ratio
    assert HessianAccumulator(conv, max_columns=1024).shifted(shape)

"""Exact Hessians for every padding a conv's forward applies (zeros, TF "same", reflect, replicate, circular,
dilation, stride), pinned against an explicitly padded `F.unfold` reference whose columns reproduce the module's
own output; convs whose forward pads in a way we cannot see are refused by name."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame, create_conv2d
from timm.layers.conv2d_same import Conv2dSameExport
from timm.layers.padding import pad_same
from torch import nn

from spade_engine.pruning import depthwise, hessian
from spade_engine.pruning.asymmetric import paired_moments
from spade_engine.pruning.depthwise import depthwise_hessian_sum
from spade_engine.pruning.hessian import HessianAccumulator
from spade_engine.pruning.padding import OWN_PADDING, input_padding
from spade_engine.pruning.shifted import shifted_hessian_sum


def _seeded(conv: nn.Conv2d) -> nn.Conv2d:
    torch.manual_seed(0)
    return conv.double().eval()


LAYERS = {  # name -> (conv, input (B, C, H, W) shape)
    "timm-same-stem-s2": (Conv2dSame(3, 8, 3, stride=2), (3, 3, 15, 16)),
    "timm-same-depthwise-5x5-s2": (Conv2dSame(6, 6, 5, stride=2, groups=6), (3, 6, 14, 13)),
    "timm-create-same-s2": (create_conv2d(4, 6, 3, stride=2, padding="same"), (2, 4, 11, 12)),
    "timm-create-same-even-k": (create_conv2d(4, 6, 4, padding="same"), (2, 4, 9, 10)),
    "timm-create-same-dilated": (create_conv2d(4, 6, 3, dilation=2, padding="same"), (2, 4, 9, 10)),
    "timm-same-export": (Conv2dSameExport(4, 6, 3, stride=2), (2, 4, 11, 12)),
    "reflect": (nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), (2, 4, 9, 10)),
    "replicate-asym": (nn.Conv2d(4, 6, 3, padding=(2, 1), padding_mode="replicate"), (2, 4, 9, 10)),
    "circular-s2": (nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="circular"), (2, 4, 9, 10)),
    "zeros-dilation-2": (nn.Conv2d(4, 6, 3, padding=2, dilation=2), (2, 4, 9, 10)),
    "torch-same-even-k": (nn.Conv2d(4, 6, 4, padding="same", dilation=(1, 2)), (2, 4, 9, 10)),
    "depthwise-reflect": (nn.Conv2d(6, 6, 3, padding=1, groups=6, padding_mode="reflect"), (3, 6, 9, 10)),
    "depthwise-dilation-2": (nn.Conv2d(6, 12, 3, padding=2, dilation=2, groups=6), (3, 6, 9, 10)),
    "depthwise-zeros-s2": (nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=6), (3, 6, 12, 11)),
}


def reference_padded(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The input as the conv multiplies it, padded explicitly by the test (timm's own `pad_same` for its TF
    convs, `F.pad` with the module's attributes otherwise)."""
    if isinstance(conv, Conv2dSame | Conv2dSameExport):
        return pad_same(x, conv.kernel_size, conv.stride, conv.dilation)
    if isinstance(conv.padding, str):  # torch "same": extra pixel right / bottom
        pads = []
        for k, d in zip(reversed(conv.kernel_size), reversed(conv.dilation), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)
    ph, pw = conv.padding
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


def reference_hessian(conv: nn.Conv2d, batches: list[torch.Tensor]) -> torch.Tensor:
    """`2/N X X^T` per group from explicitly padded, unfolded inputs, after checking that those columns
    reproduce the module's own output."""
    cols = []
    for x in batches:
        padded = reference_padded(conv, x)
        want = F.conv2d(padded, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
        torch.testing.assert_close(conv(x), want)  # the reference pads as the module does
        u = F.unfold(padded, conv.kernel_size, dilation=conv.dilation, stride=conv.stride)  # (B, C*K, L)
        b, cd, n = u.shape
        cols.append(u.view(b, conv.groups, cd // conv.groups, n).permute(1, 2, 0, 3).reshape(conv.groups, -1, b * n))
    X = torch.cat(cols, dim=2)  # (G, d, N)
    return 2 * X @ X.mT / X.shape[-1]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("route", ["default", "unfold"])
def test_hessian_equals_explicitly_padded_unfold(name, route, monkeypatch):
    conv, shape = LAYERS[name]
    conv = _seeded(conv)
    if route == "unfold":
        monkeypatch.setattr(HessianAccumulator, "path", lambda self, shape: "unfold")
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    with torch.no_grad():
        ref = reference_hessian(conv, batches)
        acc = HessianAccumulator(conv, dtype=torch.float64, max_columns=None)
        for x in batches:
            acc.add_batch(x)
    assert acc.H.shape == ref.shape
    assert rel(acc.H, ref) < 1e-10  # float64; the brief's bar is 1e-5


@pytest.mark.parametrize("name", [n for n in LAYERS if "depthwise" in n])
def test_depthwise_path_is_taken_and_exact_in_float32(name):
    conv, shape = LAYERS[name]
    conv = _seeded(conv)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    n = HessianAccumulator(conv, max_columns=None)._n_columns(x.shape)
    assert HessianAccumulator(conv, max_columns=n // 3).path(x.shape) == "depthwise-grid"  # large maps: a sub-grid
    acc = HessianAccumulator(conv.float(), max_columns=(n + 1) // 2)  # within 2x the cap: all columns
    assert acc.path(x.shape) == "depthwise"
    acc.add_batch(x.float().contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        ref = reference_hessian(conv.double(), [x])
    assert rel(acc.H.double(), ref) < 1e-5


def test_shifted_path_pads_tf_same_asymmetrically():
    conv = _seeded(create_conv2d(4, 6, 4, padding="same"))  # stride 1, even kernel: dynamic TF "same"
    assert isinstance(conv, Conv2dSame)
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    assert input_padding(conv, 9, 10) == ((1, 2, 1, 2), "constant")
    with torch.no_grad():
        ref = reference_hessian(conv, [x]) * x.shape[0] * 9 * 10 / 2
    assert rel(shifted_hessian_sum(conv, x), ref) < 1e-10
    dw = _seeded(Conv2dSame(6, 6, 4, groups=6))
    x = torch.randn(2, 6, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        ref = reference_hessian(dw, [x]) * x.shape[0] * 9 * 10 / 2
    assert rel(depthwise_hessian_sum(dw, x), ref) < 1e-10


class OwnPadding(nn.Conv2d):
    """A conv that pads inside its forward: hooks cannot see how."""

    def forward(self, x):
        return super().forward(F.pad(x, (2, 0, 2, 0)))


def test_convs_padding_their_own_way_are_found_and_tf_same_is_not():
    from spade_engine.reparam import TRANSFORMED, transformed_weight_layers

    class Standardised(nn.Conv2d):  # same shape, other weight
        def forward(self, x):
            return self._conv_forward(x, self.weight - self.weight.mean(), self.bias)

    torch.manual_seed(0)
    net = nn.Sequential(
        OwnPadding(3, 4, 3), Standardised(4, 4, 3, padding=1), Conv2dSame(4, 4, 5, stride=2, groups=4),
        create_conv2d(4, 4, 4, padding="same"), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    )  # fmt: skip
    found = transformed_weight_layers(net, torch.randn(1, 3, 13, 14), [str(i) for i in range(5)])
    assert found == {"0": OWN_PADDING, "1": TRANSFORMED}


def test_every_conv_of_efficientnet_lite0_is_exact():
    """The real network's layers (timm `tf_efficientnet_lite0`, random weights): Conv2dSame stem and strided
    depthwise convs, symmetric-padded depthwise and pointwise convs, through the accumulator's default paths."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)}
    assert sum(isinstance(m, Conv2dSame) for m in convs.values()) == 5
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: inputs.__setitem__(n, i[0])) for n, m in convs.items()]
    try:
        with torch.no_grad():
            net(torch.randn(2, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    worst = 0.0
    for name, conv in convs.items():
        acc = HessianAccumulator(conv, max_columns=None)
        acc.add_batch(inputs[name])
        with torch.no_grad():
            ref = reference_hessian(conv.double(), [inputs[name].double()])
        worst = max(worst, rel(acc.H.double(), ref))
        conv.float()
    assert worst < 1e-4  # float32


def test_old_rule_default_symmetric_padding_would_be_wrong_for_tf_same():
    """What the fix is for: TF "same" is not the module's `padding` attribute (0)."""
    conv = _seeded(Conv2dSame(4, 4, 5, stride=2, groups=4))
    assert conv.padding == (0, 0)
    assert input_padding(conv, 14, 14) == ((1, 2, 1, 2), "constant")
    assert hessian.layer_columns(conv, torch.randn(1, 4, 14, 14, dtype=torch.float64)).shape[-1] == 7 * 7


def test_engine_leaves_a_conv_with_its_own_forward_dense_with_the_reason():
    from spade_engine.engine import PruneConfig, SpadeEngine

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), OwnPadding(4, 4, 3), Conv2dSame(4, 4, 3, stride=2), nn.Flatten(),
        nn.LazyLinear(3),
    )  # fmt: skip
    net(torch.rand(1, 3, 12, 12))  # materialise the lazy head
    engine = SpadeEngine(net.eval(), max_columns=None)
    _, result = engine.prune(engine.prepare(torch.rand(3, 12, 12), n_aug=4), PruneConfig(sparsity=0.5))
    assert result.dense_layers["1"] == OWN_PADDING
    assert "2" in result.layer_sparsity and "1" not in result.layer_sparsity  # the TF-"same" conv is pruned


def reference_columns(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """(G, d, N) columns of `x` from the explicitly padded unfold of `reference_hessian`."""
    u = F.unfold(reference_padded(conv, x), conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
    b, cd, n = u.shape
    return u.view(b, conv.groups, cd // conv.groups, n).permute(1, 2, 0, 3).reshape(conv.groups, -1, b * n)


@pytest.mark.parametrize("name", [n for n in LAYERS if "depthwise" in n])
@pytest.mark.parametrize("route", ["rows", "columns"])
def test_depthwise_column_products_both_routes_exact(name, route, monkeypatch):
    """The row-Gram route (kh row-shifted copies, tap sums from strided diagonals of their Gram) and the columns
    route give the Hessian sum and the asymmetric cross sum `X_d X_p^T` of the explicitly padded unfold."""
    conv, shape = LAYERS[name]
    conv = _seeded(conv)
    monkeypatch.setattr(depthwise, "ROWS_ADVANTAGE", float("inf") if route == "rows" else 0.0)
    h, w = shape[2:]
    (left, right, top, bottom), _ = input_padding(conv, h, w)
    assert depthwise.rows_cheaper(conv, h + top + bottom, w + left + right) == (route == "rows")
    gen = torch.Generator().manual_seed(3)
    x_dense, x_pruned = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    own, cross = depthwise.column_products(conv, x_pruned, [x_pruned, x_dense])
    cols_p, cols_d = reference_columns(conv, x_pruned), reference_columns(conv, x_dense)
    assert rel(own, cols_p @ cols_p.mT) < 1e-12
    assert rel(cross, cols_d @ cols_p.mT) < 1e-12
    assert rel(depthwise_hessian_sum(conv, x_pruned), cols_p @ cols_p.mT) < 1e-12
    H, C = paired_moments(conv, x_dense, x_pruned)  # the asymmetric pass's moments (float32), column means
    n = cols_p.shape[-1]
    assert rel(H.double(), 2 / n * cols_p @ cols_p.mT) < 1e-6 and rel(C.double(), 2 / n * cols_d @ cols_p.mT) < 1e-6


@pytest.mark.parametrize("name", [n for n in LAYERS if "depthwise" in n])
@pytest.mark.parametrize("grid", [2, 3])
def test_depthwise_sub_grids_partition_the_columns(name, grid):
    """Each offset of `grid_products` takes the columns of one sub-grid of output positions; over all grid**2
    offsets they are every column once: the sums add up to the explicitly padded unfold's, the counts to N."""
    conv, shape = LAYERS[name]
    conv = _seeded(conv)
    gen = torch.Generator().manual_seed(4)
    x_dense, x_pruned = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    cols_p, cols_d = reference_columns(conv, x_pruned), reference_columns(conv, x_dense)
    own, cross, n = 0, 0, 0
    for oy in range(grid):
        for ox in range(grid):
            (o, c), k = depthwise.grid_products(conv, x_pruned, [x_pruned, x_dense], grid, offset=(oy, ox))
            own, cross, n = own + o, cross + c, n + k
            assert 0 < k < cols_p.shape[-1]  # a proper subset
    assert n == cols_p.shape[-1]
    assert rel(own, cols_p @ cols_p.mT) < 1e-12 and rel(cross, cols_d @ cols_p.mT) < 1e-12
    (one,), _ = depthwise.grid_products(conv, x_pruned, [x_pruned], 1, offset=(0, 0))  # grid 1: every column
    assert rel(one, cols_p @ cols_p.mT) < 1e-12


def test_large_depthwise_maps_take_a_random_sub_grid_in_both_passes():
    """Beyond `DEPTHWISE_ALL_COLUMNS` times the cap, the dense pass's accumulator and the asymmetric pass's
    moments sum the columns of a sub-grid (about N / grid**2 of them), and stay near the full moments."""
    conv = _seeded(nn.Conv2d(8, 8, 3, padding=1, groups=8))
    x = torch.randn(8, 8, 60, 60, generator=torch.Generator().manual_seed(5))
    n = 8 * 60 * 60
    acc = HessianAccumulator(conv, max_columns=n // 9, generator=torch.Generator().manual_seed(0))
    assert depthwise.grid_size(n, n // 9) == 3 and acc.path(x.shape) == "depthwise-grid"
    acc.add_batch(x)
    assert acc.nsamples == 8 * 20 * 20  # one position in 3 x 3 of each image
    full = 2 / n * reference_columns(conv, x.double()) @ reference_columns(conv, x.double()).mT
    # an estimate, not the sum: white noise, 3200 columns, about 9 / sqrt(3200) / 3 = 0.05 expected
    assert torch.equal(acc.H, acc.H.mT) and 0 < rel(acc.H.double(), full) < 0.1
    H, C = paired_moments(conv, x, x, max_columns=n // 9, generator=torch.Generator().manual_seed(0))
    assert H is C and 0 < rel(H.double(), full) < 0.1


def test_row_gram_chosen_where_it_is_cheaper():
    """EfficientNet-Lite's 5x5 depthwise convs at 14 px take the row Gram; its wide stride-2 3x3 ones at 112 px
    keep the strided columns (there the Gram computes about 26 times the needed products)."""
    late = nn.Conv2d(672, 672, 5, padding=2, groups=672)
    early = nn.Conv2d(96, 96, 3, stride=2, padding=1, groups=96)
    assert depthwise.rows_cheaper(late, 18, 18)
    assert not depthwise.rows_cheaper(early, 114, 114)

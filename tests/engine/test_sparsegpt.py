"""The vectorised SparseGPT sweep (both kernels: compiled with Numba, and torch) against a plain
column-by-column OBS loop, OBS vs magnitude, and the SPADE authors' mask granularity (one block per input
channel, `int(n * s) + 1` pruned per block)."""

import pytest
import torch
from torch import nn

from spade_engine.pruning import (
    dense_energy,
    grouped_weight,
    inverse_hessian,
    layer_columns,
    prune_layer,
    reconstruction_error,
    sweep_error,
)
from spade_engine.pruning.magnitude import magnitude_solve
from spade_engine.pruning.sparsegpt import sparsegpt_solve

KERNELS = ["compiled", "torch"]  # every equality test below runs both lazy-block kernels


def loop_counts(sparsity, g, r, i1, i2, mask_count):
    """Weights to prune per group in block [i1, i2), written out from the two rules."""
    if mask_count == "reference":  # the SPADE authors: threshold at sorted score [int(n * s)], prune <= it
        n = r * (i2 - i1)
        return [min(int(n * sparsity) + 1, n)] * g
    total = round(sparsity * g * r * i2) - round(sparsity * g * r * i1)  # running layer target
    return [total // g + (gi < total % g) for gi in range(g)]


def loop_reference(W, hinv, sparsity, blocksize, mask_count="running"):
    """SparseGPT's sweep (the paper's Algorithm 1, the authors' `fasterprune`) in plain loops over groups and
    columns; shares no code with the implementation's mask choice or block sweep.

    Returns:
        (pruned weights (G, R, d), mask (G, R, d) bool).
    """
    U = hinv.U
    W = W.to(U.dtype).clone()
    g, r, d = W.shape
    masks = torch.zeros(W.shape, dtype=torch.bool)
    for gi in range(g):
        Wg, Ug = W[gi], U[gi]  # views (R, d), (d, d)
        for i1 in range(0, d, blocksize):
            i2 = min(i1 + blocksize, d)
            W1, U1 = Wg[:, i1:i2].clone(), Ug[i1:i2, i1:i2]
            score = W1**2 / U1.diagonal() ** 2  # on the block's current (lazily updated) weights
            score[:, hinv.dead[gi, i1:i2]] = 0.0
            count = loop_counts(sparsity, g, r, i1, i2, mask_count)[gi]
            thresh = score.flatten().sort().values[count - 1] if count else -1.0
            mask = score <= thresh
            Err1 = torch.zeros_like(W1)
            for i in range(i2 - i1):
                w = W1[:, i].clone()
                q = torch.where(mask[:, i], 0.0, w)
                err = (w - q) / U1[i, i]
                W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
                W1[:, i] = q
                Err1[:, i] = err
            Wg[:, i1:i2] = W1
            Wg[:, i2:] -= Err1 @ Ug[i1:i2, i2:]
            masks[gi, :, i1:i2] = mask
    return W, masks


def random_problem(g=2, r=6, d=20, n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(g, d, n, generator=gen, dtype=torch.float64)
    X[:, 3] = 0  # a dead input
    H = 2 * X @ X.transpose(1, 2) / n
    W = torch.randn(g, r, d, generator=gen, dtype=torch.float64)
    return W, H


def layer_problem(layer, seed=0):
    """A float64 copy of `layer` and the Hessian of random inputs (8 images of 10x10, or 200 vectors)."""
    gen = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
    shape = (8, layer.in_channels, 10, 10) if isinstance(layer, nn.Conv2d) else (200, layer.in_features)
    X = layer_columns(layer, torch.randn(shape, generator=gen, dtype=torch.float64))  # (G, d, N)
    return layer, 2 * X @ X.transpose(1, 2) / X.shape[-1]


CONV = {"dense": lambda: nn.Conv2d(6, 16, 3, padding=1), "grouped": lambda: nn.Conv2d(6, 16, 3, groups=2)}


@pytest.mark.parametrize("kernel", KERNELS)
def test_vectorised_sweep_equals_column_loop(kernel):
    W, H = random_problem()
    hinv = inverse_hessian(H, 0.01)
    for sparsity in (0.3, 0.75):
        for blocksize in (7, 128):
            fast = sparsegpt_solve(W, hinv, sparsity, blocksize, kernel=kernel)
            ref, mask = loop_reference(W, hinv, sparsity, blocksize)
            assert torch.equal(fast == 0, mask)
            torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("conv", list(CONV))
@pytest.mark.parametrize(("blocksize", "mask_count"), [(9, "reference"), (32, "running")])
def test_sweep_equals_column_loop_on_conv(conv, blocksize, mask_count, kernel):
    """Kernel blocks with the authors' count, and 32-column blocks with the running count, on conv weights."""
    layer, H = layer_problem(CONV[conv]())
    hinv = inverse_hessian(H, 0.01)
    W = grouped_weight(layer)
    for sparsity in (0.3, 0.8):
        fast = sparsegpt_solve(W, hinv, sparsity, blocksize, mask_count=mask_count, kernel=kernel)
        ref, mask = loop_reference(W, hinv, sparsity, blocksize, mask_count)
        assert torch.equal(fast == 0, mask)
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mask_count", ["reference", "running"])
def test_sweep_equals_column_loop_on_linear_columns(mask_count, kernel):
    """One-column mask blocks (a Linear's "kernel" block) across several 128-column lazy blocks."""
    layer, H = layer_problem(nn.Linear(300, 10))
    hinv = inverse_hessian(H, 0.01)
    W = grouped_weight(layer)  # (1, 10, 300)
    for sparsity in (0.3, 0.8):
        fast = sparsegpt_solve(W, hinv, sparsity, 1, mask_count=mask_count, kernel=kernel)
        ref, mask = loop_reference(W, hinv, sparsity, 1, mask_count)
        assert torch.equal(fast == 0, mask)
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_lazy_block_and_row_chunks_do_not_change_the_result(monkeypatch, kernel):
    """Mask blocks of 3 columns in lazy blocks of 3, 6, 9 or 18 columns (d = 20 leaves a partial mask block),
    and rows solved one at a time, all match the column loop."""
    W, H = random_problem()
    hinv = inverse_hessian(H, 0.01)
    ref, mask = loop_reference(W, hinv, 0.6, 3, "reference")
    for lazy_columns in (1, 3, 7, 9, 20):
        fast = sparsegpt_solve(W, hinv, 0.6, 3, "reference", lazy_columns=lazy_columns, kernel=kernel)
        assert torch.equal(fast == 0, mask)
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)
    monkeypatch.setattr("spade_engine.pruning.sparsegpt.SYSTEM_ELEMENTS", 2 * 3 * 3)  # G=2, k=3: one row per solve
    torch.testing.assert_close(sparsegpt_solve(W, hinv, 0.6, 3, "reference", kernel=kernel), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("conv", list(CONV))
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.8, 0.95, 0.999, 1.0])
def test_kernel_blocks_lose_the_reference_count(conv, sparsity):
    """blocksize "kernel": every input channel's block (all rows x kh*kw columns, per group) loses int(n*s)+1."""
    layer, H = layer_problem(CONV[conv]())
    prune_layer(layer, inverse_hessian(H, 0.01), sparsity, "sparsegpt", "kernel", "reference")
    W = grouped_weight(layer)  # (G, R, C_in/G * 9)
    g, r, d = W.shape
    zeros = (W == 0).view(g, r, d // 9, 9).sum(dim=(1, 3))  # (G, C_in/G): zeros per input-channel block
    n = r * 9
    assert bool((zeros == min(int(n * sparsity) + 1, n)).all())


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.8])
def test_linear_kernel_blocks_are_columns(sparsity):
    """A Linear's "kernel" block is one column: each column loses int(R*s)+1 (a 10-class head at 80%: 90%)."""
    layer, H = layer_problem(nn.Linear(20, 10))
    prune_layer(layer, inverse_hessian(H, 0.01), sparsity, "sparsegpt", "kernel", "reference")
    zeros = (layer.weight == 0).sum(dim=0)  # (C_in,)
    assert bool((zeros == int(10 * sparsity) + 1).all())
    if sparsity == 0.8:
        assert float((layer.weight == 0).float().mean()) == pytest.approx(0.9)


def test_bad_granularity_raises():
    layer, H = layer_problem(nn.Linear(4, 3))
    hinv = inverse_hessian(H, 0.01)
    for blocksize in ("kernal", 0, -2, 1.5, True):
        with pytest.raises(ValueError, match="blocksize"):
            prune_layer(layer, hinv, 0.5, blocksize=blocksize)
    with pytest.raises(ValueError, match="mask_count"):
        prune_layer(layer, hinv, 0.5, solver="magnitude", mask_count="exact")
    with pytest.raises(ValueError, match="mask_count"):
        sparsegpt_solve(grouped_weight(layer), hinv, 0.5, mask_count="exact")


def test_exact_sparsity_and_dead_inputs_pruned_first():
    W, H = random_problem(g=3, r=5, d=9)
    hinv = inverse_hessian(H, 0.01)
    for sparsity in (0.1, 0.5, 0.9):
        W_hat = sparsegpt_solve(W, hinv, sparsity, blocksize=128)
        assert int((W_hat == 0).sum()) == round(sparsity * W.numel())
    W_hat = sparsegpt_solve(W, hinv, 0.5)
    assert bool((W_hat[:, :, 3] == 0).all())  # weights on the dead input cost nothing and go first


def test_obs_beats_magnitude_and_zero_sparsity_is_identity():
    W, H = random_problem(g=1, r=16, d=40, n=400, seed=1)
    hinv = inverse_hessian(H, 0.01)
    for sparsity in (0.25, 0.5, 0.8):
        obs = reconstruction_error(W, sparsegpt_solve(W, hinv, sparsity), H)
        mag = reconstruction_error(W, magnitude_solve(W, None, sparsity), H)
        assert obs < mag
    torch.testing.assert_close(sparsegpt_solve(W, hinv, 0.0), W)
    assert reconstruction_error(W, W, H) == 0.0


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("blocksize", [1, 9, 128])
@pytest.mark.parametrize("mask_count", ["running", "reference"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_error_from_the_sweep_losses_equals_the_direct_product(blocksize, mask_count, dtype, kernel):
    """`sweep_error` (the sweep's OBS losses minus the dampening's share) against `reconstruction_error`
    (D H D^T directly), with a dead input, three groups and both mask counts: to rounding in float64, and
    within 1e-4 relative in float32 (the engine's dtype)."""
    W, H = random_problem(g=3, r=8, d=45, n=300, seed=2)
    W, H = W.to(dtype), H.to(dtype)
    for damp in (0.01, 0.1):
        hinv = inverse_hessian(H, damp)
        for sparsity in (0.3, 0.9):
            loss = torch.zeros(3, dtype=torch.float64)
            W_hat = sparsegpt_solve(W, hinv, sparsity, blocksize, mask_count, loss_out=loss, kernel=kernel)
            direct = reconstruction_error(W, W_hat, H)
            got = sweep_error(W, W_hat, H, hinv, loss, dense_energy(W, H))
            assert got == pytest.approx(direct, rel=1e-9 if dtype == torch.float64 else 1e-4)
    assert sweep_error(W, W, H, hinv, torch.zeros(3, dtype=torch.float64), dense_energy(W, H)) == 0.0


@pytest.mark.parametrize("counts", [[0, 3, 7], [20, 31, 36], [36, 36, 36], [5, 18, 30]])
def test_block_mask_prunes_the_least_salient_by_either_selection(counts):
    """`block_mask` picks the `counts[g]` lowest scores w^2 / U_jj^2 per group, dead inputs first, whether it
    selects the weights to prune (counts up to half the block) or the ones to keep (more than half)."""
    from spade_engine.pruning.sparsegpt import block_mask

    g, r, k = 3, 4, 9
    gen = torch.Generator().manual_seed(0)
    W1, u_diag = torch.randn(g, r, k, generator=gen), torch.rand(g, k, generator=gen) + 0.5
    dead = torch.zeros(g, k, dtype=torch.bool)
    dead[:, 2] = True
    mask = block_mask(W1, u_diag, dead, torch.tensor(counts))
    score = (W1.pow(2) / u_diag.pow(2).unsqueeze(1)).masked_fill(dead.unsqueeze(1), -1.0).reshape(g, r * k)
    for gi, c in enumerate(counts):
        picked, s_g = mask[gi].reshape(-1), score[gi]
        assert int(picked.sum()) == c, gi
        if 0 < c < r * k:  # every pruned weight scores at most every kept one (ties may go either way)
            assert float(s_g[picked].max()) <= float(s_g[~picked].min()), gi
        if c >= r:
            assert bool(mask[gi, :, 2].all())  # the dead input's weights go first


def test_both_solvers_stop_when_their_thread_is_cancelled():
    import threading

    from spade_engine.pruning.cancel import Cancelled, cancellable
    from spade_engine.pruning.obc import obc_solve

    W, H = random_problem(g=1, r=8, d=18)
    hinv = inverse_hessian(H, 0.01)
    stop = threading.Event()
    stop.set()
    for solve in (sparsegpt_solve, obc_solve):
        with cancellable(stop), pytest.raises(Cancelled):
            solve(W, hinv, 0.5)
        with cancellable(threading.Event()):
            assert int((solve(W, hinv, 0.5) == 0).sum()) == W.numel() // 2  # not set: the solve runs as before


def test_an_exit_stops_solves_in_every_thread(monkeypatch):
    """`cancel.shutdown()` (the engine calls it at interpreter exit) makes solves raise without a `cancellable`
    block, so a server's script thread stops instead of running torch ops while Python finalises."""
    import threading

    from spade_engine.pruning import cancel

    monkeypatch.setattr(cancel, "_shutdown", threading.Event())  # this test's own exit flag
    W, H = random_problem(g=1, r=8, d=18)
    hinv = inverse_hessian(H, 0.01)
    sparsegpt_solve(W, hinv, 0.5)
    cancel.shutdown()
    with pytest.raises(cancel.Cancelled):
        sparsegpt_solve(W, hinv, 0.5)


@pytest.mark.parametrize("mask_count", ["running", "reference"])
def test_count_table_follows_the_written_out_rules(mask_count):
    """The per-layer table of mask-block counts both kernels use equals `loop_counts` (the two rules written out
    per block) block by block, with a partial last block and groups that share a remainder."""
    from spade_engine.pruning.sparsegpt import block_count_table

    for sparsity, g, r, d, bs in [(0.8, 1, 64, 576, 9), (0.37, 3, 5, 20, 3), (0.9, 2, 10, 300, 1), (0.5, 4, 7, 13, 13)]:
        table = block_count_table(sparsity, g, r, d, bs, mask_count)
        assert table.shape == (g, -(-d // bs))
        for b, i1 in enumerate(range(0, d, bs)):
            expected = loop_counts(sparsity, g, r, i1, min(i1 + bs, d), mask_count)
            assert table[:, b].tolist() == expected, (sparsity, g, r, d, bs, b)


@pytest.mark.parametrize(("shape", "blocksize"), [((1, 64, 576), 9), ((2, 16, 27), 9), ((1, 100, 256), 1)])
def test_compiled_kernel_matches_torch_in_float32(shape, blocksize):
    """The engine's dtype: both kernels prune as many weights, pick the same mask on live inputs (a few
    near-ties may differ) and agree on the weights within float32 rounding, on a layer-sized problem with a
    dead input (whose weights all score 0, so which of them go is arbitrary)."""
    g, r, d = shape
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(g, d, 3 * d, generator=gen)
    X[:, 5] = 0
    hinv = inverse_hessian(2 * X @ X.transpose(1, 2) / X.shape[-1], 0.01)
    W = torch.randn(g, r, d, generator=gen)
    for sparsity in (0.5, 0.9):
        a = sparsegpt_solve(W, hinv, sparsity, blocksize, kernel="compiled")
        b = sparsegpt_solve(W, hinv, sparsity, blocksize, kernel="torch")
        live = ~hinv.dead.unsqueeze(1).expand_as(W)  # a dead input's weights all tie at score 0: any may go
        assert int((a == 0).sum()) == int((b == 0).sum())
        assert int((((a == 0) != (b == 0)) & live).sum()) <= W.numel() // 1000
        same = (a == 0) == (b == 0)
        torch.testing.assert_close(a[same], b[same], rtol=1e-4, atol=1e-4)


def test_kernel_choice_is_checked(monkeypatch):
    from spade_engine.pruning import sparsegpt

    W, H = random_problem(g=1, r=4, d=9)
    hinv = inverse_hessian(H, 0.01)
    with pytest.raises(ValueError, match="kernel"):
        sparsegpt_solve(W, hinv, 0.5, kernel="numba")
    assert sparsegpt._use_compiled("auto", W)  # CPU, float64, Numba installed: the compiled kernel runs
    assert not sparsegpt._use_compiled("torch", W)
    assert not sparsegpt._use_compiled("auto", W.to(torch.bfloat16))
    with pytest.raises(ValueError, match="Numba"):
        sparsegpt._use_compiled("compiled", W.to(torch.bfloat16))
    monkeypatch.setenv("SPADE_SWEEP_KERNEL", "torch")  # the switch for a machine where Numba misbehaves
    assert not sparsegpt._use_compiled("auto", W) and sparsegpt._use_compiled("compiled", W)
    monkeypatch.setenv("SPADE_SWEEP_KERNEL", "compiled")  # a preference: where it cannot run, the torch path does
    assert sparsegpt._use_compiled("auto", W) and not sparsegpt._use_compiled("auto", W.to(torch.bfloat16))
    monkeypatch.setenv("SPADE_SWEEP_KERNEL", "")  # empty: as unset
    assert sparsegpt._use_compiled("auto", W)
    monkeypatch.setenv("SPADE_SWEEP_KERNEL", "fast")
    with pytest.raises(ValueError, match="SPADE_SWEEP_KERNEL"):
        sparsegpt_solve(W, hinv, 0.5)


def test_a_read_only_install_without_a_cache_still_imports_and_prunes(tmp_path):
    """No writable place for Numba's cache (a read-only package and no writable home): the kernel compiles in
    the process instead of failing the import; NUMBA_DISABLE_JIT=1 falls back to the torch path."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import spade_engine

    root = tmp_path / "ro"
    shutil.copytree(Path(spade_engine.__file__).parent, root / "spade_engine", ignore=shutil.ignore_patterns("*.nb?"))
    pycache = root / "spade_engine" / "pruning" / "__pycache__"
    shutil.rmtree(pycache, ignore_errors=True)
    pycache.touch()  # a file where the cache directory would go: nothing can be written there
    code = (
        "import torch; from spade_engine.pruning import inverse_hessian, sweep_kernel;"
        "from spade_engine.pruning.sparsegpt import sparsegpt_solve, _use_compiled;"
        "X = torch.randn(1, 18, 60); h = inverse_hessian(2 * X @ X.mT / 60);"
        "W = sparsegpt_solve(torch.randn(1, 4, 18), h, 0.5, 9);"
        "print(sweep_kernel.AVAILABLE, _use_compiled('auto', W), int((W == 0).sum()))"
    )
    env = {**os.environ, "PYTHONPATH": str(root), "HOME": "/dev/null", "NUMBA_CACHE_DIR": "/dev/null/x"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "36"]
    env["NUMBA_DISABLE_JIT"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "36"]


def test_quickselect_finds_the_kth_smallest_with_ties():
    """The compiled kernel's threshold: `_kth_smallest` against a sort, on distinct values, many ties (dead inputs
    all score 0) and the ends of the range."""
    import numpy as np

    from spade_engine.pruning import sweep_kernel

    rng = np.random.default_rng(0)
    arrays = [rng.random(257).astype(np.float32), np.zeros(50, np.float32), rng.integers(0, 4, 300).astype(np.float32)]
    arrays.append(np.concatenate([np.zeros(40, np.float32), rng.random(60).astype(np.float32)]))
    for a in arrays:
        for k in (0, 1, len(a) // 2, len(a) - 2, len(a) - 1):
            assert sweep_kernel._kth_smallest(a.copy(), k) == np.sort(a)[k], (a[:5], k)


def test_sweep_error_falls_back_where_the_dampening_swamps_the_loss():
    """Tiny activations beside dead inputs (H_jj = 1 sets the dampening's scale): the sweep's losses are nearly
    all dampening, and their difference is float32 noise; `sweep_error` returns the direct product then."""
    torch.manual_seed(0)
    g, r, d, n = 64, 1, 9, 64  # a depthwise 3x3 conv
    X = 1e-6 * torch.randn(g, d, n)
    X[:, :3] = 0
    H = 2 * X @ X.transpose(1, 2) / n
    W = torch.randn(g, r, d)
    hinv = inverse_hessian(H, 0.01)
    for kernel in KERNELS:
        loss = torch.zeros(g, dtype=torch.float64)
        W_hat = sparsegpt_solve(W, hinv, 0.5, 9, loss_out=loss, kernel=kernel)
        direct = reconstruction_error(W, W_hat, H)
        assert direct > 1e-3
        assert sweep_error(W, W_hat, H, hinv, loss, dense_energy(W, H)) == pytest.approx(direct, rel=1e-4)


def test_sparsity_outside_the_unit_interval_is_refused_by_both_kernels():
    W, H = random_problem(g=1, r=4, d=9)
    hinv = inverse_hessian(H, 0.01)
    for kernel in KERNELS:
        for sparsity in (-0.5, 1.5):
            with pytest.raises(ValueError, match="sparsity"):
                sparsegpt_solve(W, hinv, sparsity, kernel=kernel)

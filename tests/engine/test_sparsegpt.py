"""The vectorised SparseGPT sweep against a plain column-by-column OBS loop, and OBS vs magnitude."""

import torch

from spade_engine.pruning import inverse_hessian, reconstruction_error
from spade_engine.pruning.magnitude import magnitude_solve
from spade_engine.pruning.sparsegpt import block_mask, sparsegpt_solve


def loop_reference(W, hinv, sparsity, blocksize):
    """SparseGPT's sweep written column by column, as in the paper's Algorithm 1 (batched over groups)."""
    U = hinv.U
    W = W.to(U.dtype).clone()
    d = W.shape[-1]
    for i1 in range(0, d, blocksize):
        i2 = min(i1 + blocksize, d)
        W1, U1 = W[:, :, i1:i2].clone(), U[:, i1:i2, i1:i2]
        diag = U1.diagonal(dim1=1, dim2=2)
        total = int(round(sparsity * W.shape[0] * W.shape[1] * i2)) - int((W[:, :, :i1] == 0).sum())
        mask = block_mask(W1, diag, hinv.dead[:, i1:i2], total)
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            w = W1[:, :, i]
            q = w.masked_fill(mask[:, :, i], 0.0)
            err = (w - q) / diag[:, i : i + 1]
            W1[:, :, i:] -= err.unsqueeze(2) * U1[:, i, i:].unsqueeze(1)
            W1[:, :, i] = q
            Err1[:, :, i] = err
        W[:, :, i1:i2] = W1
        W[:, :, i2:] -= torch.bmm(Err1, U[:, i1:i2, i2:])
    return W


def random_problem(g=2, r=6, d=20, n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(g, d, n, generator=gen, dtype=torch.float64)
    X[:, 3] = 0  # a dead input
    H = 2 * X @ X.transpose(1, 2) / n
    W = torch.randn(g, r, d, generator=gen, dtype=torch.float64)
    return W, H


def test_vectorised_sweep_equals_column_loop():
    W, H = random_problem()
    hinv = inverse_hessian(H, 0.01)
    for sparsity in (0.3, 0.75):
        for blocksize in (7, 128):
            fast = sparsegpt_solve(W, hinv, sparsity, blocksize)
            ref = loop_reference(W, hinv, sparsity, blocksize)
            torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)


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

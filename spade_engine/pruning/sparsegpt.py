"""SparseGPT's OBS column sweep with adaptive per-block mask selection (Frantar & Alistarh, arXiv 2301.00774).

Batched over groups (a depthwise conv's C tiny Hessians cost one sweep) and over rows: once a block's mask is
chosen, SparseGPT's column-by-column OBS updates inside the block are a triangular system per row, solved in
one batched `solve_triangular` instead of a Python loop over columns (same result, see the tests).
"""

from __future__ import annotations

import torch

from spade_engine.pruning.inverse import InverseHessian


def block_mask(W1: torch.Tensor, u_diag: torch.Tensor, dead: torch.Tensor, total: int) -> torch.Tensor:
    """Choose which `total` weights of a (G, R, k) block to prune: the lowest OBS saliencies `w^2 / [U]_jj^2`.

    Weights on dead inputs (no effect on the calibration batch) score 0 and go first. The count is spread
    over groups as evenly as possible.

    Returns:
        (G, R, k) bool mask, True = prune.
    """
    g, r, k = W1.shape
    score = W1.pow(2) / u_diag.pow(2).unsqueeze(1)  # (G, R, k)
    score = score.masked_fill(dead.unsqueeze(1), 0.0).reshape(g, r * k)
    counts = torch.full((g, 1), total // g, device=W1.device)
    counts[: total % g] += 1
    ranks = score.argsort(dim=1).argsort(dim=1)  # (G, R*k): 0 = least salient
    return (ranks < counts).view(g, r, k)


def _sweep_block(W1: torch.Tensor, U1: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OBS updates inside one block with a fixed mask.

    Column i's error is `e_i = m_i * (w_i - sum_{j<i} e_j U_ji) / U_ii`, i.e. `e A = m * w` with the upper
    triangular `A = diag(U) + triu(U, 1) * m` (per row, since masks differ per row).

    Args:
        W1: (G, R, k) block weights; U1: (G, k, k) block of the inverse-Hessian Cholesky factor; mask: (G, R, k).

    Returns:
        (pruned block Q1 (G, R, k), scaled errors E1 (G, R, k) to propagate to later columns).
    """
    m = mask.to(W1.dtype)
    strict = U1.triu(1).unsqueeze(1)  # (G, 1, k, k)
    A = torch.diag_embed(U1.diagonal(dim1=1, dim2=2)).unsqueeze(1) + strict * m.unsqueeze(2)  # (G, R, k, k)
    E1 = torch.linalg.solve_triangular(A.transpose(-1, -2), (m * W1).unsqueeze(-1), upper=False)[..., 0]  # (G, R, k)
    current = W1 - torch.einsum("grj,gji->gri", E1, U1.triu(1))  # w_i after earlier columns' updates
    return current * (1 - m), E1


def sparsegpt_solve(W: torch.Tensor, hinv: InverseHessian, sparsity: float, blocksize: int = 128) -> torch.Tensor:
    """Prune grouped weights to `sparsity` and update the survivors to reconstruct the layer output.

    Args:
        W: (G, R, d) weights (not modified).
        hinv: `inverse_hessian(H)` of the layer's inputs.
        sparsity: fraction of the layer's weights to zero (exact up to one weight); the mask is chosen
            block by block (adaptive mask selection), following the running target.
        blocksize: columns per block (lazy update and mask selection).

    Returns:
        (G, R, d) pruned and OBS-updated weights, in W's dtype.
    """
    U = hinv.U
    Wf = W.to(U.dtype).clone()
    g, r, d = Wf.shape
    pruned = 0  # the count per block follows the running target, so the layer total is exact
    # Rows are independent: chunk them so the (G, R, k, k) triangular systems stay within ~64 MB.
    rows = max(1, (16 * 2**20) // max(1, g * blocksize * blocksize))
    for i1 in range(0, d, blocksize):
        i2 = min(i1 + blocksize, d)
        U1 = U[:, i1:i2, i1:i2]  # (G, k, k)
        total = int(round(sparsity * g * r * i2)) - pruned
        mask = block_mask(Wf[:, :, i1:i2], U1.diagonal(dim1=1, dim2=2), hinv.dead[:, i1:i2], total)
        pruned += total
        for r1 in range(0, r, rows):
            r2 = r1 + rows
            Q1, E1 = _sweep_block(Wf[:, r1:r2, i1:i2], U1, mask[:, r1:r2])
            Wf[:, r1:r2, i1:i2] = Q1
            Wf[:, r1:r2, i2:] -= torch.bmm(E1, U[:, i1:i2, i2:])
    return Wf.to(W.dtype)

"""Exact OBC solver: per-row greedy Optimal Brain Surgeon with inverse-Hessian updates.

Frantar & Alistarh, "Optimal Brain Compression", NeurIPS 2022 (arXiv 2208.11580), unstructured variant: every
weight is its own unit. For every output row the weight with the least OBS loss `w_p^2 / (2 [H^-1]_pp)` is
pruned, the rest of the row is updated by `-w_p / [H^-1]_pp * H^-1[:, p]`, and `H^-1` loses row and column p
(a rank-1 downdate); the per-row loss curves are then merged into one layer-wide budget (rows that matter more
keep more weights), and each row's final weights are the closed-form OBS reconstruction for its mask. The
authors' SPADE code instead prunes convolutions block-structured (`prune_blocked(size=kh*kw)`: runs of kh*kw
adjacent input channels at one kernel position, channels-last order, go together) and Linear layers
unstructured; ours treats both unstructured.

The greedy is the same sequence of choices as the plain loop, computed lazily (as SparseGPT does for its
sweep): the explicit `H^-1` of each row is refreshed only every `LAZY_COLUMNS` removals, by one rank-B matrix
product that also drops the removed rows and columns; in between, `H^-1 = H_ckpt^-1 - sum_j v_j v_j^T` with
`v = h_p / sqrt(h_pp)` per removal (h_p: row p of the current H^-1), and the diagonal and the weights are
updated incrementally. Per row that is about d^3/3 multiply-adds, mostly in matrix products, instead of d
memory-bound rank-1 updates of a (d, d) matrix: the same choices up to rounding (tests, in float64).

Cost: O(R d^3) per layer (the SparseGPT sweep is O(d^3 + R d^2)); memory: two (rows, d, d) buffers per chunk
of rows, chunks sized to stay within `MEMORY_BYTES` (1 GB). Measured on one CPU thread at sparsity 0.8
(`benchmarks/obc_speed.py`): 4-7 s for the (128 x 1152) layer4.0.conv2 (plain loop: 52 s), 9-13 s per
testbed ResNet prune (plain loop: 102 s), 3-3.5 s per testbed VGG prune (28 s); the sweep takes 0.1 s.
Layers with more than `exact_columns_limit()` columns (default `MAX_EXACT_COLUMNS` = 1152, so every pruned
layer of the testbed models is exact; env `SPADE_OBC_MAX_COLUMNS`) fall back to the SparseGPT sweep, e.g.
ImageNet ResNet-50's layer3/layer4 3x3 convs (d = 2304, 4608) and its fc (2048); `is_exact(d)` says which.
"""

from __future__ import annotations

import os

import torch

from spade_engine.pruning.cancel import check_cancelled
from spade_engine.pruning.inverse import InverseHessian
from spade_engine.pruning.sparsegpt import sparsegpt_solve

MAX_EXACT_COLUMNS = 1152  # default limit: 128 channels x 3 x 3, the widest testbed layer
LAZY_COLUMNS = 64  # removals folded into the explicit H^-1 at once (the B of the lazy update)
MEMORY_BYTES = 2**30  # rows per greedy chunk are chosen so that its two (rows, d, d) buffers stay within 1 GB


def exact_columns_limit() -> int:
    """Widest layer (columns d = in_channels/groups * kh * kw) that OBC solves exactly; wider ones get the sweep.

    Returns:
        env `SPADE_OBC_MAX_COLUMNS` if set (read at call time), else `MAX_EXACT_COLUMNS`.
    """
    return int(os.environ.get("SPADE_OBC_MAX_COLUMNS", MAX_EXACT_COLUMNS))


def is_exact(d: int) -> bool:
    """Whether `obc_solve` runs the exact greedy (not the SparseGPT fallback) on a layer of `d` columns."""
    return d <= exact_columns_limit()


def _checkpoint(Hi: torch.Tensor, V: torch.Tensor, keep: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Fold the lazy removals into the explicit inverse Hessians and keep only the live positions.

    Args:
        Hi: (Rc, n, n) explicit H^-1 at the last checkpoint (a view of a buffer it is overwritten in).
        V: (Rc, B, n) lazy downdates since then, one row per removal: current H^-1 = Hi - V^T V.
        keep: (Rc, m) live positions of each row, ascending.
        scratch: a buffer of at least Rc * m * n elements.

    Returns:
        (Rc, m, m) current H^-1 on the live positions, in Hi's buffer.
    """
    rc, n, _ = Hi.shape
    m = keep.shape[1]
    flat = (keep + n * torch.arange(rc, device=keep.device).unsqueeze(1)).reshape(-1)  # (Rc*m,) rows of Hi
    rows = torch.index_select(Hi.reshape(rc * n, n), 0, flat, out=scratch[: rc * m * n].view(rc * m, n))
    live = torch.gather(
        rows.view(rc, m, n), 2, keep.unsqueeze(1).expand(rc, m, m), out=Hi.view(-1)[: rc * m * m].view(rc, m, m)
    )
    Vk = V.gather(2, keep.unsqueeze(1).expand(-1, V.shape[1], m))  # (Rc, B, m)
    return live.baddbmm_(Vk.transpose(1, 2), Vk, alpha=-1.0)


def _greedy_order(
    w: torch.Tensor,
    Hinv: torch.Tensor,
    group: torch.Tensor,
    dead: torch.Tensor,
    steps: int,
    lazy: int = LAZY_COLUMNS,
    work: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy OBS on a chunk of rows, each with its own copy of its group's inverse Hessian.

    Args:
        w: (Rc, d) row weights; Hinv: (G, d, d) inverse Hessians; group: (Rc,) group of each row;
        dead: (Rc, d) bool, dead inputs (score 0: pruned first); steps: weights to remove per row;
        lazy: removals between two refreshes of the explicit H^-1.
        work: (2, >= Rc*d*d) buffer to reuse across chunks (first use of fresh memory is slow), else allocated.

    Returns:
        (order (Rc, steps) of pruned column indices, losses (Rc, steps) of each removal).
    """
    rc, d = w.shape
    rows = torch.arange(rc, device=w.device)
    buf, scratch = w.new_empty(2, rc * d * d) if work is None else work
    Hi = buf[: rc * d * d].view(rc, d, d)  # (Rc, n, n): explicit H^-1 at the last checkpoint, live positions only
    torch.index_select(Hinv, 0, group, out=Hi)
    V = w.new_empty(rc, lazy, d)  # (Rc, B, n): v = h_p / sqrt(h_pp) of each removal since the checkpoint
    idx = torch.arange(d, device=w.device).expand(rc, d)  # (Rc, n): column of each live position
    w, diag, dead = w.clone(), Hinv.diagonal(dim1=1, dim2=2)[group], dead.clone()  # (Rc, n) each
    removed = torch.zeros_like(dead)  # (Rc, n): removed since the checkpoint
    order = torch.empty(rc, steps, dtype=torch.long, device=w.device)
    losses = w.new_empty(rc, steps)
    b = 0
    for step in range(steps):
        if step % 16 == 0:
            check_cancelled()  # a background prefetch stops here when the user asks for something else
        n = idx.shape[1]  # live positions at the last checkpoint
        score = (w.pow(2) / diag.clamp_min(1e-20)).masked_fill(dead, 0.0).masked_fill(removed, float("inf"))
        p = score.argmin(dim=1)  # (Rc,) position to remove
        losses[:, step] = score[rows, p] / 2
        order[:, step] = idx[rows, p]
        h = Hi[rows, p]  # (Rc, n): row p of the checkpoint H^-1 ...
        if b:  # ... minus the lazy downdates: (Rc, 1, b) @ (Rc, b, n)
            h -= torch.bmm(V[rows, :b, p].unsqueeze(1), V[:, :b, :n]).squeeze(1)
        hpp = h[rows, p].clamp_min(1e-20).unsqueeze(1)  # (Rc, 1), > 0 up to rounding
        w -= (w[rows, p].unsqueeze(1) / hpp) * h
        w[rows, p] = 0
        diag -= h * (h / hpp)
        V[:, b, :n] = h / hpp.sqrt()
        removed[rows, p] = True
        b += 1
        if b == lazy and step + 1 < steps:  # refresh: every row has exactly d - step - 1 live positions
            keep = (~removed).nonzero()[:, 1].view(rc, -1)  # (Rc, m), ascending
            Hi = _checkpoint(Hi, V[:, :, :n], keep, scratch)
            w, diag, dead, idx = (t.gather(1, keep) for t in (w, diag, dead, idx))
            removed, b = torch.zeros_like(dead), 0
    return order, losses


def _allocate(losses: torch.Tensor, total: int) -> torch.Tensor:
    """Per-row counts whose summed (monotone) losses are smallest under a layer budget of `total` removals."""
    mono = losses.cummax(dim=1).values  # (R, steps): make each row's loss curve non-decreasing
    r, steps = mono.shape
    flat = mono.reshape(-1)
    chosen = flat.argsort(stable=True)[:total]  # stable: ties keep step order, so picks are row prefixes
    return torch.bincount(chosen // steps, minlength=r)


def _reconstruct(w: torch.Tensor, Hinv: torch.Tensor, H: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """Optimal weights for a fixed mask, pruned entries exactly 0, from the smaller of two equal closed forms.

    OBS: `w - w_M [H^-1_MM]^-1 H^-1_M,:` (|M| x |M| system); least squares on the kept set F:
    `w_F + H_FF^-1 H_FM w_M` (|F| x |F|), cheaper at high sparsity.

    Args:
        w: (d,) dense row; Hinv, H: (d, d) dampened inverse Hessian and Hessian; pruned: (d,) bool mask M.
    """
    m, f = pruned.nonzero().squeeze(1), (~pruned).nonzero().squeeze(1)
    if m.numel() == 0:
        return w.clone()
    out = torch.zeros_like(w)
    if m.numel() <= f.numel():
        out = w - torch.linalg.solve(Hinv[m][:, m], w[m]) @ Hinv[m]
        out[m] = 0
    elif f.numel() > 0:
        out[f] = w[f] + torch.linalg.solve(H[f][:, f], H[f][:, m] @ w[m])
    return out


def _chunks(rows: int, d: int, element_size: int, lazy: int) -> list[tuple[int, int]]:
    """Equal row ranges whose greedy buffers (2 x (rows, d, d) + (rows, B, d)) fit in `MEMORY_BYTES`."""
    per_row = element_size * (2 * d * d + lazy * d)
    n = -(-rows // max(1, MEMORY_BYTES // per_row))  # number of chunks
    size = -(-rows // n)
    return [(r1, min(r1 + size, rows)) for r1 in range(0, rows, size)]


def obc_solve(W: torch.Tensor, hinv: InverseHessian, sparsity: float, blocksize: int = 128) -> torch.Tensor:
    """Prune grouped weights (G, R, d) to `sparsity` with exact greedy OBS (same interface as `sparsegpt_solve`).

    Args:
        W: (G, R, d) weights (not modified).
        hinv: `inverse_hessian(H)` of the layer's inputs; the work runs in the dtype of `hinv.U`.
        sparsity: fraction of the layer's weights to zero (exact up to rounding), spread over rows by OBS loss.
        blocksize: only used by the SparseGPT fallback for layers that are not `is_exact(d)`.

    Returns:
        (G, R, d) pruned and OBS-updated weights, in W's dtype.
    """
    g, r, d = W.shape
    if not is_exact(d):
        return sparsegpt_solve(W, hinv, sparsity, blocksize)
    U = hinv.U
    total = int(round(sparsity * g * r * d))
    steps = min(d, total)
    if steps == 0:
        return W.clone()
    Hinv = U.transpose(1, 2) @ U  # (G, d, d): U^T U = H^-1
    H = torch.cholesky_inverse(U, upper=True)  # (G, d, d): the dampened Hessian, for `_reconstruct`
    Wf = W.to(U.dtype).reshape(g * r, d)  # (G*R, d), row-major over (g, r)
    group = torch.arange(g, device=W.device).repeat_interleave(r)  # (G*R,) group of each row
    orders, losses = [], []
    chunks = _chunks(g * r, d, Wf.element_size(), LAZY_COLUMNS)
    work = Wf.new_empty(2, (chunks[0][1] - chunks[0][0]) * d * d)  # the greedy's buffers, shared by all chunks
    for r1, r2 in chunks:
        o, lo = _greedy_order(Wf[r1:r2], Hinv, group[r1:r2], hinv.dead[group[r1:r2]], steps, work=work)
        orders.append(o)
        losses.append(lo)
    order, counts = torch.cat(orders), _allocate(torch.cat(losses), total)
    out = torch.empty_like(Wf)
    for i in range(g * r):
        if i % 64 == 0:
            check_cancelled()
        mask = torch.zeros(d, dtype=torch.bool, device=W.device)
        mask[order[i, : counts[i]]] = True
        out[i] = _reconstruct(Wf[i], Hinv[group[i]], H[group[i]], mask)
    return out.view(g, r, d).to(W.dtype)

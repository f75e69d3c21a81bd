"""Dampened inverse Hessians in the Cholesky form the OBS column sweep needs (SparseGPT, arXiv 2301.00774)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InverseHessian:
    """Upper Cholesky factor `U` of `H^-1` (U^T U = H^-1), per group, plus the dead input columns.

    `U` depends only on the Hessian and the dampening, never on the sparsity, so it is cached per trace.
    """

    U: torch.Tensor  # (G, d, d)
    dead: torch.Tensor  # (G, d) bool: inputs that were always zero on the calibration batch
    damp: float  # relative dampening actually used (raised if the factorisation needed it)

    @property
    def nbytes(self) -> int:
        return self.U.numel() * self.U.element_size() + self.dead.numel()


TRIANGULAR_LEAF = 256  # `tril_inverse` solves blocks up to this side directly


def tril_inverse(L: torch.Tensor) -> torch.Tensor:
    """Inverse of lower triangular matrices by 2x2 block recursion, so the work is matrix products.

    `[[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]`; blocks up to `TRIANGULAR_LEAF` are solved with
    `torch.linalg.solve_triangular`. About d^3/3 multiply-adds (the identity right-hand side of a plain
    triangular solve costs d^3/2).

    Args:
        L: (..., d, d) lower triangular, non-singular.

    Returns:
        (..., d, d) lower triangular `L^-1`.
    """
    d = L.shape[-1]
    if d <= TRIANGULAR_LEAF:
        eye = torch.eye(d, dtype=L.dtype, device=L.device).expand_as(L)
        return torch.linalg.solve_triangular(L, eye, upper=False)
    h = d // 2
    out = torch.zeros_like(L)
    a_inv, c_inv = tril_inverse(L[..., :h, :h]), tril_inverse(L[..., h:, h:])
    out[..., :h, :h] = a_inv
    out[..., h:, h:] = c_inv
    out[..., h:, :h] = -(c_inv @ (L[..., h:, :h] @ a_inv))
    return out


def upper_inverse_factor(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor `U` of `H^-1` (U^T U = H^-1) from one Cholesky factorisation and one triangular
    inverse, never forming `H^-1`.

    With J the exchange matrix (reversal), `J H J = L L^T` gives `H^-1 = (J L^-T J)(J L^-1 J)`, and
    `U = J L^-1 J` is upper triangular with a positive diagonal, so it is the Cholesky factor of `H^-1`. This
    costs about half of the reference's `cholesky`, `cholesky_inverse`, `cholesky(upper=True)` chain
    (SparseGPT's `fasterprune`), which it equals up to rounding (tests).

    Args:
        H: (G, d, d) symmetric positive definite (already dampened).

    Returns:
        (U (G, d, d), info (G,) int: nonzero where the factorisation failed, as `torch.linalg.cholesky_ex`).
    """
    L, info = torch.linalg.cholesky_ex(H.flip(-2, -1))  # (G, d, d): J H J = L L^T
    if bool(info.any()):
        return L, info
    return tril_inverse(L).flip(-2, -1), info


def inverse_hessian(H: torch.Tensor, damp: float = 0.01, max_tries: int = 6) -> InverseHessian:
    """Dampen `H` by `damp * mean(diag H)` and return the upper Cholesky factor of its inverse.

    Dead inputs (zero diagonal) get `H_jj = 1`, as in the reference. If a factorisation fails the
    dampening is multiplied by 10 and retried. See `upper_inverse_factor`.

    Args:
        H: (G, d, d) Hessians (not modified).
        damp: relative dampening, e.g. 0.01.

    Raises:
        torch.linalg.LinAlgError: no dampening up to `damp * 10**(max_tries - 1)` made H factorisable.
    """
    H = H.clone()
    diag = H.diagonal(dim1=1, dim2=2)  # view (G, d)
    dead = diag == 0
    diag[dead] = 1.0
    mean_diag = diag.mean(dim=1, keepdim=True)  # (G, 1)
    for attempt in range(max_tries):
        d = damp * 10**attempt
        U, info = upper_inverse_factor(H + torch.diag_embed(d * mean_diag.expand_as(diag)))
        if not bool(info.any()):
            return InverseHessian(U, dead, d)
    raise torch.linalg.LinAlgError(f"Hessian factorisation failed even with dampening {d:g}.")

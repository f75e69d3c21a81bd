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


def inverse_hessian(H: torch.Tensor, damp: float = 0.01, max_tries: int = 6) -> InverseHessian:
    """Dampen `H` by `damp * mean(diag H)` and return the upper Cholesky factor of its inverse.

    Dead inputs (zero diagonal) get `H_jj = 1`, as in the reference. If a factorisation fails the
    dampening is multiplied by 10 and retried.

    Args:
        H: (G, d, d) Hessians (not modified).
        damp: relative dampening, e.g. 0.01.
    """
    H = H.clone()
    diag = H.diagonal(dim1=1, dim2=2)  # view (G, d)
    dead = diag == 0
    diag[dead] = 1.0
    mean_diag = diag.mean(dim=1, keepdim=True)  # (G, 1)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    for attempt in range(max_tries):
        d = damp * 10**attempt
        L, info = torch.linalg.cholesky_ex(H + d * mean_diag.unsqueeze(-1) * eye)
        if not bool(info.any()):
            hinv = torch.cholesky_inverse(L)
            U, info = torch.linalg.cholesky_ex(hinv, upper=True)
            if not bool(info.any()):
                return InverseHessian(U, dead, d)
    raise torch.linalg.LinAlgError(f"Hessian factorisation failed even with dampening {d:g}.")

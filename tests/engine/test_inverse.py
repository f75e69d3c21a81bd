"""Inverse-Hessian factors: the one-factorisation path against the reference's three-step chain."""

import pytest
import torch

from spade_engine.pruning import inverse
from spade_engine.pruning.inverse import inverse_hessian, tril_inverse, upper_inverse_factor


def reference_chain(H: torch.Tensor) -> torch.Tensor:
    """SparseGPT's `fasterprune`: cholesky, cholesky_inverse, cholesky(upper=True)."""
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)


def spd(g: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    X = torch.randn(g, d, 3 * d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return X @ X.transpose(1, 2) / d + 0.01 * torch.eye(d, dtype=dtype)


@pytest.mark.parametrize("d", [1, 7, 40])
def test_tril_inverse_recursion_inverts(d, monkeypatch):
    monkeypatch.setattr(inverse, "TRIANGULAR_LEAF", 3)  # several levels of recursion on small matrices
    L = torch.linalg.cholesky(spd(2, d))
    Li = tril_inverse(L)
    assert torch.equal(Li, Li.tril())
    torch.testing.assert_close(Li @ L, torch.eye(d, dtype=L.dtype).expand_as(L), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_upper_factor_equals_the_reference_chain(dtype, tol, monkeypatch):
    """Relative (Frobenius) difference below 1e-10 in float64 and 1e-4 in float32."""
    monkeypatch.setattr(inverse, "TRIANGULAR_LEAF", 16)
    H = spd(3, 100, dtype=dtype)
    U, info = upper_inverse_factor(H)
    assert not bool(info.any()) and torch.equal(U, U.triu())
    ref = reference_chain(H)
    assert float((U - ref).norm() / ref.norm()) < tol
    torch.testing.assert_close((U.transpose(1, 2) @ U @ H).double(), torch.eye(100).double().expand(3, -1, -1),
                               rtol=0, atol=50 * tol)  # fmt: skip


def test_dead_inputs_and_raised_dampening():
    H = spd(1, 20)
    H[:, 4, :] = 0
    H[:, :, 4] = 0
    hinv = inverse_hessian(H, 0.01)
    assert hinv.dead[0].nonzero().flatten().tolist() == [4] and hinv.damp == 0.01
    with pytest.raises(torch.linalg.LinAlgError, match="dampening"):
        inverse_hessian(-torch.eye(4).unsqueeze(0), 0.01, max_tries=2)

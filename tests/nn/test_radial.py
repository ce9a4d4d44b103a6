"""Radial bases, cutoffs, scalar MLP: analytic values, smoothness, normalization."""

import math

import pytest
import torch

from euclidnn.nn import (
    BesselBasis,
    ScalarMLP,
    bessel_basis,
    cosine_cutoff,
    gaussian_basis,
    normalize2mom,
    polynomial_cutoff,
)

F64 = torch.float64


def test_gaussian_basis_formula():
    r = torch.linspace(0.0, 6.0, 13, dtype=F64)
    e = gaussian_basis(r, r_max=5.0, num_basis=11, gamma=2.0)
    mu = torch.linspace(0.0, 5.0, 11, dtype=F64)
    torch.testing.assert_close(e, torch.exp(-2.0 * (r[:, None] - mu) ** 2), rtol=0, atol=1e-15)


def test_bessel_basis_formula_orthonormal_and_limit():
    r_max = 4.0
    r = torch.linspace(1e-3, r_max, 20001, dtype=F64)
    e = bessel_basis(r, r_max, num_basis=6)
    n = torch.arange(1, 7, dtype=F64)
    torch.testing.assert_close(
        e, math.sqrt(2 / r_max) * torch.sin(n * math.pi * r[:, None] / r_max) / r[:, None]
    )
    # ∫_0^r_max e_n e_m r² dr = δ_nm (orthonormal with the radial measure)
    gram = torch.trapezoid(e[:, :, None] * e[:, None, :] * r[:, None, None] ** 2, r, dim=0)
    torch.testing.assert_close(gram, torch.eye(6, dtype=F64), rtol=0, atol=1e-6)
    # r = 0: the finite limit sqrt(2/r_max) n π / r_max, no NaN in value or gradient
    r0 = torch.zeros(1, dtype=F64, requires_grad=True)
    e0 = bessel_basis(r0, r_max, num_basis=6)
    torch.testing.assert_close(e0[0], math.sqrt(2 / r_max) * n * math.pi / r_max)
    e0.sum().backward()
    assert torch.isfinite(r0.grad).all()


def test_bessel_module_trainable_frequencies():
    basis = BesselBasis(r_max=5.0, num_basis=8, trainable=True)
    r = torch.rand(10) * 5
    torch.testing.assert_close(basis(r), bessel_basis(r, 5.0, 8))
    basis(r).sum().backward()
    assert basis.frequencies.grad is not None and basis.frequencies.grad.abs().sum() > 0
    assert "frequencies" not in dict(BesselBasis(5.0, trainable=False).named_parameters())


@pytest.mark.parametrize("p", [2, 6])
def test_polynomial_cutoff_formula_and_smoothness(p):
    r_max = 3.0
    x = torch.linspace(0, 1, 7, dtype=F64)[:-1]
    expected = (
        1
        - (p + 1) * (p + 2) / 2 * x**p
        + p * (p + 2) * x ** (p + 1)
        - p * (p + 1) / 2 * x ** (p + 2)
    )
    torch.testing.assert_close(polynomial_cutoff(x * r_max, r_max, p), expected)
    ends = polynomial_cutoff(torch.tensor([0.0, r_max, r_max + 1.0], dtype=F64), r_max, p)
    assert ends.tolist() == [1.0, 0.0, 0.0]
    # u, u', u'' vanish at r_max (C² joint with the zero beyond): u(r_max − h) = O(h³), u' = O(h²)
    for h in (1e-3, 1e-4):
        r = torch.tensor([r_max * (1 - h), r_max * (1 - h / 2)], dtype=F64, requires_grad=True)
        u = polynomial_cutoff(r, r_max, p)
        (du,) = torch.autograd.grad(u.sum(), r)
        assert abs(u[0].item() / u[1].item() - 8.0) < 0.1
        assert abs(du[0].item() / du[1].item() - 4.0) < 0.1


def test_cosine_cutoff():
    r = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=F64)
    torch.testing.assert_close(cosine_cutoff(r, 2.0), torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=F64))


def test_normalize2mom_matches_monte_carlo():
    f = normalize2mom(torch.nn.functional.silu)
    z = torch.randn(2_000_000, dtype=F64)
    assert abs(f(z).pow(2).mean().item() - 1.0) < 5e-3
    assert normalize2mom(torch.tanh)(torch.ones(1)).item() != torch.tanh(torch.ones(1)).item()


def test_scalar_mlp_preserves_variance():
    mlp = ScalarMLP([8, 64, 64, 200]).to(F64)
    x = torch.randn(4000, 8, dtype=F64)
    with torch.no_grad():
        second_moments = [
            ScalarMLP([8, 64, 64, 200]).to(F64)(x).pow(2).mean().item() for _ in range(8)
        ]
    assert abs(sum(second_moments) / 8 - 1.0) < 0.25
    assert mlp(x).shape == (4000, 200)
    out = torch.compile(mlp, fullgraph=True, backend="eager")(x)
    torch.testing.assert_close(out, mlp(x))

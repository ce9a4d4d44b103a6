import math

import numpy as np
import pytest
import torch

from euclidnn.o3 import Irreps, rand_matrix, spherical_harmonics
from euclidnn.o3.spherical_harmonics import _sh_poly, _sh_recurrence

LMAX = 12


def sphere_quadrature(n):
    """Gauss–Legendre in cos θ × uniform φ: exact for polynomials of degree < 2n on S²."""
    t, w = np.polynomial.legendre.leggauss(n)
    phi = 2 * np.pi * np.arange(2 * n) / (2 * n)
    t, phi = np.meshgrid(t, phi, indexing="ij")
    s = np.sqrt(1 - t**2)
    xyz = np.stack([s * np.cos(phi), s * np.sin(phi), t], -1).reshape(
        -1, 3
    )  # polar axis z on purpose
    return torch.from_numpy(xyz), torch.from_numpy(np.repeat(w, 2 * n) * (np.pi / n))


def test_orthonormal_on_quadrature_grid():
    points, weights = sphere_quadrature(LMAX + 2)
    Y = spherical_harmonics(
        list(range(LMAX + 1)), points, normalize=False, normalization="integral"
    )
    gram = torch.einsum("pi,pj,p->ij", Y, Y, weights)
    assert (gram - torch.eye(gram.shape[0], dtype=torch.float64)).abs().max() < 1e-12


@pytest.mark.parametrize(
    "normalization, expected", [("component", lambda l: 2 * l + 1), ("norm", lambda l: 1.0)]
)
def test_normalization_on_unit_vectors(normalization, expected):
    x = torch.randn(50, 3, dtype=torch.float64)
    for l in range(LMAX + 1):
        y = spherical_harmonics(l, x, normalize=True, normalization=normalization)
        assert (y.pow(2).sum(-1) - expected(l)).abs().max() < 1e-10 * (2 * l + 1)


def test_low_degrees_explicit():
    x = torch.randn(20, 3, dtype=torch.float64)
    u = x / x.norm(dim=-1, keepdim=True)
    y = spherical_harmonics([0, 1, 2], x, normalize=True)
    assert torch.allclose(y[:, 0], torch.ones(20, dtype=torch.float64))
    assert torch.allclose(y[:, 1:4], math.sqrt(3) * u)
    # Y^2_0 (m = 0, polar axis y) = sqrt(5)/2 (3y² − 1)
    assert torch.allclose(y[:, 6], math.sqrt(5) / 2 * (3 * u[:, 1] ** 2 - 1))
    # integral normalization of Y^0 is 1/sqrt(4π)
    assert torch.allclose(
        spherical_harmonics(0, x, True, "integral"),
        torch.full((20, 1), (4 * math.pi) ** -0.5, dtype=torch.float64),
    )


def test_equivariance_up_to_l12_including_inversion():
    irreps = Irreps.spherical_harmonics(LMAX)
    x = torch.randn(30, 3, dtype=torch.float64)
    R = (
        rand_matrix(4, dtype=torch.float64)
        * torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)[:, None, None]
    )
    D = irreps.D_from_matrix(R)  # [4, dim, dim]
    y = spherical_harmonics(irreps, x, normalize=True)
    y_rot = spherical_harmonics(irreps, x @ R.transpose(-1, -2), normalize=True)  # [4, 30, dim]
    assert (y_rot - y @ D.transpose(-1, -2)).abs().max() < 1e-10


def test_homogeneous_polynomials_when_not_normalized():
    x = torch.randn(10, 3, dtype=torch.float64)
    for l in [0, 1, 2, 3, 4, 7, 12]:
        assert torch.allclose(
            spherical_harmonics(l, 1.7 * x, False),
            1.7**l * spherical_harmonics(l, x, False),
            rtol=1e-10,
        )
    assert torch.allclose(spherical_harmonics(5, -x, False), -spherical_harmonics(5, x, False))


def test_closed_form_and_recurrence_paths_agree():
    x = torch.randn(40, 3, dtype=torch.float64)
    ls = (0, 1, 2, 3)
    for normalization in ("component", "norm", "integral"):
        a = _sh_poly(ls, *x.unbind(1), normalization)
        b = _sh_recurrence(ls, *x.unbind(1), normalization)
        assert (a - b).abs().max() < 1e-12


def test_float32_matches_float64():
    x = torch.randn(200, 3, dtype=torch.float64)
    ls = list(range(LMAX + 1))
    y64 = spherical_harmonics(ls, x, True)
    y32 = spherical_harmonics(ls, x.float(), True)
    assert y32.dtype == torch.float32
    assert (y32.double() - y64).abs().max() < 1e-4


def test_shapes_and_selection():
    x = torch.randn(2, 5, 3)
    assert spherical_harmonics([0, 1, 2], x, True).shape == (2, 5, 9)
    full = spherical_harmonics(list(range(6)), x, True)
    assert torch.allclose(
        spherical_harmonics([2, 0], x, True),
        torch.cat([full[..., 4:9], full[..., :1]], -1),
        atol=1e-6,
    )
    assert torch.allclose(spherical_harmonics("5o", x, True), full[..., 25:36], atol=1e-6)
    assert torch.allclose(
        spherical_harmonics([3, 5], x, True),
        torch.cat([full[..., 9:16], full[..., 25:36]], -1),
        atol=1e-6,
    )
    assert spherical_harmonics(Irreps("0e + 2x1o"), x, True).shape == (2, 5, 7)
    zero = spherical_harmonics([0, 1, 4], torch.zeros(1, 3), True)
    assert torch.equal(zero, torch.tensor([[1.0] + [0.0] * 12]))
    with pytest.raises(ValueError, match="parity"):
        spherical_harmonics("1e", x, True)
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(1, x, True, "unit")


@pytest.mark.parametrize("lmax", [3, 5])
def test_gradcheck(lmax):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: spherical_harmonics(list(range(lmax + 1)), v, True), (x,)
    )


@pytest.mark.parametrize("ls", [[0, 1, 2, 3], [2, 5]])
def test_second_derivatives(ls):
    """Forces in training need grad of grad (create_graph=True)."""
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: spherical_harmonics(ls, v, True), (x,))


def test_gradient_of_l1_is_projector():
    """∂(√3 x̂)/∂x = √3 (I − x̂x̂ᵀ)/|x|."""
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    J = torch.autograd.functional.jacobian(lambda v: spherical_harmonics(1, v, True), x)
    u = (x / x.norm()).detach()
    expected = (
        math.sqrt(3) * (torch.eye(3, dtype=torch.float64) - torch.outer(u, u)) / x.norm().detach()
    )
    assert torch.allclose(J, expected)


@pytest.mark.parametrize("normalization", ["component", "norm", "integral"])
def test_agrees_with_e3nn(e3nn_o3, normalization):
    x = torch.randn(100, 3, dtype=torch.float64)
    ls = list(range(12))
    ours = spherical_harmonics(ls, x, True, normalization)
    theirs = e3nn_o3.spherical_harmonics(ls, x, True, normalization=normalization)
    assert (ours - theirs).abs().max() < 1e-10
    # unnormalized inputs: same homogeneous polynomials (relative error)
    ours = spherical_harmonics([1, 2, 3, 4, 7], x, False, normalization)
    theirs = e3nn_o3.spherical_harmonics([1, 2, 3, 4, 7], x, False, normalization=normalization)
    assert ((ours - theirs).abs() / theirs.abs().max()).max() < 1e-12


@pytest.mark.parametrize("normalization", ["component", "norm", "integral"])
@pytest.mark.parametrize("ls", [[0], [1], [0, 1], [0, 1, 2], [2], [0, 1, 2, 3], [1, 3], [0, 4]])
def test_gradient_is_the_vector_jacobian_product(ls, normalization):
    """spherical_harmonics_gradient equals autograd through spherical_harmonics (the
    polynomial formula for l ≤ 3, autograd beyond)."""
    from euclidnn.o3 import spherical_harmonics_gradient

    x = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(11, sum(2 * l + 1 for l in ls), dtype=torch.float64)  # noqa: E741
    y = spherical_harmonics(ls, x, normalize=False, normalization=normalization)
    (want,) = torch.autograd.grad(y, x, g)
    got = spherical_harmonics_gradient(ls, x.detach(), g, normalization)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * float(want.abs().max()))


def test_tables_first_made_in_inference_mode_still_serve_autograd():
    """The constant tables are kept per process: one first asked for in inference mode must not
    be an inference tensor, or every later autograd call through it fails. A fresh process,
    so that no earlier test made the tables first."""
    import subprocess
    import sys

    code = """
import torch
from euclidnn.o3 import spherical_harmonics, wigner_3j
from euclidnn.o3.spherical_harmonics import spherical_harmonics_gradient
x = torch.randn(5, 3, dtype=torch.float64)
with torch.inference_mode():
    spherical_harmonics([0, 1, 2, 5], x, normalize=True)
    spherical_harmonics_gradient([0, 1, 2], x, torch.randn(5, 9, dtype=torch.float64))
    wigner_3j(1, 1, 2, dtype=torch.float64)
x.requires_grad_(True)
y = spherical_harmonics([0, 1, 2, 5], x, normalize=True)
(y.pow(2).sum() + (wigner_3j(1, 1, 2, dtype=torch.float64) * x[0, 0]).sum()).backward()
g = torch.randn(5, 9, dtype=torch.float64)
spherical_harmonics_gradient([0, 1, 2], x, g).sum().backward()
assert torch.isfinite(x.grad).all()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

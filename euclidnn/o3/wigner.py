r"""Wigner-D matrices and Wigner 3j symbols in the real basis of our spherical harmonics.

Wigner D. In the real basis (polar axis y), a rotation about y by α acts on the pair
(m, −m) as a plane rotation, read off from :math:`\operatorname{Re}/\operatorname{Im}
(e^{i m\alpha}(z + i x)^m)`:

.. math::

    D_y(\alpha)_{m m} = \cos m\alpha, \qquad D_y(\alpha)_{m,-m} = -\sin m\alpha .

A rotation about x is a rotation about y conjugated by :math:`P = R_z(-\pi/2)` (which maps
ŷ to x̂), so with the constant matrix :math:`J = D(P)` (computed once per l by exact
quadrature of the spherical harmonics)

.. math::

    D^l(\alpha, \beta, \gamma) = D_y(\alpha)\, J\, D_y(\beta)\, J^T\, D_y(\gamma).

Wigner 3j. The complex Clebsch–Gordan coefficients (Racah's formula, Condon–Shortley
phase, exact rational arithmetic) are carried to the real basis with e3nn's change of basis
(which includes the factor :math:`(-i)^l` that makes them real) and scaled to unit Frobenius
norm. The result agrees with e3nn 0.6 number for number, sign included.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ._constants import constant_table

__all__ = ["wigner_D", "wigner_D_from_matrix", "wigner_3j", "clebsch_gordan"]


def _m_values(l: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(-l, l + 1, dtype=like.dtype, device=like.device)


def _rotation_y(l: int, angle: torch.Tensor) -> torch.Tensor:
    """D_y(angle) [..., 2l+1, 2l+1] (the plane rotations of the (m, −m) pairs)."""
    phase = angle[..., None] * _m_values(l, angle)
    return torch.diag_embed(torch.cos(phase)) + torch.diag_embed(-torch.sin(phase)).flip(-1)


def _gauss_sphere(n: int):
    """Quadrature on S² exact for polynomials of degree < 2n: Gauss–Legendre × uniform φ."""
    t, w = np.polynomial.legendre.leggauss(n)
    phi = 2 * math.pi * np.arange(2 * n) / (2 * n)
    t, phi = np.meshgrid(t, phi, indexing="ij")
    s = np.sqrt(1 - t**2)
    # polar axis y: x = sin θ sin φ, y = cos θ, z = sin θ cos φ
    xyz = np.stack([s * np.sin(phi), t, s * np.cos(phi)], -1).reshape(-1, 3)
    weights = np.repeat(w, 2 * n) * (2 * math.pi / (2 * n))
    return torch.from_numpy(xyz), torch.from_numpy(weights)


@constant_table
def _j_matrix(l: int) -> torch.Tensor:
    r"""J = D^l(R_z(−π/2)) in float64: :math:`J_{mn} = \int Y_m(P x) Y_n(x)\, d\Omega`."""
    from .rotations import matrix_z
    from .spherical_harmonics import spherical_harmonics

    points, weights = _gauss_sphere(l + 1)
    P = matrix_z(torch.tensor(-math.pi / 2, dtype=torch.float64))
    y = spherical_harmonics(l, points, normalize=False, normalization="integral")
    y_rot = spherical_harmonics(l, points @ P.T, normalize=False, normalization="integral")
    J = torch.einsum("pm,pn,p->mn", y_rot, y, weights)
    # entries are 0, ±1/2^k·sqrt(rational): snap the quadrature round-off below 1e-15
    return torch.where(J.abs() < 1e-14, torch.zeros_like(J), J)


def wigner_D(l: int, alpha, beta, gamma) -> torch.Tensor:
    r"""Wigner-D matrix :math:`D^l(\alpha,\beta,\gamma)` of the rotation
    :math:`R_y(\alpha) R_x(\beta) R_y(\gamma)` (e3nn 0.6's signature and basis).

    Satisfies :math:`Y^l(R x) = D^l(R) Y^l(x)`, :math:`D(R_1 R_2) = D(R_1) D(R_2)`,
    :math:`D(R^{-1}) = D(R)^T`; ``wigner_D(1, …)`` equals the rotation matrix itself.

    Args:
        l: degree, any l ≥ 0.
        alpha, beta, gamma: Y-X-Y Euler angles (γ applied first), broadcastable tensors.

    Shapes:
        [...] → [..., 2l+1, 2l+1]; dtype and device follow the angles.

    >>> wigner_D(1, torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.0))
    tensor([[ 0.8776,  0.0000,  0.4794],
            [ 0.0000,  1.0000,  0.0000],
            [-0.4794,  0.0000,  0.8776]])
    """
    alpha, beta, gamma = torch.broadcast_tensors(
        torch.as_tensor(alpha), torch.as_tensor(beta), torch.as_tensor(gamma)
    )
    if not alpha.is_floating_point():
        alpha, beta, gamma = (t.to(torch.get_default_dtype()) for t in (alpha, beta, gamma))
    J = _j_matrix(l).to(dtype=alpha.dtype, device=alpha.device)
    return _rotation_y(l, alpha) @ J @ _rotation_y(l, beta) @ J.T @ _rotation_y(l, gamma)


def wigner_D_from_matrix(l: int, R: torch.Tensor) -> torch.Tensor:
    r"""Wigner-D matrix of rotation matrices R [..., 3, 3] (det R = +1).

    >>> from euclidnn.o3.rotations import rand_matrix
    >>> R = rand_matrix(dtype=torch.float64)
    >>> bool(torch.allclose(wigner_D_from_matrix(1, R), R))
    True
    """
    from .rotations import matrix_to_angles

    return wigner_D(l, *matrix_to_angles(R))


# ---------------------------------------------------------------- Clebsch–Gordan / 3j


def _su2_cg(j1: int, j2: int, j3: int) -> np.ndarray:
    r"""Complex-basis :math:`\langle j_1 m_1 j_2 m_2 | j_3 m_3\rangle` [2j1+1, 2j2+1, 2j3+1].

    Racah's formula, vectorised over (m1, m2, k):

    .. math::

        \langle j_1 m_1 j_2 m_2 | j_3 m_3 \rangle = \delta_{m_3, m_1+m_2}
        \sqrt{\tfrac{(2j_3+1)(j_3+j_1-j_2)!(j_3-j_1+j_2)!(j_1+j_2-j_3)!}{(j_1+j_2+j_3+1)!}
        \textstyle\prod_{i} (j_i+m_i)!(j_i-m_i)!}
        \sum_k \frac{(-1)^k}{k!(j_1+j_2-j_3-k)!(j_1-m_1-k)!(j_2+m_2-k)!(j_3-j_2+m_1+k)!(j_3-j_1-m_2+k)!}
    """
    fact = np.array([math.factorial(n) for n in range(j1 + j2 + j3 + 2)], dtype=np.float64)
    m1 = np.arange(-j1, j1 + 1)[:, None, None]
    m2 = np.arange(-j2, j2 + 1)[None, :, None]
    k = np.arange(j1 + j2 - j3 + 1)[None, None, :]
    m3 = m1 + m2
    args = [k, j1 + j2 - j3 - k, j1 - m1 - k, j2 + m2 - k, j3 - j2 + m1 + k, j3 - j1 - m2 + k]
    args = np.broadcast_arrays(*args)
    valid = np.all([a >= 0 for a in args], axis=0)
    denominator = np.prod([fact[np.where(valid, a, 0)] for a in args], axis=0)
    total = np.where(valid, (-1.0) ** k / denominator, 0.0).sum(-1)  # [2j1+1, 2j2+1]
    m1, m2, m3 = m1[..., 0], m2[..., 0], m3[..., 0]
    inside = np.abs(m3) <= j3
    m3c = np.clip(m3, -j3, j3)
    square = (
        (2 * j3 + 1)
        * fact[j3 + j1 - j2]
        * fact[j3 - j1 + j2]
        * fact[j1 + j2 - j3]
        / fact[j1 + j2 + j3 + 1]
        * fact[j1 + m1]
        * fact[j1 - m1]
        * fact[j2 + m2]
        * fact[j2 - m2]
        * fact[j3 + m3c]
        * fact[j3 - m3c]
    )
    values = np.where(inside, np.sqrt(square) * total, 0.0)
    out = np.zeros((2 * j1 + 1, 2 * j2 + 1, 2 * j3 + 1))
    i1, i2 = np.nonzero(inside)
    out[i1, i2, (m3 + j3)[i1, i2]] = values[i1, i2]
    return out


@functools.cache
def _complex_to_real(l: int) -> np.ndarray:
    r"""U [2l+1 (complex m), 2l+1 (real m)] with e3nn's phases, including :math:`(-i)^l`."""
    U = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    r = 1 / math.sqrt(2)
    U[l, l] = 1
    for m in range(1, l + 1):
        U[l - m, l + m] = r
        U[l - m, l - m] = -1j * r
        U[l + m, l + m] = (-1) ** m * r
        U[l + m, l - m] = 1j * (-1) ** m * r
    return (-1j) ** l * U


@constant_table
def _wigner_3j(l1: int, l2: int, l3: int) -> torch.Tensor:
    C = _su2_cg(l1, l2, l3).astype(np.complex128)
    C = np.tensordot(_complex_to_real(l1), C, axes=([0], [0]))  # [i, b, c]
    C = np.tensordot(C, _complex_to_real(l2), axes=([1], [0]))  # [i, c, j]
    C = np.tensordot(C, _complex_to_real(l3).conj(), axes=([1], [0]))  # [i, j, k]
    C = C.real
    C = C / np.linalg.norm(C)
    C[np.abs(C) < 1e-15] = 0.0
    return torch.from_numpy(np.ascontiguousarray(C))


def wigner_3j(l1: int, l2: int, l3: int, dtype=torch.float64, device=None) -> torch.Tensor:
    r"""Wigner 3j symbol :math:`C^{l_1 l_2 l_3}` in the real basis, cached.

    The unique (up to sign) tensor invariant under the three representations,

    .. math::

        C_{ijk} = \sum_{i'j'k'} D^{l_1}_{ii'}(R) D^{l_2}_{jj'}(R) D^{l_3}_{kk'}(R) C_{i'j'k'}
        \quad \forall R, \qquad \sum_{ijk} C_{ijk}^2 = 1 .

    Sign convention: that of e3nn 0.6 (complex Condon–Shortley CG, e3nn's real basis);
    e.g. :math:`C^{110} = \delta_{ij}/\sqrt3` and :math:`C^{111} = \varepsilon_{ijk}/\sqrt6`.
    Unlike e3nn, the default dtype is float64 (not the global default).

    Args:
        l1, l2, l3: degrees with :math:`|l_1 - l_2| \le l_3 \le l_1 + l_2`
            (otherwise ValueError: there is no invariant).
        dtype, device: of the returned copy.

    Shapes:
        → [2l1+1, 2l2+1, 2l3+1]

    >>> (wigner_3j(1, 1, 0) * 3**0.5).squeeze(-1).round(decimals=12)
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]], dtype=torch.float64)
    """
    for l in (l1, l2, l3):
        if not isinstance(l, int) or l < 0:
            raise ValueError(f"wigner_3j needs integers l >= 0, got {(l1, l2, l3)}")
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(
            f"wigner_3j({l1}, {l2}, {l3}) violates the triangle rule |l1-l2| <= l3 <= l1+l2"
        )
    return _wigner_3j(l1, l2, l3).to(dtype=dtype, device=device, copy=True)


clebsch_gordan = wigner_3j

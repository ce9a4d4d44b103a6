"""Derivatives of the edge geometry that the hand-written inference paths share (Allegro's
:func:`~euclidnn.models.allegro_forces.energy_and_forces`, NequIP's
:func:`~euclidnn.models.nequip_forces.energy_and_forces`): the radial basis times its cutoff,
and the spherical harmonics of the edge direction, differentiated with respect to the edge
length and the edge vector; and from the edge vectors' gradient, the forces on the atoms and
the derivative in the cell."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from euclidnn.o3.spherical_harmonics import spherical_harmonics_gradient

if TYPE_CHECKING:
    from euclidnn.data.graph import Graph

__all__ = [
    "bessel_cutoff_and_derivative",
    "edge_vector_derivative",
    "harmonic_degrees",
    "radial_derivative",
]


def harmonic_degrees(lmax: int) -> Tensor:
    """The degree l of each spherical-harmonic component: [0, 1, 1, 1, 2, …].

    Shapes: → [(lmax + 1)²] int64
    """
    return torch.tensor([l for l in range(lmax + 1) for _ in range(2 * l + 1)])  # noqa: E741


def radial_derivative(
    r: Tensor,
    u: Tensor,
    basis: Tensor,
    g_u: Tensor | None,
    g_radial: Tensor,
    r_max: float,
    p: int,
) -> Tensor:
    """d/dr of ⟨g_u, u(r)⟩ + ⟨g_radial, B(r) u(r)⟩ (:func:`~euclidnn.nn.polynomial_cutoff`,
    :func:`~euclidnn.nn.bessel_basis` with its default frequencies nπ), written out; ``g_u``
    ``None`` is zero.

    Shapes: r, u, g_u: [n_edges], basis, g_radial: [n_edges, num_basis] → [n_edges]
    """
    x = r / r_max
    du = (  # du/dr, zero beyond r_max
        -(p + 1.0) * (p + 2.0) / 2.0 * p * x.pow(p - 1)
        + p * (p + 2.0) * (p + 1.0) * x.pow(p)
        - p * (p + 1.0) / 2.0 * (p + 2.0) * x.pow(p + 1)
    ) * ((x < 1.0).to(r.dtype) / r_max)
    omega = torch.arange(1, basis.shape[1] + 1, dtype=r.dtype, device=r.device) * math.pi
    xs = x[:, None]
    safe = torch.where(xs == 0, torch.ones_like(xs), xs)
    # d/dr [sin(ω x) / x]: (ω x cos(ω x) − sin(ω x)) / x² / r_max, 0 at x = 0
    dbasis = (omega * safe * torch.cos(omega * safe) - torch.sin(omega * safe)) / safe**2
    dbasis = torch.where(xs == 0, torch.zeros_like(dbasis), dbasis)
    dbasis = dbasis * (math.sqrt(2.0 / r_max) / r_max / r_max)
    g_basis = (g_radial * basis).sum(1)
    return du * (g_basis if g_u is None else g_u + g_basis) + u * (g_radial * dbasis).sum(1)


def bessel_cutoff_and_derivative(
    r: Tensor, r_max: float, num_basis: int, p: int
) -> tuple[Tensor, Tensor]:
    """B(r) u(r) (:func:`~euclidnn.nn.bessel_basis` with its default frequencies nπ times
    :func:`~euclidnn.nn.polynomial_cutoff`) and its derivative d/dr, elementwise, in few
    operations (u by Horner's rule). At r = 0 (coincident atoms, where no derivative of the
    edge direction exists either) B takes its limit through x clamped at 1e-30.

    Shapes: r: [n] Å → ([n, num_basis] Å⁻¹, [n, num_basis] Å⁻²)
    """
    x = r * (1.0 / r_max)
    inv = 1.0 / x.clamp_min(1e-30)
    omega = torch.arange(1, num_basis + 1, dtype=r.dtype, device=r.device) * math.pi
    arg = x.clamp_min(1e-30)[:, None] * omega
    sin, cos = torch.sin(arg), torch.cos(arg)
    prefactor = (math.sqrt(2.0 / r_max) / r_max) * inv  # B_n = prefactor sin(ω_n x)
    basis = sin * prefactor[:, None]
    # u = 1 + x^p (a + x (b + c x)), du/dx = x^(p−1) (p a + x ((p+1) b + (p+2) c x))
    a, b, c = -(p + 1.0) * (p + 2.0) / 2.0, p * (p + 2.0), -p * (p + 1.0) / 2.0
    inside = (x < 1.0).to(r.dtype)
    x_p1 = x.pow(p - 1) * inside
    u = 1.0 + x_p1 * x * (a + x * (b + c * x))
    u = u * inside
    du = x_p1 * (p * a + x * ((p + 1) * b + (p + 2) * c * x)) * (1.0 / r_max)
    # dB_n/dr = (ω_n cos(ω_n x) − sin(ω_n x) / x) prefactor / r_max
    dbasis = (omega * cos - sin * inv[:, None]) * (prefactor * (1.0 / r_max))[:, None]
    return basis * u[:, None], dbasis * u[:, None] + basis * du[:, None]


def edge_vector_derivative(
    edge_vec: Tensor, r: Tensor, sh: Tensor, g_sh: Tensor, g_r: Tensor, lmax: int
) -> Tensor:
    """∂/∂v of ⟨g_sh, Y(v / |v|)⟩ + ⟨g_r, |v|⟩ for the harmonics of degrees 0 … lmax
    ("component" normalization, as :func:`~euclidnn.o3.spherical_harmonics` with
    ``normalize=True``), given ``r`` = |v| and ``sh`` = Y(v / |v|).

    Y(v) = P(v / |v|) with P homogeneous of degree l, so ∂Y/∂v = (∇P(r̂) − l P(r̂) r̂) / |v|, ∇P
    from :func:`~euclidnn.o3.spherical_harmonics_gradient`.

    An edge of length 0 (two atoms on top of each other, which a
    :class:`~euclidnn.data.Structure` refuses but a graph moved by hand may hold) has no
    direction, so its derivative is NaN, as autograd's through the reference.

    Shapes: edge_vec: [n_edges, 3], r, g_r: [n_edges], sh, g_sh: [n_edges, (lmax + 1)²]
        → [n_edges, 3]
    """
    inv = 1.0 / r.clamp_min(1e-12)  # as spherical_harmonics normalises
    unit = edge_vec * inv[:, None]
    g_unit = spherical_harmonics_gradient(list(range(lmax + 1)), unit, g_sh)  # Σ_c g_c ∇P_c(r̂)
    radial_part = (g_sh * sh) @ harmonic_degrees(lmax).to(sh.dtype)  # Σ_c l_c g_c P_c
    g_vec = (g_unit - radial_part[:, None] * unit) * inv[:, None] + g_r[:, None] * unit
    return g_vec.masked_fill_((r == 0)[:, None], float("nan"))


def position_forces(graph: Graph, g_vec: Tensor) -> Tensor:
    """−∂E/∂R from ∂E/∂(edge vectors), the edge vector being R[src] − R[dst] + shift · cell.

    Shapes: g_vec: [n_edges, 3] → [n_atoms, 3] eV/Å
    """
    forces = torch.zeros_like(graph.positions).index_add_(0, graph.edge_dst, g_vec)
    return forces.index_add_(0, graph.edge_src, g_vec, alpha=-1.0)


def cell_gradient(graph: Graph, g_vec: Tensor) -> Tensor:
    """∂E/∂cell of one structure from ∂E/∂(edge vectors) r_e = R[src] − R[dst] + edge_shift_e ·
    cell: ∂E/∂cell[k, c] = Σ_e edge_shift[e, k] ∂E/∂r_e[c], i.e. edge_shiftᵀ · ∂E/∂r.

    Shapes: g_vec: [n_edges, 3] → [3, 3] eV/Å
    """
    return graph.edge_shift.to(g_vec.dtype).t().mm(g_vec)

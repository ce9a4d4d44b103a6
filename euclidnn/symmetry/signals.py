r"""Spherical-harmonic signals of point sets and their rotation invariants.

A neighbourhood {r_j} of a centre becomes a signal on the sphere through its projection

    c^l = Σ_j Y^l(r̂_j)        (one block per l, ``component`` normalization),

which rotates as c^l ↦ D^l(R) c^l. Its invariants: the power spectrum p_l = |c^l|², and the
bispectrum b_{l1 l2 l} = Σ C^{l1 l2 l}_{m1 m2 m} c^{l1}_{m1} c^{l2}_{m2} c^l_m (C the Wigner 3j
symbol), which also keeps relative phases between degrees, so it separates environments that
the power spectrum cannot. The signal's value in direction û is f(û) = Σ_l c^l · Y^l(û).
"""

from __future__ import annotations

import torch
from torch import Tensor

from euclidnn.o3.irreps import Irreps
from euclidnn.o3.spherical_harmonics import spherical_harmonics
from euclidnn.o3.wigner import wigner_3j

__all__ = ["bispectrum", "power_spectrum", "sphere_signal", "spherical_projection"]


def spherical_projection(vectors: Tensor, lmax: int) -> Tensor:
    """c = Σ_j Y(r̂_j) for l = 0 … lmax (``Irreps.spherical_harmonics(lmax)``).

    Shapes: vectors: [n, 3] → [(lmax + 1)²]

    >>> spherical_projection(torch.tensor([[0.0, 0, 1], [0, 0, -1]]), 1)
    tensor([2., 0., 0., 0.])
    """
    return spherical_harmonics(list(range(lmax + 1)), torch.as_tensor(vectors), normalize=True).sum(
        0
    )


def power_spectrum(coefficients: Tensor, lmax: int) -> Tensor:
    """p_l = Σ_m (c^l_m)², invariant under O(3).

    Shapes: coefficients: [..., (lmax + 1)²] → [..., lmax + 1]
    """
    return torch.stack(
        [coefficients[..., l * l : (l + 1) ** 2].pow(2).sum(-1) for l in range(lmax + 1)], -1
    )


def bispectrum(coefficients: Tensor, lmax: int) -> Tensor:
    """b_{l1 l2 l} for l1 ≤ l2 ≤ l ≤ lmax with l ≤ l1 + l2 (and l1 + l2 + l even, the ones that
    do not vanish for the projection of a point set), invariant under rotations.

    Shapes: coefficients: [..., (lmax + 1)²] → [..., n_triples]
    """
    c = [coefficients[..., l * l : (l + 1) ** 2] for l in range(lmax + 1)]
    values = []
    for l1 in range(lmax + 1):
        for l2 in range(l1, lmax + 1):
            for l in range(l2, min(lmax, l1 + l2) + 1):
                if (l1 + l2 + l) % 2:
                    continue
                w = wigner_3j(l1, l2, l).to(coefficients)
                values.append(torch.einsum("...i,...j,...k,ijk->...", c[l1], c[l2], c[l], w))
    return torch.stack(values, -1)


def sphere_signal(coefficients: Tensor, irreps: Irreps | str, directions: Tensor) -> Tensor:
    """f(û) = Σ_terms c_term · Y^l(û) for features of any irreps (each term read as a signal of
    its degree l; parity does not change the value on the sphere).

    Shapes: coefficients: [irreps.dim], directions: [..., 3] → [...]
    """
    irreps = Irreps(irreps)
    coefficients = torch.as_tensor(coefficients)
    directions = torch.as_tensor(directions, dtype=coefficients.dtype)
    out = directions.new_zeros(directions.shape[:-1])
    for (mul, ir), s in zip(irreps, irreps.slices()):
        y = spherical_harmonics(ir.l, directions, normalize=True)  # [..., 2l + 1]
        out = out + (y[..., None, :] * coefficients[s].reshape(mul, ir.dim)).sum((-1, -2))
    return out

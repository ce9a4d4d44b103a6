"""Smooth radial cutoff envelopes: functions of the edge length that vanish at ``r_max``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cosine_cutoff", "polynomial_cutoff"]


def polynomial_cutoff(r: Tensor, r_max: float, p: int = 6) -> Tensor:
    """Smooth envelope u(r) that goes from 1 at r = 0 to 0 at r_max.

    u(r) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2),  x = r / r_max

    and u(r) = 0 for r ≥ r_max (Klicpera et al., DimeNet 2020; NequIP's default p = 6). The three
    coefficients make u, u' and u'' vanish at r_max, so energies and forces go to zero smoothly
    (C² joint); near r = 0, u = 1 − O(x^p).

    Args:
        r: distances in Å.
        r_max: cutoff radius in Å.
        p: polynomial order (leading power of x).

    Shapes: r: [n_edges] Å → [n_edges]

    >>> polynomial_cutoff(torch.tensor([0.0, 5.0]), r_max=5.0)
    tensor([1., 0.])
    """
    x = r / r_max
    u = (
        1.0
        - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(p)
        + p * (p + 2.0) * x.pow(p + 1)
        - p * (p + 1.0) / 2.0 * x.pow(p + 2)
    )
    return u * (x < 1.0).to(u.dtype)


def cosine_cutoff(r: Tensor, r_max: float) -> Tensor:
    """Cosine envelope of SchNet / Behler: u(r) = ½ (cos(π r / r_max) + 1) for r < r_max, else 0.

    Args:
        r: distances in Å.
        r_max: cutoff radius in Å.

    Shapes: r: [n_edges] Å → [n_edges]

    >>> cosine_cutoff(torch.tensor([0.0, 2.5, 5.0, 6.0]), r_max=5.0)
    tensor([1.0000, 0.5000, 0.0000, 0.0000])
    """
    u = 0.5 * (torch.cos(r * (math.pi / r_max)) + 1.0)
    return u * (r < r_max).to(u.dtype)

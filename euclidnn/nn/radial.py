"""Radial bases: expansions of an edge length r into n_basis smooth functions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "BesselBasis",
    "bessel_basis",
    "gaussian_basis",
    "gaussian_centres",
]


def gaussian_centres(
    r_max: float,
    num_basis: int,
    r_min: float = 0.0,
    gamma: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> tuple[Tensor, float]:
    """The centres μ_k and width γ of :func:`gaussian_basis`: μ evenly spaced on [r_min, r_max]
    and γ (Å⁻²) as given, else 1 / (2 Δμ²) with Δμ the spacing (widths equal to the spacing,
    SchNetPack's default).

    Shapes: → ([num_basis] Å, float)

    >>> gaussian_centres(1.0, num_basis=3)
    (tensor([0.0000, 0.5000, 1.0000]), 2.0)
    """
    mu = torch.linspace(r_min, r_max, num_basis, dtype=dtype, device=device)
    if gamma is None:
        spacing = (r_max - r_min) / max(num_basis - 1, 1)
        gamma = 0.5 / spacing**2
    return mu, gamma


def gaussian_basis(
    r: Tensor, r_max: float, num_basis: int = 50, r_min: float = 0.0, gamma: float | None = None
) -> Tensor:
    """SchNet's Gaussian expansion: e_k(r) = exp(−γ (r − μ_k)²), μ_k evenly spaced on [r_min, r_max].

    Args:
        r: distances in Å.
        r_max: centre of the last Gaussian in Å.
        num_basis: number of Gaussians K.
        r_min: centre of the first Gaussian in Å.
        gamma: width parameter in Å⁻²; default 1 / (2 Δμ²) with Δμ the spacing of the centres
            (SchNetPack's default, widths equal to the spacing; :func:`gaussian_centres`).

    Shapes: r: [n_edges] Å → [n_edges, num_basis]

    >>> gaussian_basis(torch.tensor([0.0, 1.0]), r_max=1.0, num_basis=2)
    tensor([[1.0000, 0.6065],
            [0.6065, 1.0000]])
    """
    mu, gamma = gaussian_centres(r_max, num_basis, r_min, gamma, r.dtype, r.device)
    return torch.exp(_gaussian_exponent(r[..., None] - mu, gamma))


def _gaussian_exponent(diff: Tensor, gamma: float) -> Tensor:
    """−γ (r − μ)², set to −∞ where exp would underflow into subnormal numbers (below e^-87 in
    float32): subnormals make exp and every later matmul on them many times slower on CPUs."""
    exponent = -gamma * diff**2
    return exponent.masked_fill(exponent < math.log(torch.finfo(diff.dtype).tiny), -math.inf)


def bessel_basis(
    r: Tensor, r_max: float, num_basis: int = 8, frequencies: Tensor | None = None
) -> Tensor:
    """NequIP's Bessel basis: e_n(r) = sqrt(2 / r_max) sin(ω_n r / r_max) / r, ω_n = n π.

    The n-th function is the l = 0 spherical Bessel function with a zero at r_max; at r = 0 the
    limit sqrt(2 / r_max) ω_n / r_max is used. Multiply by :func:`polynomial_cutoff` for a
    smooth envelope.

    Args:
        r: distances in Å.
        r_max: cutoff radius in Å.
        num_basis: number of functions (ignored when ``frequencies`` is given).
        frequencies: ω_n (dimensionless), e.g. trainable ones from :class:`BesselBasis`;
            default n π, n = 1 … num_basis.

    Shapes: r: [n_edges] Å → [n_edges, num_basis] Å⁻¹

    >>> bessel_basis(torch.tensor([0.5, 1.0]), r_max=1.0, num_basis=2).abs().round(decimals=4)
    tensor([[2.8284, 0.0000],
            [0.0000, 0.0000]])
    """
    if frequencies is None:
        n = torch.arange(1, num_basis + 1, dtype=r.dtype, device=r.device)
        frequencies = n * math.pi
    x = r[..., None] / r_max  # [n_edges, 1]
    # sin(ω x) / x is analytic at 0; sinc-like form avoids 0/0 without a data-dependent branch
    safe_x = torch.where(x == 0, torch.ones_like(x), x)
    value = torch.where(
        x == 0, frequencies * torch.ones_like(x), torch.sin(frequencies * safe_x) / safe_x
    )
    return math.sqrt(2.0 / r_max) / r_max * value


class BesselBasis(nn.Module):
    """Bessel radial basis with optionally trainable frequencies ω_n (initialised at n π).

    e_n(r) = sqrt(2 / r_max) sin(ω_n r / r_max) / r; see :func:`bessel_basis`.

    Args:
        r_max: cutoff radius in Å.
        num_basis: number of functions.
        trainable: learn ω_n (NequIP's default) or keep them fixed (a buffer).

    Shapes: r: [n_edges] Å → [n_edges, num_basis]

    >>> BesselBasis(r_max=5.0, num_basis=8)(torch.rand(10)).shape
    torch.Size([10, 8])
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = True) -> None:
        super().__init__()
        self.r_max = float(r_max)
        self.num_basis = int(num_basis)
        frequencies = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi
        if trainable:
            self.frequencies = nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)

    def forward(self, r: Tensor) -> Tensor:
        return bessel_basis(r, self.r_max, frequencies=self.frequencies.to(r.dtype))

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, num_basis={self.num_basis}"

"""Equivariant layers: gates, norms, radial bases and cutoffs, scatter, point convolution."""

from .conv import EquivariantConv, continuous_filter_conv
from .cutoff import cosine_cutoff, polynomial_cutoff
from .gate import Gate
from .mlp import ScalarMLP, normalize2mom
from .norm import EquivariantLayerNorm, NormActivation
from .radial import BesselBasis, bessel_basis, gaussian_basis
from .scatter import scatter_mean, scatter_sum

__all__ = [
    "BesselBasis",
    "EquivariantConv",
    "EquivariantLayerNorm",
    "Gate",
    "NormActivation",
    "ScalarMLP",
    "bessel_basis",
    "continuous_filter_conv",
    "cosine_cutoff",
    "gaussian_basis",
    "normalize2mom",
    "polynomial_cutoff",
    "scatter_mean",
    "scatter_sum",
]

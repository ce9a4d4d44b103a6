"""Spherical-harmonic signals of point sets: equivariant projection, invariant spectra."""

import numpy as np
import torch

from euclidnn.o3 import Irreps, rand_matrix
from euclidnn.symmetry import bispectrum, power_spectrum, sphere_signal, spherical_projection

LMAX = 6


def _octagon(indices) -> torch.Tensor:
    angles = 2 * np.pi * np.array(indices) / 8
    return torch.tensor(np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], -1))


def test_projection_is_equivariant_and_spectra_invariant():
    vectors = torch.randn(7, 3, dtype=torch.float64)
    c = spherical_projection(vectors, LMAX)
    D = Irreps.spherical_harmonics(LMAX).D_from_matrix
    for R in (rand_matrix(dtype=torch.float64), -rand_matrix(dtype=torch.float64)):
        moved = spherical_projection(vectors @ R.T, LMAX)
        assert (moved - D(R) @ c).abs().max() < 1e-12
        assert (power_spectrum(moved, LMAX) - power_spectrum(c, LMAX)).abs().max() < 1e-11
        assert (bispectrum(moved, LMAX) - bispectrum(c, LMAX)).abs().max() < 1e-10


def test_bispectrum_separates_homometric_environments():
    """{0,1,2,5} and {0,1,3,4} on an octagon share all pair angles (equal power spectra) but are
    not congruent; the bispectrum tells them apart."""
    a, b = (
        spherical_projection(_octagon([0, 1, 2, 5]), LMAX),
        spherical_projection(_octagon([0, 1, 3, 4]), LMAX),
    )
    assert (power_spectrum(a, LMAX) - power_spectrum(b, LMAX)).abs().max() < 1e-12
    assert (bispectrum(a, LMAX) - bispectrum(b, LMAX)).abs().max() > 1e-2


def test_sphere_signal_peaks_at_the_points():
    vectors = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0, 0]], dtype=torch.float64)
    c = spherical_projection(vectors, LMAX)
    directions = torch.tensor([[0.0, 0, 1], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)
    values = sphere_signal(c, Irreps.spherical_harmonics(LMAX), directions)
    assert values[0] > 5 * values[1].abs() and values[0] > 5 * values[2].abs()

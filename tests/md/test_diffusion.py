"""Diffusion against an analytic random walk, wrapped into a triclinic cell so that unwrapping
is tested; the centre-of-mass drift; the block error bar (covers the true D, shrinks with more
data); the Arrhenius fit on synthetic D(T).

A walker taking Gaussian steps of variance σ² per Cartesian component every Δt has
MSD(τ) = 3 σ² τ / Δt = 6 D τ, so D = σ² / (2 Δt). Holding the centre of mass of N equal
walkers fixed takes their mean step away: each relative step has variance σ² (1 − 1/N).
"""

import numpy as np
import pytest
from ase import Atoms, units
from ase.geometry import wrap_positions

from euclidnn.md.analysis import (
    arrhenius,
    diffusion_coefficient,
    mean_square_displacement,
    species_msd,
    unwrap_positions,
)

CELL = np.array([[7.0, 0.0, 0.0], [2.0, 7.5, 0.0], [-1.0, 1.5, 8.0]])
SIGMA, INTERVAL_FS = 0.15, 20.0  # Å per component per frame, fs between frames
N_LI = 48


def random_walk(frames: int, seed: int = 0) -> tuple[np.ndarray, list[Atoms]]:
    """(true positions [frames, 64, 3], the frames wrapped into CELL): 48 Li walking, 16 O at
    rest (the O anchor nothing: the centre of mass still moves with the Li)."""
    rng = np.random.default_rng(seed)
    start = rng.random((N_LI + 16, 3)) @ CELL
    steps = rng.normal(0.0, SIGMA, (frames, N_LI + 16, 3))
    steps[0] = 0.0
    steps[:, N_LI:] = 0.0
    true = start + steps.cumsum(0)
    wrapped = [Atoms(f"Li{N_LI}O16", wrap_positions(p, CELL, pbc=True), cell=CELL, pbc=True)
               for p in true]  # fmt: skip
    return true, wrapped


def expected_d(atoms: Atoms) -> float:
    """D of the Li relative to the centre of mass, Å²/ps: the Li carry a fraction f of the
    mass, so a Li step δ moves the centre by f δ / N_Li; what is left of the Li's steps has
    variance σ² ((1 − f/N)² + (N − 1) f²/N²) = σ² (1 − 2f/N + f²/N)."""
    masses = atoms.get_masses()
    f = masses[:N_LI].sum() / masses.sum()
    variance = SIGMA**2 * (1 - 2 * f / N_LI + f**2 / N_LI)
    return variance / (2 * INTERVAL_FS / 1000)


def test_unwrap_recovers_the_walk_from_wrapped_frames():
    true, wrapped = random_walk(300)
    assert np.abs(wrapped[-1].positions - true[-1]).max() > 5  # the walk left the cell
    unwrapped = unwrap_positions(wrapped, remove_drift=False)
    np.testing.assert_allclose(unwrapped - unwrapped[0], true - true[0], atol=1e-9)


def test_drift_of_the_whole_system_is_removed():
    true, wrapped = random_walk(200)
    drift = np.arange(200)[:, None] * np.array([0.05, -0.02, 0.03])  # Å per frame, all atoms
    drifting = [Atoms(a.symbols, a.positions + d, cell=CELL, pbc=True)
                for a, d in zip(wrapped, drift)]  # fmt: skip
    np.testing.assert_allclose(species_msd(drifting, "Li"), species_msd(wrapped, "Li"), atol=1e-9)
    assert np.allclose(species_msd(drifting, "O"), 0.0, atol=1e-20) is False  # O follow the CoM


def test_species_msd_is_the_direct_average_over_time_origins():
    true, wrapped = random_walk(120)
    masses = wrapped[0].get_masses()
    centre = np.einsum("tni,n->ti", true, masses) / masses.sum()
    relative = true - (centre - centre[0])[:, None]
    direct = mean_square_displacement(relative[:, :N_LI], max_lag=59)
    np.testing.assert_allclose(species_msd(wrapped, "Li"), direct, rtol=1e-9, atol=1e-12)


def test_diffusion_of_a_wrapped_random_walk_within_its_error_bar():
    true, wrapped = random_walk(4000)
    exact = expected_d(wrapped[0])  # 0.5625 Å²/ps less 0.8 %
    found = diffusion_coefficient(wrapped, "Li", INTERVAL_FS)
    assert abs(found.coefficient - exact) < 3 * found.stderr, (found.coefficient, found.stderr)
    assert found.stderr < 0.1 * exact
    assert found.fit_slope / 6 == pytest.approx(exact, rel=0.1)  # the whole run's line
    assert found.coefficient_cm2_per_s == pytest.approx(found.coefficient * 1e-4)
    assert found.fit_window == pytest.approx((400 * 0.02, 1999 * 0.02))  # 20 % to half the run
    short = diffusion_coefficient(wrapped[:250], "Li", INTERVAL_FS)
    assert abs(short.coefficient - exact) < 3 * short.stderr


def test_error_bar_of_a_fixed_fit_window_shrinks_with_longer_runs():
    true, wrapped = random_walk(8000, seed=1)
    exact = expected_d(wrapped[0])
    errors = []
    for frames in (500, 8000):  # blocks of 2 ps and 32 ps
        found = diffusion_coefficient(wrapped[:frames], "Li", INTERVAL_FS, fit_window=(0.4, 1.6))
        assert found.fit_window == pytest.approx((0.4, 1.6))
        assert abs(found.coefficient - exact) < 3 * found.stderr, (frames, found)
        errors.append(found.stderr)
    assert errors[1] < 0.5 * errors[0]  # 16× the data: ¼ of the error expected
    with pytest.raises(ValueError, match="fit window 0.4–3 ps: ends after the 1.98 ps"):
        diffusion_coefficient(wrapped[:500], "Li", INTERVAL_FS, fit_window=(0.4, 3.0))


def test_o_at_rest_diffuses_only_with_the_centre_of_mass():
    true, wrapped = random_walk(1000)
    found = diffusion_coefficient(wrapped, "O", INTERVAL_FS)
    assert abs(found.coefficient) < 0.02 * expected_d(wrapped[0])


def test_too_few_frames_or_blocks_are_refused():
    _, wrapped = random_walk(30)
    with pytest.raises(ValueError, match="a block of 6 frames"):
        diffusion_coefficient(wrapped, "Li", INTERVAL_FS)
    with pytest.raises(ValueError, match="blocks: give at least 2"):
        diffusion_coefficient(wrapped, "Li", INTERVAL_FS, blocks=1)
    with pytest.raises(ValueError, match="holds no P"):
        diffusion_coefficient(wrapped, "P", INTERVAL_FS, blocks=2)


def test_arrhenius_recovers_the_activation_energy():
    temperatures = np.array([500.0, 700.0, 900.0, 1100.0])
    d = 2e-2 * np.exp(-0.45 / (units.kB * temperatures))
    fit = arrhenius(temperatures, d, errors=0.05 * d)
    assert fit.activation_energy == pytest.approx(0.45, abs=1e-10)
    assert fit.prefactor == pytest.approx(2e-2, rel=1e-9)
    # 5 % errors in D are 0.05 in ln D: σ(E_a) = 0.05 k_B / std-like spread of 1/T
    x = 1 / temperatures
    assert fit.stderr == pytest.approx(0.05 * units.kB / np.sqrt(((x - x.mean()) ** 2).sum()))


def test_arrhenius_weights_points_by_their_errors():
    rng = np.random.default_rng(3)
    temperatures = np.array([600.0, 800.0, 1000.0, 1200.0, 1400.0])
    exact = 1e-1 * np.exp(-0.3 / (units.kB * temperatures))
    errors = 0.03 * exact
    noisy = exact * (1 + errors / exact * rng.standard_normal(5))
    noisy[0], errors[0] = 3 * exact[0], 10 * exact[0]  # an outlier with a huge error bar
    fit = arrhenius(temperatures, noisy, errors)
    assert abs(fit.activation_energy - 0.3) < 3 * fit.stderr and fit.stderr < 0.02
    unweighted = arrhenius(temperatures, noisy)
    assert abs(unweighted.activation_energy - 0.3) > 0.05  # the outlier pulls it off


def test_arrhenius_needs_three_temperatures():
    with pytest.raises(ValueError, match="3 or more different temperatures"):
        arrhenius([600.0, 600.0, 800.0], [1e-3, 2e-3, 3e-3])
    with pytest.raises(ValueError, match="must be positive"):
        arrhenius([600.0, 700.0, 800.0], [1e-3, -2e-3, 3e-3])

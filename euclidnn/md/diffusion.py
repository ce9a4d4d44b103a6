r"""Diffusion from MD trajectories: unwrapped positions, the mean-square displacement of one
species, its diffusion coefficient with a block-average error bar, and the Arrhenius fit of
several temperatures.

Einstein relation in three dimensions: MSD(τ) = ⟨|r(t + τ) − r(t)|²⟩ → 6 D τ at long τ. For a
random walk of Gaussian steps of variance σ² per Cartesian component every Δt, MSD(τ) =
3 σ² τ / Δt, so D = σ² / (2 Δt). Units: D in Å²/ps; 1 Å²/ps = 10⁻⁴ cm²/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from ase import Atoms, units
from ase.geometry import find_mic

from euclidnn.md.local_structure import species_mask

__all__ = [
    "CM2_PER_S_PER_A2_PER_PS",
    "Arrhenius",
    "Diffusion",
    "arrhenius",
    "diffusion_coefficient",
    "species_msd",
    "unwrap_positions",
]

#: 1 Å²/ps = 10⁻¹⁶ cm² / 10⁻¹² s = 10⁻⁴ cm²/s
CM2_PER_S_PER_A2_PER_PS = 1e-4


def unwrap_positions(frames: list[Atoms], remove_drift: bool = True) -> np.ndarray:
    """Continuous positions of a trajectory whose atoms may have been wrapped into the cell:
    each frame-to-frame displacement is taken in its minimum image (``ase.geometry.find_mic``,
    any triclinic cell) along the periodic directions and accumulated from the first frame.
    Exact as long as no atom moves more than half the cell's shortest height between two
    frames. With ``remove_drift`` the mass-weighted centre of mass is held where it starts.

    Shapes: → [n_frames, n_atoms, 3] Å

    >>> from ase import Atoms
    >>> frames = [Atoms("H", [[x, 0, 0]], cell=[4, 4, 4], pbc=True) for x in (3.5, 0.5, 1.5)]
    >>> unwrap_positions(frames, remove_drift=False)[:, 0, 0].tolist()  # crossed the face at 4 Å
    [3.5, 4.5, 5.5]
    """
    positions = np.array([atoms.positions for atoms in frames])  # [n_frames, n_atoms, 3]
    steps = np.diff(positions, axis=0)
    for t, atoms in enumerate(frames[1:]):
        if atoms.pbc.any():
            steps[t] = find_mic(steps[t], atoms.cell, atoms.pbc)[0]
    unwrapped = positions[0] + np.concatenate([np.zeros_like(positions[:1]), steps.cumsum(0)])
    if remove_drift:
        masses = frames[0].get_masses()
        centre = np.einsum("tni,n->ti", unwrapped, masses) / masses.sum()  # [n_frames, 3]
        unwrapped -= (centre - centre[0])[:, None, :]
    return unwrapped


def _msd(positions: np.ndarray, max_lag: int) -> np.ndarray:
    """MSD(τ) over atoms and every time origin, τ = 0 … max_lag frames, in O(T log T) by FFT:
    MSD(m) = S₁(m) − 2 S₂(m), S₂ the positions' autocorrelation (Calandrini et al., nMoldyn).

    Shapes: positions: [n_frames, n_atoms, 3] → [max_lag + 1]
    """
    n = len(positions)
    square = (positions**2).sum(-1)  # [n_frames, n_atoms]
    zero = np.zeros_like(square[:1])
    # Σ_{t=0}^{n-m-1} (|r(t)|² + |r(t+m)|²): all of them less the first and last m
    head = np.concatenate([zero, square.cumsum(0)])[:n]
    tail = np.concatenate([zero, square[::-1].cumsum(0)])[:n]
    origins = (n - np.arange(n))[:, None]  # time origins per lag
    s1 = (2 * square.sum(0) - head - tail) / origins
    spectrum = np.fft.rfft(positions, n=2 * n, axis=0)
    s2 = np.fft.irfft(spectrum * spectrum.conj(), axis=0)[:n].sum(-1) / origins
    return (s1 - 2 * s2).mean(-1)[: max_lag + 1]


def species_msd(frames: list[Atoms], symbol: str, max_lag: int | None = None) -> np.ndarray:
    """MSD(τ) of the atoms of element ``symbol``, τ = 0 … max_lag frames (default: half the
    trajectory), averaged over those atoms and every time origin, from positions unwrapped and
    with the centre of mass held fixed (:func:`unwrap_positions`).

    Shapes: → [max_lag + 1] Å²

    >>> from ase import Atoms
    >>> frames = [Atoms("HeAr", [[0.1 * t, 0, 0], [0, 0, 0]]) for t in range(5)]
    >>> [round(float(x), 4) for x in species_msd(frames, "He", max_lag=2)]  # He: 4/44 of the mass
    [0.0, 0.0083, 0.033]
    """
    positions = unwrap_positions(frames)[:, species_mask(frames[0], symbol, symbol)]
    max_lag = (len(frames) - 1) // 2 if max_lag is None else min(max_lag, len(frames) - 1)
    return _msd(positions, max_lag)


@dataclass(frozen=True)
class Diffusion:
    """The diffusion coefficient of one species.

    Attributes:
        symbol: the element.
        coefficient: D, Å²/ps: the mean of the blocks' D.
        stderr: standard error of that mean, std(D_blocks) / √M, Å²/ps.
        block_coefficients: D of each of the M blocks, Å²/ps.
        lag: τ of the whole trajectory's MSD, ps [n_lags].
        msd: the whole trajectory's MSD, Å² [n_lags].
        fit_window: (first, last) τ of the fit, ps.
        fit_slope, fit_intercept: the line MSD ≈ slope τ + intercept fitted to the whole
            trajectory over the fit window (Å²/ps, Å²); slope / 6 is D of the whole run.
    """

    symbol: str
    coefficient: float
    stderr: float
    block_coefficients: tuple[float, ...]
    lag: np.ndarray
    msd: np.ndarray
    fit_window: tuple[float, float]
    fit_slope: float
    fit_intercept: float

    @property
    def coefficient_cm2_per_s(self) -> float:
        return self.coefficient * CM2_PER_S_PER_A2_PER_PS

    @property
    def stderr_cm2_per_s(self) -> float:
        return self.stderr * CM2_PER_S_PER_A2_PER_PS


def _window(
    frames: int, interval_ps: float, fit_window: tuple[float, float] | None, skip: float
) -> tuple[int, int]:
    """(first, last) lag in frames of the fit in a stretch of ``frames`` frames: ``fit_window``
    in ps, or the lags up to half the stretch after their leading fraction ``skip``."""
    if fit_window is None:
        last = (frames - 1) // 2
        first = max(1, math.ceil(skip * last))
    else:
        first, last = (max(1, round(t / interval_ps)) for t in fit_window)
        if last > frames - 1:
            raise ValueError(
                f"fit window {fit_window[0]:g}–{fit_window[1]:g} ps: ends after the "
                f"{(frames - 1) * interval_ps:g} ps of a block; give more frames or fewer blocks"
            )
    if last - first < 2:
        raise ValueError(
            f"a block of {frames} frames ({interval_ps * 1000:g} fs apart) leaves lags "
            f"{first}–{last} to fit a line to the MSD; give more frames, fewer blocks or a "
            "wider fit window"
        )
    return first, last


def _fit(msd: np.ndarray, lag: np.ndarray, first: int) -> tuple[float, float]:
    """(slope, intercept) of a line through MSD(τ) from lag ``first`` on."""
    slope, intercept = np.polyfit(lag[first:], msd[first:], 1)
    return float(slope), float(intercept)


def diffusion_coefficient(
    frames: list[Atoms],
    symbol: str,
    frame_interval_fs: float,
    *,
    blocks: int = 5,
    fit_window: tuple[float, float] | None = None,
    skip: float = 0.2,
) -> Diffusion:
    """D of element ``symbol`` from MSD = 6 D τ + c, with a block-average error bar.

    The trajectory (unwrapped, centre of mass held fixed) is split into ``blocks`` consecutive
    blocks; in each the MSD is averaged over atoms and every time origin, a line is fitted to
    it over the lags of ``fit_window`` (ps), and D_b = slope / 6. D is the mean of the D_b and
    its error the standard error std(D_b) / √M, which holds for blocks longer than the time over
    which the motion is correlated. The same fit on the whole trajectory is kept for plots.

    The default window, the lags up to half the block after the leading fraction ``skip``
    (the ballistic regime), grows with the block: the error bar then shrinks with more atoms
    but not with longer runs (the MSD at a lag of half the run rests on about two independent
    stretches of it). A fixed ``fit_window`` in ps makes it shrink as 1 / √(run length).

    Args:
        frames: the trajectory, ``frame_interval_fs`` fs apart.
        blocks: M ≥ 2.
        fit_window: (first, last) lag of the fit, ps; at most the length of a block.
        skip: the fraction of lags left out of the default window.

    >>> import numpy as np
    >>> from ase import Atoms
    >>> rng = np.random.default_rng(0)  # σ = 0.1 Å per component every 10 fs: D = 0.5 Å²/ps
    >>> walk = np.cumsum(rng.normal(0.0, 0.1, (2000, 50, 3)), axis=0)
    >>> d = diffusion_coefficient([Atoms("Li50", p) for p in walk], "Li", 10.0)
    >>> round(d.coefficient, 2), round(d.stderr, 2)  # 0.49 with the centre of mass held
    (0.53, 0.04)
    """
    if not (isinstance(blocks, int) and blocks >= 2):
        raise ValueError(f"blocks: give at least 2 for an error bar, got {blocks!r}")
    if not (0 <= skip < 1 and frame_interval_fs > 0):
        raise ValueError(f"skip ({skip}) must be in [0, 1), frame_interval_fs positive")
    if fit_window is not None and not 0 <= fit_window[0] < fit_window[1]:
        raise ValueError(f"fit window {fit_window}: give 0 ≤ first < last, in ps")
    interval_ps = frame_interval_fs / 1000.0
    length = len(frames) // blocks
    first, last = _window(length, interval_ps, fit_window, skip)
    positions = unwrap_positions(frames)[:, species_mask(frames[0], symbol, symbol)]
    lag = np.arange(last + 1) * interval_ps
    block_coefficients = []
    for b in range(blocks):
        msd = _msd(positions[b * length : (b + 1) * length], last)
        block_coefficients.append(_fit(msd, lag, first)[0] / 6)
    if fit_window is None:  # the whole run's own window
        first, last = _window(len(positions), interval_ps, None, skip)
    msd = _msd(positions, max(last, (len(positions) - 1) // 2))
    lag = np.arange(len(msd)) * interval_ps
    slope, intercept = _fit(msd[: last + 1], lag[: last + 1], first)
    return Diffusion(
        symbol=symbol,
        coefficient=float(np.mean(block_coefficients)),
        stderr=float(np.std(block_coefficients, ddof=1) / math.sqrt(blocks)),
        block_coefficients=tuple(block_coefficients),
        lag=lag,
        msd=msd,
        fit_window=(float(lag[first]), float(lag[last])),
        fit_slope=slope,
        fit_intercept=intercept,
    )


class Arrhenius(NamedTuple):
    """D(T) = D₀ exp(−E_a / k_B T): ``activation_energy`` E_a and its ``stderr`` in eV, the
    ``prefactor`` D₀ in the units of the D given."""

    activation_energy: float
    stderr: float
    prefactor: float


def arrhenius(
    temperatures: np.ndarray, coefficients: np.ndarray, errors: np.ndarray | None = None
) -> Arrhenius:
    """Fit ln D = ln D₀ − (E_a / k_B)(1 / T) to three or more temperatures (K).

    With ``errors`` (standard errors of D, e.g. :attr:`Diffusion.stderr`) the fit is weighted
    by 1 / σ²_{ln D}, σ_{ln D} = σ_D / D, and E_a's error is propagated from them; without,
    the fit is unweighted and the error comes from the scatter of the points.

    Shapes: temperatures, coefficients, errors: [n_temperatures] → Arrhenius

    >>> T = np.array([600.0, 800.0, 1000.0])
    >>> fit = arrhenius(T, 1e-3 * np.exp(-0.4 / (units.kB * T)), errors=np.full(3, 1e-7))
    >>> round(fit.activation_energy, 6), round(fit.prefactor, 9)
    (0.4, 0.001)
    """
    temperatures = np.asarray(temperatures, dtype=float)
    coefficients = np.asarray(coefficients, dtype=float)
    if len(np.unique(temperatures)) < 3 or len(coefficients) != len(temperatures):
        raise ValueError(
            f"arrhenius: needs D at 3 or more different temperatures, got T = "
            f"{temperatures.tolist()} and {len(coefficients)} values of D"
        )
    if not ((temperatures > 0).all() and (coefficients > 0).all()):
        raise ValueError(
            f"arrhenius: temperatures and D must be positive, got T = {temperatures.tolist()}, "
            f"D = {coefficients.tolist()}"
        )
    x, y = 1.0 / temperatures, np.log(coefficients)
    if errors is None:
        (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    else:
        errors = np.asarray(errors, dtype=float)
        if not (errors > 0).all():
            raise ValueError(f"arrhenius: errors of D must be positive, got {errors.tolist()}")
        weights = coefficients / errors  # polyfit's w multiplies residuals: 1 / σ_{ln D}
        (slope, intercept), cov = np.polyfit(x, y, 1, w=weights, cov="unscaled")
    return Arrhenius(
        activation_energy=float(-slope * units.kB),
        stderr=float(math.sqrt(cov[0, 0]) * units.kB),
        prefactor=float(math.exp(intercept)),
    )

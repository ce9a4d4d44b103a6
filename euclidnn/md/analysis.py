"""Analysis of MD and PIMD runs: pair distributions, nearest-neighbour and diameter
distributions, mean-square displacement, velocity autocorrelation and vibrational density of
states, energy drift; normal modes are in :mod:`euclidnn.md.normal_modes`, partial pair
distributions and bond angles by species in :mod:`euclidnn.md.local_structure`, per-species
diffusion and the Arrhenius fit in :mod:`euclidnn.md.diffusion` (all re-exported here).

A run folder of :func:`~euclidnn.md.run_md` holds ``trajectory.xyz``; one of
:func:`~euclidnn.md.run_pimd` holds a trajectory per bead (``simulation.pos_*.xyz``): every
bead is a sample of the quantum position distribution, so :func:`read_frames` pools them.
Frames labelled by ``euclidnn label`` from the reference method's own MD are trajectories too:
:func:`read_reference` splits such a file into its MD runs, so that the model's MD and the
reference's are analysed alike.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ase import Atoms, units
from ase.geometry import cellpar_to_cell

from euclidnn.data.geometry_checks import check_positions
from euclidnn.data.neighbors import neighbor_list
from euclidnn.data.readers import iread
from euclidnn.md.diffusion import (
    Arrhenius,
    Diffusion,
    arrhenius,
    diffusion_coefficient,
    species_msd,
    unwrap_positions,
)
from euclidnn.md.local_structure import AngleDistribution, bond_angle_distribution, partial_rdf
from euclidnn.md.normal_modes import NormalModes, model_hessian, normal_modes, reference_hessian

__all__ = [
    "read_frames",
    "read_reference",
    "ReferenceRun",
    "run_kind",
    "pair_distribution",
    "nearest_neighbor_distances",
    "diameters",
    "mean_square_displacement",
    "partial_rdf",
    "bond_angle_distribution",
    "AngleDistribution",
    "unwrap_positions",
    "species_msd",
    "diffusion_coefficient",
    "Diffusion",
    "arrhenius",
    "Arrhenius",
    "velocity_autocorrelation",
    "vibrational_density_of_states",
    "NormalModes",
    "model_hessian",
    "reference_hessian",
    "normal_modes",
]

_CELL = re.compile(r"CELL\(abcABC\):\s+([-\d.eE+\s]+?)\s+(?:Step|positions|cell|Bead|$)")


def run_kind(run_dir: str | os.PathLike) -> str:
    """``"pimd"`` for an i-PI run folder, ``"md"`` for a classical one."""
    return "pimd" if any(Path(run_dir).glob("simulation.pos_*.xyz")) else "md"


def read_frames(run_dir: str | os.PathLike, skip: float = 0.0) -> list[Atoms]:
    """The frames of a run folder (every bead of every frame for PIMD), leaving out the
    leading fraction ``skip`` of each trajectory (equilibration).

    Raises ``ValueError`` naming the file and frame for a frame that cannot be read (a run
    killed while writing it) or has NaN coordinates or atoms on top of each other, and for a
    trajectory without frames; ``FileNotFoundError`` for a folder that is not a run's.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder or labelled file")
    if run_kind(run_dir) == "md":
        path = run_dir / "trajectory.xyz"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: no trajectory.xyz (not a run folder?)")
        trajectories = [_read_trajectory(path, "extxyz")]
    else:
        structure = _read_trajectory(run_dir / "structure.xyz", "extxyz")[0]
        paths = sorted(run_dir.glob("simulation.pos_*.xyz"))
        trajectories = [_read_ipi_xyz(p, structure) for p in paths]
    frames = []
    for trajectory in trajectories:
        frames += trajectory[int(skip * len(trajectory)) :]
    return frames


class ReferenceRun(NamedTuple):
    """One MD run of the reference method inside a labelled file (:func:`read_reference`).

    ``timestep_fs`` and ``interval`` (MD steps between frames) are ``None`` for frames that
    are not an MD trajectory (rattled copies, a data set of unknown origin): no time axis.
    """

    frames: list[Atoms]
    temperature_K: float | None  # the thermostat's (Langevin) temperature
    timestep_fs: float | None
    interval: int | None
    first_frame: int  # index of frames[0] in the file (before skip)


def read_reference(path: str | os.PathLike, skip: float = 0.0) -> list[ReferenceRun]:
    """The MD runs in a file of labelled frames written by ``euclidnn label``: consecutive
    frames with the same sampler, seed and temperature whose ``md_step`` grows by
    ``sampling_interval`` belong to one run; the leading fraction ``skip`` of each is left out.
    Frames without that metadata form one run without a time axis.

    Raises ``ValueError`` naming the file and frame for a frame that cannot be read or has NaN
    coordinates or atoms on top of each other, and for a file without frames.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    frames = _read_trajectory(path, "extxyz")
    runs, start = [], 0
    for k in range(1, len(frames) + 1):
        if k == len(frames) or not _same_md(frames[k - 1].info, frames[k].info):
            segment = frames[start:k]
            info = segment[0].info
            keys = ("md_step", "sampling_timestep_fs", "sampling_interval")
            timed = all(k in info for k in keys) and "MD" in str(info.get("sampler", ""))
            runs.append(
                ReferenceRun(
                    segment[int(skip * len(segment)) :],
                    info.get("sampling_temperature_K"),
                    float(info["sampling_timestep_fs"]) if timed else None,
                    int(info["sampling_interval"]) if timed else None,
                    start,
                )
            )
            start = k
    return runs


def _same_md(before: dict, after: dict) -> bool:
    """Whether the frame with ``after``'s info follows the one with ``before``'s in one MD run."""
    keys = ("sampler", "sampling_seed", "sampling_temperature_K", "sampling_timestep_fs")
    if any(before.get(key) != after.get(key) for key in keys):
        return False
    if "md_step" not in before or "md_step" not in after:
        return "md_step" not in before and "md_step" not in after
    return after["md_step"] - before["md_step"] == before.get("sampling_interval")


def _read_trajectory(path: Path, format: str) -> list[Atoms]:
    """Every frame of an (ext)xyz file, each checked (:func:`check_positions`); errors name
    the file, the frame and its first line."""
    frames, line, reader = [], 1, None
    while True:
        try:
            reader = reader or iread(path, format)
            atoms = next(reader)
        except StopIteration:
            break
        except Exception as error:  # ASE raises many kinds for a malformed frame
            keep = f"; `head -n {line - 1} {path}` keeps the {len(frames)} before it" * bool(frames)
            raise ValueError(
                f"{path}: frame {len(frames)} (line {line}) cannot be read "
                f"({' '.join(str(error).split())}): cut short by a killed run?{keep}"
            ) from None
        check_positions(atoms, f"{path} frame {len(frames)}")
        frames.append(atoms)
        line += len(atoms) + 2
    if not frames:
        raise ValueError(
            f"{path}: holds no frames (a run with --trajectory-interval 0, or stopped before "
            "its first frame?)"
        )
    return frames


def _read_ipi_xyz(path: Path, structure: Atoms) -> list[Atoms]:
    """i-PI's xyz frames (Å), with the species, pbc and cell of ``structure``."""
    frames = []
    for atoms in _read_trajectory(path, "xyz"):
        frame = structure.copy()
        frame.positions = atoms.positions
        comment = atoms.info.get("comment", "")
        match = _CELL.search(comment) if structure.pbc.any() else None
        if match:
            frame.cell = cellpar_to_cell([float(x) for x in match.group(1).split()])
        frames.append(frame)
    return frames


def _pair_distances(atoms: Atoms, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances of all ordered pairs closer than r_max (every periodic image) and the centre
    index of each."""
    src, dst, shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    vectors = atoms.positions[src] - atoms.positions[dst] + shift @ atoms.cell.array
    return np.linalg.norm(vectors, axis=1), dst


def pair_distribution(
    frames: list[Atoms], r_max: float, bins: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    r"""Pair distribution of a set of frames on ``bins`` shells of [0, r_max] Å.

    Periodic: g(r) = V / (N (N − 1)) ⟨Σ_{i≠j} δ(r − r_ij)⟩ / (4π r²), → 1 at large r for an
    ideal gas. Molecule (no volume): the pair-distance density per atom
    n(r) = (1/N) ⟨Σ_{i≠j} δ(r − r_ij)⟩ in Å⁻¹, whose integral to r is the mean number of
    neighbours within r.

    Shapes: → (r [bins] Å, g [bins])

    >>> from ase.build import molecule
    >>> r, n = pair_distribution([molecule("H2")], r_max=2.0, bins=20)
    >>> float(r[n.argmax()]), round(float(n.sum() * (r[1] - r[0])), 12)  # one neighbour at 0.74 Å
    (0.75, 1.0)
    """
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    for atoms in frames:
        distances, _ = _pair_distances(atoms, r_max)
        counts += np.histogram(distances, bins=edges)[0]
    width = edges[1] - edges[0]
    centres = 0.5 * (edges[1:] + edges[:-1])
    n = len(frames[0])
    if frames[0].pbc.all():
        volume = np.mean([a.get_volume() for a in frames])
        shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        return centres, counts * volume / (n * (n - 1) * len(frames) * shells)
    return centres, counts / (n * len(frames) * width)


def nearest_neighbor_distances(frames: list[Atoms]) -> np.ndarray:
    """Distance from each atom to its nearest neighbour (periodic images included), Å.

    Shapes: → [n_frames · n_atoms]

    >>> from ase.build import molecule
    >>> nearest_neighbor_distances([molecule("H2")]).round(2).tolist()
    [0.74, 0.74]
    """
    out = []
    for atoms in frames:
        r_max = 3.0
        while True:
            distances, centres = _pair_distances(atoms, r_max)
            nearest = np.full(len(atoms), np.inf)
            np.minimum.at(nearest, centres, distances)
            if np.isfinite(nearest).all() or r_max > 100:
                break
            r_max *= 2
        out.append(nearest)
    return np.concatenate(out)


def diameters(frames: list[Atoms]) -> np.ndarray:
    """Diameter of a molecule (cage, cluster) through each atom: the largest distance from
    that atom to another, Å. For a fullerene, the distance to the antipodal atom.

    Shapes: → [n_frames · n_atoms]

    >>> from ase.build import molecule
    >>> diameters([molecule("H2O")]).round(2).tolist()
    [0.97, 1.53, 1.53]
    """
    out = []
    for atoms in frames:
        if atoms.pbc.any():
            raise ValueError("diameters: defined for a molecule, the structure is periodic")
        out.append(atoms.get_all_distances().max(axis=1))
    return np.concatenate(out)


def mean_square_displacement(positions: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """MSD(τ) = ⟨|r_i(t + τ) − r_i(t)|²⟩ over atoms and time origins t, for τ = 0 … max_lag
    frames (unwrapped positions, as ASE's integrators keep them).

    Shapes: positions: [n_frames, n_atoms, 3] Å → [max_lag + 1] Å²

    >>> walk = np.arange(5.0)[:, None, None] * np.array([1.0, 0.0, 0.0])  # 1 Å per frame
    >>> mean_square_displacement(walk, max_lag=2).tolist()
    [0.0, 1.0, 4.0]
    """
    positions = np.asarray(positions, dtype=float)
    max_lag = len(positions) - 1 if max_lag is None else min(max_lag, len(positions) - 1)
    return np.array(
        [0.0]
        + [
            ((positions[lag:] - positions[:-lag]) ** 2).sum(-1).mean()
            for lag in range(1, max_lag + 1)
        ]
    )


def velocity_autocorrelation(
    velocities: np.ndarray, masses: np.ndarray | None = None
) -> np.ndarray:
    """Normalised (mass-weighted) velocity autocorrelation C(τ) = ⟨Σ m_i v_i(t)·v_i(t + τ)⟩ /
    ⟨Σ m_i v_i²⟩ over time origins, τ = 0 … n_frames − 1 (via FFT, zero-padded).

    Shapes: velocities: [n_frames, n_atoms, 3], masses: [n_atoms] → [n_frames]

    >>> v = np.cos(np.arange(400) * 0.3)[:, None, None] * np.ones((1, 2, 3))
    >>> c = velocity_autocorrelation(v)
    >>> float(c[0]), bool(c[21] > 0.9)  # one period is 2π / 0.3 ≈ 21 frames
    (1.0, True)
    """
    velocities = np.asarray(velocities, dtype=float)
    n = len(velocities)
    weights = np.ones(velocities.shape[1]) if masses is None else np.asarray(masses, float)
    series = (velocities * np.sqrt(weights)[None, :, None]).reshape(n, -1)  # [n_frames, 3N]
    spectrum = np.fft.rfft(series, n=2 * n, axis=0)
    correlation = np.fft.irfft(spectrum * spectrum.conj(), axis=0)[:n].sum(-1)
    correlation /= n - np.arange(n)  # number of time origins per lag
    return correlation / correlation[0]


def vibrational_density_of_states(
    vacf: np.ndarray, frame_interval_fs: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states, the cosine transform of the VACF (Hann-windowed),
    normalised to unit area, against wavenumber ν̃ = 1 / λ in cm⁻¹.

    Shapes: vacf: [n_lags] → (wavenumbers [n] cm⁻¹, density [n] per cm⁻¹)
    """
    n = len(vacf)
    windowed = vacf * np.hanning(2 * n)[n:]
    symmetric = np.concatenate([windowed, windowed[1:-1][::-1]])
    density = np.fft.rfft(symmetric).real
    frequencies = np.fft.rfftfreq(len(symmetric), d=frame_interval_fs * 1e-15)  # Hz
    wavenumbers = frequencies / (units._c * 100.0)  # cm⁻¹
    density = np.clip(density, 0.0, None)
    area = density.sum() * (wavenumbers[1] - wavenumbers[0])
    return wavenumbers, density / area


def read_summary(run_dir: str | os.PathLike) -> dict:
    """``summary.json`` of a run folder (empty if the run did not finish)."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}

"""Exploration: NVT Langevin MD on the committee's mean forces, recording σ_F at every step.

One trajectory starts from a structure with Maxwell–Boltzmann velocities (centre of mass at
rest, no rotation for a molecule) and runs ``steps`` steps of ASE's Langevin integrator. Every
``record_interval`` steps the frame is kept with its σ_F. A step whose σ_F exceeds
``sigma_high`` (or whose forces cannot be computed: atoms on top of each other, NaN) is
*unphysical*: the step is discarded and the trajectory restarts from the last *trusted* frame
(σ_F ≤ ``sigma_low``; the start if none yet) with fresh velocities, at most ``max_restarts``
times; after that it stops. The stability time of a trajectory is the time before its first
unphysical step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from torch import nn

from euclidnn.learn.committee import CommitteeCalculator

__all__ = ["ExploreSettings", "Trajectory", "explore"]


@dataclass(frozen=True)
class ExploreSettings:
    """How one exploration trajectory runs.

    Attributes:
        temperature: K, of the initial velocities and the thermostat.
        steps: MD steps.
        sigma_low: eV/Å; frames at or below it are trusted (restart points).
        sigma_high: eV/Å; a step above it is unphysical (discarded, restart).
        timestep: fs (0.5 resolves X–H vibrations).
        friction: Langevin friction, 1/fs (0.01: 100 fs velocity relaxation).
        record_interval: steps between recorded frames.
        max_restarts: restarts after unphysical steps before the trajectory stops.
        seed: seeds the velocities and the Langevin noise.
    """

    temperature: float
    steps: int
    sigma_low: float
    sigma_high: float
    timestep: float = 0.5
    friction: float = 0.01
    record_interval: int = 5
    max_restarts: int = 3
    seed: int = 0


@dataclass
class Trajectory:
    """What one exploration trajectory saw.

    Attributes:
        frames: recorded frames (positions only), each with ``info``: ``sigma_forces``
            (eV/Å), ``energy_std`` (eV), ``md_step``, ``temperature_K``.
        sigmas: σ_F of every step, eV/Å [n_steps_done].
        steps_done: MD steps that were kept.
        stable_steps: steps before the first unphysical one (all of them when none).
        restarts: restarts from a trusted frame.
        timestep: fs.
    """

    frames: list[Atoms] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)
    steps_done: int = 0
    stable_steps: int | None = None
    restarts: int = 0
    timestep: float = 0.5

    @property
    def stable_fs(self) -> float:
        """Time before the first unphysical step, fs."""
        steps = self.steps_done if self.stable_steps is None else self.stable_steps
        return steps * self.timestep


def _thermalise(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    with warnings.catch_warnings():  # deprecated in ASE 3.29 in favour of thermalize_momenta
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any() and len(atoms) > 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            ZeroRotation(atoms)


def _snapshot(atoms: Atoms, results: dict, step: int, temperature: float) -> Atoms:
    """The frame to keep: numbers, positions (rounded to 1e-6 Å, what extxyz keeps exactly),
    cell, pbc, and the committee's σ."""
    info = {
        "sigma_forces": float(results["sigma_forces"]),
        "energy_std": float(results["energy_std"]),
        "md_step": int(step),
        "temperature_K": float(temperature),
    }
    return Atoms(
        numbers=atoms.numbers,
        positions=np.round(atoms.positions, 6),
        cell=atoms.cell,
        pbc=atoms.pbc,
        info=info,
    )


def explore(start: Atoms, models: Sequence[nn.Module], settings: ExploreSettings) -> Trajectory:
    """Run one exploration trajectory from ``start`` (not modified) on the committee
    ``models``' mean forces (see the module docstring).

    >>> from ase.build import molecule
    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> members = [SchNet(SchNetConfig(species=(1, 8), num_features=8)) for _ in range(2)]
    >>> t = explore(molecule("H2O"), members, ExploreSettings(300.0, 10, 0.05, 1e9))
    >>> t.steps_done, len(t.sigmas), len(t.frames)
    (10, 10, 2)
    """
    s = settings
    rng = np.random.default_rng(s.seed)
    atoms = start.copy()
    atoms.calc = CommitteeCalculator(models)
    _thermalise(atoms, s.temperature, rng)
    dynamics = Langevin(
        atoms,
        s.timestep * units.fs,
        temperature_K=s.temperature,
        friction=s.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    trusted = atoms.positions.copy()
    run = Trajectory(timestep=s.timestep)
    while run.steps_done < s.steps:
        try:
            dynamics.run(1)
            sigma = float(atoms.calc.results["sigma_forces"])
        except ValueError:  # atoms on top of each other, NaN positions: unphysical
            sigma = float("inf")
        if not sigma <= s.sigma_high:
            if run.stable_steps is None:
                run.stable_steps = run.steps_done
            if run.restarts >= s.max_restarts:
                break
            run.restarts += 1
            atoms.positions = trusted
            _thermalise(atoms, s.temperature, rng)
            continue
        run.steps_done += 1
        run.sigmas.append(sigma)
        if sigma <= s.sigma_low:
            trusted = atoms.positions.copy()
        if run.steps_done % s.record_interval == 0:
            run.frames.append(_snapshot(atoms, atoms.calc.results, run.steps_done, s.temperature))
    return run

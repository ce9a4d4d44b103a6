"""The Langevin MD (xTB through tblite) that samples configurations from a starting geometry
(read by :func:`euclidnn.data.molecules.load_molecule`): a molecule, or a periodic cell.

Defaults depend on the structure (:meth:`Sampling.resolve`). A molecule is sampled as it
always was: GFN2-xTB, 0.5 fs, 1000 equilibration steps. A periodic cell is sampled with the
labelling method's own MD (GFN1-xTB labels → GFN1-xTB MD: the frames lie on the surface
they are labelled on, and one periodic GFN2-xTB step costs about four GFN1-xTB steps on an
8-atom LiF cell), 1 fs without hydrogen, and an equilibration of two velocity-relaxation
times of the thermostat, 2/(friction·timestep) steps (200 at 0.01/fs and 1 fs): a periodic
xTB step costs seconds, where a molecule's costs milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from .labellers import XTB_METHODS, Level, _xtb_calculator
from .threads import tblite_threads

__all__ = ["Sampling", "sample"]


@dataclass(frozen=True)
class Sampling:
    """Settings of the Langevin MD that samples the configurations (xTB, tblite).

    Args:
        num_frames: configurations to keep.
        temperature: thermostat temperature, K (500 K, as for MD17, samples well beyond
            the minimum without breaking bonds of small organic molecules).
        timestep: MD time step, fs. None: 0.5 fs (resolves X–H vibrations) for molecules and
            for periodic cells with hydrogen, 1 fs for periodic cells without.
        friction: Langevin friction, 1/fs (0.01 → 100 fs velocity relaxation).
        interval: MD steps between kept frames (10 × 0.5 fs decorrelates them partly).
        equilibration: MD steps before the first kept frame. None: 1000 for molecules,
            2/(friction·timestep) for periodic cells (two relaxation times of the thermostat).
        seed: seeds the initial Maxwell–Boltzmann velocities and the Langevin noise.
        method: xTB method of the MD (``"gfn2-xtb"``, ``"gfn1-xtb"``). None: GFN2-xTB for
            molecules, the labelling method for periodic cells (GFN2-xTB if that is not xTB).

    Unset (None) fields are filled in by :meth:`resolve` for the structure and the level
    of theory; the frames record the resolved values.

    >>> Sampling(num_frames=2).info()["sampling_temperature_K"]
    500.0
    """

    num_frames: int
    temperature: float = 500.0
    timestep: float | None = None
    friction: float = 0.01
    interval: int = 10
    equilibration: int | None = None
    seed: int = 0
    method: str | None = None

    def __post_init__(self) -> None:
        for name in ("num_frames", "interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Sampling.{name}: must be >= 1, got {getattr(self, name)}")
        if self.equilibration is not None and self.equilibration < 0:
            raise ValueError(f"Sampling.equilibration: must be >= 0, got {self.equilibration}")
        for name in ("temperature", "timestep", "friction"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ValueError(f"Sampling.{name}: must be > 0, got {value}")
        if self.method is not None and self.method.lower() not in XTB_METHODS:
            raise ValueError(
                f"Sampling.method: the MD runs xTB, one of {', '.join(XTB_METHODS)}; "
                f"got {self.method!r}"
            )

    def resolve(self, atoms, level: Level | None = None) -> Sampling:
        """These settings with the unset fields filled in for ``atoms`` (a molecule or a
        periodic cell) labelled at ``level`` (see the class docstring).

        >>> from ase.build import bulk
        >>> s = Sampling(4).resolve(bulk("LiF", "rocksalt", a=4.03), Level("gfn1-xtb"))
        >>> s.method, s.timestep, s.equilibration
        ('gfn1-xtb', 1.0, 200)
        """
        periodic = bool(np.any(atoms.pbc))
        return self._resolved(periodic, hydrogen=1 in atoms.numbers, level=level)

    def _resolved(self, periodic: bool, hydrogen: bool, level: Level | None) -> Sampling:
        method = self.method
        if method is None:
            labelled_with_xtb = level is not None and level.is_xtb
            method = level.method if periodic and labelled_with_xtb else "gfn2-xtb"
        timestep = self.timestep
        if timestep is None:
            timestep = 1.0 if periodic and not hydrogen else 0.5
        equilibration = self.equilibration
        if equilibration is None:
            equilibration = round(2 / (self.friction * timestep)) if periodic else 1000
        return replace(
            self, method=method.lower(), timestep=float(timestep), equilibration=equilibration
        )

    def info(self) -> dict:
        """Header fields recorded in every frame (the frame count is not among them); unset
        fields are shown with their molecule defaults (:meth:`resolve` first for a cell)."""
        resolved = self._resolved(periodic=False, hydrogen=True, level=None)
        return {
            "sampler": f"Langevin MD, {XTB_METHODS[resolved.method]} (tblite)",
            "sampling_temperature_K": float(self.temperature),
            "sampling_timestep_fs": float(resolved.timestep),
            "sampling_friction_per_fs": float(self.friction),
            "sampling_interval": int(self.interval),
            "sampling_equilibration_steps": int(resolved.equilibration),
            "sampling_seed": int(self.seed),
        }


class _StepProgress:
    """Progress bars that follow an ASE dynamics' step counter: attached as an observer, called
    after every MD step, it moves the bar of the current stage (:meth:`stage`)."""

    def __init__(self, dynamics, progress: bool) -> None:
        self.dynamics, self.progress = dynamics, progress
        self.bar, self.start = None, 0
        dynamics.attach(self, interval=1)

    def __call__(self) -> None:
        if self.bar is not None:
            self.bar.update(self.dynamics.nsteps - self.start - self.bar.n)

    @contextmanager
    def stage(self, steps: int, description: str) -> Iterator:
        from tqdm import tqdm

        with tqdm(total=steps, desc=description, unit="step", disable=not self.progress) as bar:
            self.bar, self.start = bar, self.dynamics.nsteps
            try:
                yield bar
            finally:
                self.bar = None


def _langevin(atoms, sampling: Sampling):
    """Langevin dynamics of a copy of ``atoms`` from Maxwell–Boltzmann velocities (no drift of
    the centre of mass; no rotation either, for a molecule)."""
    import warnings

    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    atoms = atoms.copy()
    atoms.set_constraint(FixCom())  # no drift of the centre of mass (ASE's recommended way)
    atoms.calc = _xtb_calculator(Level(sampling.method))
    rng = np.random.default_rng(sampling.seed)
    with warnings.catch_warnings():  # deprecated in ASE 3.29; kept: same velocities as before
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=sampling.temperature, rng=rng)
    Stationary(atoms)
    if not np.any(atoms.pbc):  # a cell's images break rotational invariance: nothing to remove
        ZeroRotation(atoms)
    return Langevin(
        atoms,
        timestep=sampling.timestep * units.fs,
        temperature_K=sampling.temperature,
        friction=sampling.friction / units.fs,
        fixcm=False,
        rng=rng,
    )


def _run(dynamics, sampling: Sampling, steps: _StepProgress) -> list:
    """Equilibrate, then keep a copy of the atoms every ``sampling.interval`` steps."""
    name = XTB_METHODS[sampling.method]
    with steps.stage(sampling.equilibration, f"equilibration ({name} MD)"):
        dynamics.run(sampling.equilibration)
    frames = []
    with steps.stage(sampling.interval * sampling.num_frames, f"sampling ({name} MD)") as bar:
        for index in range(sampling.num_frames):
            dynamics.run(sampling.interval)
            frame = dynamics.atoms.copy()
            frame.set_constraint()
            frame.info = {**sampling.info(), "sampling_frame": index, "md_step": dynamics.nsteps}
            frames.append(frame)
            bar.set_postfix(frames=f"{index + 1}/{sampling.num_frames}")
    return frames


def sample(
    atoms,
    sampling: Sampling,
    path: str | os.PathLike,
    progress: bool = False,
    xtb_threads: int | None = 1,
) -> list:
    """Run the Langevin MD and write the kept geometries to ``path`` (atomically).

    ``sampling`` is resolved for ``atoms`` first (:meth:`Sampling.resolve`, here without a
    level of theory: pass a resolved one to sample a cell with its labelling method). Returns
    the sampled frames as ``ase.Atoms`` (no labels; a cell's frames keep it); each frame's info
    holds ``sampling.info()``, ``sampling_frame`` and ``md_step``. tblite runs ``xtb_threads``
    OpenMP threads during the MD only (None: as loaded); the caller's setting is restored.
    With ``progress``, one bar follows the equilibration and one the sampling, step by step.

    Raises:
        RuntimeError: naming the method and the MD step, when tblite's SCF fails.
    """
    import ase.io

    from euclidnn.files import replacing

    sampling = sampling.resolve(atoms)
    dynamics = _langevin(atoms, sampling)
    try:
        with tblite_threads(xtb_threads):
            frames = _run(dynamics, sampling, _StepProgress(dynamics, progress))
    except RuntimeError as error:  # tblite's SCF failed (ASE's CalculationFailed)
        name = XTB_METHODS[sampling.method]
        raise RuntimeError(f"sampling: {name} MD, step {dynamics.nsteps}: {error}") from error
    with replacing(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
    return frames

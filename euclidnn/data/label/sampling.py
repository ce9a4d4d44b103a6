"""The Langevin MD (GFN2-xTB) that samples configurations from a starting geometry (read by
:func:`euclidnn.data.molecules.load_molecule`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .labellers import Level, _xtb_calculator
from .threads import tblite_threads

__all__ = ["Sampling", "sample"]


@dataclass(frozen=True)
class Sampling:
    """Settings of the Langevin MD that samples the configurations (always GFN2-xTB).

    Args:
        num_frames: configurations to keep.
        temperature: thermostat temperature, K (500 K, as for MD17, samples well beyond
            the minimum without breaking bonds of small organic molecules).
        timestep: MD time step, fs (0.5 fs resolves X–H vibrations).
        friction: Langevin friction, 1/fs (0.01 → 100 fs velocity relaxation).
        interval: MD steps between kept frames (10 × 0.5 fs decorrelates them partly).
        equilibration: MD steps before the first kept frame.
        seed: seeds the initial Maxwell–Boltzmann velocities and the Langevin noise.

    >>> Sampling(num_frames=2).info()["sampling_temperature_K"]
    500.0
    """

    num_frames: int
    temperature: float = 500.0
    timestep: float = 0.5
    friction: float = 0.01
    interval: int = 10
    equilibration: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_frames", "interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Sampling.{name}: must be >= 1, got {getattr(self, name)}")
        if self.equilibration < 0:
            raise ValueError(f"Sampling.equilibration: must be >= 0, got {self.equilibration}")
        for name in ("temperature", "timestep", "friction"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"Sampling.{name}: must be > 0, got {getattr(self, name)}")

    def info(self) -> dict:
        """Header fields recorded in every frame (the frame count is not among them)."""
        return {
            "sampler": "Langevin MD, GFN2-xTB (tblite)",
            "sampling_temperature_K": float(self.temperature),
            "sampling_timestep_fs": float(self.timestep),
            "sampling_friction_per_fs": float(self.friction),
            "sampling_interval": int(self.interval),
            "sampling_equilibration_steps": int(self.equilibration),
            "sampling_seed": int(self.seed),
        }


def sample(
    atoms,
    sampling: Sampling,
    path: str | os.PathLike,
    progress: bool = False,
    xtb_threads: int | None = 1,
) -> list:
    """Run the Langevin MD and write the kept geometries to ``path`` (atomically).

    Returns the sampled frames as ``ase.Atoms`` (no labels); each frame's info holds
    ``sampling.info()``, ``sampling_frame`` and ``md_step``. tblite runs ``xtb_threads``
    OpenMP threads during the MD only (None: as loaded); the caller's setting is restored.
    """
    import warnings

    import ase.io
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from tqdm import tqdm

    from euclidnn.files import replacing

    atoms = atoms.copy()
    atoms.set_constraint(FixCom())  # no drift of the centre of mass (ASE's recommended way)
    atoms.calc = _xtb_calculator(Level("gfn2-xtb"))
    rng = np.random.default_rng(sampling.seed)
    with warnings.catch_warnings():  # deprecated in ASE 3.29; kept: same velocities as before
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=sampling.temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    dynamics = Langevin(
        atoms,
        timestep=sampling.timestep * units.fs,
        temperature_K=sampling.temperature,
        friction=sampling.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    total = sampling.equilibration + sampling.interval * sampling.num_frames
    frames = []
    with (
        tblite_threads(xtb_threads),
        tqdm(total=total, desc="sampling (MD steps)", disable=not progress) as bar,
    ):
        dynamics.run(sampling.equilibration)
        bar.update(sampling.equilibration)
        for index in range(sampling.num_frames):
            dynamics.run(sampling.interval)
            bar.update(sampling.interval)
            frame = atoms.copy()
            frame.set_constraint()
            frame.info = {**sampling.info(), "sampling_frame": index, "md_step": dynamics.nsteps}
            frames.append(frame)
    with replacing(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
    return frames

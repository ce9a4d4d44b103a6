"""Classical MD: NVE (ASE's velocity Verlet), NVT (ASE's Langevin, or Bussi–Donadio–Parrinello
stochastic velocity rescaling, :mod:`euclidnn.md.thermostat`).

A run folder holds what the run did as it goes — ``md.log`` (one line per logged step,
flushed), ``trajectory.xyz`` (extended XYZ with energy, forces and momenta, flushed per
frame; each line and frame in one write, so Ctrl-C never leaves half of one) — and
``summary.json`` (written atomically at the end, ``"status": "completed"``, or after Ctrl-C
with ``"status": "interrupted"`` and the steps done). The folder is created only once the
first forces are computed, so a structure or model the run cannot start with leaves none.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm

from euclidnn.files import write_text
from euclidnn.md.thermostat import StochasticVelocityRescaling

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ASE < 3.29
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

__all__ = [
    "MDConfig",
    "MDResult",
    "run_md",
    "read_log",
    "energy_drift",
    "ns_per_day",
    "degrees_of_freedom",
    "write_summary",
]

ENSEMBLES = ("nve", "nvt")
THERMOSTATS = ("langevin", "bussi")
LOG_COLUMNS = ("step", "time_fs", "potential_eV", "kinetic_eV", "total_eV", "temperature_K")


@dataclass(frozen=True)
class MDConfig:
    """What to run.

    Attributes:
        ensemble: ``"nve"`` (velocity Verlet) or ``"nvt"``.
        thermostat: for NVT, ``"langevin"`` (friction γ) or ``"bussi"`` (stochastic velocity
            rescaling, relaxation time τ); both sample the canonical ensemble.
        temperature: K; initial velocities are Maxwell–Boltzmann at this temperature (centre
            of mass at rest, and no rotation for a molecule), and the NVT target.
        timestep: fs.
        steps: number of MD steps.
        friction: Langevin γ in 1/fs.
        relaxation_time: Bussi τ in fs.
        log_interval: steps between lines of ``md.log``.
        trajectory_interval: steps between frames of ``trajectory.xyz`` (0: none).
        seed: seed of the initial velocities and of the thermostat's noise.
    """

    ensemble: str = "nve"
    thermostat: str = "langevin"
    temperature: float = 300.0
    timestep: float = 0.5
    steps: int = 1000
    friction: float = 0.01
    relaxation_time: float = 100.0
    log_interval: int = 1
    trajectory_interval: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble: {self.ensemble!r} is not one of {list(ENSEMBLES)}")
        if self.thermostat not in THERMOSTATS:
            raise ValueError(f"thermostat: {self.thermostat!r} is not one of {list(THERMOSTATS)}")
        for name in ("temperature", "timestep", "friction", "relaxation_time"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        if self.steps < 0 or self.log_interval < 1 or self.trajectory_interval < 0:
            raise ValueError(
                f"steps ({self.steps}) and trajectory_interval ({self.trajectory_interval}) "
                f"must be ≥ 0, log_interval ({self.log_interval}) ≥ 1"
            )


@dataclass(frozen=True)
class MDResult:
    """What a run did (also written to ``summary.json``).

    Attributes:
        steps: MD steps done.
        ns_per_day: simulated ns per day of wall time.
        mean_temperature_K: mean of the logged temperatures, T = 2 K / (f k_B).
        degrees_of_freedom: f — 3N with Langevin (every momentum is thermalised); 3N − 3
            (periodic) or 3N − 6 (3N − 5 linear) molecule with NVE and Bussi, which keep the
            total momentum (and a molecule's angular momentum) at the zero they start from.
        energy_drift_meV_per_atom_per_ps: slope of a line fitted to the total energy (NVE;
            None for NVT).
        wall_seconds: time the steps took.
    """

    ensemble: str
    steps: int
    timestep_fs: float
    num_atoms: int
    degrees_of_freedom: int
    ns_per_day: float
    mean_temperature_K: float
    energy_drift_meV_per_atom_per_ps: float | None
    wall_seconds: float


def ns_per_day(steps: int, timestep_fs: float, seconds: float) -> float:
    """Simulated time per day of wall time: steps · Δt / t_wall, in ns/day.

    >>> ns_per_day(1000, 0.5, 86.4)  # 0.5 ps in 86.4 s → 500 ps per day
    0.5
    """
    return steps * timestep_fs * 1e-6 * 86400.0 / max(seconds, 1e-12)


def energy_drift(time_fs: np.ndarray, total_energy: np.ndarray, num_atoms: int) -> float:
    """Slope of the least-squares line through E_total(t), in meV per atom per ps.

    Shapes: time_fs: [n_steps], total_energy: [n_steps] eV → float

    >>> t = np.arange(0.0, 1001.0, 1.0)  # 1 ps
    >>> round(energy_drift(t, 1e-3 * t / 1000, num_atoms=2), 6)  # 1 meV per ps over 2 atoms
    0.5
    """
    if len(time_fs) < 2:
        return float("nan")
    slope = np.polyfit(np.asarray(time_fs, float), np.asarray(total_energy, float), 1)[0]
    return float(slope * 1e3 * 1e3 / num_atoms)  # eV/fs → meV/ps, per atom


def read_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of an ``md.log`` (possibly of a killed run) as arrays by name."""
    data = np.loadtxt(path, ndmin=2)
    return {name: data[:, k] for k, name in enumerate(LOG_COLUMNS)}


def run_md(
    atoms: Atoms,
    calculator,
    config: MDConfig,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> MDResult:
    """Run MD of ``atoms`` (a copy; never modified) with an ASE ``calculator``.

    Writes ``out_dir/md.log``, ``out_dir/trajectory.xyz`` as the run goes and
    ``out_dir/summary.json`` at the end; the progress bar shows ns/day. ``out_dir`` is created
    after the first force evaluation: an error there (an element the model does not know,
    atoms on top of each other) leaves no folder behind; a ``ValueError`` later (the run blew
    up) says at which step. On Ctrl-C the summary says ``"interrupted"`` and
    ``KeyboardInterrupt`` is raised again, saying at which step.

    >>> import tempfile
    >>> from ase.build import molecule
    >>> from ase.calculators.emt import EMT
    >>> with tempfile.TemporaryDirectory() as d:
    ...     r = run_md(molecule("N2"), EMT(), MDConfig(steps=20), d, progress=False)
    ...     sorted(os.listdir(d))
    ['md.log', 'summary.json', 'trajectory.xyz']
    >>> r.steps
    20
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(config.seed)
    atoms = _thermalised(atoms, calculator, config.temperature, rng)
    atoms.get_forces()  # kept for the first step; a structure or model it cannot take fails here
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").unlink(missing_ok=True)  # an earlier run's: not this one's
    dof = degrees_of_freedom(atoms, config)
    dynamics = _integrator(atoms, config, rng, dof)
    start = time.perf_counter()
    recorder, status = _Recorder(atoms, config, dof, out_dir, progress), "interrupted"
    try:
        with recorder:
            dynamics.attach(lambda: recorder.observe(dynamics.nsteps), interval=1)
            dynamics.run(config.steps)
        status = "completed"
    except KeyboardInterrupt:
        pass
    except ValueError as error:  # the calculator's: NaN positions, atoms on top of each other
        raise ValueError(
            f"step {dynamics.nsteps}: {error} (the run blew up: a smaller timestep?); {out_dir} "
            "keeps md.log and trajectory.xyz up to here"
        ) from error
    seconds = time.perf_counter() - start
    result = _result(atoms, config, dof, recorder.rows(), int(dynamics.nsteps), seconds)
    write_summary(out_dir, result, config, status)
    if status == "interrupted":
        raise KeyboardInterrupt(
            f"interrupted at step {result.steps} of {config.steps}; {out_dir} keeps md.log, "
            "trajectory.xyz and summary.json (status interrupted)"
        )
    return result


def write_summary(out_dir: Path, result, config, status: str = "completed") -> None:
    """``out_dir/summary.json``: ``status`` (``"completed"``, ``"interrupted"``), the result's
    fields and the config, written atomically."""
    summary = {"status": status, **asdict(result), "config": asdict(config)}
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def _thermalised(atoms: Atoms, calculator, temperature: float, rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` with ``calculator`` and Maxwell–Boltzmann momenta at
    ``temperature``, with no total momentum (and, for a molecule, no angular momentum)."""
    atoms = atoms.copy()
    atoms.calc = calculator
    if len(atoms) > 1:
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        if not atoms.pbc.any():
            with np.errstate(invalid="ignore", divide="ignore"):  # a linear molecule
                ZeroRotation(atoms)
    return atoms


class _Recorder:
    """What a run writes as it goes: ``md.log`` lines, ``trajectory.xyz`` frames (each
    flushed, so a killed run keeps them) and the progress bar."""

    def __init__(self, atoms: Atoms, config: MDConfig, dof: int, out_dir: Path, progress: bool):
        self.atoms, self.config, self.dof = atoms, config, dof
        self.out_dir, self.progress = out_dir, progress
        self.log_rows: list[tuple[float, ...]] = []

    def __enter__(self) -> _Recorder:
        self.log = open(self.out_dir / "md.log", "w")
        self.log.write("# " + " ".join(LOG_COLUMNS) + "\n")
        self.trajectory = open(self.out_dir / "trajectory.xyz", "w")
        self.bar = tqdm(
            total=self.config.steps, disable=not self.progress, unit="step", smoothing=0.1
        )
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()
        self.trajectory.close()
        self.log.close()

    def observe(self, step: int) -> None:
        """Called after every step (and before the first, ``step`` 0)."""
        config = self.config
        if step % config.log_interval == 0:
            self._log(step)
        if config.trajectory_interval and step % config.trajectory_interval == 0:
            frame = io.StringIO()
            ase.io.write(frame, self.atoms, format="extxyz")
            self.trajectory.write(frame.getvalue())  # one write: Ctrl-C leaves no half frame
            self.trajectory.flush()
        if step:
            self.bar.update(1)
            if step % 20 == 0 or step == config.steps:
                speed = ns_per_day(step, config.timestep, time.perf_counter() - self.start)
                self.bar.set_postfix_str(f"{speed:.3g} ns/day", refresh=False)

    def _log(self, step: int) -> None:
        potential = self.atoms.get_potential_energy()
        kinetic = self.atoms.get_kinetic_energy()
        temperature = 2.0 * kinetic / (self.dof * units.kB)
        time_fs = step * self.config.timestep
        row = (step, time_fs, potential, kinetic, potential + kinetic, temperature)
        self.log_rows.append(row)
        self.log.write(" ".join(f"{v:.10g}" for v in row) + "\n")
        self.log.flush()

    def rows(self) -> np.ndarray:
        """The logged rows. Shapes: → [n_logged, len(LOG_COLUMNS)]"""
        return np.array(self.log_rows, dtype=float).reshape(-1, len(LOG_COLUMNS))


def _result(
    atoms: Atoms, config: MDConfig, dof: int, rows: np.ndarray, steps: int, seconds: float
) -> MDResult:
    drift = None
    if config.ensemble == "nve":
        drift = energy_drift(rows[:, 1], rows[:, 4], len(atoms))
    return MDResult(
        ensemble=config.ensemble if config.ensemble == "nve" else f"nvt-{config.thermostat}",
        steps=steps,
        timestep_fs=config.timestep,
        num_atoms=len(atoms),
        degrees_of_freedom=dof,
        ns_per_day=ns_per_day(steps, config.timestep, seconds),
        mean_temperature_K=float(rows[:, 5].mean()) if len(rows) else float("nan"),
        energy_drift_meV_per_atom_per_ps=drift,
        wall_seconds=seconds,
    )


def degrees_of_freedom(atoms: Atoms, config: MDConfig) -> int:
    """Thermal degrees of freedom of a run (see :class:`MDResult`).

    >>> from ase.build import molecule
    >>> degrees_of_freedom(molecule("H2O"), MDConfig()), degrees_of_freedom(molecule("CO2"), MDConfig())
    (3, 4)
    """
    n = 3 * len(atoms)
    if config.ensemble == "nvt" and config.thermostat == "langevin":
        return n
    if atoms.pbc.any() or len(atoms) == 1:
        return max(n - 3, 1)
    centred = atoms.positions - atoms.get_center_of_mass()
    linear = np.linalg.matrix_rank(centred, tol=1e-6) < 2
    return max(n - (5 if linear else 6), 1)


def _integrator(atoms: Atoms, config: MDConfig, rng: np.random.Generator, dof: int):
    timestep = config.timestep * units.fs
    if config.ensemble == "nve":
        return VelocityVerlet(atoms, timestep)
    if config.thermostat == "langevin":
        return Langevin(
            atoms,
            timestep,
            temperature_K=config.temperature,
            friction=config.friction / units.fs,
            fixcm=False,
            rng=rng,
        )
    return StochasticVelocityRescaling(
        atoms,
        config.timestep,
        temperature_K=config.temperature,
        relaxation_time_fs=config.relaxation_time,
        degrees_of_freedom=dof,
        rng=rng,
    )

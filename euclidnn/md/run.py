"""Classical MD: NVE (ASE's velocity Verlet), NVT (ASE's Langevin, or Bussi–Donadio–Parrinello
stochastic velocity rescaling, :mod:`euclidnn.md.thermostat`), NPT (ASE's Martyna–Tobias–Klein
barostat with Nosé–Hoover chains, isotropic or with the full cell).

A run folder holds what the run did as it goes — ``md.log`` (one line per logged step,
flushed; NPT adds volume, density, pressure and MTK's conserved energy), ``trajectory.xyz``
(extended XYZ with cell, energy, forces and momenta, flushed per frame; each line and frame in
one write, so Ctrl-C never leaves half of one) — and
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
    "check_npt_structure",
    "density",
    "log_columns",
    "write_summary",
]

ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTATS = ("langevin", "bussi")
CELL_FLUCTUATIONS = ("isotropic", "triclinic")
LOG_COLUMNS = ("step", "time_fs", "potential_eV", "kinetic_eV", "total_eV", "temperature_K")
#: what an NPT run logs besides :data:`LOG_COLUMNS`; the pressure includes the kinetic term
NPT_LOG_COLUMNS = ("volume_A3", "density_g_cm3", "pressure_GPa", "conserved_eV")
#: |pressure| above this (GPa) is taken for a unit mistake (bar given as GPa), not a wish
MAX_PRESSURE_GPA = 1000.0
#: the thermostat and barostat of NPT need time constants of at least this many timesteps
MIN_DAMPING_STEPS = 10


@dataclass(frozen=True)
class MDConfig:
    """What to run.

    Attributes:
        ensemble: ``"nve"`` (velocity Verlet), ``"nvt"`` or ``"npt"`` (a 3D-periodic cell only:
            ASE's Martyna–Tobias–Klein integrator, Nosé–Hoover chains on the atoms and on the
            cell, which samples the isothermal–isobaric ensemble; Berendsen's would not).
        thermostat: for NVT, ``"langevin"`` (friction γ) or ``"bussi"`` (stochastic velocity
            rescaling, relaxation time τ); both sample the canonical ensemble. NPT has its own
            (the Nosé–Hoover chain, relaxation time τ).
        temperature: K; initial velocities are Maxwell–Boltzmann at this temperature (centre
            of mass at rest, and no rotation for a molecule), and the NVT/NPT target.
        timestep: fs.
        steps: number of MD steps.
        friction: Langevin γ in 1/fs.
        relaxation_time: Bussi τ (NVT) or the Nosé–Hoover chain's τ (NPT, ≥ 10 timesteps), fs.
        pressure: NPT's external pressure, GPa (the unit of materials science; 1 GPa = 10 kbar;
            0 is ambient pressure to within 1e-4 GPa). Negative values (tension) are allowed,
            beyond ±1000 GPa refused as a unit mistake.
        barostat_time: NPT's barostat time constant τ_P, fs: the period over which the volume
            responds (the cell's fictitious mass W ∝ τ_P²). None: 1000 timesteps (filled in
            when the config is made), the value LAMMPS and ASE advise — short enough that a
            52-atom cell equilibrates its volume within a few ps, long enough that the cell
            moves slowly against the atoms' vibrations (~10–100 fs). ≥ 10 timesteps.
        cell_fluctuations: NPT's cell: ``"isotropic"`` (the volume changes, the shape is kept;
            right for liquids and glasses) or ``"triclinic"`` (all six components of the cell
            shape, no rotation; for crystals whose axes and angles relax).
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
    pressure: float = 0.0
    barostat_time: float | None = None
    cell_fluctuations: str = "isotropic"
    log_interval: int = 1
    trajectory_interval: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble: {self.ensemble!r} is not one of {list(ENSEMBLES)}")
        if self.thermostat not in THERMOSTATS:
            raise ValueError(f"thermostat: {self.thermostat!r} is not one of {list(THERMOSTATS)}")
        if self.cell_fluctuations not in CELL_FLUCTUATIONS:
            raise ValueError(
                f"cell_fluctuations: {self.cell_fluctuations!r} is not one of "
                f"{list(CELL_FLUCTUATIONS)}"
            )
        if self.barostat_time is None:  # frozen: set once, here, so the summary records it
            object.__setattr__(self, "barostat_time", 1000.0 * self.timestep)
        for name in ("temperature", "timestep", "friction", "relaxation_time", "barostat_time"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        if not (isinstance(self.pressure, (int, float)) and math.isfinite(self.pressure)):
            raise ValueError(f"pressure: must be a number (GPa), got {self.pressure!r}")
        if abs(self.pressure) > MAX_PRESSURE_GPA:
            raise ValueError(
                f"pressure: {self.pressure:g} GPa is beyond ±{MAX_PRESSURE_GPA:g} GPa; the unit "
                "is GPa (1 GPa = 10000 bar = 10 kbar)"
            )
        if self.ensemble == "npt":
            shortest = MIN_DAMPING_STEPS * self.timestep
            for name, what in (("relaxation_time", "thermostat"), ("barostat_time", "barostat")):
                if getattr(self, name) < shortest:
                    raise ValueError(
                        f"{name}: {getattr(self, name):g} fs is under {MIN_DAMPING_STEPS} "
                        f"timesteps ({shortest:g} fs): the NPT {what} would oscillate faster "
                        "than the integrator can follow (100–1000 timesteps are typical)"
                    )
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
            (periodic) or 3N − 6 (3N − 5 linear) molecule with NVE, Bussi and NPT, which keep
            the total momentum (and a molecule's angular momentum) at the zero they start from.
        energy_drift_meV_per_atom_per_ps: slope of a line fitted to the total energy (NVE), to
            MTK's conserved energy (NPT: total + thermostat + barostat energies + P V); None
            for NVT.
        wall_seconds: time the steps took.
        mean_volume_A3, mean_density_g_cm3, mean_pressure_GPa: NPT: the means of the logged
            volume (Å³), density (g/cm³) and pressure (GPa, virial and kinetic terms) over the
            whole run, equilibration included; None for NVE and NVT.
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
    mean_volume_A3: float | None = None
    mean_density_g_cm3: float | None = None
    mean_pressure_GPa: float | None = None


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


def log_columns(config: MDConfig) -> tuple[str, ...]:
    """The columns of a run's ``md.log``: :data:`LOG_COLUMNS`, and :data:`NPT_LOG_COLUMNS` for
    NPT (the others have a constant volume and compute no stress).

    >>> log_columns(MDConfig(ensemble="npt"))[-4:]
    ('volume_A3', 'density_g_cm3', 'pressure_GPa', 'conserved_eV')
    """
    return LOG_COLUMNS + (NPT_LOG_COLUMNS if config.ensemble == "npt" else ())


def read_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of an ``md.log`` (possibly of a killed run) as arrays by name, named by its
    header line (``# step time_fs …``; :data:`LOG_COLUMNS` for a log without one)."""
    with open(path) as file:
        first = file.readline()
    names = first[1:].split() if first.startswith("#") else list(LOG_COLUMNS)
    data = np.loadtxt(path, ndmin=2).reshape(-1, len(names))
    return {name: data[:, k] for k, name in enumerate(names)}


def density(atoms: Atoms) -> float:
    """Mass density of a periodic cell, g/cm³: Σ m / V, from amu/Å³.

    >>> from ase.build import bulk
    >>> round(density(bulk("Cu", "fcc", a=3.615, cubic=True)), 2)  # 4 Cu atoms in (3.615 Å)³
    8.93
    """
    grams = atoms.get_masses().sum() * units._amu * 1e3  # amu → kg → g
    return float(grams / (atoms.get_volume() * 1e-24))  # Å³ → cm³


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
    ``KeyboardInterrupt`` is raised again, saying at which step. NPT needs a 3D-periodic
    ``atoms`` and a calculator that gives the stress (``ValueError`` before the folder is made).

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
    if config.ensemble == "npt":
        check_npt_structure(atoms, atoms.get_chemical_formula())
        _barostat_class(config)  # an ASE without it fails here
    atoms = _thermalised(atoms, calculator, config.temperature, rng)
    if config.ensemble == "npt":
        _check_stress(atoms)
    atoms.get_forces()  # kept for the first step; a structure or model it cannot take fails here
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").unlink(missing_ok=True)  # an earlier run's: not this one's
    dof = degrees_of_freedom(atoms, config)
    dynamics = _integrator(atoms, config, rng, dof)
    start = time.perf_counter()
    recorder, status = _Recorder(atoms, dynamics, config, dof, out_dir, progress), "interrupted"
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
    result = _result(atoms, config, dof, recorder.columns(), int(dynamics.nsteps), seconds)
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


def check_npt_structure(atoms: Atoms, where: str, option: str = "ensemble npt") -> None:
    """Raise ``ValueError`` (naming ``option`` and ``where``) unless ``atoms`` is periodic in all
    three directions with a cell of nonzero volume: constant pressure changes a cell's volume."""
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(
            f"{option}: {where} is not periodic in 3D (pbc {atoms.pbc.tolist()}, cell volume "
            f"{abs(atoms.cell.volume):.3g} Å³); constant pressure needs a periodic cell"
        )


def _check_stress(atoms: Atoms) -> None:
    """Raise ``ValueError`` if the calculator of ``atoms`` gives no stress (NPT needs it)."""
    from ase.calculators.calculator import PropertyNotImplementedError

    try:
        atoms.get_stress()
    except PropertyNotImplementedError:
        name = type(atoms.calc).__name__
        raise ValueError(f"ensemble npt: the calculator ({name}) gives no stress") from None


def _barostat_class(config: MDConfig):
    """ASE's MTK integrator for ``config.cell_fluctuations`` (imported here: ASE ≥ 3.23 runs
    the other ensembles, and an older one is told what NPT needs)."""
    try:
        from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT
    except ImportError:
        import ase

        raise ValueError(
            f"ensemble npt: needs ASE's Martyna–Tobias–Klein integrators (ase.md."
            f"nose_hoover_chain.MTKNPT, in ASE 3.29), not in ASE {ase.__version__}"
        ) from None
    return IsotropicMTKNPT if config.cell_fluctuations == "isotropic" else MTKNPT


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

    def __init__(
        self, atoms: Atoms, dynamics, config: MDConfig, dof: int, out_dir: Path, progress: bool
    ):
        self.atoms, self.dynamics, self.config, self.dof = atoms, dynamics, config, dof
        self.out_dir, self.progress = out_dir, progress
        self.names = log_columns(config)
        self.log_rows: list[tuple[float, ...]] = []

    def __enter__(self) -> _Recorder:
        self.log = open(self.out_dir / "md.log", "w")
        self.log.write("# " + " ".join(self.names) + "\n")
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
        if self.config.ensemble == "npt":
            # the stress of these positions and cell: the integrator's last evaluation
            stress = self.atoms.get_stress(voigt=False, include_ideal_gas=True)
            pressure = -np.trace(stress) / 3 / units.GPa
            conserved = self.dynamics.get_conserved_energy()
            row += (self.atoms.get_volume(), density(self.atoms), pressure, conserved)
        self.log_rows.append(row)
        self.log.write(" ".join(f"{v:.10g}" for v in row) + "\n")
        self.log.flush()

    def columns(self) -> dict[str, np.ndarray]:
        """The logged columns by name, as :func:`read_log` gives them. Shapes: → [n_logged]"""
        rows = np.array(self.log_rows, dtype=float).reshape(-1, len(self.names))
        return {name: rows[:, k] for k, name in enumerate(self.names)}


def _result(
    atoms: Atoms,
    config: MDConfig,
    dof: int,
    log: dict[str, np.ndarray],
    steps: int,
    seconds: float,
) -> MDResult:
    """The :class:`MDResult` of a run from its logged columns (``log``, as :func:`read_log`)."""

    def mean(name: str) -> float | None:
        if name not in log_columns(config):
            return None
        return float(log[name].mean()) if name in log and len(log[name]) else float("nan")

    conserved = {"nve": "total_eV", "npt": "conserved_eV"}.get(config.ensemble)
    drift = None
    if conserved is not None:
        drift = energy_drift(log.get("time_fs", []), log.get(conserved, []), len(atoms))
    return MDResult(
        ensemble={"nve": "nve", "nvt": f"nvt-{config.thermostat}", "npt": "npt-mtk"}[
            config.ensemble
        ],
        steps=steps,
        timestep_fs=config.timestep,
        num_atoms=len(atoms),
        degrees_of_freedom=dof,
        ns_per_day=ns_per_day(steps, config.timestep, seconds),
        mean_temperature_K=mean("temperature_K"),
        energy_drift_meV_per_atom_per_ps=drift,
        wall_seconds=seconds,
        mean_volume_A3=mean("volume_A3"),
        mean_density_g_cm3=mean("density_g_cm3"),
        mean_pressure_GPa=mean("pressure_GPa"),
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
    if config.ensemble == "npt":
        barostat = _barostat_class(config)
        # ASE's chain holds Σ p²/m at 3N k_B T, but the total momentum stays at its zero, so
        # only f = 3N − 3 momenta move: aiming at T f / 3N puts those at T (as LAMMPS's fix
        # npt, which counts f), instead of 3N / f too hot (2 % for 52 atoms)
        return barostat(
            atoms,
            timestep,
            temperature_K=config.temperature * dof / (3 * len(atoms)),
            pressure_au=config.pressure * units.GPa,  # eV/Å³
            tdamp=config.relaxation_time * units.fs,
            pdamp=config.barostat_time * units.fs,
        )
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

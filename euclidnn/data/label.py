"""Make reference data: sample configurations by Langevin MD and label them with xTB or DFT.

Two stages, both deterministic from the seed:

1. **sample**: Langevin MD driven by GFN2-xTB (tblite) at ``Sampling.temperature``; after
   ``equilibration`` steps every ``interval``-th step is kept. The geometries go to
   ``<output>.sampled.xyz``, written once to a temporary file and renamed, so the trajectory
   a resumed run labels is the very one the interrupted run was labelling.
2. **label**: each sampled geometry, in order, is labelled (GFN2-xTB, or DFT/HF with PySCF:
   density fitting, analytic gradient, previous density matrix as the SCF guess) and appended
   to ``<output>`` as one extxyz frame; the file is flushed and fsync'd after every frame.

Resuming = counting the complete frames in ``<output>`` (a truncated trailing frame left by a
kill is dropped) and labelling the rest, so an interrupted and resumed run writes the same
file as an uninterrupted one. Frames are in eV and Å; every frame's header records the level
of theory, the units and the sampling settings.

tblite and pyscf are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Sampling",
    "Level",
    "load_molecule",
    "list_molecules",
    "sample",
    "read_complete_frames",
    "make_labeller",
    "label",
]

MOLECULES_DIR = Path(__file__).parent / "shipped" / "molecules"
XTB_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB"}
UNITS = {"energy_unit": "eV", "length_unit": "Angstrom", "force_unit": "eV/Angstrom"}

Labeller = Callable[["object"], tuple[float, np.ndarray]]  # ase.Atoms -> (eV, eV/Å [n, 3])


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


@dataclass(frozen=True)
class Level:
    """Level of theory of the labels.

    Args:
        method: ``"gfn2-xtb"``, ``"gfn1-xtb"``, ``"hf"``, or an exchange–correlation
            functional PySCF knows (``"pbe"``, ``"b3lyp"``, …); case-insensitive.
        basis: Gaussian basis set for HF/DFT (``"def2-svp"``); ignored by xTB.
        density_fit: density fitting (RI) for HF/DFT; a few % error-free speed-up.
        charge: total charge, e.
        multiplicity: spin multiplicity 2S+1 (1 → restricted, else unrestricted).

    >>> Level("PBE", basis="def2-SVP").name
    'PBE/def2-SVP'
    >>> Level("gfn2-xtb").name
    'GFN2-xTB'
    """

    method: str
    basis: str | None = None
    density_fit: bool = True
    charge: int = 0
    multiplicity: int = 1

    @property
    def is_xtb(self) -> bool:
        return self.method.lower() in XTB_METHODS

    @property
    def name(self) -> str:
        if self.is_xtb:
            return XTB_METHODS[self.method.lower()]
        return f"{self.method.upper()}/{self.basis}"

    def check(self) -> None:
        """Raise ValueError for an unknown method or basis (needs pyscf for HF/DFT)."""
        if self.multiplicity < 1:
            raise ValueError(f"multiplicity: must be >= 1, got {self.multiplicity}")
        if self.is_xtb:
            return
        import warnings

        from pyscf import gto
        from pyscf.dft import libxc

        if self.method.lower() != "hf":
            try:
                libxc.parse_xc(self.method)
            except KeyError:
                known = ", ".join([*XTB_METHODS, "hf", "pbe", "b3lyp", "…(any PySCF functional)"])
                raise ValueError(
                    f"unknown method {self.method!r}; expected one of {known}"
                ) from None
        if self.basis is None:
            raise ValueError(f"method {self.method!r}: HF/DFT needs a basis (e.g. def2-svp)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gto.basis.load(self.basis, "H")
        except Exception as err:
            raise ValueError(
                f"unknown basis {self.basis!r} (PySCF names: def2-svp, sto-3g, …)"
            ) from err

    def info(self, program: str) -> dict:
        info = {"level_of_theory": self.name, "method": self.method.lower()}
        if not self.is_xtb:
            info.update(basis=self.basis, density_fit=bool(self.density_fit))
        info.update(charge=int(self.charge), multiplicity=int(self.multiplicity))
        info.update(program=program, **UNITS)
        return info


def list_molecules() -> list[str]:
    """Names of the starting geometries shipped with euclidnn (besides ASE's g2 names).

    >>> "ethanol" in list_molecules()
    True
    """
    return sorted(p.stem for p in MOLECULES_DIR.glob("*.xyz"))


def load_molecule(name: str):
    """Starting geometry as ``ase.Atoms``: an xyz/extxyz file path, a shipped molecule name
    (:func:`list_molecules`; RDKit ETKDG + MMFF94 geometries), or an ASE g2 name (``"CH3CH2OH"``).

    >>> load_molecule("ethanol").get_chemical_formula()
    'C2H6O'
    """
    import ase.io
    from ase.build import molecule
    from ase.collections import g2

    path = Path(name)
    if path.suffix and path.is_file():
        try:
            return ase.io.read(path, index=0)
        except Exception as error:
            raise ValueError(f"{path}: frame 0: cannot read a structure: {error}") from error
    shipped = MOLECULES_DIR / f"{name}.xyz"
    if shipped.is_file():
        return ase.io.read(shipped, index=0)
    if name in g2.names:
        return molecule(name)
    raise ValueError(
        f"unknown molecule {name!r}: not a file, not one of {', '.join(list_molecules())}, "
        "and not an ASE g2 name"
    )


def _set_xtb_threads(threads: int | None) -> None:
    """Set the OpenMP threads of tblite at run time (OMP_NUM_THREADS only counts at load).

    tblite's wheels use the system OpenMP runtime; PySCF ships its own, set separately. One
    thread is fastest for molecules of tens of atoms, and spinning OpenMP threads slow down
    badly on a busy machine.
    """
    if threads is None:
        return
    import ctypes

    for name in ("libgomp.so.1", "libomp.so", "libomp.dylib", "libgomp.1.dylib"):
        try:
            ctypes.CDLL(name).omp_set_num_threads(int(threads))
            return
        except (OSError, AttributeError):
            continue


def _xtb_calculator(level: Level):
    from tblite.ase import TBLite

    return TBLite(
        method=XTB_METHODS[level.method.lower()],
        charge=level.charge,
        multiplicity=level.multiplicity,
        verbosity=0,
    )


def _program(level: Level) -> str:
    from importlib.metadata import version

    package = "tblite" if level.is_xtb else "pyscf"
    return f"{package} {version(package)}"


def sample(
    atoms,
    sampling: Sampling,
    path: str | os.PathLike,
    progress: bool = False,
    xtb_threads: int | None = 1,
) -> list:
    """Run the Langevin MD and write the kept geometries to ``path`` (atomically).

    Returns the sampled frames as ``ase.Atoms`` (no labels); each frame's info holds
    ``sampling.info()``, ``sampling_frame`` and ``md_step``.
    """
    import warnings

    import ase.io
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from tqdm import tqdm

    _set_xtb_threads(xtb_threads)
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
    with tqdm(total=total, desc="sampling (MD steps)", disable=not progress) as bar:
        dynamics.run(sampling.equilibration)
        bar.update(sampling.equilibration)
        for index in range(sampling.num_frames):
            dynamics.run(sampling.interval)
            bar.update(sampling.interval)
            frame = atoms.copy()
            frame.set_constraint()
            frame.info = {**sampling.info(), "sampling_frame": index, "md_step": dynamics.nsteps}
            frames.append(frame)
    tmp = Path(f"{path}.tmp")
    ase.io.write(tmp, frames, format="extxyz")
    os.replace(tmp, path)
    return frames


def read_complete_frames(path: str | os.PathLike) -> tuple[list, int]:
    """Read an extxyz file, tolerating a truncated last frame.

    Returns the complete frames and the byte length they occupy; a run that was killed while
    writing leaves a trailing partial frame, which is not returned (truncate the file to the
    returned length to drop it).

    Raises:
        ValueError: naming file and frame, for a broken frame that is not the last one.
    """
    import ase.io

    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)
    frames, offset, line_no = [], 0, 0
    while line_no < len(lines):
        start, index = line_no, len(frames)
        try:
            num_atoms = int(lines[line_no].split()[0])
        except (ValueError, IndexError):
            num_atoms = -1
        block = lines[start : start + num_atoms + 2] if num_atoms >= 0 else lines[start:]
        complete = num_atoms >= 0 and len(block) == num_atoms + 2 and block[-1].endswith(b"\n")
        is_last = start + max(num_atoms, 0) + 2 >= len(lines)
        frame, error = None, "line 1: expected the number of atoms"
        if complete:
            try:
                frame = ase.io.read(io.StringIO(b"".join(block).decode()), format="extxyz")
            except Exception as exc:  # ase raises many types on malformed text
                error = str(exc)
        if frame is None:
            if is_last:
                break  # a partial trailing frame: the run was killed while writing it
            raise ValueError(f"{path}: frame {index}: cannot parse ({error})")
        frames.append(frame)
        offset += sum(len(line) for line in block)
        line_no = start + num_atoms + 2
    return frames, offset


class _PySCFLabeller:
    """HF/DFT energy and analytic forces, reusing the last density matrix as the SCF guess."""

    def __init__(self, level: Level, threads: int | None = None) -> None:
        self.level = level
        self.threads = threads
        self.density_matrix = None

    def _mean_field(self, atoms):
        from pyscf import dft, gto, scf

        mol = gto.M(
            atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
            unit="Angstrom",
            basis=self.level.basis,
            charge=self.level.charge,
            spin=self.level.multiplicity - 1,
            verbose=0,
        )
        restricted = self.level.multiplicity == 1
        if self.level.method.lower() == "hf":
            mf = scf.RHF(mol) if restricted else scf.UHF(mol)
        else:
            mf = dft.RKS(mol) if restricted else dft.UKS(mol)
            mf.xc = self.level.method
        mf.conv_tol = 1e-10  # Hartree; tight enough that forces match finite differences
        mf.max_cycle = 100
        return mf.density_fit() if self.level.density_fit else mf

    def __call__(self, atoms) -> tuple[float, np.ndarray]:
        from ase.units import Bohr, Hartree
        from pyscf import lib

        if self.threads is not None:
            lib.num_threads(self.threads)
        mf = self._mean_field(atoms)
        energy = mf.kernel(dm0=self.density_matrix)
        if not mf.converged and self.density_matrix is not None:
            mf = self._mean_field(atoms)  # the reused guess can mislead: start from scratch
            energy = mf.kernel()
        if not mf.converged:
            raise RuntimeError(f"{self.level.name}: SCF did not converge")
        gradient = mf.nuc_grad_method().kernel()  # Hartree/Bohr
        self.density_matrix = mf.make_rdm1()
        return float(energy) * Hartree, -np.asarray(gradient) * Hartree / Bohr


def make_labeller(
    level: Level, threads: int | None = None, xtb_threads: int | None = 1
) -> Labeller:
    """A function ``atoms -> (energy eV, forces eV/Å)`` at the given level of theory.

    Args:
        level: the level of theory (checked here: ValueError if unknown).
        threads: OpenMP threads of PySCF (None: PySCF's default).
        xtb_threads: OpenMP threads of tblite (None: as loaded, i.e. OMP_NUM_THREADS).
    """
    level.check()
    if level.is_xtb:

        def xtb(atoms) -> tuple[float, np.ndarray]:
            _set_xtb_threads(xtb_threads)
            atoms = atoms.copy()
            # a fresh calculator per frame: a reused one starts its SCF from the last frame's
            # charges, and a resumed run would then differ from an uninterrupted one in the
            # last digits
            atoms.calc = _xtb_calculator(level)
            return float(atoms.get_potential_energy()), atoms.get_forces().copy()

        return xtb
    return _PySCFLabeller(level, threads)


def _check_matches(path, index: int, frame, expected, keys: dict) -> None:
    """Raise if an existing frame does not belong to the requested run."""
    for key, value in keys.items():
        found = frame.info.get(key)
        found = found.item() if isinstance(found, np.generic) else found
        if found != value:
            raise ValueError(
                f"{path}: frame {index}: {key}={found!r} but this run has "
                f"{value!r}; choose another output file or the same settings"
            )
    same = np.array_equal(frame.numbers, expected.numbers) and np.allclose(
        frame.positions, expected.positions, atol=1e-6
    )
    if not same:
        raise ValueError(f"{path}: frame {index}: positions differ from the sampled trajectory")


def label(
    molecule: str,
    output: str | os.PathLike,
    sampling: Sampling,
    level: Level,
    threads: int | None = None,
    progress: bool = True,
    xtb_threads: int | None = 1,
) -> list:
    """Sample ``sampling.num_frames`` configurations of ``molecule`` and label them into
    ``output`` (extxyz, eV/Å), resuming a previous run of the same command.

    ``threads``: PySCF's OpenMP threads; ``xtb_threads``: tblite's (sampling and xTB labels).
    Returns the labelled frames (``ase.Atoms`` with a single-point calculator).

    Raises:
        ValueError: for an unknown molecule, method or basis, or an existing output written
            with other settings (naming file, frame and field).
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from tqdm import tqdm

    atoms = load_molecule(molecule)
    labeller = make_labeller(level, threads, xtb_threads)  # checks the level before any work
    output = Path(output)
    sampled_path = Path(f"{output}.sampled.xyz")
    header = {**level.info(_program(level)), "molecule": str(molecule)}

    sampled = read_complete_frames(sampled_path)[0] if sampled_path.is_file() else []
    for index, frame in enumerate(sampled[:1]):
        _check_matches(sampled_path, index, frame, frame, sampling.info())
        if not np.array_equal(frame.numbers, atoms.numbers):
            raise ValueError(f"{sampled_path}: frame 0: numbers differ from {molecule!r}")
    if len(sampled) < sampling.num_frames:
        new_path = Path(f"{sampled_path}.new")
        new = sample(atoms, sampling, new_path, progress=progress, xtb_threads=xtb_threads)
        for index, frame in enumerate(sampled):  # a longer run must extend the same trajectory
            _check_matches(sampled_path, index, frame, new[index], {})
        os.replace(new_path, sampled_path)
        sampled = new
    sampled = sampled[: sampling.num_frames]

    done, length = read_complete_frames(output) if output.is_file() else ([], 0)
    if output.is_file() and output.stat().st_size != length:
        os.truncate(output, length)  # drop the frame a killed run left half-written
    for index, frame in enumerate(done):
        keys = {**header, **sampling.info(), "sampling_frame": index}
        _check_matches(output, index, frame, sampled[min(index, len(sampled) - 1)], keys)
    done = done[: sampling.num_frames]

    with (
        open(output, "a") as file,
        tqdm(
            total=sampling.num_frames,
            initial=len(done),
            desc=f"labelling ({level.name})",
            unit="frame",
            disable=not progress,
        ) as bar,
    ):
        for frame in sampled[len(done) :]:
            frame = frame.copy()
            frame.arrays.pop("momenta", None)  # kept in the sampled file only
            try:
                energy, forces = labeller(frame)
            except RuntimeError as error:
                raise RuntimeError(f"{output}: frame {len(done)}: {error}") from error
            frame.info = {**header, **frame.info}
            frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
            text = io.StringIO()
            ase.io.write(text, frame, format="extxyz")
            file.write(text.getvalue())
            file.flush()
            os.fsync(file.fileno())
            done.append(frame)
            bar.update(1)
    return done

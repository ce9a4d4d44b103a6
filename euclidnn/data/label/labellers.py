"""Levels of theory and the labellers that compute energies and forces at them.

A labeller is a function ``ase.Atoms -> (energy eV, forces eV/Å [n_atoms, 3])``: GFN2-xTB or
GFN1-xTB through tblite, or HF/DFT through PySCF (density fitting, analytic gradient, previous
density matrix as the SCF guess). tblite and pyscf are imported lazily, inside the functions
that need them.

Periodic cells are labelled with xTB only, and also get the stress (:data:`STRESS_UNIT`,
σ = (1/V) ∂E/∂ε, positive = tensile: tblite's virial over the volume, checked against central
differences of the energy in the tests). What tblite does with a cell (tblite 0.8): one k-point,
Γ, of the given cell (tblite has no k-point sampling: a small cell is a coarse sample of the
Brillouin zone, so converge the cell size, not a mesh); Hamiltonian and overlap summed over the
lattice images within its cutoffs; the second-order electrostatics (GFN2-xTB's multipoles too)
by Ewald summation; dispersion by real-space lattice sums; any periodic direction makes the
whole cell 3D-periodic. PySCF's HF/DFT here is molecular (``pyscf.gto``, no cell) and is
refused for a cell (:func:`periodic_info`); PySCF's periodic DFT (``pyscf.pbc``, stress for
non-hybrid functionals on plane-wave density grids) is not wired in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .properties import check_properties, dipole_moment, polarizability
from .threads import pyscf_threads, tblite_threads

__all__ = ["Level", "Labeller", "make_labeller", "periodic_info"]

XTB_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB"}
UNITS = {"energy_unit": "eV", "length_unit": "Angstrom", "force_unit": "eV/Angstrom"}
STRESS_UNIT = "eV/Angstrom^3"  # σ = (1/V) ∂E/∂ε; positive = tensile

Labeller = Callable[["object"], tuple[float, np.ndarray]]  # ase.Atoms -> (eV, eV/Å [n, 3])


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


def periodic_info(level: Level, name: str) -> dict:
    """Header fields of the periodic frames of structure ``name`` labelled at ``level``: the
    Brillouin-zone sampling, the electrostatics and the stress unit.

    Raises:
        ValueError: for HF/DFT, whose labeller here is molecular (it would ignore the cell).

    >>> periodic_info(Level("gfn1-xtb"), "LiF.xyz")["kpoints"]
    'Gamma'
    """
    if not level.is_xtb:
        raise ValueError(
            f"{name}: a periodic cell cannot be labelled with {level.name}: PySCF's HF/DFT here "
            "is molecular and would ignore the cell (no stress either); use --method gfn1-xtb "
            "or gfn2-xtb (tblite: Γ point, Ewald electrostatics, stress)"
        )
    return {
        "kpoints": "Gamma",  # tblite has no k-point sampling: the Γ point of this cell
        "electrostatics": "Ewald",
        "stress_unit": STRESS_UNIT,
    }


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


class _PySCFLabeller:
    """HF/DFT energy and analytic forces, reusing the last density matrix as the SCF guess;
    with ``properties``, also the dipole (e·Å) and polarizability (Å³) of the same SCF
    (:mod:`.properties`), returned as a third element ``{name: array}``."""

    def __init__(self, level: Level, threads: int | None = None, properties=()) -> None:
        self.level = level
        self.threads = threads
        self.properties = tuple(properties)
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

    def __call__(self, atoms) -> tuple:
        with pyscf_threads(self.threads):
            energy, forces, mf = self._label(atoms)
            if not self.properties:
                return energy, forces
            computed = {"dipole": dipole_moment, "polarizability": polarizability}
            return energy, forces, {name: computed[name](mf) for name in self.properties}

    def _label(self, atoms) -> tuple:
        from ase.units import Bohr, Hartree

        mf = self._mean_field(atoms)
        energy = mf.kernel(dm0=self.density_matrix)
        if not mf.converged and self.density_matrix is not None:
            mf = self._mean_field(atoms)  # the reused guess can mislead: start from scratch
            energy = mf.kernel()
        if not mf.converged:
            raise RuntimeError(f"{self.level.name}: SCF did not converge")
        gradient = mf.nuc_grad_method().kernel()  # Hartree/Bohr
        self.density_matrix = mf.make_rdm1()
        return float(energy) * Hartree, -np.asarray(gradient) * Hartree / Bohr, mf


def make_labeller(
    level: Level, threads: int | None = None, xtb_threads: int | None = 1, properties=()
) -> Labeller:
    """A function ``atoms -> (energy eV, forces eV/Å)`` at the given level of theory; for a
    periodic cell (xTB) ``(energy, forces, {"stress": σ [3, 3] eV/Å³, ...})``.

    Args:
        level: the level of theory (checked here: ValueError if unknown).
        threads: OpenMP threads of PySCF (None: PySCF's default).
        xtb_threads: OpenMP threads of tblite (None: as loaded, i.e. OMP_NUM_THREADS).
        properties: also compute these, from the same calculation: ``"dipole"`` (e·Å; xTB or
            HF/DFT) and ``"polarizability"`` (Å³, 3×3; HF/DFT, closed shells); the function
            then returns ``(energy, forces, {name: array})``. Units: :mod:`.properties`.

    Both thread counts hold only during a call and are restored after it, so the caller's
    OpenMP setting (PyTorch's threads among them) is left as it was.
    """
    level.check()
    properties = check_properties(properties, level.is_xtb, level.multiplicity)
    if level.is_xtb:

        def xtb(atoms) -> tuple:
            atoms = atoms.copy()
            # a fresh calculator per frame: a reused one starts its SCF from the last frame's
            # charges, and a resumed run would then differ from an uninterrupted one in the
            # last digits
            atoms.calc = _xtb_calculator(level)
            extra = {}
            with tblite_threads(xtb_threads):
                energy, forces = float(atoms.get_potential_energy()), atoms.get_forces().copy()
                if atoms.pbc.any():  # from the same SCF: tblite's virial / V, eV/Å³
                    extra["stress"] = atoms.get_stress(voigt=False).copy()
                if properties:
                    extra["dipole"] = atoms.get_dipole_moment().copy()  # e·Å
            return (energy, forces, extra) if extra else (energy, forces)

        return xtb
    return _PySCFLabeller(level, threads, properties)

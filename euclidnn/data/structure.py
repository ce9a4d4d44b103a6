"""One atomic system as numpy arrays, in eV and Å, with optional labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .neighbors import neighbor_list

__all__ = ["Structure", "MIN_DISTANCE"]

#: Atoms closer than this (Å) are rejected as a broken structure.
MIN_DISTANCE = 0.1
_MAX_Z = 118


def _array(name: str, value: Any, dtype, shape: tuple) -> np.ndarray:
    """Convert to an array and check its shape (-1 = any) and finiteness."""
    try:
        array = np.array(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}: cannot convert to {np.dtype(dtype).name} array: {error}"
        ) from error
    if array.ndim != len(shape) or any(s != -1 and s != a for s, a in zip(shape, array.shape)):
        expected = "[" + ", ".join("n" if s == -1 else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {expected}, got {list(array.shape)}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or inf")
    return array


@dataclass(eq=False)  # arrays: compare fields explicitly, not with ==
class Structure:
    """One atomic system (molecule or periodic cell) and its reference labels.

    Units: positions and cell in Å, energy in eV, forces in eV/Å, stress in eV/Å³
    (positive = tensile, ∂E/∂ε / V). Readers convert to these units on input.

    Args:
        numbers: atomic numbers, 1…118.
        positions: Cartesian coordinates, Å.
        cell: rows are the lattice vectors, Å; ``None`` → zeros (not periodic).
        pbc: periodic flags per lattice vector; ``None`` → all False; one bool → all three.
        energy: total energy, eV.
        forces: forces on the atoms, eV/Å.
        stress: stress tensor, eV/Å³; a Voigt 6-vector (xx, yy, zz, yz, xz, xy) is expanded.
        properties: other per-structure labels (dipole, homo, …), arrays in documented units.
        atom_properties: other per-atom labels, arrays with leading dimension ``n_atoms``.

    Shapes:
        numbers: [n_atoms] int64, positions: [n_atoms, 3], cell: [3, 3], pbc: [3] bool,
        forces: [n_atoms, 3], stress: [3, 3]

    Raises:
        ValueError: naming the field, for wrong shapes, NaN/inf, unknown atomic numbers,
            atoms closer than ``MIN_DISTANCE`` (periodic images included), or a singular cell
            along periodic directions.

    >>> s = Structure(numbers=[8, 1, 1], positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> s.num_atoms, s.cell.shape, s.pbc.tolist()
    (3, (3, 3), [False, False, False])
    >>> Structure(numbers=[1, 1], positions=[[0, 0, 0], [0, 0, 0.05]])
    Traceback (most recent call last):
    ...
    ValueError: positions: atoms 0 and 1 are 0.050 Å apart (< 0.1 Å)
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray | None = None
    pbc: np.ndarray | bool | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    atom_properties: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = _array("numbers", self.numbers, np.int64, (-1,))
        n = len(self.numbers)
        bad = (self.numbers < 1) | (self.numbers > _MAX_Z)
        if bad.any():
            raise ValueError(f"numbers: unknown atomic number {int(self.numbers[bad][0])}")
        self.positions = _array("positions", self.positions, np.float64, (n, 3))
        self.cell = (
            np.zeros((3, 3)) if self.cell is None else _array("cell", self.cell, np.float64, (3, 3))
        )
        pbc = False if self.pbc is None else self.pbc
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        if self.pbc.any():
            lattice = self.cell[self.pbc]
            lengths = np.linalg.norm(lattice, axis=1)
            unit = lattice / np.maximum(lengths, 1e-300)[:, None]
            if lengths.min() < 1e-6 or np.linalg.det(unit @ unit.T) < 1e-10:
                raise ValueError(
                    f"cell: singular along periodic directions (pbc={self.pbc.tolist()}, "
                    f"cell={self.cell.tolist()})"
                )
        if self.energy is not None:
            self.energy = float(_array("energy", self.energy, np.float64, ()))
        if self.forces is not None:
            self.forces = _array("forces", self.forces, np.float64, (n, 3))
        if self.stress is not None:
            stress = np.asarray(self.stress, dtype=np.float64)
            if stress.shape == (6,):
                xx, yy, zz, yz, xz, xy = stress
                stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
            self.stress = _array("stress", stress, np.float64, (3, 3))
        self.properties = {
            k: _array(f"properties[{k!r}]", v, None, np.shape(v))
            for k, v in self.properties.items()
        }
        self.atom_properties = {
            k: _array(f"atom_properties[{k!r}]", v, None, (n, *np.shape(v)[1:]))
            for k, v in self.atom_properties.items()
        }
        self._check_distances()

    def _check_distances(self) -> None:
        n = len(self.numbers)
        if not np.any(self.pbc) and n <= 256:  # all pairs directly: ~100× cheaper than a cell list
            d2 = ((self.positions[:, None, :] - self.positions[None, :, :]) ** 2).sum(-1)
            d2[np.diag_indices(n)] = np.inf
            close = np.argwhere(d2 < MIN_DISTANCE**2)
            if len(close):
                i, j = close[0]
                raise ValueError(
                    f"positions: atoms {i} and {j} are {np.sqrt(d2[i, j]):.3f} Å apart (< {MIN_DISTANCE} Å)"
                )
            return
        src, dst, shift = neighbor_list(self.positions, self.cell, self.pbc, MIN_DISTANCE)
        if len(src):
            vec = self.positions[src[0]] - self.positions[dst[0]] + shift[0] @ self.cell
            image = " (periodic image)" if shift[0].any() else ""
            raise ValueError(
                f"positions: atoms {dst[0]} and {src[0]}{image} are "
                f"{np.linalg.norm(vec):.3f} Å apart (< {MIN_DISTANCE} Å)"
            )

    @property
    def num_atoms(self) -> int:
        """Number of atoms."""
        return len(self.numbers)

    @classmethod
    def from_ase(cls, atoms, *, energy: float | None = None, forces=None, stress=None) -> Structure:
        """Build from an ``ase.Atoms``, taking labels from its calculator when present.

        Labels given as arguments take precedence over the calculator's, which take
        precedence over ``atoms.info["energy"]``, ``atoms.arrays["forces"]`` etc. ``atoms.info``
        entries that are numbers or arrays become ``properties``; ``atoms.arrays`` other than
        numbers/positions become ``atom_properties``. Units are assumed to be eV and Å.

        >>> from ase.build import molecule
        >>> Structure.from_ase(molecule("H2O")).numbers.tolist()
        [8, 1, 1]
        """
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}

        def label(name, given):
            for source in (results, atoms.info, atoms.arrays):
                if given is None and source.get(name) is not None:
                    given = source[name]
            return given

        energy = label("energy", energy)
        forces = label("forces", forces)
        stress = label("stress", stress)
        labels = {"energy", "forces", "stress"}
        properties = {
            k: np.asarray(v)
            for k, v in atoms.info.items()
            if k not in labels
            and isinstance(v, (int, float, np.ndarray, np.number))
            and not isinstance(v, bool)
        }
        skip = {"numbers", "positions"} | labels
        atom_properties = {k: np.array(v) for k, v in atoms.arrays.items() if k not in skip}
        return cls(
            numbers=atoms.numbers,
            positions=atoms.positions,
            cell=np.array(atoms.cell),
            pbc=atoms.pbc,
            energy=energy,
            forces=forces,
            stress=stress,
            properties=properties,
            atom_properties=atom_properties,
        )

    def to_ase(self):
        """Convert to ``ase.Atoms``; labels go to a ``SinglePointCalculator``.

        >>> s = Structure(numbers=[1, 1], positions=[[0, 0, 0], [0, 0, 0.74]], energy=-1.0)
        >>> s.to_ase().get_potential_energy()
        -1.0
        """
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        for key, value in self.properties.items():
            atoms.info[key] = value
        for key, value in self.atom_properties.items():
            atoms.arrays[key] = np.array(value)
        results = {}
        if self.energy is not None:
            results["energy"] = self.energy
        if self.forces is not None:
            results["forces"] = self.forces.copy()
        if self.stress is not None:
            results["stress"] = self.stress.copy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms
